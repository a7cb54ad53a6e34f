"""Rebuild workers: N processes, each with its own connection, each owning the documents
whose id hashes to its partition (see :mod:`.partition`).

Every worker reads the whole event range up to the same ``upto`` position and folds an
event only into the documents of its partition (:class:`.builder.ShadowBuilder`), so
workers write disjoint documents and need no coordination. Each keeps its own checkpoint
(``<name>::rebuild::p<i>of<N>``): a crashed worker resumes where it stopped. A worker
stops early at a hole in the positions that may still be filled; the caller continues
from the lowest position every worker reached. On a sharded cluster the same split runs on
several machines: start ``run_worker`` with the same spec and a different partition index
on each.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from ..core.upcasting import UpcasterSteps, upcasters
from ..exceptions import InvalidUpcaster, ProjectionError
from .builder import BuildOptions, ShadowBuilder
from .dead_letters import DeadLetters
from .partition import Partition
from .progress import Reporter

PROGRESS_POLL_SECONDS = 0.5
#: after a stop request (Ctrl-C, a failed worker), how long the workers get to flush what
#: they folded (their checkpoints then say where a rerun resumes) before they are terminated
STOP_GRACE_SECONDS = 15.0

_counters: Any = None  # the shared per-worker event counts (set in each worker process)
_stop: Any = None  # the shared stop request (set in each worker process)


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs (picklable): where to connect and what to build."""

    url: str
    database: str
    driver: str
    events_collection: str
    counters_collection: str
    positions_collection: str
    dead_letter_collection: str
    gap_timeout: float
    projection: Any
    checkpoint: str
    physical: dict[str, str]
    partition: Partition
    start: int
    upto: int
    resumed: bool
    options: BuildOptions
    #: the parent's upcasters (:func:`shipped_upcasters`); ``None``: the worker's own registry
    upcasters: UpcasterSteps | None = None


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """Where a worker stopped (its checkpoint) and how many events it consumed."""

    position: int
    consumed: int


class _SharedCount:
    def __init__(self, index: int) -> None:
        self.index = index

    def update(self, done: int) -> None:
        if _counters is not None:
            _counters[self.index] = done


def _init_worker(counters: Any, stop: Any) -> None:
    global _counters, _stop
    _counters, _stop = counters, stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def shipped_upcasters() -> UpcasterSteps:
    """This process's upcasters, checked to reach a worker process intact.

    A spawned worker imports only what the spec names, so upcasters registered at run time
    (start-up code, a fixture) would be missing there and every old event would be parked
    as a dead letter. They travel in the spec instead, by reference: each step must be
    importable by name.
    """
    steps = upcasters.steps()
    for event_type, table in steps.items():
        for start, (to, function) in table.items():
            try:
                pickle.dumps(function)
            except Exception as exc:
                raise ProjectionError(
                    f"the upcaster of {event_type} v{start}->v{to} ({getattr(function, '__qualname__', function)!s}) "
                    f"cannot be sent to the rebuild's worker processes ({type(exc).__name__}: {exc}); define "
                    "upcasters as functions at module level in an importable module, or rebuild with workers=1"
                ) from exc
    return steps


def adopt_upcasters(steps: UpcasterSteps | None) -> None:
    """Give this worker process exactly the parent's upcasters, or refuse to build."""
    if steps is None:
        return
    try:
        upcasters.adopt(steps)
    except InvalidUpcaster as exc:
        raise ProjectionError(
            f"this rebuild worker refuses to read events with upcasters that differ from the parent process's: "
            f"{exc}"
        ) from exc


def run_worker(spec: WorkerSpec) -> WorkerResult:
    """Process entry point: build one partition up to ``spec.upto``."""
    return asyncio.run(_work(spec))


async def _work(spec: WorkerSpec) -> WorkerResult:
    from ..advanced.position_store import MongoProjectionPositionStore
    from ..connection import MongoConnectionManager
    from ..core.event_store import MongoEventStore

    adopt_upcasters(spec.upcasters)
    async with MongoConnectionManager(url=spec.url, database=spec.database, driver=spec.driver) as connection:
        events = MongoEventStore(
            connection, spec.database, spec.events_collection,
            counters_collection=spec.counters_collection, gap_timeout=spec.gap_timeout,
        )
        positions = MongoProjectionPositionStore(connection, spec.database, spec.positions_collection)
        own = await positions.get_position(spec.checkpoint)
        db = connection.db(spec.database)
        builder = ShadowBuilder(
            db, events, positions, spec.projection, dict(spec.physical), spec.checkpoint,
            position=spec.start if own is None else own, resumed=spec.resumed or own is not None,
            connection=connection, dead_letters=DeadLetters(db, spec.dead_letter_collection, connection=connection),
            partition=spec.partition, options=spec.options,
        )
        building = asyncio.ensure_future(builder.run(spec.upto, _SharedCount(spec.partition.index)))
        while not building.done():
            await asyncio.wait({building}, timeout=PROGRESS_POLL_SECONDS)
            if _stop is not None and _stop.value and not building.done():
                building.cancel()  # the builder flushes what it folded, with its checkpoint
        try:
            await building
        except asyncio.CancelledError:
            pass  # stopped on request: the checkpoint covers what was flushed
        return WorkerResult(builder.position, builder.consumed)


async def run_partitioned(base: WorkerSpec, workers: int, progress: Reporter | None = None) -> list[WorkerResult]:
    """Run ``workers`` processes of ``base`` (one partition each); returns when all finished.

    Progress is the mean number of events the workers consumed (each reads every event).
    A failing worker, or the caller's cancellation (Ctrl-C), stops the others: each is asked
    to flush what it folded with its checkpoint (``STOP_GRACE_SECONDS``), then terminated;
    the checkpoints stay for the resume.
    """
    if not base.url or base.driver not in ("pymongo", "motor"):
        raise ProjectionError(
            "workers > 1 need a connection built from a URL (each worker process opens its own); "
            "this one was given a client object"
        )
    names = [base.checkpoint + Partition(i, workers).suffix for i in range(workers)]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    counters = context.Array("q", workers, lock=False)
    stop = context.Value("b", 0, lock=False)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(counters, stop))
    futures = [
        loop.run_in_executor(pool, run_worker, replace(base, partition=Partition(i, workers), checkpoint=names[i]))
        for i in range(workers)
    ]
    everything = asyncio.gather(*futures)
    try:
        while True:
            done, _ = await asyncio.wait({everything}, timeout=PROGRESS_POLL_SECONDS)
            if progress is not None:
                progress.update(sum(counters) // workers)
            if done:
                results = list(everything.result())
                break
    except BaseException:  # cancelled or a worker failed: the others flush and stop (they resume later)
        await _stop_workers(pool, futures, everything, stop)
        raise
    pool.shutdown()
    return results


async def _stop_workers(pool: ProcessPoolExecutor, futures: list[asyncio.Future[WorkerResult]],
                        everything: asyncio.Future[list[WorkerResult]], stop: Any) -> None:
    """Ask the workers to flush and stop, terminate those that do not within the grace
    period, and consume every outcome (nothing is left to be reported as unretrieved)."""
    stop.value = 1
    waiting = [future for future in futures if not future.done()]
    try:
        if waiting:
            await asyncio.wait(waiting, timeout=STOP_GRACE_SECONDS)
    finally:  # on time, or at a second interrupt: terminate what is left
        everything.cancel()
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        outcomes: list[asyncio.Future[Any]] = [*futures, everything]
        for future in outcomes:
            future.cancel()
            if future.done() and not future.cancelled():
                future.exception()


def worker_checkpoints(checkpoint: str, names: Any) -> list[str]:
    """The partition checkpoints of ``checkpoint`` among ``names`` (to reset them)."""
    return [name for name in names if name.startswith(checkpoint + "::p")]
