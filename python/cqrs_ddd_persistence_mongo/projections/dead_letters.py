"""Dead letters: events a projection handler kept failing on, parked with their error.

One document per (projection, event): ``_id = "<projection>:<event_id>"``, so parking the
same event again (a stopped projection retried after a restart) updates it instead of
adding a second one, and counts how often it was parked.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable
from typing import Any

from pymongo import UpdateOne

from .._gateway import call
from ..domain import utc_now
from ..exceptions import ProjectionError
from ..indexes import ensure_indexes
from ..roles import ConnectionRole
from .applier import Parked

DEFAULT_COLLECTION = "projection_dead_letters"


class DeadLetters:
    """The dead-letter collection of the projection engine."""

    def __init__(self, db: Any, collection: str = DEFAULT_COLLECTION, *, connection: ConnectionRole) -> None:
        self.collection = db[collection]
        self.connection = connection  # its operation_timeout bounds each round trip

    async def ensure_indexes(self) -> None:
        """The index :meth:`list_parked` reads by (call before any transaction uses the collection)."""
        with call(self.connection, f"creating the indexes of '{self.collection.name}'", ProjectionError):
            await ensure_indexes(self.collection, [("projection", 1, "position", 1)])

    async def park(self, projection_name: str, parked: Iterable[Parked], *, session: Any = None) -> int:
        """Record ``parked`` events; returns how many.

        Guarantee: one bulk upsert, idempotent per (projection, event); inside a transaction
        it commits with the batch that parked the events, so the checkpoint never passes an
        event that is neither applied nor parked.
        """
        models = [
            UpdateOne(
                {"_id": f"{projection_name}:{p.event.event_id}"},
                {
                    "$set": {
                        "projection": projection_name,
                        "event_id": p.event.event_id,
                        "event_type": p.event.event_type,
                        "aggregate_id": p.event.aggregate_id,
                        "position": p.event.position,
                        "error_type": type(p.error).__name__,
                        "error": str(p.error),
                        "traceback": "".join(traceback.format_exception(p.error))[-4000:],
                        "attempts": p.attempts,
                        "parked_at": utc_now(),
                    },
                    "$inc": {"times_parked": 1},
                },
                upsert=True,
            )
            for p in parked
        ]
        if not models:
            return 0
        with call(self.connection, f"parking failed events in '{self.collection.name}'", ProjectionError):
            await self.collection.bulk_write(models, ordered=False, session=session)
        return len(models)

    async def list_parked(self, projection_name: str) -> list[dict[str, Any]]:
        """The parked events of ``projection_name`` in position order."""
        with call(self.connection, f"reading the parked events of '{projection_name}'", ProjectionError):
            cursor = self.collection.find({"projection": projection_name}).sort("position", 1)
            return list(await cursor.to_list(None))
