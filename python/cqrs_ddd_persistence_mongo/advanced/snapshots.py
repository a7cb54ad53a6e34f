"""MongoSnapshotStore: periodic snapshots of aggregate state, so loading replays only the
events after the newest snapshot.

One document per (aggregate_type, aggregate_id, version)::

    {"_id": {"t": "Order", "a": "order-123", "v": 50},
     "aggregate_type": "Order", "aggregate_id": "order-123", "version": 50,
     "snapshot_data": {...}, "created_at": datetime}

The compound ``_id`` makes a save of the same version an idempotent overwrite, with no
duplicate possible even before any index exists. Reads use the original library's index
``(aggregate_id 1, aggregate_type 1, version -1)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError

from .._gateway import check_key
from ..core._session import session_of
from ..domain import utc_now
from ..exceptions import InvalidStoreArgument, SnapshotStoreError
from ..roles import ConnectionRole, UnitOfWorkRole
from ._store import CollectionStore, require_int, require_name

_LATEST = [("aggregate_id", 1), ("aggregate_type", 1), ("version", -1)]


class MongoSnapshotStore(CollectionStore):
    """Save, load and delete aggregate snapshots.

    ``keep_last=N`` keeps only the N newest snapshots of each aggregate (older ones are
    deleted after each save); ``None`` keeps them all.
    """

    default_collection = "snapshots"
    index_specs = ({"keys": _LATEST, "name": "aggregate_latest"},)
    error_cls = SnapshotStoreError

    def __init__(
        self,
        connection: ConnectionRole,
        database: str | None = None,
        collection: str | None = None,
        *,
        keep_last: int | None = None,
        auto_index: bool = True,
    ) -> None:
        if keep_last is not None:
            require_int(keep_last, "keep_last", minimum=1)
        super().__init__(connection, database, collection, auto_index=auto_index)
        self.keep_last = keep_last

    @staticmethod
    def _key(aggregate_type: str, aggregate_id: Any) -> dict[str, Any]:
        require_name(aggregate_type, "aggregate_type")
        return {"aggregate_id": check_key(aggregate_id, "aggregate_id"), "aggregate_type": aggregate_type}

    async def save_snapshot(
        self,
        aggregate_type: str,
        aggregate_id: Any,
        snapshot_data: Mapping[str, Any],
        version: int,
        *,
        uow: UnitOfWorkRole | None = None,
    ) -> bool:
        """Store the state of an aggregate at ``version``; returns False if it was not kept.

        Guarantee: a save never replaces a newer snapshot with an older one. Each version
        is its own document (an atomic upsert; saving the same version again overwrites
        it, so the call is idempotent), :meth:`get_latest_snapshot` always returns the
        highest version, and with ``keep_last`` a version older than the N newest is not
        stored at all (returns False). Pruning is a second statement: a crash between the
        two leaves one extra old snapshot, removed by the next save. Concurrent savers
        converge on exactly the N newest. Inside ``uow`` both statements join the
        transaction.
        """
        key = self._key(aggregate_type, aggregate_id)
        require_int(version, "version")
        if not isinstance(snapshot_data, Mapping):
            raise InvalidStoreArgument(
                f"snapshot_data must be a dict (e.g. aggregate.model_dump()), got {type(snapshot_data).__name__}"
            )
        session = session_of(uow)
        with self._errors(f"saving the snapshot of {aggregate_type} {aggregate_id!r} v{version}"):
            collection = await self._coll(session)
            if self.keep_last is not None and await self._newer_count(collection, key, version, session) >= self.keep_last:
                return False
            doc_id = {"t": aggregate_type, "a": aggregate_id, "v": version}
            document = {**key, "version": version, "snapshot_data": dict(snapshot_data), "created_at": utc_now()}
            target = {"_id": doc_id, **key}  # the shard key (aggregate_type, aggregate_id) routes it
            try:
                await collection.replace_one(target, document, upsert=True, session=session)
            except DuplicateKeyError as exc:
                if self._gateway.in_transaction(session):  # the server aborted it: retry the unit of work
                    raise
                await collection.replace_one(target, document, session=session)  # a concurrent save won
            if self.keep_last is not None:
                await self._prune(collection, key, self.keep_last, session)
        return True

    async def _newer_count(self, collection: Any, key: dict[str, Any], version: int, session: Any) -> int:
        count: int = await collection.count_documents(
            {**key, "version": {"$gt": version}}, limit=self.keep_last, session=session
        )
        return count

    async def _prune(self, collection: Any, key: dict[str, Any], keep: int, session: Any) -> int:
        """Delete every snapshot of the aggregate older than its ``keep`` newest ones."""
        cursor = collection.find(key, {"version": 1}, session=session).sort(_LATEST).skip(keep - 1).limit(1)
        cutoff = await self._gateway.to_list(cursor, 1)
        if not cutoff:
            return 0
        result = await collection.delete_many({**key, "version": {"$lt": cutoff[0]["version"]}}, session=session)
        deleted: int = result.deleted_count
        return deleted

    async def get_latest_snapshot(
        self, aggregate_type: str, aggregate_id: Any, *, uow: UnitOfWorkRole | None = None
    ) -> dict[str, Any] | None:
        """The newest snapshot (``aggregate_type``, ``aggregate_id``, ``version``,
        ``snapshot_data``, ``created_at``), or None when the aggregate has none."""
        key = self._key(aggregate_type, aggregate_id)
        session = session_of(uow)
        with self._errors(f"reading the snapshot of {aggregate_type} {aggregate_id!r}"):
            cursor = self.collection.find(key, {"_id": 0}, session=session).sort(_LATEST).limit(1)
            docs = await self._gateway.to_list(cursor, 1)
        return docs[0] if docs else None

    async def get_snapshot(
        self, aggregate_type: str, aggregate_id: Any, version: int, *, uow: UnitOfWorkRole | None = None
    ) -> dict[str, Any] | None:
        """The snapshot taken at exactly ``version``, or None."""
        key = self._key(aggregate_type, aggregate_id)
        require_int(version, "version")
        session = session_of(uow)
        with self._errors(f"reading the snapshot of {aggregate_type} {aggregate_id!r} v{version}"):
            found: dict[str, Any] | None = await self.collection.find_one(
                {**key, "version": version}, {"_id": 0}, session=session
            )
            return found

    async def delete_snapshot(
        self,
        aggregate_type: str,
        aggregate_id: Any,
        *,
        before_version: int | None = None,
        uow: UnitOfWorkRole | None = None,
    ) -> int:
        """Delete the aggregate's snapshots (all, or only those older than ``before_version``).

        Guarantee: one atomic-per-document ``delete_many``, idempotent; returns how many
        were deleted. A concurrent save may add a snapshot right after.
        """
        key = self._key(aggregate_type, aggregate_id)
        query: dict[str, Any] = dict(key)
        if before_version is not None:
            query["version"] = {"$lt": require_int(before_version, "before_version")}
        session = session_of(uow)
        with self._errors(f"deleting the snapshots of {aggregate_type} {aggregate_id!r}"):
            result = await self.collection.delete_many(query, session=session)
        deleted: int = result.deleted_count
        return deleted

    delete_snapshots = delete_snapshot
