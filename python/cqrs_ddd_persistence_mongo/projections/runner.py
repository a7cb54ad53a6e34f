"""ProjectionRunner: follow the event store, and rebuild read models while serving.

Following, per batch of a document-style projection (see :mod:`.applier`): read up to
``batch_size`` events after the checkpoint, load the addressed documents (``$in`` queries
in chunks), fold the events in memory in position order, write each changed document once
with the guarded, idempotent bulk upsert, park failed events, and save the checkpoint, all
in one transaction where the deployment has them. A batch stops taking events once its
time budget (``batch_seconds``) is spent, so a transaction stays well inside the server's
lifetime limit.

Rebuilding is :mod:`.rebuild`'s job (shadow collections, workers, swap); the runner gives
it the lock that pauses its followers of the projection for the final catch-up and swap.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pymongo.errors import PyMongoError

from .._gateway import create_missing_collections, deadline, translate
from .._tasks import cancel_and_wait
from ..core.uow import MongoUnitOfWork
from ..exceptions import ProjectionError, UnknownProjection
from ..roles import ConnectionRole, UnitOfWorkRole
from .applier import Parked, addressed, apply_batch, sort_events, stopped_error
from .base import Projection, by_name
from .builder import DEFAULT_FLUSH_SECONDS, DEFAULT_GC_THRESHOLD, DEFAULT_MEMORY_BUDGET, BuildOptions
from .dead_letters import DEFAULT_COLLECTION, DeadLetters
from .generations import resolve_read_models
from .documents import load_documents, write_documents
from .partition import WHOLE, Partition
from .progress import Progress
from .rebuild import (
    BeforeSwap,
    ProgressFactory,
    Rebuild,
    RebuildReport,
    empty_source_error,
)
from .workers import shipped_upcasters

logger = logging.getLogger(__name__)

#: a batch in a transaction stops taking events after this long (servers abort at 60 s)
DEFAULT_BATCH_SECONDS = 5.0
#: events whose documents are loaded between two looks at the clock
LOAD_EVENTS = 512


@dataclass(slots=True)
class Target:
    """Where one run of a projection reads from and writes to."""

    projection: Projection
    checkpoint: str
    physical: dict[str, str]
    partition: Partition = WHOLE
    upto: int | None = None
    position: int = 0
    consumed: int = 0


@dataclass(slots=True)
class BatchStats:
    read: int = 0
    consumed: int = 0
    applied: int = 0
    parked: int = 0
    writes: int = 0


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class ProjectionRunner:
    """Runs projections from the event store with checkpoints in the position store.

    ``connection`` (a :class:`MongoConnectionManager`) is where the read models live; it
    defaults to the event store's. ``transactions=None`` uses them when the deployment
    supports them. ``batch_seconds`` bounds a batch's work: once spent, the batch stops
    taking events, commits what it did and the next batch goes on (keep it well under the
    server's transaction lifetime, 60 s by default). One runner (or one rebuild worker per partition) per projection at a
    time: the engine assumes it is the only writer of a projection's documents.
    """

    def __init__(
        self,
        event_store: Any,
        position_store: Any,
        projections: Iterable[Projection],
        *,
        connection: ConnectionRole | None = None,
        database: str | None = None,
        dead_letter_collection: str = DEFAULT_COLLECTION,
        transactions: bool | None = None,
        batch_seconds: float = DEFAULT_BATCH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.events = event_store
        self.positions = position_store
        self.projections = by_name(projections)
        found: ConnectionRole | None = (
            connection if connection is not None else getattr(event_store, "_connection", None)
        )
        if found is None:
            raise ProjectionError("ProjectionRunner needs connection=MongoConnectionManager(...)")
        self.connection = found
        self.database = database if database is not None else getattr(event_store, "_database", None)
        self._dead_letter_collection = dead_letter_collection
        self._transactions = transactions
        if not batch_seconds > 0:
            raise ProjectionError(f"batch_seconds must be > 0, not {batch_seconds!r}")
        self.batch_seconds = batch_seconds
        self._clock = clock
        self._live: dict[str, Target] = {}
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self.projections}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._started = False

    # --- plumbing -----------------------------------------------------------------------
    @property
    def db(self) -> Any:
        return self.connection.db(self.database)

    @property
    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.db, self._dead_letter_collection, connection=self.connection)

    def projection(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            raise UnknownProjection(
                f"unknown projection '{name}'; known: {', '.join(sorted(self.projections)) or 'none'}"
            ) from None

    async def _use_transactions(self) -> bool:
        if self._transactions is None:
            self._transactions = await self.connection.supports_transactions()
        return self._transactions

    async def _start(self) -> None:
        """Indexes, and every collection a batch transaction writes to, before the first
        batch: transactions then only write data (see ``create_missing_collections``)."""
        if not self._started:
            await self.dead_letters.ensure_indexes()
            ensure_positions = getattr(self.positions, "ensure_indexes", None)  # any position store works
            if ensure_positions is not None:
                await ensure_positions()
            needed: list[str] = []
            for name, projection in self.projections.items():
                if projection.is_document_style:
                    physical = await resolve_read_models(self.db, name, projection.collections)
                    await projection.ensure_indexes(self.db, physical)
                    needed.extend(physical.values())
            await create_missing_collections(self.connection, self.db, needed, ProjectionError)
            self._started = True

    async def _live_target(self, name: str) -> Target:
        target = self._live.get(name)
        if target is None:
            projection = self.projection(name)
            position = await self.positions.get_position(name) or 0
            physical = await resolve_read_models(self.db, name, projection.collections)  # pointer-swapped?
            target = Target(projection, name, physical, position=position)
            self._live[name] = target
        return target

    # --- one batch ----------------------------------------------------------------------
    async def step(self, target: Target, batch_size: int) -> BatchStats:
        """Process the next batch of ``target``; returns what it did (``read == 0``: caught up)."""
        if batch_size <= 0:
            raise ProjectionError(f"batch_size must be a positive int, not {batch_size!r}")
        limit = batch_size if target.upto is None else min(batch_size, target.upto - target.position)
        if limit <= 0:
            return BatchStats()
        events = await self.events.get_events_after(target.position, limit=limit)
        if not events:
            return BatchStats()
        if target.projection.is_document_style:
            stats = await self._document_batch(target, events)
        else:
            stats = await self._imperative_batch(target, events)
        target.consumed += stats.consumed
        return stats

    async def _document_batch(self, target: Target, events: list[Any]) -> BatchStats:
        projection = target.projection

        async def work(uow: UnitOfWorkRole | None) -> Any:
            session = None if uow is None else uow.session
            deadline = self._clock() + self.batch_seconds

            def out_of_time() -> bool:
                return self._clock() >= deadline

            taken, loaded = await self._load_in_time(target, events, session, out_of_time)
            outcome = apply_batch(projection, taken, loaded, partition=target.partition, out_of_time=out_of_time)
            await write_documents(self.db, outcome, target.physical, connection=self.connection, session=session,
                                  in_transaction=session is not None)
            await self.dead_letters.park(projection.projection_name, outcome.parked, session=session)
            if outcome.last_position is not None:
                await self.positions.save_position(target.checkpoint, outcome.last_position, uow=uow)
            return outcome

        if await self._use_transactions():
            outcome = await MongoUnitOfWork(connection=self.connection).run(work)
        else:
            outcome = await work(None)
        if outcome.last_position is not None:
            target.position = outcome.last_position
        stats = BatchStats(len(events), outcome.consumed, outcome.applied, len(outcome.parked), outcome.writes)
        if outcome.stopped is not None:
            raise stopped_error(projection, outcome.stopped)
        return stats

    async def _load_in_time(
        self, target: Target, events: list[Any], session: Any, out_of_time: Callable[[], bool]
    ) -> tuple[list[Any], dict[str, dict[Any, dict[str, Any]]]]:
        """Load the documents of ``events`` chunk by chunk until the time budget is spent;
        returns the events whose documents are loaded (at least the first chunk's)."""
        ordered = sort_events(events)
        loaded: dict[str, dict[Any, dict[str, Any]]] = {}
        taken = 0
        while taken < len(ordered) and not (taken and out_of_time()):
            chunk = ordered[taken : taken + LOAD_EVENTS]
            wanted = {
                collection: {k: v for k, v in ids.items() if k not in loaded.get(collection, ())}
                for collection, ids in addressed(target.projection, chunk, target.partition).items()
            }
            for collection, docs in (await load_documents(
                self.db, wanted, target.physical, connection=self.connection, session=session
            )).items():
                loaded.setdefault(collection, {}).update(docs)
            taken += len(chunk)
        return ordered[:taken], loaded

    async def _imperative_batch(self, target: Target, events: list[Any]) -> BatchStats:
        """Imperative handlers, one event at a time; checkpoint once per batch."""
        projection = target.projection
        stats = BatchStats(read=len(events))
        last: int | None = None
        stopped: Parked | None = None
        for event in sort_events(events):
            failure = await self._call_with_retries(projection, event)
            if failure is not None:
                await self.dead_letters.park(projection.projection_name, [failure])
                stats.parked += 1
                if projection.on_error == "stop":
                    stopped = failure
                    break
            elif projection.routes(event.event_type):
                stats.applied += 1
            stats.consumed += 1
            last = event.position
        if last is not None:
            await self.positions.save_position(target.checkpoint, last)
            target.position = last
        if stopped is not None:
            raise stopped_error(projection, stopped)
        return stats

    @staticmethod
    async def _call_with_retries(projection: Projection, event: Any) -> Parked | None:
        attempts = projection.max_retries + 1
        error: BaseException | None = None
        for attempt in range(attempts):
            try:
                await projection.handle(event)
                return None
            except Exception as exc:  # the handler's own failure: retry, then park
                error = exc
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        assert error is not None
        return Parked(event, error, attempts)

    async def drain(self, target: Target, batch_size: int, progress: Progress | None = None) -> int:
        """Process batches until ``target`` is caught up (or reached ``upto``); returns events consumed."""
        consumed = 0
        while True:
            stats = await self.step(target, batch_size)
            if stats.read == 0:
                return consumed
            consumed += stats.consumed
            if progress is not None:
                progress.update(target.consumed)

    # --- following ----------------------------------------------------------------------
    async def run_once(self, batch_size: int = 1000) -> int:
        """One batch for every projection; returns the number of events consumed.

        Bounded as a whole by the connection's ``operation_timeout`` (each round trip inside
        also by its own bound).
        """
        with deadline(self.connection):
            await self._start()
            total = 0
            for name in self.projections:
                async with self._locks[name]:
                    target = await self._live_target(name)
                    total += (await self.step(target, batch_size)).consumed
            return total

    async def run_forever(
        self, batch_size: int = 1000, poll_interval: float = 0.5, *, change_stream: bool | None = None
    ) -> None:
        """Follow the event store until :meth:`stop`.

        With ``change_stream`` (default: when the deployment supports it) an insert into the
        event collection wakes the runner at once instead of after ``poll_interval``. The
        change stream is only a doorbell: what to read always comes from the checkpoint, so
        a restart resumes exactly where the last committed batch ended.
        """
        self._stopping.clear()
        await self._start()
        doorbell = await self._open_doorbell(change_stream)
        try:
            while not self._stopping.is_set():
                if await self.run_once(batch_size) == 0:
                    await self._idle(poll_interval)
        finally:
            await cancel_and_wait(doorbell)

    def stop(self) -> None:
        """Ask :meth:`run_forever` to return after the batch in progress (which completes)."""
        self._stopping.set()
        self._wake.set()

    async def _idle(self, poll_interval: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=poll_interval)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def _open_doorbell(self, change_stream: bool | None) -> asyncio.Task[None] | None:
        if change_stream is False:
            return None
        supported = await self.connection.supports_transactions()  # replica set or mongos
        if not supported:
            if change_stream:
                raise ProjectionError("change streams need a replica set or sharded cluster; use polling")
            return None
        collection = self.db[self.events.collection_name]
        try:
            stream = await _maybe_await(collection.watch([{"$match": {"operationType": "insert"}}]))
        except PyMongoError as exc:  # unbounded on purpose: the stream lives as long as the runner
            if change_stream:
                raise translate(exc, f"opening a change stream on '{collection.name}'", ProjectionError) or exc
            logger.warning("change stream unavailable (%s); following by polling", exc)
            return None
        return asyncio.create_task(self._ring(stream))

    async def _ring(self, stream: Any) -> None:
        try:
            async for _change in stream:
                self._wake.set()
        except PyMongoError as exc:
            logger.warning("change stream ended (%s); following by polling", exc)
        finally:
            await _maybe_await(stream.close())

    # --- rebuild ------------------------------------------------------------------------
    async def rebuild(
        self,
        projection_name: str,
        *,
        batch_size: int = 5000,
        workers: int = 1,
        progress: ProgressFactory | None = None,
        fresh: bool = False,
        allow_empty: bool = False,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        before_swap: BeforeSwap | None = None,
        gc_threshold: int | None = DEFAULT_GC_THRESHOLD,
    ) -> RebuildReport:
        """Rebuild ``projection_name`` from the first event while the old read model serves.

        Document projections are built into ``<collection>__rebuild`` (in memory, flushed
        when ``memory_budget`` bytes are reached or every ``flush_seconds``; see
        :mod:`.builder`) and swapped in with ``renameCollection(dropTarget=True)`` (atomic
        per collection) once caught up; followers of this runner pause for the final
        catch-up and the swap. ``before_swap(events, counts)`` is called just before the
        swap. A rebuild that crashed resumes from its last flush (``fresh=True`` starts
        over). ``workers > 1`` splits documents by a hash of their id across processes.
        Imperative projections are reset and replayed in place (no shadow). While it folds,
        the interpreter's first garbage-collection threshold is raised to ``gc_threshold``
        (process-wide, restored afterwards; None: the fold does not raise it), see
        docs/projections.md.

        Refuses (``ProjectionError``, nothing written) to rebuild from an empty event store,
        and to swap in collections with fewer documents than the live ones, unless
        ``allow_empty=True``.
        """
        projection = self.projection(projection_name)
        options = BuildOptions(batch_size, memory_budget, flush_seconds, gc_threshold)
        if not allow_empty and await self.events.get_latest_position() == 0:
            raise empty_source_error(projection.projection_name, self.events, self.db.name)
        if workers > 1 and projection.is_document_style:
            shipped_upcasters()  # refused before anything is created, not once the workers start
        await self._start()
        if not projection.is_document_style:
            return await self._rebuild_in_place(projection, batch_size, progress, time.perf_counter())
        name = projection.projection_name
        job = Rebuild(
            self.connection, self.db, self.events, self.positions, projection, self.dead_letters,
            self._locks[name], lambda: self._forget(name), options, workers, allow_empty,
            before_swap,
        )
        return await job.run(progress, fresh)

    def _forget(self, name: str) -> None:
        """Drop the cached position of ``name`` (a rebuild moved its checkpoint)."""
        self._live.pop(name, None)

    async def _rebuild_in_place(
        self, projection: Projection, batch_size: int, progress: ProgressFactory | None, started: float
    ) -> RebuildReport:
        name = projection.projection_name
        async with self._locks[name]:
            await projection.reset(self.db)
            await self.positions.reset_position(name)
            target = Target(projection, name, {})
            head = await self.events.get_latest_position()
            reporter = progress(name, head) if progress is not None else None
            await self.drain(target, batch_size, reporter)
            self._live.pop(name, None)
        if reporter is not None:
            reporter.finish()
        return RebuildReport(name, target.consumed, time.perf_counter() - started, target.position)
