"""Rebuilding a document projection while the old read model serves.

The rebuild writes into shadow collections (``<collection>__rebuild``) with its own
checkpoint (:mod:`.builder`, in this process or in worker processes, :mod:`.workers`),
then, while the caller's followers of the projection pause, catches up and swaps each
shadow in with ``renameCollection(dropTarget=True)``: readers see the old read model or the
new one, never a half-built one. ``renameCollection`` cannot move a sharded collection, so
a read model that is sharded (or already behind a pointer, :mod:`.generations`) is rebuilt
into its next generation instead and swapped by flipping its pointer document: one write,
every collection of the projection at once.

Nothing is lost: with workers, the rebuild continues from the lowest position every worker
reached (a worker stops below a hole that may still be filled), so the checkpoint never
passes an event that some partition has not applied. Nothing is wiped: a rebuild refuses
to start from an empty event store and to swap in collections holding fewer documents
than the live ones unless the caller passes ``allow_empty=True``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._gateway import call
from .._tasks import cancel_and_wait
from ..exceptions import ProjectionError
from ..roles import ConnectionRole
from .base import Projection
from .builder import BuildOptions, ShadowBuilder
from .dead_letters import DeadLetters
from .generations import (
    flip_pointer, generation_of, next_generation, resolve_read_models, retired_name, shard_like, swaps_by_pointer,
)
from .partition import Partition
from .progress import Progress
from .workers import WorkerSpec, run_partitioned, shipped_upcasters, worker_checkpoints

SHADOW_SUFFIX = "__rebuild"
REBUILD_SUFFIX = "::rebuild"

ProgressFactory = Callable[[str, int], Progress]


def shadow_name(collection: str) -> str:
    return collection + SHADOW_SUFFIX


def rebuild_checkpoint(projection_name: str) -> str:
    return projection_name + REBUILD_SUFFIX


@dataclass(frozen=True, slots=True)
class SwapCount:
    """Documents of one collection: in the rebuilt shadow and in the live read model."""

    collection: str
    rebuilt: int
    live: int


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
    counts: list[SwapCount] = field(default_factory=list)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


BeforeSwap = Callable[[int, list[SwapCount]], Any]


def empty_source_error(projection: str, events: Any, database: str) -> ProjectionError:
    return ProjectionError(
        f"refusing to rebuild '{projection}': the event collection '{events.collection_name}' in database "
        f"'{database}' holds no events, so the rebuilt read model would be empty and replace the live one. "
        "Check the events collection and database names; pass allow_empty=True (--allow-empty) "
        "to rebuild an empty read model on purpose"
    )


@dataclass(slots=True)
class Rebuild:
    """One rebuild of one document projection (see the module docstring)."""

    connection: ConnectionRole
    db: Any
    events: Any
    positions: Any
    projection: Projection
    dead_letters: DeadLetters
    pause_followers: asyncio.Lock
    forget_live: Callable[[], None]
    options: BuildOptions = BuildOptions()
    workers: int = 1
    allow_empty: bool = False
    before_swap: BeforeSwap | None = None

    @property
    def name(self) -> str:
        return self.projection.projection_name

    async def run(self, progress: ProgressFactory | None = None, fresh: bool = False) -> RebuildReport:
        started = time.perf_counter()
        name = self.name
        collections = list(self.projection.collections)
        by_pointer = await swaps_by_pointer(self.db, name, collections)
        if by_pointer:
            shadow = await next_generation(self.db, name, collections)
        else:
            shadow = {c: shadow_name(c) for c in collections}
        checkpoint = rebuild_checkpoint(name)
        position = None if fresh else await self.positions.get_position(checkpoint)
        existing = await self._collection_names()
        if by_pointer and position is not None and not any(s in existing for s in shadow.values()):
            # crashed after the pointer flip: the generation it built is live already
            async with self.pause_followers:
                await self._finish(checkpoint, position)
            return RebuildReport(name, 0, time.perf_counter() - started, position, self.workers, position, [])
        if not by_pointer and position is not None and not all(s in existing for s in shadow.values()):
            # crashed during the swap: the missing shadows are already live
            async with self.pause_followers:
                swapped = await self._swap(shadow, existing)
                await self._finish(checkpoint, position)
            return RebuildReport(name, 0, time.perf_counter() - started, position, self.workers, position, swapped)
        resumed = position is not None
        preparing: asyncio.Future[None] | None = None
        if position is None:  # prepared while the first events are read (the builder waits for it)
            preparing = asyncio.ensure_future(self._prepare_shadow(shadow, checkpoint, by_pointer))
            position = 0
        try:
            return await self._build_and_swap(started, shadow, checkpoint, position, resumed, by_pointer,
                                              preparing, progress)
        finally:
            await cancel_and_wait(preparing)

    async def _build_and_swap(
        self, started: float, shadow: dict[str, str], checkpoint: str, position: int, resumed: bool,
        by_pointer: bool, preparing: asyncio.Future[None] | None, progress: ProgressFactory | None,
    ) -> RebuildReport:
        name = self.name
        resumed_from = position
        if resumed and self.workers > 1:  # the workers go on from their own checkpoints
            resumed_from = await self._workers_resume_at(checkpoint, position)
        head = await self.events.get_latest_position()
        reporter = progress(name, max(0, head - position)) if progress is not None else None
        builder = ShadowBuilder(
            self.db, self.events, self.positions, self.projection, shadow, checkpoint,
            position=position, resumed=resumed, connection=self.connection,
            dead_letters=self.dead_letters, options=self.options,
        )
        covered = 0
        if self.workers > 1 and head > position:
            if preparing is not None:
                await preparing
            results = await run_partitioned(self._worker_spec(builder, head, resumed), self.workers, reporter)
            low = min(result.position for result in results)
            await self.positions.save_position(checkpoint, low)
            builder = ShadowBuilder(
                self.db, self.events, self.positions, self.projection, shadow, checkpoint,
                position=low, resumed=True, connection=self.connection,
                dead_letters=self.dead_letters, options=self.options,
            )
            covered = low - position
        await builder.run(None, reporter, covered, ready=preparing)
        async with self.pause_followers:
            # the live read model no longer changes: count it while the rebuild catches up
            live = asyncio.ensure_future(self._live_counts(shadow))
            try:
                await builder.run(None, reporter, covered)
            except BaseException:
                await cancel_and_wait(live)
                raise
            counts = await self._counts(shadow, await live, builder.written_counts())
            self._refuse_to_shrink(counts)
            if self.before_swap is not None:
                self.before_swap(covered + builder.consumed, counts)
            if by_pointer:
                swapped = await self._flip(shadow)
            else:
                swapped = await self._swap(shadow, set(shadow.values()))  # created or found at the start
            await self._finish(checkpoint, builder.position)
        if reporter is not None:
            reporter.finish()
        return RebuildReport(
            name, covered + builder.consumed, time.perf_counter() - started, builder.position,
            self.workers, resumed_from, swapped, counts,
        )

    async def _workers_resume_at(self, checkpoint: str, position: int) -> int:
        """The lowest position the workers' own checkpoints resume from (``position``
        when some worker has none)."""
        saved = [await self.positions.get_position(checkpoint + Partition(i, self.workers).suffix)
                 for i in range(self.workers)]
        known = [p for p in saved if p is not None]
        return min(known) if len(known) == self.workers else position

    def _worker_spec(self, builder: ShadowBuilder, upto: int, resumed: bool) -> WorkerSpec:
        connection = self.connection
        return WorkerSpec(
            url=connection.url or "",
            database=self.db.name,
            driver=connection.driver().kind,
            events_collection=self.events.collection_name,
            counters_collection=getattr(self.events, "counters_collection_name", "counters"),
            positions_collection=self.positions.collection_name,
            dead_letter_collection=self.dead_letters.collection.name,
            gap_timeout=self.events._gaps.timeout if hasattr(self.events, "_gaps") else 10.0,
            projection=self.projection,
            checkpoint=builder.checkpoint,
            physical=dict(builder.physical),
            partition=builder.partition,
            start=builder.position,
            upto=upto,
            resumed=resumed,
            options=self.options,
            upcasters=shipped_upcasters(),
        )

    async def _live_counts(self, shadow: dict[str, str]) -> dict[str, int]:
        """Documents per live collection, from the collections' metadata (no scan)."""
        serving = await resolve_read_models(self.db, self.name, shadow)
        return dict(zip(shadow, await asyncio.gather(*(self._count(serving[live]) for live in shadow))))

    async def _counts(
        self, shadow: dict[str, str], live: dict[str, int], rebuilt: dict[str, int] | None
    ) -> list[SwapCount]:
        """Rebuilt and live documents per collection; the rebuilt ones from the builder when
        it knows them, else from the shadows' metadata."""
        if rebuilt is None:
            rebuilt = dict(zip(shadow, await asyncio.gather(*(self._count(p) for p in shadow.values()))))
        return [SwapCount(collection, rebuilt[collection], live[collection]) for collection in shadow]

    async def _count(self, physical: str) -> int:
        with call(self.connection, f"counting the documents of '{physical}' before the swap", ProjectionError):
            return int(await self.db[physical].estimated_document_count())

    def _refuse_to_shrink(self, counts: list[SwapCount]) -> None:
        if self.allow_empty:
            return
        shrinking = [c for c in counts if c.rebuilt < c.live]
        if shrinking:
            detail = ", ".join(f"'{c.collection}' {c.live:,} -> {c.rebuilt:,}" for c in shrinking)
            raise ProjectionError(
                f"refusing to swap in the rebuilt '{self.name}': it has fewer documents than the live read model "
                f"({detail}), so documents would disappear. The live read model is untouched and the rebuilt "
                "collections are kept; check the events collection and database, or pass allow_empty=True "
                "(--allow-empty) to swap them in anyway"
            )

    async def _prepare_shadow(self, shadow: dict[str, str], checkpoint: str, by_pointer: bool = False) -> None:
        """Empty shadow collections with the read model's indexes (sharded like the serving
        collection when swapping by pointer), then the rebuild checkpoint."""
        serving = await resolve_read_models(self.db, self.name, shadow) if by_pointer else {}
        for live, physical in shadow.items():
            with call(self.connection, f"creating the empty shadow collection '{physical}'", ProjectionError):
                await self.db.drop_collection(physical)
                await self.db.create_collection(physical)
            if by_pointer:
                await shard_like(self.db, serving[live], physical)
        await self.projection.ensure_indexes(self.db, shadow)
        for name in worker_checkpoints(checkpoint, await self.positions.get_all_positions()):
            await self.positions.reset_position(name)
        await self.positions.save_position(checkpoint, 0)

    async def _swap(self, shadow: dict[str, str], existing: set[str]) -> list[str]:
        """Rename each shadow over its live collection (atomic per collection)."""
        swapped = []
        for live, physical in shadow.items():
            if physical not in existing:
                continue
            what = f"swapping '{physical}' in as '{live}' (run the rebuild again to finish the swap)"
            with call(self.connection, what, ProjectionError):
                await self.db[physical].rename(live, dropTarget=True)
            swapped.append(live)
        return swapped

    async def _collection_names(self) -> set[str]:
        with call(self.connection, f"listing the collections of '{self.db.name}'", ProjectionError):
            return set(await self.db.list_collection_names())

    async def _flip(self, shadow: dict[str, str]) -> list[str]:
        """Point the projection at the rebuilt generation (one atomic write for all its
        collections), then drop the generation before the one it replaced (the replaced one
        stays until the next rebuild, for readers that resolved the pointer just before)."""
        previous = await flip_pointer(self.db, self.name, shadow)
        generation = generation_of(shadow)
        for live, new in shadow.items():
            retired = retired_name(live, generation)
            if retired is None or retired in (new, previous.get(live)):
                continue
            what = (f"dropping '{retired}', a read model '{live}' two rebuilds old "
                    "(it is no longer read: if this fails, drop it by hand)")
            with call(self.connection, what, ProjectionError):
                await self.db.drop_collection(retired)
        return list(shadow)

    async def _finish(self, checkpoint: str, position: int) -> None:
        """Point the live checkpoint at the rebuilt position and forget the rebuild's own."""
        await self.positions.save_position(self.name, position)
        self.forget_live()
        for partition_checkpoint in worker_checkpoints(checkpoint, await self.positions.get_all_positions()):
            await self.positions.reset_position(partition_checkpoint)
        await self.positions.reset_position(checkpoint)
