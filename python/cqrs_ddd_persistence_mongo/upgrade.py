"""upgrade_original_data: a one-off upgrade of data written by the original library.

Two kinds of document the original library wrote are not what this package reads:

* projection checkpoints keyed by a generated ``ObjectId`` (this package keys them by the
  projection name): the position stores refuse them with an error that points here;
* pending or failed outbox messages without ``next_attempt_at`` (the field that makes a
  message due here): they would never be published.

Nothing reads-and-fixes them on the fly (reads never write); this helper is the one
explicit, idempotent step that does, and reports what it changed. Events, snapshots, sagas,
jobs and projection documents in the original shape are read as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from .advanced.position_store import MongoProjectionPositionStore
from .core.outbox import MongoOutboxStorage
from .exceptions import InvalidStoreArgument
from .roles import ConnectionRole

logger = logging.getLogger(__name__)

#: where the original library kept projection checkpoints (both names were in use)
ORIGINAL_POSITION_COLLECTIONS = ("projection_positions", "projection_checkpoints")


@dataclass(frozen=True)
class UpgradeReport:
    """What :func:`upgrade_original_data` changed (or, with ``dry_run``, would change)."""

    dry_run: bool
    #: collection -> names of the projections whose checkpoint was re-keyed
    positions_rekeyed: dict[str, list[str]] = field(default_factory=dict)
    #: pending / failed outbox messages given a ``next_attempt_at``
    outbox_messages_scheduled: int = 0
    #: documents left untouched because they need a decision (each says which)
    conflicts: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when something was (or would be) changed."""
        return bool(self.outbox_messages_scheduled or any(self.positions_rekeyed.values()))

    def __str__(self) -> str:
        verb = "would re-key" if self.dry_run else "re-keyed"
        parts = [f"{verb} {len(names)} position(s) in '{name}'" for name, names in self.positions_rekeyed.items() if names]
        scheduled = "would schedule" if self.dry_run else "scheduled"
        parts.append(f"{scheduled} {self.outbox_messages_scheduled} outbox message(s)")
        parts.extend(f"conflict: {conflict}" for conflict in self.conflicts)
        return "; ".join(parts)


async def upgrade_original_data(
    connection: ConnectionRole,
    *,
    database: str | None = None,
    position_collections: Sequence[str] = ORIGINAL_POSITION_COLLECTIONS,
    outbox_collection: str | None = "outbox",
    dry_run: bool = False,
) -> UpgradeReport:
    """Upgrade, once, the documents the original library wrote that this package reads otherwise.

    * Re-keys each checkpoint in ``position_collections`` stored as ``{_id: ObjectId,
      projection_name, position}`` to ``{_id: projection_name, ...}`` (same position and
      ``updated_at``), in one transaction per checkpoint where the deployment has them.
    * Gives pending and failed messages of ``outbox_collection`` (None: skip the outbox)
      that lack ``next_attempt_at`` their ``created_at`` as the time they are due.

    Guarantee: idempotent (a second run changes nothing and reports so); every round trip
    is bounded by the connection's ``operation_timeout``; nothing this package wrote is
    touched; a checkpoint stored in both shapes is reported in ``conflicts`` and left
    alone. ``dry_run=True`` only counts. Run it with the projections and publishers
    stopped. Raises the stores' errors (``PositionStoreError``, ``OutboxError``).
    """
    if isinstance(position_collections, str):
        raise InvalidStoreArgument(
            f"position_collections takes a list of collection names, not the single name "
            f"{position_collections!r}: use [{position_collections!r}]"
        )
    rekeyed: dict[str, list[str]] = {}
    conflicts: list[str] = []
    for name in dict.fromkeys(position_collections):
        store = MongoProjectionPositionStore(connection, database, name, auto_index=False)
        moved, clashes = await store._adopt_original_documents(dry_run=dry_run)
        rekeyed[name] = moved
        conflicts.extend(clashes)
    scheduled = 0
    if outbox_collection is not None:
        outbox = MongoOutboxStorage(connection, database, outbox_collection)
        scheduled = await outbox._schedule_original_messages(dry_run=dry_run)
    report = UpgradeReport(dry_run, rekeyed, scheduled, conflicts)
    logger.info("upgrade_original_data: %s", report)
    return report
