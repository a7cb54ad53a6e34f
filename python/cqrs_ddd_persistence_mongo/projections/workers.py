"""Rebuild workers: N processes, each with its own connection, each owning the documents
whose id hashes to its partition (see :mod:`.partition`).

Every worker reads the whole event range up to the same ``upto`` position and applies an
event only to the documents of its partition, so workers write disjoint documents and need
no coordination. Each keeps its own checkpoint (``<name>::rebuild::p<i>of<N>``): a crashed
worker resumes where it stopped. On a sharded cluster the same split runs on several
machines: start ``run_worker`` with the same spec and a different partition index on each.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..exceptions import ProjectionError
from .partition import Partition

if TYPE_CHECKING:
    from .progress import Progress
    from .runner import ProjectionRunner, Target

PROGRESS_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker process needs (picklable): where to connect and what to build."""

    url: str
    database: str
    driver: str
    events_collection: str
    counters_collection: str
    positions_collection: str
    projection: Any
    checkpoint: str
    physical: dict[str, str]
    partition: Partition
    start: int
    upto: int
    batch_size: int


def run_worker(spec: WorkerSpec) -> int:
    """Process entry point: rebuild one partition up to ``spec.upto``; returns events consumed."""
    return asyncio.run(_work(spec))


async def _work(spec: WorkerSpec) -> int:
    from ..advanced.position_store import MongoProjectionPositionStore
    from ..connection import MongoConnectionManager
    from ..core.event_store import MongoEventStore
    from .runner import ProjectionRunner, Target

    async with MongoConnectionManager(url=spec.url, database=spec.database, driver=spec.driver) as connection:
        events = MongoEventStore(
            connection, spec.database, spec.events_collection, counters_collection=spec.counters_collection
        )
        positions = MongoProjectionPositionStore(connection, spec.database, spec.positions_collection)
        runner = ProjectionRunner(events, positions, [spec.projection], connection=connection, database=spec.database)
        start = await positions.get_position(spec.checkpoint)
        target = Target(
            spec.projection, spec.checkpoint, dict(spec.physical), spec.partition, spec.upto,
            position=spec.start if start is None else start,
        )
        return await runner.drain(target, spec.batch_size)


def _spec_for(runner: ProjectionRunner, target: Target, upto: int, batch_size: int) -> WorkerSpec:
    connection = runner.connection
    kind = connection.driver().kind
    if not connection.url or kind not in ("pymongo", "motor"):
        raise ProjectionError(
            "workers > 1 need a connection built from a URL (each worker process opens its own); "
            "this one was given a client object"
        )
    return WorkerSpec(
        url=connection.url,
        database=runner.db.name,
        driver=kind,
        events_collection=runner.events.collection_name,
        counters_collection=getattr(runner.events, "counters_collection_name", "counters"),
        positions_collection=runner.positions.collection_name,
        projection=target.projection,
        checkpoint=target.checkpoint,
        physical=dict(target.physical),
        partition=Partition(),
        start=target.position,
        upto=upto,
        batch_size=batch_size,
    )


async def run_partitioned(
    runner: ProjectionRunner, target: Target, workers: int, upto: int, batch_size: int,
    progress: Progress | None = None,
) -> None:
    """Run ``workers`` processes over ``target`` up to ``upto``; returns when all finished.

    Progress is the mean advance of the workers' checkpoints (each reads every event).
    A failing worker fails the rebuild; the others' checkpoints stay for the resume.
    """
    base = _spec_for(runner, target, upto, batch_size)
    names = [target.checkpoint + Partition(i, workers).suffix for i in range(workers)]
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [
            loop.run_in_executor(
                pool, run_worker, replace(base, partition=Partition(i, workers), checkpoint=names[i])
            )
            for i in range(workers)
        ]
        everything = asyncio.gather(*futures)
        while True:
            done, _ = await asyncio.wait({everything}, timeout=PROGRESS_POLL_SECONDS)
            if progress is not None:
                positions = await runner.positions.get_all_positions()
                advance = [max(0, positions.get(n, target.position) - target.position) for n in names]
                progress.update(target.consumed + sum(advance) // workers)
            if done:
                everything.result()
                return
