"""ProjectionRunner: follow the event store, and rebuild read models while serving.

Per batch of a document-style projection (see :mod:`.applier`): read up to ``batch_size``
events after the checkpoint, load every addressed document (one ``$in`` query per
collection and chunk), fold the events in memory in position order, write each changed
document once with the guarded native bulk upsert, park failed events, and save the
checkpoint — all in one transaction where the deployment has them.

Rebuilds write into shadow collections (``<collection>__rebuild``) with their own
checkpoint and swap them in with ``renameCollection(dropTarget=True)`` at the end, so
readers see the old read model or the new one, never a half-built one.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from ..core.uow import MongoUnitOfWork
from ..exceptions import ProjectionError, ProjectionHandlerFailed
from .applier import Parked, addressed, apply_batch, sort_events
from .base import Projection, by_name
from .dead_letters import DEFAULT_COLLECTION, DeadLetters
from .documents import load_documents, write_documents
from .partition import WHOLE, Partition
from .progress import Progress

logger = logging.getLogger(__name__)

SHADOW_SUFFIX = "__rebuild"
REBUILD_SUFFIX = "::rebuild"

ProgressFactory = Callable[[str, int], Progress]


def shadow_name(collection: str) -> str:
    return collection + SHADOW_SUFFIX


def rebuild_checkpoint(projection_name: str) -> str:
    return projection_name + REBUILD_SUFFIX


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


@dataclass(slots=True)
class RebuildReport:
    """What a rebuild did (returned by :meth:`ProjectionRunner.rebuild`)."""

    projection: str
    events: int
    seconds: float
    position: int
    workers: int = 1
    resumed_from: int = 0
    swapped: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class ProjectionRunner:
    """Runs projections from the event store with checkpoints in the position store.

    ``connection`` (a :class:`MongoConnectionManager`) is where the read models live; it
    defaults to the event store's. ``transactions=None`` uses them when the deployment
    supports them. One runner (or one rebuild worker per partition) per projection at a
    time: the engine assumes it is the only writer of a projection's documents.
    """

    def __init__(
        self,
        event_store: Any,
        position_store: Any,
        projections: Iterable[Projection],
        *,
        connection: Any = None,
        database: str | None = None,
        dead_letter_collection: str = DEFAULT_COLLECTION,
        transactions: bool | None = None,
    ) -> None:
        self.events = event_store
        self.positions = position_store
        self.projections = by_name(projections)
        self.connection = connection if connection is not None else getattr(event_store, "_connection", None)
        if self.connection is None:
            raise ProjectionError("ProjectionRunner needs connection=MongoConnectionManager(...)")
        self.database = database if database is not None else getattr(event_store, "_database", None)
        self._dead_letter_collection = dead_letter_collection
        self._transactions = transactions
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
        return DeadLetters(self.db, self._dead_letter_collection)

    def projection(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            raise ProjectionError(
                f"unknown projection '{name}'; known: {', '.join(sorted(self.projections)) or 'none'}"
            ) from None

    async def _use_transactions(self) -> bool:
        if self._transactions is None:
            self._transactions = await self.connection.supports_transactions()
        return self._transactions

    async def _start(self) -> None:
        if not self._started:
            await self.dead_letters.ensure_indexes()
            for projection in self.projections.values():
                if projection.is_document_style:
                    await projection.ensure_indexes(self.db, {c: c for c in projection.collections})
            self._started = True

    async def _live_target(self, name: str) -> Target:
        target = self._live.get(name)
        if target is None:
            projection = self.projection(name)
            position = await self.positions.get_position(name) or 0
            target = Target(projection, name, {c: c for c in projection.collections}, position=position)
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

        async def work(uow: Any) -> Any:
            session = None if uow is None else uow.session
            wanted = addressed(projection, events, target.partition)
            loaded = await load_documents(
                self.db, wanted, target.physical, session=session, to_list=self.connection.driver().to_list
            )
            outcome = apply_batch(projection, events, loaded, partition=target.partition)
            await write_documents(self.db, outcome, target.physical, session=session, in_transaction=session is not None)
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
            raise self._stopped(projection, outcome.stopped)
        return stats

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
            raise self._stopped(projection, stopped)
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

    @staticmethod
    def _stopped(projection: Projection, parked: Parked) -> ProjectionHandlerFailed:
        event = parked.event
        return ProjectionHandlerFailed(
            f"projection '{projection.projection_name}' stopped: its handler failed {parked.attempts} times "
            f"on event {event.event_id!r} ({event.event_type} at position {event.position}): {parked.error!r}. "
            "The event is parked in the dead-letter collection and the checkpoint stays before it; "
            "fix the handler and run again (or set on_error='continue' to skip parked events)",
            projection=projection.projection_name, event_id=event.event_id, position=event.position,
        )

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
        """One batch for every projection; returns the number of events consumed."""
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
            if doorbell is not None:
                doorbell.cancel()
                try:
                    await doorbell
                except (asyncio.CancelledError, Exception):
                    pass

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
        except PyMongoError as exc:
            if change_stream:
                raise ProjectionError(f"cannot open a change stream on '{collection.name}': {exc}") from exc
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
    ) -> RebuildReport:
        """Rebuild ``projection_name`` from the first event while the old read model serves.

        Document projections are built into ``<collection>__rebuild`` and swapped in with
        ``renameCollection(dropTarget=True)`` (atomic per collection) once caught up;
        followers of this runner pause for the final catch-up and the swap. A rebuild that
        crashed resumes from its own checkpoint (``fresh=True`` starts over). ``workers > 1``
        splits documents by a hash of their id across that many processes.
        Imperative projections are reset and replayed in place (no shadow).
        """
        projection = self.projection(projection_name)
        await self._start()
        started = time.perf_counter()
        if not projection.is_document_style:
            return await self._rebuild_in_place(projection, batch_size, progress, started)
        name = projection.projection_name
        shadow = {c: shadow_name(c) for c in projection.collections}
        checkpoint = rebuild_checkpoint(name)
        position = None if fresh else await self.positions.get_position(checkpoint)
        existing = set(await self.db.list_collection_names())
        if position is not None and not all(s in existing for s in shadow.values()):
            # crashed during the swap: the missing shadows are already live
            async with self._locks[name]:
                swapped = await self._swap(shadow, existing)
                await self._finish(name, checkpoint, position)
            return RebuildReport(name, 0, time.perf_counter() - started, position, workers, position, swapped)
        if position is None:
            await self._prepare_shadow(projection, shadow, checkpoint)
            position = 0
        resumed_from = position
        target = Target(projection, checkpoint, shadow, position=position)
        head = await self.events.get_latest_position()
        reporter = progress(name, max(0, head - position)) if progress is not None else None
        if workers > 1 and head > position:
            from .workers import run_partitioned

            await run_partitioned(self, target, workers, head, batch_size, reporter)
            await self.positions.save_position(checkpoint, head)
            target.position = head
            target.consumed = head - resumed_from
        await self.drain(target, batch_size, reporter)
        async with self._locks[name]:
            await self.drain(target, batch_size, reporter)
            swapped = await self._swap(shadow, set(await self.db.list_collection_names()))
            await self._finish(name, checkpoint, target.position)
        if reporter is not None:
            reporter.finish()
        return RebuildReport(
            name, target.consumed, time.perf_counter() - started, target.position, workers, resumed_from, swapped
        )

    async def _prepare_shadow(self, projection: Projection, shadow: dict[str, str], checkpoint: str) -> None:
        """Empty shadow collections with the read model's indexes, then the rebuild checkpoint."""
        for physical in shadow.values():
            await self.db.drop_collection(physical)
            await self.db.create_collection(physical)
        await projection.ensure_indexes(self.db, shadow)
        for name in await self._partition_checkpoints(checkpoint):
            await self.positions.reset_position(name)
        await self.positions.save_position(checkpoint, 0)

    async def _partition_checkpoints(self, checkpoint: str) -> list[str]:
        positions = await self.positions.get_all_positions()
        return [name for name in positions if name.startswith(checkpoint + "::p")]

    async def _swap(self, shadow: dict[str, str], existing: set[str]) -> list[str]:
        """Rename each shadow over its live collection (atomic per collection)."""
        swapped = []
        for live, physical in shadow.items():
            if physical not in existing:
                continue
            try:
                await self.db[physical].rename(live, dropTarget=True)
            except PyMongoError as exc:
                raise ProjectionError(
                    f"swapping '{physical}' in as '{live}' failed: {exc}; run the rebuild again to finish the swap"
                ) from exc
            swapped.append(live)
        return swapped

    async def _finish(self, name: str, checkpoint: str, position: int) -> None:
        """Point the live checkpoint at the rebuilt position and forget the rebuild's own."""
        await self.positions.save_position(name, position)
        self._live.pop(name, None)
        for partition_checkpoint in await self._partition_checkpoints(checkpoint):
            await self.positions.reset_position(partition_checkpoint)
        await self.positions.reset_position(checkpoint)

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
