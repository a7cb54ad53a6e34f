"""Command line: ``python -m cqrs_ddd_persistence_mongo <command>``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from .embedded import server_url
from .exceptions import MongoPersistenceError


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    with server_url(args.url) as url:
        asyncio.run(run_demo(url, orders=args.orders))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _rebuild(args: argparse.Namespace) -> int:
    from .projections.cli_rebuild import rebuild_command

    with server_url(args.url) as url:
        return asyncio.run(rebuild_command(url, args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cqrs_ddd_persistence_mongo")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end tour (embedded server unless MONGODB_URL)")
    demo.add_argument("--url", help="MongoDB URL (default: $MONGODB_URL, else the embedded server)")
    demo.add_argument("--orders", type=_positive, default=None,
                      help="orders in the projection tour's history, 10 events each (default: 20000 = 200,000 events, about 2 minutes on 2 cores)")
    demo.set_defaults(run=_demo)
    rebuild = commands.add_parser(
        "rebuild", help="rebuild a projection's read model from the event store and swap it in atomically"
    )
    rebuild.add_argument("projection", help="the projection class, as module:ProjectionClass")
    rebuild.add_argument("--url", help="MongoDB URL (default: $MONGODB_URL, else the embedded server)")
    rebuild.add_argument("--database", help="database (default: the one in the URL)")
    rebuild.add_argument("--workers", type=_positive, default=1, help="worker processes (partitioned by document id)")
    rebuild.add_argument("--batch-size", type=_positive, default=5000, help="events per batch (default: 5000)")
    rebuild.add_argument("--events-collection", default="domain_events", help="event collection (default: domain_events)")
    rebuild.add_argument("--fresh", action="store_true", help="start over instead of resuming a crashed rebuild")
    rebuild.set_defaults(run=_rebuild)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except MongoPersistenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
