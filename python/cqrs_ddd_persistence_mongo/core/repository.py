"""MongoRepository: aggregates in one collection, with optimistic concurrency.

Documents carry ``_version``. A new aggregate (``version == 0``) is inserted with
``_version: 1``; a loaded one is replaced only where ``_version`` still equals the version
it was loaded with, in one round trip (``replace_one({"_id", "_version"})``). On success
the entity's ``version`` becomes the stored one, so the same object can be saved again
and again; a stale save raises :class:`VersionMismatchError` and writes nothing. Models
without a ``version`` field are upserted plainly (last writer wins).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic

import bson
from pydantic import BaseModel
from pymongo import InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from typing_extensions import TypeVar

from .. import _accel
from .._gateway import (
    DUPLICATE_KEY,
    INT64_MAX,
    INT64_MIN,
    WRITE_CONFLICT,
    Gateway,
    check_key,
    duplicate_key_index,
    session_of as _session,
)
from ..exceptions import (
    DuplicateEntityError,
    MongoPersistenceError,
    MongoQueryError,
    VersionMismatchError,
)
from ..roles import ConnectionRole, UnitOfWorkRole
from ..specifications import QueryOptions
from ._session import session_of
from .entity_stream import EntityStream, iterate_cursor_batches
from .model_mapper import MongoDBModelMapper
from .search import Criteria, SearchResult, search_collection
from .uow import raised_by_server

#: the model class the repository stores
T = TypeVar("T", bound=BaseModel)
#: the id type; ``str`` unless the repository is annotated ``MongoRepository[Order, int]``
ID = TypeVar("ID", default=str)


def _only_id_key(details: dict[str, Any] | None) -> bool:
    """True when a duplicate-key error is about ``_id`` (not another unique index)."""
    return duplicate_key_index({**(details or {}), "code": DUPLICATE_KEY}) == "_id"


class MongoRepository(Generic[T, ID]):
    """Generic repository of one aggregate type in one collection.

    Every method takes ``uow=``: it then runs in that unit of work's session and
    transaction (``uow.session``); without one, each call is its own atomic operation.
    Override :meth:`_mapper_to_doc` / :meth:`_mapper_from_doc` for custom mapping
    (``self._mapper`` is the :class:`MongoDBModelMapper`).
    """

    #: Documents per round trip when streaming ``list_all()``.
    batch_size: int = 500
    #: Ids per ``$in`` query when listing by ids.
    ids_per_query: int = 1000
    #: Most entities ``await repo.list_all()`` (no ids, no limit) returns before refusing.
    max_list_all: int = 10_000

    def __init__(
        self,
        connection: ConnectionRole,
        collection: str,
        model_cls: type[T],
        id_field: str = "id",
        database: str | None = None,
        *,
        mapper: MongoDBModelMapper[T] | None = None,
        error_cls: type[MongoPersistenceError] = MongoQueryError,
    ) -> None:
        self._connection = connection
        self._gateway = Gateway(connection, database, collection, error_cls)
        self._reading = f"reading '{collection}'"
        self._saving = f"saving to '{collection}'"
        self._deleting = f"deleting from '{collection}'"
        self.collection_name = collection
        self.database_name = database
        self.model_cls = model_cls
        self.id_field = id_field
        self._mapper = mapper if mapper is not None else MongoDBModelMapper(model_cls, id_field=id_field)

    # --- mapping hooks ----------------------------------------------------------
    def _mapper_to_doc(self, entity: T) -> dict[str, Any]:
        """Entity -> document (``_id``, body, ``_version``). Override to add computed fields."""
        return self._mapper.to_doc(entity)

    def _mapper_from_doc(self, doc: dict[str, Any]) -> T:
        """Document -> entity. Override to restore derived state."""
        return self._mapper.from_doc(doc)

    @property
    def versioned(self) -> bool:
        """True when the model has a ``version`` field: saves are then version-checked."""
        return bool(self._mapper.versioned)

    def collection(self) -> Any:
        """The driver collection (re-resolved when the connection's client changes)."""
        return self._gateway.collection

    def _key(self, entity_id: Any) -> Any:
        """A caller's id as stored in ``_id`` (the mapper's type rules: UUID, Decimal, ...),
        refused unless it is a plain value or a composite key (no operators, no patterns)."""
        kind = type(entity_id)
        if kind is str or (kind is int and INT64_MIN <= entity_id <= INT64_MAX):  # the common case
            return entity_id
        if entity_id is None:
            raise MongoQueryError(f"an id is required to look up {self.model_cls.__name__}, got None")
        what = f"{self.model_cls.__name__} id"
        if isinstance(entity_id, Mapping):
            check_key(entity_id, what, composite=True)
        return check_key(self._stored_key(entity_id), what, composite=True)

    @staticmethod
    def _stored_key(value: Any) -> Any:
        """An ``_id`` value in its stored form (for ids read back from the server)."""
        if type(value) in (str, int):
            return value
        return _accel.map_to_doc({"_id_": value}, "_id_", None, False)["_id"]

    # --- writes -------------------------------------------------------------------
    async def add(self, entity: T, uow: UnitOfWorkRole | None = None) -> Any:
        """Insert a new aggregate or save a loaded one.

        Guarantee (versioned model): atomic, single document, one round trip. A new
        aggregate (``version == 0``) is inserted with ``_version`` 1; if the id exists
        (a concurrent insert won) :class:`DuplicateEntityError` is raised. A loaded one
        replaces the document only if ``_version`` still equals ``entity.version``;
        otherwise :class:`VersionMismatchError` names the expected and stored versions
        and nothing is written. Not idempotent: a repeated save after success is stale
        unless made with the same, updated object. Inside a transaction, a concurrent
        transaction writing the same document makes this save fail with
        :class:`VersionMismatchError` too (its cause carries the driver's
        ``TransientTransactionError`` label, so ``uow.run`` retries the block).
        On success ``entity.version`` becomes the new version; if the unit of work
        rolls back, the old version is restored. A crash leaves the old or the new
        document, never a mix.

        Unversioned model: ``replace_one(upsert=True)``: atomic, idempotent, last writer wins.

        Returns the entity's id as the model holds it (a ``UUID`` stays a ``UUID``, not its
        stored binary form); for an entity saved without one, the generated ObjectId, which
        the entity now carries. ``get()`` finds it either way.
        """
        session = _session(uow)
        doc = self._mapper_to_doc(entity)
        with self._dooming(uow), self._gateway.call(self._saving):
            await self._add(entity, doc, session, uow)
        entity_id = getattr(entity, self.id_field, None)
        return doc["_id"] if entity_id is None else entity_id

    async def _add(self, entity: T, doc: dict[str, Any], session: Any, uow: UnitOfWorkRole | None) -> None:
        collection = self.collection()
        if "_id" not in doc:  # id None: the driver assigns an ObjectId, the entity gets it
            await self._insert_with_generated_id(entity, doc, session, uow)
            return
        check_key(doc["_id"], f"{self.model_cls.__name__} id", composite=True)
        if not self.versioned:
            await self._guarded(collection.replace_one({"_id": doc["_id"]}, doc, upsert=True, session=session))
            return
        expected = self._version_of(entity)
        new = expected + 1
        doc["_version"] = new
        doc_id = doc["_id"]
        try:
            if expected == 0:
                await collection.insert_one(doc, session=session)
            else:
                result = await collection.replace_one({"_id": doc_id, "_version": expected}, doc, session=session)
                if result.matched_count == 0:
                    actual = await self._stored_version(doc_id, session)
                    raise VersionMismatchError(
                        entity_id=doc_id, expected=expected, actual=actual, collection=self.collection_name
                    )
        except DuplicateKeyError as exc:
            raise self._duplicate(doc_id, dict(exc.details or {})) from exc
        except OperationFailure as exc:
            if exc.code == WRITE_CONFLICT:
                raise await self._write_conflict(doc_id, expected) from exc
            raise MongoQueryError(f"saving {doc_id!r} in '{self.collection_name}' failed: {exc}") from exc
        self._set_version(entity, new, uow)

    async def _insert_with_generated_id(self, entity: Any, doc: dict[str, Any], session: Any, uow: UnitOfWorkRole | None) -> None:
        expected = self._version_of(entity) if self.versioned else 0
        if expected:
            raise self._lost_id(entity, expected)
        if self.versioned:
            doc["_version"] = 1
        await self._guarded(self.collection().insert_one(doc, session=session))  # adds doc["_id"]
        self._adopt_ids([entity], [doc], [0])
        if self.versioned:
            self._set_version(entity, 1, uow)

    def _lost_id(self, entity: Any, version: int) -> MongoPersistenceError:
        return MongoPersistenceError(
            f"{type(entity).__name__} has version {version} but no {self.id_field!r}: "
            "a saved aggregate must keep its id"
        )

    def _adopt_ids(self, items: list[Any], docs: list[dict[str, Any]], indexes: Iterable[int]) -> None:
        """Give entities saved without an id the ObjectId the driver generated."""
        for index in indexes:
            setattr(items[index], self.id_field, docs[index]["_id"])

    async def add_many(self, entities: Iterable[T], uow: UnitOfWorkRole | None = None) -> None:
        """Save many aggregates with one ``bulk_write`` (same rules per entity as :meth:`add`).

        Guarantee: inside a transactional unit of work, all or nothing: a conflict raises
        :class:`VersionMismatchError` (or :class:`DuplicateEntityError`), no entity
        version changes, and the unit of work is marked rollback-only so the partial
        batch can never be committed. Outside a transaction the batch is not atomic:
        every entity without a conflict is written (unordered bulk), conflicts are
        reported together afterwards (one error naming each); the versions of the
        written entities are updated (a stored document equal to the one sent counts as
        written), the conflicting ones keep theirs: reload them before saving again.
        A crash halfway leaves part of the batch written, each document whole.
        Not idempotent for versioned models; idempotent (upserts) for unversioned ones.
        """
        items = list(entities)
        session = _session(uow)
        if not items:
            return
        docs = [self._mapper_to_doc(entity) for entity in items]
        for doc in docs:
            if "_id" in doc:
                check_key(doc["_id"], f"{self.model_cls.__name__} id", composite=True)
        with self._gateway.call(self._saving):
            await self._add_many(items, docs, session, uow)

    async def _add_many(self, items: list[Any], docs: list[dict[str, Any]], session: Any, uow: UnitOfWorkRole | None) -> None:
        collection = self.collection()
        generated = [i for i, d in enumerate(docs) if "_id" not in d]  # the driver assigns these
        if not self.versioned:
            ops: list[Any] = [
                ReplaceOne({"_id": d["_id"]}, d, upsert=True) if "_id" in d else InsertOne(d) for d in docs
            ]
            await self._guarded(collection.bulk_write(ops, ordered=session is not None, session=session))
            self._adopt_ids(items, docs, generated)
            return
        expected = [self._version_of(e) for e in items]
        for index in generated:
            if expected[index]:
                raise self._lost_id(items[index], expected[index])
        ops = []
        for doc, version in zip(docs, expected):
            doc["_version"] = version + 1
            if version == 0:
                ops.append(InsertOne(doc))
            else:
                ops.append(ReplaceOne({"_id": doc["_id"], "_version": version}, doc))
        replaces = sum(1 for v in expected if v)
        transactional = session is not None
        failed: set[int] = set()
        try:
            result = await collection.bulk_write(ops, ordered=transactional, session=session)
            matched = result.matched_count
        except BulkWriteError as exc:
            details = exc.details or {}
            for error in details.get("writeErrors", []):
                if error.get("code") != DUPLICATE_KEY or not _only_id_key(error):
                    self._doom(uow, "a batch save failed")
                    raise MongoQueryError(
                        f"saving a batch in '{self.collection_name}' failed: {error.get('errmsg')}"
                    ) from exc
                failed.add(error["index"])
            matched = details.get("nMatched", 0)
            if transactional:
                self._doom(uow, "a batch save conflicted")
                first = min(failed)
                raise self._duplicate(docs[first]["_id"], details["writeErrors"][0]) from exc
        except OperationFailure as exc:
            self._doom(uow, "a batch save conflicted")
            if exc.code == WRITE_CONFLICT:
                raise await self._write_conflict([d["_id"] for d in docs], None) from exc
            raise MongoQueryError(f"saving a batch in '{self.collection_name}' failed: {exc}") from exc
        except TypeError as exc:  # mongomock's bulk_write cannot take pymongo 4.20's ReplaceOne
            raise MongoPersistenceError(
                f"this client cannot bulk-replace documents ({exc}); save loaded entities one by one with add()"
            ) from exc
        if not failed and matched == replaces:
            self._adopt_ids(items, docs, generated)
            for entity, version in zip(items, expected):
                self._set_version(entity, version + 1, uow)
            return
        # Some saves conflicted. Which ones: a document equal to what we sent is ours.
        written = await self._written(docs, collection, session) - failed
        if transactional:
            self._doom(uow, "a batch save conflicted")
        else:
            self._adopt_ids(items, docs, [i for i in generated if i in written])
            for index in written:
                self._set_version(items[index], expected[index] + 1, uow)
        conflicts = [i for i in range(len(docs)) if i not in written]
        await self._raise_conflicts(docs, expected, conflicts, collection, session)

    async def delete(
        self, entity_id: ID, uow: UnitOfWorkRole | None = None, *, expected_version: int | None = None, specification: Any = None
    ) -> ID | None:
        """Delete by id; returns the id when a document was deleted, None when none was.

        Guarantee: atomic, idempotent (deleting a missing id returns None). With
        ``expected_version`` the delete happens only if ``_version`` still matches,
        else :class:`VersionMismatchError` (nothing deleted). With ``specification``
        the document is deleted only if it also matches it (AND-ed with the id).
        """
        key = self._key(entity_id)
        query: dict[str, Any] = {"_id": key}
        if expected_version is not None:
            if type(expected_version) is not int or not 0 <= expected_version <= INT64_MAX:
                raise MongoQueryError(f"expected_version must be an int >= 0, not {expected_version!r}")
            query["_version"] = expected_version
        query = self._and_spec(query, specification)
        session = _session(uow)
        with self._dooming(uow), self._gateway.call(self._deleting):
            try:
                result = await self.collection().delete_one(query, session=session)
            except OperationFailure as exc:
                if exc.code == WRITE_CONFLICT:
                    raise await self._write_conflict(key, expected_version) from exc
                raise MongoQueryError(f"deleting {key!r} from '{self.collection_name}' failed: {exc}") from exc
            if result.deleted_count:
                return entity_id
            if expected_version is not None and specification is None:
                actual = await self._stored_version(key, session)
                if actual is not None:
                    raise VersionMismatchError(
                        entity_id=key, expected=expected_version, actual=actual, collection=self.collection_name
                    )
        return None

    def _and_spec(self, query: dict[str, Any], specification: Any) -> dict[str, Any]:
        """``query`` AND the filter of ``specification`` (a Specification, its dict form or
        QueryOptions), compiled like :meth:`search` (model field names, stored value types)."""
        if specification is None:
            return query
        match = search_collection(
            self.collection(),
            specification,
            field_names=self._document_field_names(),
            encode_value=self._encode_search_value,
        ).filter
        return {"$and": [query, match]} if match else query

    # --- reads ----------------------------------------------------------------------
    async def get(self, entity_id: ID, uow: UnitOfWorkRole | None = None, *, specification: Any = None) -> T | None:
        """The aggregate with this id, or None; its ``version`` is the stored ``_version``.

        With ``specification`` the aggregate is returned only if it also matches it.
        """
        key = self._key(entity_id)
        query = self._and_spec({"_id": key}, specification)
        session = _session(uow)
        with self._gateway.call(self._reading):
            doc = await self._guarded(self.collection().find_one(query, session=session))
        return None if doc is None else self._mapper_from_doc(doc)

    async def exists(self, entity_id: ID, uow: UnitOfWorkRole | None = None) -> bool:
        """True when a document with this id exists (reads only ``_id``)."""
        key = self._key(entity_id)
        session = _session(uow)
        with self._gateway.call(self._reading):
            doc = await self._guarded(self.collection().find_one({"_id": key}, {"_id": 1}, session=session))
        return doc is not None

    def list_all(
        self,
        ids: Sequence[ID] | None = None,
        uow: UnitOfWorkRole | None = None,
        *,
        batch_size: int | None = None,
        entity_ids: Sequence[ID] | None = None,
        specification: Any = None,
    ) -> EntityStream[T]:
        """Entities by ids, or all of them, as an :class:`EntityStream`.

        * ``await repo.list_all(ids)``: a list in the order of ``ids`` (missing ids are
          skipped, repeated ids returned once); an empty list returns ``[]`` without a query.
        * ``async for e in repo.list_all():`` streams the whole collection in ``_id`` order,
          ``batch_size`` documents per round trip, never holding more than one batch.
        * ``await repo.list_all()`` returns the whole collection as a list only while it
          holds at most ``max_list_all`` entities, else raises ``ResultTooLarge`` (stream
          instead, or ``await repo.list_all().to_list(limit=n)`` for the first ``n``).
          A list is never silently truncated.

        ``entity_ids=`` is accepted as the original library's name for ``ids``; ``specification=``
        keeps only the entities that also match it (AND-ed with the ids).
        """
        if entity_ids is not None:
            if ids is not None:
                raise MongoQueryError("pass ids or entity_ids, not both")
            ids = entity_ids
        if isinstance(ids, (str, bytes)):
            raise MongoQueryError(f"list_all takes a list of ids, not the single id {ids!r}: use [{ids!r}]")
        session = _session(uow)
        size = batch_size or self.batch_size
        match = self._and_spec({}, specification)
        if ids is None:
            return EntityStream(
                lambda n: self._scan(n, session, match),
                self._mapper_from_doc,
                batch_size=size,
                max_items=self.max_list_all,
                what=f"documents in '{self.collection_name}'",
            )
        keys = self._unique_keys(ids)
        return EntityStream(
            lambda n: self._by_ids(keys, n, session, match),
            self._mapper_from_doc,
            batch_size=size,
            max_items=None,  # bounded by the ids given
        )

    def _scan(self, batch_size: int, session: Any, match: dict[str, Any]) -> AsyncGenerator[list[dict[str, Any]], None]:
        cursor = self.collection().find(match, session=session).sort("_id", 1).batch_size(batch_size)
        return self._gateway.guarded(iterate_cursor_batches(cursor, batch_size), self._reading)

    def _by_ids(
        self, keys: list[Any], batch_size: int, session: Any, match: dict[str, Any]
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        return self._gateway.guarded(self._by_ids_unguarded(keys, batch_size, session, match), self._reading)

    async def _by_ids_unguarded(
        self, keys: list[Any], batch_size: int, session: Any, match: dict[str, Any]
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        step = max(1, min(batch_size, self.ids_per_query))
        for start in range(0, len(keys), step):
            chunk = keys[start : start + step]
            query: dict[str, Any] = {"_id": {"$in": chunk}}
            cursor = self.collection().find({"$and": [query, match]} if match else query, session=session)
            found: dict[Any, dict[str, Any]] = {}
            async for docs in iterate_cursor_batches(cursor, step):
                for doc in docs:
                    found[_hashable(self._stored_key(doc["_id"]))] = doc
            ordered = [found[k] for k in map(_hashable, chunk) if k in found]
            if ordered:
                yield ordered

    def _unique_keys(self, entity_ids: Sequence[ID]) -> list[Any]:
        seen: set[Any] = set()
        keys: list[Any] = []
        for entity_id in entity_ids:
            key = self._key(entity_id)
            marker = _hashable(key)
            if marker not in seen:
                seen.add(marker)
                keys.append(key)
        return keys

    # --- helpers ----------------------------------------------------------------------
    @staticmethod
    def _version_of(entity: Any) -> int:
        version = getattr(entity, "version", 0) or 0
        if not isinstance(version, int) or version < 0:
            raise MongoPersistenceError(
                f"{type(entity).__name__}.version must be a non-negative int (0 = never saved), not {version!r}"
            )
        return version

    @staticmethod
    def _set_version(entity: Any, new: int, uow: UnitOfWorkRole | None) -> None:
        """Set the saved version; restore the old one if the transaction rolls back."""
        old = entity.version
        entity.version = new
        register = getattr(uow, "on_rollback", None)
        if session_of(uow) is not None and register is not None:

            def restore() -> None:
                if entity.version == new:
                    entity.version = old

            register(restore)

    @classmethod
    @contextmanager
    def _dooming(cls, uow: UnitOfWorkRole | None) -> Iterator[None]:
        """A server error (write conflict, duplicate id, ...) aborts the server transaction:
        mark ``uow`` rollback-only so leaving its block rolls back instead of committing a
        transaction that is gone."""
        try:
            yield
        except MongoPersistenceError as exc:
            if raised_by_server(exc):
                cls._doom(uow, f"a failed write aborted the transaction ({exc})")
            raise

    @staticmethod
    def _doom(uow: UnitOfWorkRole | None, reason: str) -> None:
        doom = getattr(uow, "set_rollback_only", None)
        if doom is not None and session_of(uow) is not None:
            doom(reason)

    async def _stored_version(self, key: Any, session: Any) -> Any:
        doc = await self.collection().find_one({"_id": key}, {"_version": 1}, session=session)
        return None if doc is None else doc.get("_version", 0)

    async def _stored_docs(self, keys: list[Any], collection: Any, session: Any, projection: Any = None) -> dict[Any, Any]:
        stored: dict[Any, Any] = {}
        for start in range(0, len(keys), self.ids_per_query):
            chunk = keys[start : start + self.ids_per_query]
            cursor = collection.find({"_id": {"$in": chunk}}, projection, session=session)
            async for batch in iterate_cursor_batches(cursor, self.batch_size):
                for doc in batch:
                    stored[_hashable(self._stored_key(doc["_id"]))] = doc
        return stored

    async def _written(self, docs: list[dict[str, Any]], collection: Any, session: Any) -> set[int]:
        """Indexes of ``docs`` whose stored document is exactly what was sent.

        Compared after a BSON round trip with the collection's codec options, so types the
        server normalises (tuples, datetime precision) compare equal. A concurrent writer
        that stored the very same content counts as ours, which is harmless.
        """
        options = collection.codec_options
        stored = await self._stored_docs([d["_id"] for d in docs], collection, session)
        written = set()
        for index, doc in enumerate(docs):
            found = stored.get(_hashable(self._stored_key(doc["_id"])))
            if found is not None and found == bson.decode(bson.encode(doc), codec_options=options):
                written.add(index)
        return written

    async def _raise_conflicts(
        self, docs: list[dict[str, Any]], expected: list[int], conflicts: list[int], collection: Any, session: Any
    ) -> None:
        """Raise one error naming every conflicting entity of a batch (first one in the fields)."""
        keys = [docs[i]["_id"] for i in conflicts]
        stored = await self._stored_docs(keys, collection, session, {"_version": 1})
        rows = []
        for index, key in zip(conflicts, keys):
            found = stored.get(_hashable(self._stored_key(key)))
            rows.append((key, expected[index], None if found is None else found.get("_version", 0)))
        key, version, actual = rows[0]
        listing = ", ".join(f"{k!r} (expected {v}, found {a})" for k, v, a in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        cls = DuplicateEntityError if all(v == 0 for _, v, _ in rows) else VersionMismatchError
        raise cls(
            f"{len(rows)} of {len(docs)} saves in '{self.collection_name}' conflicted: "
            f"{listing}{more}; reload these entities and retry",
            entity_id=key,
            expected=version,
            actual=actual,
            collection=self.collection_name,
        )

    def _duplicate(self, key: Any, details: dict[str, Any] | None) -> MongoPersistenceError:
        if not _only_id_key(details):
            index = (details or {}).get("keyPattern")
            return MongoQueryError(
                f"saving {key!r} in '{self.collection_name}' violates the unique index {index}: "
                f"{(details or {}).get('errmsg', '')}"
            )
        return DuplicateEntityError(
            f"cannot insert {key!r} into '{self.collection_name}': an entity with this id already "
            "exists (expected version 0, i.e. new; a concurrent insert won). Load it and save the "
            "loaded aggregate instead",
            entity_id=key,
            expected=0,
            actual="existing",
            collection=self.collection_name,
        )

    async def _write_conflict(self, key: Any, expected: Any) -> VersionMismatchError:
        """The error for a server WriteConflict inside a transaction.

        The server aborts the transaction when another transaction wrote the document
        after this one started (committed or not). The committed version, read outside
        the transaction, tells the caller which.
        """
        if isinstance(key, list):
            return VersionMismatchError(
                f"write conflict in '{self.collection_name}': a concurrent transaction wrote "
                f"documents of this batch of {len(key)}; this transaction was aborted: retry "
                "the unit of work (uow.run retries automatically)",
                entity_id=key[0] if key else None,
                expected=expected,
                actual="a concurrent write",
                collection=self.collection_name,
            )
        actual: Any = "an uncommitted concurrent write"
        try:
            committed = await self._stored_version(key, None)
        except OperationFailure:
            committed = expected
        if committed != expected and not (committed is None and expected == 0):
            actual = committed
        cls = DuplicateEntityError if expected == 0 else VersionMismatchError
        return cls(
            f"version conflict for {key!r} in '{self.collection_name}': expected version "
            f"{expected!r}, found {actual!r} (written by a concurrent transaction); this "
            "transaction was aborted: retry the unit of work (uow.run retries automatically)",
            entity_id=key,
            expected=expected,
            actual=actual,
            collection=self.collection_name,
        )

    async def _guarded(self, awaitable: Any) -> Any:
        try:
            return await awaitable
        except OperationFailure as exc:
            if exc.code == WRITE_CONFLICT:  # keep the transient label reachable for uow.run
                raise VersionMismatchError(
                    f"write conflict in '{self.collection_name}': a concurrent transaction is writing "
                    "the same document; retry the unit of work",
                    collection=self.collection_name,
                ) from exc
            raise MongoQueryError(f"operation on '{self.collection_name}' failed: {exc}") from exc

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_cls.__name__} in '{self.collection_name}'>"

    # --- search (issue 4) -------------------------------------------------------------
    def _document_field_names(self) -> dict[str, str]:
        """Model field -> document field, for conditions, ordering and selected fields."""
        names = {self._mapper.id_field: "_id", **getattr(self._mapper, "field_map", {})}
        if self.versioned:
            names["version"] = "_version"
        return names

    def _encode_search_value(self, value: Any) -> Any:
        """A condition value in its stored form (the mapper's type rules); data stays data."""
        if value is None or type(value) in (str, int, float, bool):
            return value
        if isinstance(value, (list, tuple)):
            return [self._encode_search_value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._encode_search_value(v) for k, v in value.items()}
        return self._stored_key(value)

    async def search(
        self,
        criteria: Criteria = None,
        options: QueryOptions | None = None,
        uow: UnitOfWorkRole | None = None,
        *,
        timeout: float | None = None,
    ) -> SearchResult[T]:
        """Entities matching a specification (or spec dict / ``QueryOptions``) as a
        :class:`SearchResult`: ``await result`` -> list, ``result.stream(batch_size=)``,
        ``await result.first()``, ``await result.count()``.

        Read-only. Filter, ordering, pagination and selected fields run on the server, in
        ``uow``'s session when given (its transaction sees its own writes). Field names are
        the model's (``id`` means ``_id``); with selected fields the items are raw documents.
        ``timeout`` (seconds) bounds each run of the search instead of the connection's
        ``operation_timeout`` (a user pattern such as ``like '%a%a%b'`` cannot keep the
        server busy past it).
        """
        return search_collection(
            self.collection(),
            criteria,
            options,
            session=_session(uow),
            decode=self._mapper_from_doc,
            adapter=self._connection.driver(),
            field_names=self._document_field_names(),
            encode_value=self._encode_search_value,
            gateway=self._gateway,
            timeout=timeout,
        )


def _hashable(value: Any) -> Any:
    """A dict key for an ``_id`` value (documents and lists as ids are rare but legal)."""
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)
