"""``python -m cqrs_ddd_persistence_mongo rebuild module:ProjectionClass``: the command body."""

from __future__ import annotations

import argparse
import sys

from ..advanced.position_store import MongoProjectionPositionStore
from ..connection import MongoConnectionManager
from ..core.event_store import MongoEventStore
from .base import load_projection
from .progress import Progress
from .runner import ProjectionRunner


async def rebuild_command(url: str, args: argparse.Namespace) -> int:
    """Rebuild one projection with a progress bar (a terminal) or log lines (elsewhere)."""
    projection = load_projection(args.projection)
    async with MongoConnectionManager(url=url, database=args.database) as connection:
        events = MongoEventStore(connection, collection=args.events_collection)
        positions = MongoProjectionPositionStore(connection)
        runner = ProjectionRunner(events, positions, [projection], connection=connection)
        report = await runner.rebuild(
            projection.projection_name, batch_size=args.batch_size, workers=args.workers, fresh=args.fresh,
            progress=lambda name, total: Progress(f"rebuild {name}", total, stream=sys.stderr),
        )
    resumed = f", resumed at position {report.resumed_from:,}" if report.resumed_from else ""
    print(
        f"rebuilt {report.projection}: {report.events:,} events in {report.seconds:.1f} s "
        f"({report.events_per_second:,.0f} events/s, {report.workers} worker(s){resumed}); "
        f"checkpoint {report.position:,}; swapped in: {', '.join(report.swapped) or 'nothing'}"
    )
    return 0
