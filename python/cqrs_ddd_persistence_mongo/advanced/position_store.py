"""MongoProjectionPositionStore: where each projection stopped reading the event stream.

One document per projection: ``{"_id": name, "projection_name": name, "position": int,
"updated_at": datetime}``. Keying the document by the projection name makes the upsert
unique per name without relying on an index existing.

The original library keyed the same document by a generated ``ObjectId``. Such a document
is never read as a checkpoint (a projection would silently replay from the start, or a save
would fight the unique ``projection_name`` index): reads and saves that meet one raise
:class:`PositionStoreError` saying to run ``upgrade_original_data`` once, which re-keys it.
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from ..core._session import session_of
from ..domain import utc_now
from .._gateway import TRANSIENT
from ..exceptions import ConcurrencyConflict, PositionStoreError
from ..roles import UnitOfWorkRole
from ..core.uow import MongoUnitOfWork
from ._store import CollectionStore, require_int, require_name

_UPSERT_ATTEMPTS = 5

#: a checkpoint written by the original library: keyed by a generated id, not by its name
ORIGINAL_SHAPE: dict[str, Any] = {"_id": {"$not": {"$type": "string"}}, "projection_name": {"$type": "string"}}

logger = logging.getLogger(__name__)


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
            if doc is None:
                await self._refuse_original_shape(projection_name, session)
        return None if doc is None else doc["position"]

    async def _refuse_original_shape(self, projection_name: str, session: Any = None) -> None:
        """Raise when ``projection_name``'s checkpoint is stored in the original library's
        shape (one indexed read; only reached when no keyed checkpoint exists)."""
        original = await self.collection.find_one(
            {**ORIGINAL_SHAPE, "projection_name": projection_name}, {"position": 1}, session=session
        )
        if original is not None:
            raise PositionStoreError(
                f"the position of '{projection_name}' in '{self.collection_name}' "
                f"(position {original.get('position')!r}) was written by the original library (keyed by "
                f"_id {original['_id']!r}); run 'await upgrade_original_data(connection)' once "
                "(from cqrs_ddd_persistence_mongo) to re-key it, then retry"
            )

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
                    await self._refuse_original_shape(projection_name)  # outside the aborted transaction
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

    async def _adopt_original_documents(self, *, dry_run: bool = False) -> tuple[list[str], list[str]]:
        """Re-key every checkpoint stored in the original library's shape to this store's
        key (``_id`` = the projection name); returns the names re-keyed (or, with
        ``dry_run``, to re-key) and the conflicts left untouched.

        Guarantee: idempotent (a re-keyed document no longer matches). Each move (delete the
        original document, insert the keyed one with the same position and ``updated_at``)
        runs in one transaction where the deployment has them; without transactions the two
        writes are separate and a crash between them loses that checkpoint, so its name and
        position are logged first. A name that also has a keyed document is a conflict: both
        are left as they are. Run it while no projection runs.
        """
        with self._errors("finding positions written by the original library"):
            cursor = self.collection.find(ORIGINAL_SHAPE).sort("_id", 1)
            originals = await self._gateway.to_list(cursor, None)
        moved: list[str] = []
        conflicts: list[str] = []
        for doc in originals:
            name = doc["projection_name"]
            with self._errors(f"re-keying the position of '{name}'"):
                keyed = await self.collection.find_one({"_id": name}, {"position": 1})
                if keyed is not None:
                    conflicts.append(
                        f"'{self.collection_name}': '{name}' has a position in the original shape "
                        f"(_id {doc['_id']!r}, position {doc.get('position')!r}) and one keyed by its name "
                        f"(position {keyed.get('position')!r}); delete the wrong one and run the upgrade again"
                    )
                    continue
                if not dry_run:
                    await self._move(doc)
            moved.append(name)
        return moved, conflicts

    async def _move(self, doc: dict[str, Any]) -> None:
        name = doc["projection_name"]
        keyed = {"_id": name, "projection_name": name, "position": doc.get("position"),
                 "updated_at": doc.get("updated_at") or utc_now()}

        async def move(uow: MongoUnitOfWork | None) -> None:
            session = session_of(uow)
            await self.collection.delete_one({"_id": doc["_id"]}, session=session)
            await self.collection.insert_one(keyed, session=session)

        if await self._connection.supports_transactions():
            await MongoUnitOfWork(connection=self._connection).run(move)
            return
        logger.warning(
            "re-keying the position of '%s' in '%s' (position %r) without a transaction: "
            "if this process stops before the next log line, save that position again",
            name, self.collection_name, doc.get("position"),
        )
        await move(None)
        logger.warning("re-keyed the position of '%s' in '%s'", name, self.collection_name)


def _racing_first_save(projection_name: str) -> ConcurrencyConflict:
    error = ConcurrencyConflict(
        f"another transaction saved the first position of '{projection_name}' at the same time; "
        "this transaction was aborted by the server: retry the unit of work (uow.run retries)"
    )
    error._add_error_labels({TRANSIENT})
    return error
