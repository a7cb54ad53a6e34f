"""MongoProjectionStore: read-model documents with version guards, idempotency and bulk upserts.

Storage layout: the key (``doc_id``, or ``doc[id_field]`` in bulk) is stored as ``_id``;
a composite key (a dict) is stored with its fields in sorted order, so ``{"a": 1, "b": 2}``
and ``{"b": 2, "a": 1}`` are the same document. Reads give ``_id`` back under ``id_field``.
Guard fields kept on each document: ``_version`` (optimistic locking), ``_last_position``
(highest event position applied), ``_last_event_id`` (last event applied).
Upserts merge: fields absent from ``doc`` keep their stored value (``$set``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from .. import _accel
from .._gateway import Gateway, check_key, check_pipeline, check_position, check_query
from .._gc import fewer_collections
from .._pure.bulk import EVENT_ID_FIELD, POSITION_FIELD
from ..connection import MongoConnectionManager
from ..core._session import session_of
from ..core.uow import raised_by_server
from ..exceptions import (
    DuplicateEntityError,
    InvalidDocument,
    MongoPersistenceError,
    ProjectionError,
    ProjectionVersionConflict,
    VersionMismatchError,
)
from ..roles import UnitOfWorkRole
from .bulk_upserts import (
    MAX_BSON_BYTES,
    MAX_WRITE_BATCH_COUNT,
    BulkLimits,
    BulkUpsertResult,
    build_upserts,
    _identity,
    is_id_conflict,
    write_upserts,
)

VERSION_FIELD = "_version"
#: keys per query of :meth:`MongoProjectionStore.get_batch` (keeps each ``$in`` far below 16 MiB)
GET_BATCH_CHUNK = 1000


def as_document(doc: Any, what: str = "doc") -> dict[str, Any]:
    """``doc`` itself if it is a mapping; a pydantic model's fields as a document (values
    converted like the model mapper converts them: UUID, Decimal, nested models); else
    :class:`InvalidDocument`."""
    if isinstance(doc, Mapping):
        return cast("dict[str, Any]", doc)  # other mappings are checked where they are used
    if isinstance(doc, BaseModel):
        # "" never names a pydantic field: nothing is renamed, only values are converted
        return _accel.map_to_doc(doc.model_dump(), "", None, False, True)
    raise InvalidDocument(f"{what} must be a dict or a pydantic model, not {type(doc).__name__}")


@contextmanager
def _version_conflicts() -> Iterator[None]:
    """Every version conflict of a projection write as :class:`ProjectionVersionConflict`
    (a concurrent transaction's write conflict included), labels and cause kept."""
    try:
        yield
    except ProjectionVersionConflict:
        raise
    except VersionMismatchError as exc:
        if type(exc) is DuplicateEntityError:
            raise
        error = ProjectionVersionConflict(
            str(exc), entity_id=exc.entity_id, expected=exc.expected, actual=exc.actual, collection=exc.collection
        )
        error._add_error_labels(exc.error_labels)
        raise error from exc


class MongoProjectionStore:
    """Projection (read-model) documents in any number of collections of one database.

    ``allow_write_stages`` lets :meth:`aggregate` run ``$out`` / ``$merge``; ``max_batch_count``
    and ``max_batch_bytes`` cap each bulk write below the server's limits (defaults: what the
    server reports, else 100,000 statements and 16 MiB).
    """

    def __init__(
        self,
        connection: MongoConnectionManager | None = None,
        database: str | None = None,
        id_field: str = "id",
        *,
        client: Any = None,
        allow_write_stages: bool = False,
        max_batch_count: int | None = None,
        max_batch_bytes: int | None = None,
    ) -> None:
        if (connection is None) == (client is None):
            raise ProjectionError(
                "MongoProjectionStore needs exactly one of connection=MongoConnectionManager(...) "
                "or client=<an async MongoDB client> (with database=...)"
            )
        if connection is None:
            connection = MongoConnectionManager(client=client, database=database)
        self.connection = connection
        self.database = database
        self.id_field = id_field
        self.allow_write_stages = allow_write_stages
        self._max_batch_count = max_batch_count
        self._max_batch_bytes = max_batch_bytes
        self._gateways: dict[str, Gateway] = {}

    # --- plumbing ---------------------------------------------------------------
    def _gateway(self, name: str) -> Gateway:
        gateway = self._gateways.get(name) if type(name) is str else None
        if gateway is None:
            if not isinstance(name, str) or not name or "$" in name or "\0" in name:
                raise ProjectionError(f"invalid collection name {name!r}: use a non-empty name without '$' or NUL")
            if len(self._gateways) > 1000:
                self._gateways.clear()
            gateway = self._gateways[name] = Gateway(self.connection, self.database, name, ProjectionError)
        return gateway

    def _collection(self, name: str) -> Any:
        return self._gateway(name).collection

    def _key(self, doc_id: Any) -> Any:
        """The stored ``_id`` of a caller's key: plain or composite, never an operator."""
        return _accel.canonical_id(check_key(doc_id, "doc_id", composite=True))

    def _restore(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The stored document with ``_id`` given back as ``id_field`` (first field)."""
        if "_id" not in doc:
            return doc
        key = doc.pop("_id")
        return {self.id_field: key, **doc}

    def _filter(self, filter: Mapping[str, Any] | None) -> dict[str, Any]:
        """A caller's filter, checked, with a top-level ``id_field`` condition aimed at ``_id``."""
        if filter is None:
            return {}
        if not isinstance(filter, Mapping):
            raise ProjectionError(f"filter must be a dict, not {type(filter).__name__}")
        check_query(filter, "filter")
        out = dict(filter.items())
        if self.id_field in out and self.id_field != "_id":
            value = out.pop(self.id_field)
            plain_dict = isinstance(value, dict) and not any(str(k).startswith("$") for k in value)
            out["_id"] = _accel.canonical_id(value) if plain_dict else value
        return out

    def _sort(self, sort: Any) -> list[tuple[str, Any]] | None:
        if not sort:
            return None
        check_query(sort, "sort")
        if isinstance(sort, (str, bytes)) or not isinstance(sort, (Mapping, list, tuple)):
            raise ProjectionError(f"sort must be a dict or a list of (field, direction) pairs, not {sort!r}")
        pairs = list(sort.items()) if isinstance(sort, Mapping) else [tuple(p) for p in sort]
        if any(len(pair) != 2 or not isinstance(pair[0], str) for pair in pairs):
            raise ProjectionError(f"sort must be a dict or a list of (field, direction) pairs, not {sort!r}")
        return [("_id" if field == self.id_field else field, direction) for field, direction in pairs]

    async def _limits(self) -> BulkLimits:
        hello = await self.connection.server_hello()
        count = self._max_batch_count or int(hello.get("maxWriteBatchSize") or MAX_WRITE_BATCH_COUNT)
        size = self._max_batch_bytes or int(hello.get("maxBsonObjectSize") or MAX_BSON_BYTES)
        return BulkLimits(max_count=count, max_bytes=size)

    # --- writes -----------------------------------------------------------------
    async def upsert(
        self,
        collection: str,
        doc_id: Any,
        doc: Mapping[str, Any] | BaseModel,
        expected_version: int | None = None,
        event_position: int | None = None,
        event_id: Any = None,
        uow: UnitOfWorkRole | None = None,
    ) -> bool:
        """Insert or update one document (a dict or a pydantic model); True if written,
        False if skipped by its guard.

        Guards, all in the write's filter (one conditional write, no read before it):
        ``expected_version`` -> the stored ``_version`` must equal it (0 = the document must
        not exist yet); a mismatch raises :class:`ProjectionVersionConflict` (a
        ``VersionMismatchError``, and a pymongo ``DuplicateKeyError`` for older retry loops), as
        does a concurrent transaction's write to the same document inside ``uow``. ``event_position`` -> the
        stored ``_last_position`` must be lower (out-of-order events never move a document
        back); ``event_id`` -> the stored ``_last_event_id`` must differ (a replayed event is a
        no-op). Both are then recorded. Without ``_version`` in ``doc``, an ``expected_version``
        write stores ``expected_version + 1``.

        Guarantee: atomic for the document (a crash leaves it wholly old or wholly new);
        idempotent under ``event_id`` / ``event_position``; concurrent readers see the old
        or the new document, never a mix.
        Two concurrent writers of a new key never create two documents (``_id`` is unique):
        the loser's insert hits E11000, is retried once against the now-existing document and
        then applies or skips by its guard. Inside a transaction the write uses two error-free
        steps (guarded update, then insert-if-absent) because E11000 would abort it.
        """
        doc = as_document(doc)
        check_key(doc_id, "doc_id", composite=True)
        if event_position is not None:
            check_position(event_position, "event_position")
        if event_id is not None:
            check_key(event_id, "event_id")
        body = dict(doc)
        if self.id_field in body and body[self.id_field] != doc_id:
            raise InvalidDocument(
                f"doc[{self.id_field!r}] is {body[self.id_field]!r} but doc_id is {doc_id!r}; "
                "they must name the same document"
            )
        body.pop("_id", None)
        body[self.id_field] = doc_id
        position_field = event_id_field = None
        if event_position is not None:
            body[POSITION_FIELD], position_field = event_position, POSITION_FIELD
        if event_id is not None:
            body[EVENT_ID_FIELD], event_id_field = event_id, EVENT_ID_FIELD
        may_insert = True
        if expected_version is not None:
            if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < 0:
                raise ProjectionError(f"expected_version must be an int >= 0, not {expected_version!r}")
            body.setdefault(VERSION_FIELD, expected_version + 1)
        [(filter_, update)] = _accel.build_upserts([body], self.id_field, position_field, event_id_field, "")
        if expected_version is not None:
            # A missing document counts as version 0: only expected_version=0 may insert.
            may_insert = expected_version == 0
            filter_[VERSION_FIELD] = {"$in": [None, 0]} if may_insert else expected_version
        gateway = self._gateway(collection)
        coll = self._collection(collection)
        session = session_of(uow)
        in_transaction = gateway.in_transaction(session)
        try:
            with _version_conflicts(), gateway.call(lambda: f"upsert of {doc_id!r} into '{collection}'"):
                if in_transaction:
                    written = await self._upsert_in_transaction(coll, filter_, update, may_insert, session)
                else:
                    written = await self._upsert_once(coll, filter_, update, may_insert, session)
                if not written and expected_version is not None:
                    await self._raise_if_version_differs(
                        coll, filter_["_id"], doc_id, expected_version, collection, session
                    )
        except MongoPersistenceError as exc:
            # the server aborted the caller's transaction: it must not commit on leaving its block
            doom = getattr(uow, "set_rollback_only", None)
            if in_transaction and doom is not None and raised_by_server(exc):
                doom(f"the upsert of {doc_id!r} into '{collection}' failed inside the transaction")
            raise
        return written

    async def _upsert_once(
        self, coll: Any, filter_: dict[str, Any], update: dict[str, Any], may_insert: bool, session: Any
    ) -> bool:
        for _ in range(2):  # the second try only follows an E11000 race (see upsert)
            try:
                result = await coll.update_one(filter_, update, upsert=may_insert, session=session)
            except DuplicateKeyError as exc:
                if not is_id_conflict(dict(exc.details or {})):
                    raise DuplicateEntityError(f"upsert into '{coll.name}' violates a unique index: {exc}") from exc
                continue
            return bool(result.matched_count or result.upserted_id is not None)
        return False

    async def _upsert_in_transaction(
        self, coll: Any, filter_: dict[str, Any], update: dict[str, Any], may_insert: bool, session: Any
    ) -> bool:
        result = await coll.update_one(filter_, update, upsert=False, session=session)
        if result.matched_count:
            return True
        if not may_insert:
            return False
        result = await coll.update_one(
            {"_id": filter_["_id"]}, {"$setOnInsert": update["$set"]}, upsert=True, session=session
        )
        return result.upserted_id is not None

    async def _raise_if_version_differs(
        self, coll: Any, key: Any, doc_id: Any, expected: int, collection: str, session: Any
    ) -> None:
        """After a skipped write: tell a version conflict from a position / event-id skip."""
        current = await coll.find_one({"_id": key}, {VERSION_FIELD: 1}, session=session)
        actual = None if current is None else current.get(VERSION_FIELD)
        if (actual or 0) != expected:  # a missing document or _version counts as version 0
            raise ProjectionVersionConflict(entity_id=doc_id, expected=expected, actual=actual, collection=collection)

    async def bulk_upsert(
        self,
        collection: str,
        docs: Iterable[Mapping[str, Any] | BaseModel],
        id_field: str | None = None,
        uow: UnitOfWorkRole | None = None,
        *,
        replace: bool = False,
    ) -> BulkUpsertResult:
        """Upsert many documents (dicts or pydantic models) with unordered bulk writes;
        returns inserted/updated/skipped counts.

        An existing document gets the given fields set (others it has are kept); with
        ``replace=True`` it is replaced by them (others are removed), a cheaper write for
        the server when documents are written whole, as read models usually are.

        Each doc carries its key under ``id_field`` (default: the store's) and may carry its
        own guards ``_last_position`` / ``_last_event_id`` (as :meth:`upsert`'s
        ``event_position`` / ``event_id``). Statements are built natively and split to the
        server's limits. Guarantee: nothing is written if any doc is invalid (bad field
        names, no key, two docs with one key, unencodable or oversized); each document is
        written atomically, the batch only inside a transaction; re-running a batch is
        idempotent; see ``advanced/bulk_upserts.py`` for how guard skips are detected.
        """
        if isinstance(docs, (Mapping, str, bytes)) or not isinstance(docs, Iterable):
            raise InvalidDocument(f"docs must be a list of dicts, not {type(docs).__name__}")
        with fewer_collections():
            if isinstance(docs, list) and all(type(doc) is dict for doc in docs):
                rows = cast("list[dict[str, Any]]", docs)  # the common case: nothing to convert
            else:
                rows = [as_document(doc, f"docs[{i}]") for i, doc in enumerate(docs)]
            statements = build_upserts(rows, id_field or self.id_field)
            if not statements:
                return BulkUpsertResult()
            gateway = self._gateway(collection)
            session = session_of(uow)
            with _version_conflicts(), gateway.call(f"bulk upsert into '{collection}'"):
                return await write_upserts(
                    self._collection(collection),
                    statements,
                    session=session,
                    in_transaction=gateway.in_transaction(session),
                    limits=await self._limits(),
                    replace=replace,
                )

    upsert_batch = bulk_upsert

    async def delete(self, collection: str, doc_id: Any, uow: UnitOfWorkRole | None = None) -> bool:
        """Delete one document; True if it existed. Atomic; idempotent (a second call returns False)."""
        gateway = self._gateway(collection)
        key = self._key(doc_id)
        session = session_of(uow)
        with gateway.call(f"deleting {doc_id!r} from '{collection}'"):
            result = await gateway.collection.delete_one({"_id": key}, session=session)
        deleted: int = result.deleted_count
        return deleted == 1

    async def drop_collection(self, collection: str) -> None:
        """Drop the whole collection (and its indexes); used by rebuilds. Idempotent."""
        gateway = self._gateway(collection)
        with gateway.call(f"dropping '{collection}'"):
            await self.connection.db(self.database).drop_collection(gateway.name)

    # --- reads ------------------------------------------------------------------
    async def find_one(self, collection: str, doc_id: Any, uow: UnitOfWorkRole | None = None) -> dict[str, Any] | None:
        """The document with key ``doc_id`` (composite keys in any field order), or None."""
        gateway = self._gateway(collection)
        key = self._key(doc_id)
        session = session_of(uow)
        with gateway.call(f"reading {doc_id!r} from '{collection}'"):
            doc = await gateway.collection.find_one({"_id": key}, session=session)
        return None if doc is None else self._restore(doc)

    async def get(self, collection: str, doc_id: Any, uow: UnitOfWorkRole | None = None) -> dict[str, Any] | None:
        """:meth:`find_one` under the original library's name."""
        return await self.find_one(collection, doc_id, uow=uow)

    async def get_batch(self, collection: str, doc_ids: Iterable[Any], uow: UnitOfWorkRole | None = None) -> list[dict[str, Any]]:
        """The documents with these keys that exist, in the order of ``doc_ids`` (a key
        given twice is returned once; missing keys are left out). Read in chunks of
        ``GET_BATCH_CHUNK`` keys, each its own time-bounded query."""
        if isinstance(doc_ids, (Mapping, str, bytes)) or not isinstance(doc_ids, Iterable):
            raise ProjectionError(f"doc_ids must be a list of keys, not {type(doc_ids).__name__}")
        keys = [self._key(doc_id) for doc_id in doc_ids]
        order: dict[Any, Any] = {}
        for key in keys:
            order.setdefault(_identity(key), key)
        gateway = self._gateway(collection)
        session = session_of(uow)
        unique = list(order.values())
        found: dict[Any, dict[str, Any]] = {}
        for start in range(0, len(unique), GET_BATCH_CHUNK):
            chunk = unique[start : start + GET_BATCH_CHUNK]
            with gateway.call(f"reading {len(chunk)} documents from '{collection}'"):
                cursor = gateway.collection.find({"_id": {"$in": chunk}}, session=session)
                for doc in await gateway.to_list(cursor, None):
                    found[_identity(doc["_id"])] = doc
        return [self._restore(found[ident]) for ident in order if ident in found]

    async def find(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        sort: Any = None,
        limit: int | None = None,
        skip: int | None = None,
        projection: Any = None,
        uow: UnitOfWorkRole | None = None,
        *,
        offset: int | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Documents matching ``filter`` (checked: no ``$where``/``$function``/``$accumulator``).

        ``offset`` is ``skip`` under the original library's name (give one of them).

        ``projection`` is checked too: find projections accept aggregation expressions.
        ``timeout`` (seconds) bounds this call instead of the connection's operation_timeout.
        """
        if projection is not None:
            check_query(projection, "projection")
        for value, name in ((limit, "limit"), (skip, "skip"), (offset, "offset")):
            if value is not None:
                check_position(value, name)
        if offset is not None:
            if skip is not None and skip != offset:
                raise ProjectionError(f"find() got skip={skip!r} and offset={offset!r}; give only one of them")
            skip = offset
        gateway = self._gateway(collection)
        query = self._filter(filter)
        order = self._sort(sort)
        session = session_of(uow)
        with gateway.call(f"reading '{collection}'", timeout):
            cursor = gateway.collection.find(query, projection, session=session)
            if order:
                cursor = cursor.sort(order)
            if skip:
                cursor = cursor.skip(skip)
            if limit:
                cursor = cursor.limit(limit)
            docs = await gateway.to_list(cursor, None)
        return [self._restore(d) for d in docs]

    async def count(
        self, collection: str, filter: Mapping[str, Any] | None = None, uow: UnitOfWorkRole | None = None, *, timeout: float | None = None
    ) -> int:
        """Number of documents matching ``filter`` (checked like :meth:`find`)."""
        gateway = self._gateway(collection)
        query = self._filter(filter)
        session = session_of(uow)
        with gateway.call(f"counting '{collection}'", timeout):
            return int(await gateway.collection.count_documents(query, session=session))

    async def aggregate(
        self,
        collection: str,
        pipeline: Sequence[Mapping[str, Any]],
        uow: UnitOfWorkRole | None = None,
        *,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Run ``pipeline`` (checked; ``$out``/``$merge`` only with ``allow_write_stages``); raw results."""
        stages = check_pipeline(pipeline, allow_write_stages=self.allow_write_stages)
        gateway = self._gateway(collection)
        session = session_of(uow)
        with gateway.call(f"aggregating '{collection}'", timeout):
            cursor = await self.connection.driver().aggregate(gateway.collection, stages, session=session)
            return await gateway.to_list(cursor, None)
