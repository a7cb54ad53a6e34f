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
        asyncio.run(run_demo(url))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cqrs_ddd_persistence_mongo")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end tour (embedded server unless MONGODB_URL)")
    demo.add_argument("--url", help="MongoDB URL (default: $MONGODB_URL, else the embedded server)")
    demo.set_defaults(run=_demo)
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
