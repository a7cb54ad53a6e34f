"""MongoEventStore: append-only event streams with a global, strictly increasing position.

Guarantees (details and costs in docs/event-store.md):

* **Positions** come from one counter document. A batch reserves all its positions with
  one ``findAndModify`` and is written with one ``insert``: constant round trips per batch.
  A position is never reused.
* **Inside a transaction** (``uow=`` with a transaction) the counter increment and the
  events commit or vanish together, and MongoDB's write-conflict rule on the counter
  document serializes appending transactions: positions are gapless and become visible in
  position order.
* **Outside a transaction** a failed append leaves a hole; the store fills it at once with
  a hole marker (skipped by readers). A crashed appender leaves a hole that readers fill
  after ``gap_timeout``.
* **A follower never skips an event.** Readers return events only up to the first hole
  that may still be in flight, and fill a hole with a marker only after ``gap_timeout``.
  The marker takes the position's slot in the unique position index, so an appender that
  shows up later fails loudly instead of landing behind a follower's checkpoint.
* **On a sharded cluster** (``sharded=True``, or detected: the connection is a mongos) a
  unique index on ``position`` cannot exist (the shard key is ``aggregate_id``), so no
  marker could fence a late appender. There every append runs in a transaction (the
  caller's, or one the store opens and retries itself): the counter and the events commit
  or vanish together, so a hole is only ever a commit still in flight, and readers wait at
  it instead of fencing it. Streams stay unique by ``(aggregate_id, version)``, which the
  shard key prefixes. Trade-offs in docs/sharding.md.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from typing import Any

from bson.errors import InvalidDocument as BsonInvalidDocument
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, PyMongoError

from .._gateway import (
    DUPLICATE_KEY as _DUPLICATE_KEY,
    WRITE_CONFLICT as _WRITE_CONFLICT,
    Gateway,
    _maybe_awaitable,
    check_key,
    check_name,
    check_pipeline,
    check_position,
    duplicate_key_index,
)
from .._gc import fewer_collections
from ..domain.events import StoredEvent
from ..roles import ConnectionRole, UnitOfWorkRole
from ..sharding import is_mongos
from ..exceptions import ConcurrencyConflict, EventStoreError, InvalidEvent, MongoPersistenceError, ResultTooLarge
from ._event_codec import (
    EVENT_CODEC, Page, as_stored, decode_page, from_document, gap_document, is_gap, page_of_documents, to_document,
)
from ._event_stream import EventStream, GapClock, dense_prefix, gap_safe_batches
from ._session import session_of
from .entity_stream import EntityStream, iterate_cursor_batches
from .search import search_collection
from .uow import MongoUnitOfWork, raised_by_server

logger = logging.getLogger(__name__)

#: document field of an event's model field, for specifications on events
_EVENT_FIELDS = {"event_id": "_id"}


POSITION_INDEX = "position_unique"
SHARDED_POSITION_INDEX = "position"
STREAM_INDEX = "stream_version_unique"


def _duplicate_index(error: Mapping[str, Any]) -> str | None:
    """Which unique index a duplicate-key error hit: 'position', 'stream', '_id' or None."""
    fields = duplicate_key_index(error)
    if fields is None:
        return None
    if "position" in fields:
        return "position"
    if "version" in fields:
        return "stream"
    return "_id"


class MongoEventStore:
    """Event streams in one collection (default ``domain_events``), positions in ``counters``.

    ``gap_timeout`` is how long a reader waits at a hole in the positions before it declares
    the hole abandoned (see the module docstring); it bounds how long a crashed appender
    can stall followers and how long an appender may take between reserving positions and
    writing them outside a transaction.

    ``sharded``: run the sharded-cluster protocol (every append in a transaction, readers
    never fence; see the module docstring). ``None`` (default) asks the server once: on a
    mongos it is on, on a replica set off. Every store appending to one collection must
    agree, which detection guarantees.
    """

    #: Most events (or pipeline results) ``get_all()`` / ``aggregate()`` return before refusing.
    max_get_all: int = 10_000

    def __init__(
        self,
        connection: ConnectionRole,
        database: str | None = None,
        collection: str = "domain_events",
        *,
        counters_collection: str = "counters",
        gap_timeout: timedelta | float = timedelta(seconds=10),
        sharded: bool | None = None,
    ) -> None:
        self._connection = connection
        self._database = database
        self.collection_name = collection
        self.counters_collection_name = counters_collection
        self.position_counter = f"{collection}_position"
        seconds = gap_timeout.total_seconds() if isinstance(gap_timeout, timedelta) else float(gap_timeout)
        if seconds < 0:
            raise EventStoreError(f"gap_timeout must be >= 0 seconds, not {seconds}")
        self._gaps = GapClock(seconds)
        if sharded is not None and not isinstance(sharded, bool):
            raise EventStoreError(f"sharded must be True, False or None (detect), not {sharded!r}")
        self._sharded = sharded
        self._ready_groups: set[str] = set()
        self._events = Gateway(connection, database, collection, EventStoreError)
        self._counter_gateway = Gateway(connection, database, counters_collection, EventStoreError)
        self._created_in: set[Any] = set()

    @property
    def reader_holds(self) -> int:
        """How many times a read stopped at a hole that might still be filled (a metric)."""
        return self._gaps.holds

    # --- plumbing ---------------------------------------------------------------------
    def _collection(self) -> Any:
        return self._events.collection

    def _counters(self) -> Any:
        return self._counter_gateway.collection

    #: index groups, each created on the first use that needs it (appends need both)
    _INDEXES: dict[str, dict[str, Any]] = {
        "position": {"keys": [("position", 1)], "unique": True, "name": POSITION_INDEX},
        "stream": {"keys": [("aggregate_id", 1), ("version", 1)], "unique": True, "name": STREAM_INDEX},
    }
    _ALL = ("position", "stream")
    #: on a sharded cluster only indexes the shard key (aggregate_id) prefixes can be unique
    _SHARDED_INDEXES: dict[str, dict[str, Any]] = {
        **_INDEXES, "position": {"keys": [("position", 1)], "name": SHARDED_POSITION_INDEX},
    }

    async def _is_sharded(self) -> bool:
        """Whether this store runs the sharded protocol: ``sharded=`` as given, else whether
        the connection is a mongos (asked once, then remembered)."""
        if self._sharded is None:
            self._sharded = await is_mongos(self._connection)
        return self._sharded

    async def ensure_indexes(self) -> None:
        """Create the unique position and stream indexes and the counter document (idempotent).

        Call it at startup. Otherwise the first append creates them where that cannot meet
        an open transaction (see ``Gateway.prepare_indexes``); reads never create anything.
        """
        with self._events.call(f"preparing '{self.collection_name}'"):
            self._ready_groups.clear()
            await self._ready(None)

    async def _ready(self, session: Any = None) -> None:
        """Before a write: the unique indexes (and, outside a transaction, the counter)."""
        if len(self._ready_groups) == len(self._ALL):
            return
        indexes = self._SHARDED_INDEXES if await self._is_sharded() else self._INDEXES
        specs = [indexes[group] for group in self._ALL]
        if not await self._events.prepare_indexes(specs, session, self._created_in):
            return  # created inside the caller's transaction: look again next time
        try:
            await self._counters().update_one(
                {"_id": self.position_counter}, {"$setOnInsert": {"seq": 0}}, upsert=True
            )
        except DuplicateKeyError:
            pass  # a concurrent caller created it
        self._ready_groups.update(self._ALL)

    async def _find(self, filter_: dict[str, Any], sort: list[tuple[str, int]], limit: int = 0,
                    session: Any = None, *, majority: bool = False) -> list[dict[str, Any]]:
        """Matching documents (errors are translated by the caller's ``call``). ``majority``:
        read majority-committed data only (followers and checkpoints: a failover cannot
        take back what they saw)."""
        collection = self._events.majority(session) if majority else self._collection()
        cursor = collection.find(filter_, sort=sort, limit=limit, batch_size=limit or 1000, session=session)
        return await self._events.to_list(cursor, None)

    # --- writing ----------------------------------------------------------------------
    async def append(self, event: Any, uow: UnitOfWorkRole | None = None, expected_version: int | None = None) -> int:
        """Append one event; returns its position. Same guarantees as :meth:`append_batch`.

        ``expected_version`` (the stream's version the caller decided on) is checked against
        the stream head first; a different head raises :class:`ConcurrencyConflict`.
        """
        if expected_version is not None:
            check_position(expected_version, "expected_version")
        with self._events.call(self._appending):
            return (await self._append_in(uow, [event], expected_version))[0]

    async def append_batch(self, events: Iterable[Any], uow: UnitOfWorkRole | None = None) -> list[int]:
        """Append events (of one or many streams) in order; returns their positions.

        Cost: one counter round trip and one insert, whatever the batch size.
        Atomic wherever the deployment supports transactions: with ``uow=`` the batch is
        part of that transaction; without, a batch of two or more events runs in its own
        transaction (retried on transient write conflicts, two more round trips to start
        and commit it), so a version that already exists raises ConcurrencyConflict and
        nothing of the batch (nor its positions) remains. Without transaction support
        (standalone server, mongomock) the batch is not atomic: events are written in
        order and a failure keeps the ones before it (the error says how many); the unused
        positions get hole markers.
        Not idempotent: appending the same event id twice is an error.
        Concurrent readers see the events once committed (in a transaction) or written,
        and a follower never passes a position still being written (see get_events_after).
        """
        if isinstance(events, (str, bytes, Mapping)) or not isinstance(events, Iterable):
            raise InvalidEvent(f"append_batch takes a list of events, not {type(events).__name__}")
        batch = list(events)
        with self._events.call(self._appending):
            if uow is None and len(batch) > 1 and await self._connection.supports_transactions():
                return await self._append_in_own_transaction(batch, None)
            return await self._append_in(uow, batch, None)

    @property
    def _appending(self) -> str:
        return f"appending to '{self.collection_name}'"

    async def _append_in(self, uow: UnitOfWorkRole | None, events: list[Any], expected_version: int | None) -> list[int]:
        """Append with the caller's unit of work; a server error inside its transaction (the
        server then aborts it) marks it rollback-only, so it cannot commit the rest of its work."""
        try:
            return await self._append(events, uow, expected_version)
        except (MongoPersistenceError, PyMongoError) as exc:
            doom = getattr(uow, "set_rollback_only", None)
            if doom is not None and raised_by_server(exc) and self._events.in_transaction(session_of(uow)):
                doom(f"appending to '{self.collection_name}' failed inside the transaction")
            raise

    async def _append(self, events: list[Any], uow: UnitOfWorkRole | None, expected_version: int | None) -> list[int]:
        if not events:
            return []
        stored = [as_stored(event) for event in events]
        docs = [to_document(event) for event in stored]
        for doc in docs:
            _check_event_keys(doc)
        self._reject_duplicates_within(docs)
        session = session_of(uow)
        if not self._events.in_transaction(session) and await self._is_sharded():
            return await self._append_in_own_transaction(events, expected_version)
        await self._ready(session)
        in_transaction = self._events.in_transaction(session)
        if expected_version is not None:
            await self._check_head(docs[0]["aggregate_id"], expected_version, session)
        first = await self._reserve(len(docs), session)
        positions = list(range(first, first + len(docs)))
        for doc, position in zip(docs, positions):
            doc["position"] = position
        try:
            await self._collection().insert_many(docs, ordered=True, session=session)
        except BulkWriteError as exc:
            if not in_transaction:
                await self._fence_quietly(positions)
            raise self._append_error(exc, docs, positions, in_transaction) from exc
        except (BsonInvalidDocument, OverflowError) as exc:  # raised before anything was sent
            if not in_transaction:
                await self._fence_quietly(positions)
            raise InvalidEvent(f"an event cannot be encoded as BSON: {exc}") from exc
        except PyMongoError:
            if not in_transaction:
                await self._fence_quietly(positions)
            raise  # translated by the caller's gateway call (conflict, timeout, network ...)
        for original, position in zip(events, positions):
            if isinstance(original, StoredEvent):
                original.position = position
        return positions

    async def _append_in_own_transaction(self, events: list[Any], expected_version: int | None) -> list[int]:
        """The append in a transaction of its own (atomic batches; the sharded protocol),
        retried on write conflicts (another appender holds the counter) within the call's
        bound. Indexes and counter are prepared first, outside the transaction."""
        await self._ready(None)

        async def attempt(uow: MongoUnitOfWork) -> list[int]:
            if not self._events.in_transaction(uow.session):
                raise EventStoreError(
                    f"appending to '{self.collection_name}' on a sharded cluster needs a transaction, "
                    "and this server runs none; connect through a mongos (or pass sharded=False)"
                )
            return await self._append(events, uow, expected_version)

        return await MongoUnitOfWork(connection=self._connection).run(attempt)

    def _reject_duplicates_within(self, docs: list[dict[str, Any]]) -> None:
        """A batch that conflicts with itself is refused before anything is written."""
        seen_ids: set[Any] = set()
        seen_versions: set[tuple[str, int]] = set()
        for doc in docs:
            stream_key = (repr(doc["aggregate_id"]), doc["version"])
            if stream_key in seen_versions:
                raise ConcurrencyConflict(
                    f"the batch appends version {doc['version']} of stream {doc['aggregate_id']!r} twice; "
                    "give each event of a stream its own version",
                    entity_id=doc["aggregate_id"], expected=doc["version"], actual=doc["version"],
                    collection=self.collection_name,
                )
            if repr(doc["_id"]) in seen_ids:
                raise InvalidEvent(f"the batch contains event id {doc['_id']!r} twice")
            seen_versions.add(stream_key)
            seen_ids.add(repr(doc["_id"]))

    async def _check_head(self, aggregate_id: Any, expected: int, session: Any) -> None:
        head = await self._find({"aggregate_id": aggregate_id}, [("version", -1)], 1, session)
        actual = head[0]["version"] if head else 0
        if actual != expected:
            raise ConcurrencyConflict(
                entity_id=aggregate_id, expected=expected, actual=actual, collection=self.collection_name
            )

    async def _reserve(self, count: int, session: Any) -> int:
        """Reserve ``count`` consecutive positions in one round trip; returns the first."""
        # Outside a transaction two first-ever upserts may race (E11000): the second try
        # finds the document. Inside one the server has aborted the transaction already.
        attempts = 1 if self._events.in_transaction(session) else 2
        for attempt in range(attempts):
            try:
                counter = await self._counters().find_one_and_update(
                    {"_id": self.position_counter},
                    {"$inc": {"seq": count}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                    session=session,
                )
                return int(counter["seq"]) - count + 1
            except DuplicateKeyError:
                if attempt + 1 == attempts:
                    raise
            except OperationFailure as exc:
                if exc.code == _WRITE_CONFLICT or exc.has_error_label("TransientTransactionError"):
                    raise ConcurrencyConflict(
                        f"another transaction is appending to '{self.collection_name}' right now "
                        "(write conflict on the position counter); retry the unit of work"
                    ) from exc
                raise
        raise AssertionError("unreachable")

    def _append_error(self, exc: BulkWriteError, docs: list[dict[str, Any]], positions: list[int],
                      in_transaction: bool) -> Exception:
        errors = exc.details.get("writeErrors") or [{}]
        error = errors[0]
        index = int(error.get("index", 0))
        doc = docs[index] if index < len(docs) else docs[0]
        inserted = exc.details.get("nInserted", index)
        partial = (
            "" if in_transaction or not inserted
            else f" ({inserted} of {len(docs)} events before it were stored: outside a transaction a batch is not atomic)"
        )
        kind = _duplicate_index(error)
        if error.get("code") == _WRITE_CONFLICT:
            return ConcurrencyConflict(
                f"a concurrent transaction wrote the same events in '{self.collection_name}'; retry the unit of work"
            )
        if kind == "stream":
            return ConcurrencyConflict(
                f"stream {doc['aggregate_id']!r} already has version {doc['version']} in "
                f"'{self.collection_name}': another writer appended first; reload and retry{partial}",
                entity_id=doc["aggregate_id"], expected=doc["version"] - 1, actual=doc["version"],
                collection=self.collection_name,
            )
        if kind == "_id":
            return EventStoreError(
                f"event id {doc['_id']!r} is already stored in '{self.collection_name}'; "
                f"events are immutable, give each one a new id{partial}"
            )
        if kind == "position":
            return EventStoreError(
                f"positions {positions[index]}..{positions[-1]} were declared abandoned by a reader "
                f"(the append took longer than gap_timeout); events from index {index} on were not "
                f"stored, append them again{partial}"
            )
        return EventStoreError(f"appending to '{self.collection_name}' failed: {error.get('errmsg', exc)}{partial}")

    async def _fence_quietly(self, positions: list[int], session: Any = None) -> None:
        """Mark a failed append's positions; if even that fails, readers fence them after
        gap_timeout, so the append's own error is the one worth raising."""
        try:
            await self._fence(positions, session=session)
        except (MongoPersistenceError, PyMongoError) as exc:
            logger.warning("could not mark positions %s..%s as abandoned: %s", positions[0], positions[-1], exc)

    async def _fence(self, positions: Iterable[int], session: Any = None) -> None:
        """Fill unused positions with hole markers. Idempotent: a taken position stays as is."""
        markers = [gap_document(position) for position in positions]
        if not markers:
            return
        try:
            await self._collection().insert_many(markers, ordered=False, session=session)
        except BulkWriteError as exc:
            others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != _DUPLICATE_KEY]
            if others:
                raise EventStoreError(f"marking abandoned positions failed: {others[0].get('errmsg')}") from exc

    # --- reading ----------------------------------------------------------------------
    async def get_events(
        self, aggregate_id: Any, after_version: int = 0, uow: UnitOfWorkRole | None = None, *, specification: Any = None
    ) -> list[StoredEvent]:
        """The events of one stream in version order, those after ``after_version`` when > 0
        (and, with ``specification``, only those matching it)."""
        return await self._stream_events(aggregate_id, None, after_version, uow, specification)

    async def get_by_aggregate(
        self, aggregate_id: Any, aggregate_type: str | None = None, *, uow: UnitOfWorkRole | None = None, specification: Any = None
    ) -> list[StoredEvent]:
        """The events of one stream in version order; with ``aggregate_type`` only those
        recorded for that type (the original library's name for :meth:`get_events`)."""
        if aggregate_type is not None:
            check_name(aggregate_type, "aggregate_type")
        return await self._stream_events(aggregate_id, aggregate_type, 0, uow, specification)

    async def _stream_events(
        self, aggregate_id: Any, aggregate_type: str | None, after_version: int, uow: UnitOfWorkRole | None, specification: Any
    ) -> list[StoredEvent]:
        if aggregate_id is None:
            raise InvalidEvent("get_events needs an aggregate_id (the stream to read)")
        check_key(aggregate_id, "aggregate_id")
        check_position(after_version, "after_version")
        filter_: dict[str, Any] = {"aggregate_id": aggregate_id}
        if after_version:
            filter_["version"] = {"$gt": after_version}
        if aggregate_type is not None:
            filter_["aggregate_type"] = aggregate_type
        filter_ = self._and_spec(filter_, specification)
        session = session_of(uow)
        with self._events.call(f"reading stream {aggregate_id!r} of '{self.collection_name}'"):
            docs = await self._find(filter_, [("version", 1)], 0, session)
        return [from_document(doc) for doc in docs]

    def _and_spec(self, filter_: dict[str, Any], specification: Any) -> dict[str, Any]:
        """``filter_`` AND the compiled ``specification`` (field ``event_id`` means ``_id``)."""
        if specification is None:
            return filter_
        match = search_collection(self._collection(), specification, field_names=_EVENT_FIELDS).filter
        return {"$and": [filter_, match]} if match else filter_

    async def _matching(self, events: list[StoredEvent], specification: Any) -> list[StoredEvent]:
        """The events of a gap-safe page that match ``specification`` (one extra query over
        the page's position range; the page itself is read whole so holes stay visible)."""
        if specification is None or not events:
            return events
        window = {"position": {"$gte": events[0].position, "$lte": events[-1].position}}
        docs = await self._find(self._and_spec(window, specification), [("position", 1)], 0, majority=True)
        wanted = {doc["position"] for doc in docs}
        return [event for event in events if event.position in wanted]

    async def get_all(self, *, specification: Any = None, limit: int | None = None) -> list[StoredEvent]:
        """Every readable event in position order, as one list. Slow: it reads the whole
        store; prefer ``get_events_from_position`` (streamed) or ``get_events_after`` (pages).

        Bounded: more than ``limit`` (default ``max_get_all``) events raise
        :class:`ResultTooLarge` instead of filling memory; nothing is silently cut.
        """
        cap = self.max_get_all if limit is None else limit
        if type(cap) is not int or cap <= 0:
            raise EventStoreError(f"limit must be a positive int, not {cap!r}")
        events: list[StoredEvent] = []
        async for event in self.get_events_from_position(0, batch_size=min(cap + 1, 1000), specification=specification):
            events.append(event)
            if len(events) > cap:
                raise ResultTooLarge(
                    f"'{self.collection_name}' holds more than {cap} events: stream them with "
                    "'async for e in store.get_events_from_position(0)' or pass a larger limit="
                )
        return events

    def aggregate(
        self, pipeline: Any, *, timeout: float | None = None, limit: int | None = None, batch_size: int = 1000
    ) -> EntityStream[dict[str, Any]]:
        """Run an aggregation pipeline on the events collection, read either way:

        * ``await store.aggregate(pipeline)``: the result documents as a list, at most
          ``limit`` (default ``max_get_all``) of them, past which :class:`ResultTooLarge`
          is raised (nothing is silently cut);
        * ``async for doc in store.aggregate(pipeline):`` streams every result document,
          ``batch_size`` per round trip, holding one batch in memory.

        Read-only: ``$out`` / ``$merge`` and server-side JavaScript are refused here, before
        anything runs. Every round trip is bounded by ``timeout`` (default: the connection's
        bound); the bound never spans the caller's code between documents.
        Hole markers are documents of the collection too: match ``event_type`` to skip them.
        """
        stages = check_pipeline(pipeline)
        cap = self.max_get_all if limit is None else limit
        if type(cap) is not int or cap <= 0:
            raise EventStoreError(f"limit must be a positive int, not {cap!r}")
        if type(batch_size) is not int or batch_size <= 0:
            raise EventStoreError(f"batch_size must be a positive int, not {batch_size!r}")
        what = f"aggregating '{self.collection_name}'"

        async def results(size: int) -> AsyncIterator[list[dict[str, Any]]]:
            cursor = await _maybe_awaitable(self._collection().aggregate(stages, batchSize=size))
            async for batch in iterate_cursor_batches(cursor, size):
                yield batch

        return EntityStream(
            lambda size: self._events.guarded(results(size), what, timeout),
            _as_document,
            batch_size=batch_size,
            max_items=cap,
            too_large=(
                f"the pipeline returned more than {cap} documents; add a $limit or $group stage, "
                "pass a larger limit=, or stream them: 'async for doc in store.aggregate(pipeline)'"
            ),
        )

    async def get_events_after(
        self, position: int | None = None, limit: int = 1000, *, specification: Any = None
    ) -> list[StoredEvent]:
        """Up to ``limit`` events with a position greater than ``position`` (None: from the
        start), in position order; with ``specification`` only those matching it (the page
        is then up to ``limit`` positions read, of which the matching events are returned).

        Safe for followers: the result stops before a hole that may still be filled (an
        appender between reserving and writing), so the last returned position can be
        stored as a checkpoint without ever skipping an event. Empty means "nothing
        readable yet"; poll again.
        """
        if position is None:
            position = 0
        check_position(position, "position")
        if type(limit) is not int or limit <= 0:
            raise EventStoreError(f"limit must be a positive int, not {limit!r}")
        events: list[StoredEvent] = []
        after = position
        with self._events.call(f"reading '{self.collection_name}' after position {position}"):
            while len(events) < limit:
                page, after, more = await self._page(after, limit - len(events))
                events.extend(page)
                if not more:
                    break
            return await self._matching(events, specification)

    def get_events_from_position(
        self, position: int | None = 0, batch_size: int = 1000, *, specification: Any = None
    ) -> EventStream:
        """Stream every readable event after ``position``, ``batch_size`` documents per query.

        Memory stays bounded by ``batch_size``. The stream ends at the current head (or at a
        hole still in flight); it does not wait for new events.
        """
        position = 0 if position is None else position
        check_position(position, "position")
        if type(batch_size) is not int or batch_size <= 0:
            raise EventStoreError(f"batch_size must be a positive int, not {batch_size!r}")
        self._and_spec({}, specification)  # a bad specification fails here, not mid-stream
        return EventStream(self._filtered(self._stream(position, batch_size), specification))

    async def _filtered(
        self, batches: AsyncIterator[list[StoredEvent]], specification: Any
    ) -> AsyncIterator[list[StoredEvent]]:
        """Each gap-safe batch reduced to the events matching ``specification``."""
        try:
            async for batch in batches:
                if specification is not None:
                    with self._events.call(f"streaming '{self.collection_name}'"):
                        batch = await self._matching(batch, specification)
                if batch:
                    yield batch
        finally:
            await batches.aclose()  # type: ignore[attr-defined]

    def stream_all(self, batch_size: int = 1000, *, specification: Any = None) -> EventStream:
        """Every readable event from the beginning (``get_events_from_position(0)``)."""
        return self.get_events_from_position(0, batch_size, specification=specification)

    def _stream(self, position: int, batch_size: int) -> AsyncIterator[list[StoredEvent]]:
        collection = self._events.majority(None)
        sort = [("position", 1)]
        to_list = self._events.to_list

        async def fetch_raw(cursor: Any) -> Page | None:
            raw = await to_list(cursor, 1)
            return decode_page(raw[0]) if raw else None

        async def fetch_documents(cursor: Any) -> Page | None:
            docs = await to_list(cursor, batch_size)
            return page_of_documents(docs) if docs else None

        raw = self._reads_raw_batches(collection)
        find = collection.find_raw_batches if raw else collection.find
        return gap_safe_batches(
            max(position, 0), batch_size,
            open_cursor=lambda query: find(query, sort=sort, batch_size=batch_size),
            fetch=fetch_raw if raw else fetch_documents,
            reserved_head=self._reserved_head, resolve_hole=self._resolve_hole,
            guard=lambda: self._events.call(f"streaming '{self.collection_name}'"),
        )

    async def _page(self, after: int, limit: int) -> tuple[list[StoredEvent], int, bool]:
        """Read the window of positions (after, after + limit] and stop at the first unsafe hole.

        Positions are dense (every reserved one is an event, a hole marker or still in
        flight), so a bounded window reads at most ``limit`` documents and lets the server
        stop early. Returns (events, last position consumed incl. markers, whether to read on).
        """
        window_end = after + limit
        positions, events = await self._find_page({"position": {"$gt": after, "$lte": window_end}}, limit)
        dense = dense_prefix(positions, after + 1)
        readable = [event for event in events[:dense] if event is not None]
        after += dense
        if dense < len(positions):  # positions after+1..found-1 are reserved, not visible
            return readable, after, await self._resolve_hole(after + 1, positions[dense] - 1)
        if len(positions) == limit:
            return readable, after, True
        head = await self._reserved_head()  # is anything reserved beyond what we saw?
        if after + 1 > head:
            return readable, after, False  # caught up
        return readable, after, await self._resolve_hole(after + 1, min(window_end, head))

    def _reads_raw_batches(self, collection: Any) -> bool:
        """Whether reads of ``collection`` can take raw batches for :func:`decode_page`
        (a real driver, decoding with the connection's options)."""
        return self._connection.driver().kind != "mongomock" and collection.codec_options == EVENT_CODEC

    async def _find_page(self, filter_: dict[str, Any], limit: int) -> Page:
        """The majority-committed documents matching ``filter_``, by position, as a page."""
        collection = self._events.majority(None)
        if not self._reads_raw_batches(collection):
            return page_of_documents(await self._find(filter_, [("position", 1)], limit, majority=True))
        cursor = collection.find_raw_batches(filter_, sort=[("position", 1)], limit=limit, batch_size=limit)
        positions: list[Any] = []
        events: list[StoredEvent | None] = []
        with fewer_collections():
            for raw in await self._events.to_list(cursor, None):
                batch_positions, batch_events = decode_page(raw)
                positions += batch_positions
                events += batch_events
        return positions, events

    async def _resolve_hole(self, first: int, last: int) -> bool:
        """Hold back at a hole that may still be filled (False), or fence an abandoned one
        and tell the caller to re-read from it (True)."""
        if not self._gaps.abandoned(first):
            return False
        if await self._is_sharded():  # every append is transactional: the commit is in flight
            self._gaps.holds += 1
            logger.warning(
                "positions %s..%s of '%s' stayed invisible for longer than gap_timeout on a sharded "
                "cluster; waiting (a cross-shard commit in flight, or a store appending with sharded=False)",
                first, last, self.collection_name,
            )
            return False
        await self._fence(range(first, last + 1))
        return True

    async def _reserved_head(self) -> int:
        """The last reserved position (the counter), one ``_id`` lookup."""
        counter = await self._counter_gateway.majority().find_one({"_id": self.position_counter})
        return int(counter["seq"]) if counter else 0

    async def get_latest_position(self) -> int:
        """The highest position of a stored event (0 when there is none).

        Positions reserved by appenders still in flight and hole markers are not counted.
        """
        with self._events.call(f"reading the latest position of '{self.collection_name}'"):
            high = await self._reserved_head()
            step = 64
            while high > 0:
                docs = await self._find(
                    {"position": {"$gt": high - step, "$lte": high}}, [("position", -1)], step, majority=True
                )
                for doc in docs:
                    if not is_gap(doc):
                        return int(doc["position"])
                high -= step
        return 0


def _as_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A result document of a pipeline, returned as the driver read it."""
    return doc


def _check_event_keys(doc: dict[str, Any]) -> None:
    """The event's id, stream and correlation ids are plain values (never operators)."""
    event_id = doc["_id"]
    check_key(event_id, "event_id")
    check_key(doc["aggregate_id"], f"event {event_id!r}: aggregate_id")
    for field in ("correlation_id", "causation_id", "tenant_id"):
        if doc.get(field) is not None:
            check_key(doc[field], f"event {event_id!r}: {field}")
