"""MongoProjectionPositionStore: where each projection stopped reading the event stream.

One document per projection: ``{"_id": name, "projection_name": name, "position": int,
"updated_at": datetime}``. Keying the document by the projection name makes the upsert
unique per name without relying on an index existing.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..core._session import session_of
from ..domain import utc_now
from .._gateway import TRANSIENT
from ..exceptions import ConcurrencyConflict, PositionStoreError
from ..roles import UnitOfWorkRole
from ._store import CollectionStore, require_int, require_name

_UPSERT_ATTEMPTS = 5


class MongoProjectionPositionStore(CollectionStore):
    """Checkpoints of projections (``get_position`` / ``save_position`` / ``reset_position``).

    Every method takes ``uow=``: inside a unit of work the checkpoint is written in the
    same transaction as the read-model changes, so both commit or neither does.
    """

    default_collection = "projection_positions"
    index_specs = ({"keys": [("projection_name", 1)], "unique": True, "name": "projection_name_unique"},)
    #: every filter names ``projection_name`` (equal to ``_id``): the shard key, which the
    #: unique index above is prefixed by, routes each read and write to one shard
    error_cls = PositionStoreError

    async def get_position(self, projection_name: str, *, uow: UnitOfWorkRole | None = None) -> int | None:
        """The saved position of ``projection_name``, or None if it never saved one."""
        require_name(projection_name, "projection_name")
        session = session_of(uow)
        with self._errors(f"reading the position of '{projection_name}'"):
            doc = await self.collection.find_one({"_id": projection_name, "projection_name": projection_name}, {"position": 1}, session=session)
        return None if doc is None else doc["position"]

    async def save_position(
        self,
        projection_name: str,
        position: int,
        *,
        uow: UnitOfWorkRole | None = None,
        only_forward: bool = False,
    ) -> int:
        """Store ``position`` as the checkpoint of ``projection_name``; returns the stored position.

        Guarantee: one atomic upsert (single round trip), idempotent. Concurrent savers of
        the same name never create a second document; the last write wins, unless
        ``only_forward=True``, where the stored position only ever grows (``$max``), so a
        slow runner cannot move a checkpoint back. Inside ``uow`` the write commits or
        aborts with the transaction; a crash before commit leaves the previous position.
        """
        require_name(projection_name, "projection_name")
        require_int(position, "position")
        fields: dict[str, Any] = {"projection_name": projection_name, "updated_at": utc_now()}
        update: dict[str, Any] = {"$set": fields}
        if only_forward:
            update["$max"] = {"position": position}
        else:
            fields["position"] = position
        return await self._upsert(projection_name, update, uow)

    async def _upsert(self, projection_name: str, update: dict[str, Any], uow: UnitOfWorkRole | None) -> int:
        """Run the idempotent upsert ``update``; a racing first save is retried as an update.

        Two first saves of one name race on the insert: the loser gets DuplicateKeyError
        (or, on some servers, no document back) and, outside a transaction, repeating the
        same idempotent update applies it to the winner's document. Inside a transaction
        the server has already aborted it: the error is a transient ConcurrencyConflict
        and the unit of work is retried as a whole (``uow.run``).
        """
        session = session_of(uow)
        in_transaction = self._gateway.in_transaction(session)
        with self._errors(f"saving the position of '{projection_name}'"):
            collection = await self._coll(session)
            for _ in range(1 if in_transaction else _UPSERT_ATTEMPTS):
                try:
                    doc = await collection.find_one_and_update(
                        {"_id": projection_name, "projection_name": projection_name},
                        update,
                        upsert=True,
                        projection={"position": 1},
                        return_document=ReturnDocument.AFTER,
                        session=session,
                    )
                except DuplicateKeyError as exc:
                    if in_transaction:
                        raise _racing_first_save(projection_name) from exc
                    continue
                if doc is not None:
                    return int(doc["position"])
        raise PositionStoreError(
            f"saving the position of '{projection_name}' in '{self.collection_name}' lost "
            f"{_UPSERT_ATTEMPTS} upsert races in a row; retry the save"
        )

    async def reset_position(self, projection_name: str, *, uow: UnitOfWorkRole | None = None) -> bool:
        """Forget the checkpoint of ``projection_name`` (the next run starts from the beginning).

        Guarantee: one atomic delete, idempotent; returns True if a checkpoint existed.
        """
        require_name(projection_name, "projection_name")
        session = session_of(uow)
        with self._errors(f"resetting the position of '{projection_name}'"):
            result = await self.collection.delete_one({"_id": projection_name, "projection_name": projection_name}, session=session)
        deleted: int = result.deleted_count
        return deleted == 1

    async def get_all_positions(self, *, uow: UnitOfWorkRole | None = None) -> dict[str, int]:
        """Every projection's checkpoint, by name (for dashboards and the CLI)."""
        session = session_of(uow)
        with self._errors("listing positions"):
            cursor = self.collection.find({}, {"position": 1}, session=session)
            docs = await self._gateway.to_list(cursor, None)
        return {doc["_id"]: doc["position"] for doc in docs}


def _racing_first_save(projection_name: str) -> ConcurrencyConflict:
    error = ConcurrencyConflict(
        f"another transaction saved the first position of '{projection_name}' at the same time; "
        "this transaction was aborted by the server: retry the unit of work (uow.run retries)"
    )
    error._add_error_labels({TRANSIENT})
    return error
