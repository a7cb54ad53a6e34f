"""``python -m cqrs_ddd_persistence_mongo rebuild module:ProjectionClass``: the command body."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..advanced.position_store import MongoProjectionPositionStore
from ..connection import MongoConnectionManager
from ..core.event_store import MongoEventStore
from .base import load_projection
from .progress import Progress, human_duration
from .rebuild import SwapCount, rebuild_checkpoint
from .runner import ProjectionRunner
from .workers import worker_checkpoints

INTERRUPTED = 130


async def rebuild_command(url: str, args: argparse.Namespace) -> int:
    """Rebuild one projection with a progress bar (a terminal) or log lines (elsewhere).

    Ctrl-C stops it with one line saying where a rerun resumes (exit status 130).
    """
    projection = load_projection(args.projection)
    name = projection.projection_name
    bars: list[Progress] = []

    def progress(label: str, total: int) -> Progress:
        bars.append(Progress(f"rebuild {label}", total, stream=sys.stderr))
        return bars[-1]

    def before_swap(events: int, counts: list[SwapCount]) -> None:
        for bar in bars:
            bar.interrupt()
        sizes = "; ".join(f"{c.collection}: {c.rebuilt:,} documents replace {c.live:,}" for c in counts)
        print(f"swapping in {name} from {events:,} events: {sizes}", file=sys.stderr)

    async with MongoConnectionManager(url=url, database=args.database) as connection:
        events = MongoEventStore(connection, collection=args.events_collection)
        positions = MongoProjectionPositionStore(connection)
        runner = ProjectionRunner(events, positions, [projection], connection=connection)
        try:
            report = await runner.rebuild(
                name, batch_size=args.batch_size, workers=args.workers, fresh=args.fresh,
                allow_empty=args.allow_empty, memory_budget=args.memory_mb * 1024 * 1024,
                progress=progress, before_swap=before_swap,
            )
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            for bar in bars:
                bar.interrupt()
            at = await resume_position(positions, name)
            print(f"interrupted at position {at:,}; run the same command to resume, or --fresh to start over",
                  file=sys.stderr)
            return INTERRUPTED
    resumed = f", resumed at position {report.resumed_from:,}" if report.resumed_from else ""
    print(
        f"rebuilt {report.projection}: {report.events:,} events in {human_duration(report.seconds)} "
        f"({report.events_per_second:,.0f} events/s, {report.workers} worker(s){resumed}); "
        f"checkpoint {report.position:,}; swapped in: {', '.join(report.swapped) or 'nothing'}"
    )
    return 0


async def resume_position(positions: MongoProjectionPositionStore, projection_name: str) -> int:
    """Where a rerun of an interrupted rebuild starts: the lowest saved checkpoint."""
    checkpoint = rebuild_checkpoint(projection_name)
    saved = await positions.get_all_positions()
    partitions = [saved[name] for name in worker_checkpoints(checkpoint, saved)]
    return min(partitions) if partitions else saved.get(checkpoint, 0)
