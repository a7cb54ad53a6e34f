"""Command line: ``python -m cqrs_ddd_persistence_mongo <command>`` (or ``cqrs-ddd-mongo``).

Exit status: 0 done, 1 failed (one ``error: ...`` line on stderr), 2 bad usage, 130
interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Sequence

from pymongo import uri_parser
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError

from . import BACKEND, __version__
from .exceptions import MongoPersistenceError

INTERRUPTED = 130
_DRIVER_DETAIL = re.compile(r",? (Timeout: |Topology Description: |\(configured timeouts).*", re.DOTALL)


class UsageError(Exception):
    """A command line that cannot work as given (exit status 2)."""


def one_line(message: str, limit: int = 300) -> str:
    """An error message on one line, without the driver's topology dump."""
    text = _DRIVER_DETAIL.sub("", " ".join(str(message).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def check_url(url: str, database: str | None) -> None:
    """Refuse a malformed URL, or one without a database when ``--database`` is not given, at once."""
    try:
        parsed = uri_parser.parse_uri(url)
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise UsageError(
            f"--url {url!r} is not a MongoDB URL ({one_line(str(exc))}); "
            "expected mongodb://HOST:PORT/DATABASE"
        ) from None
    if not database and not parsed.get("database"):
        raise UsageError(
            f"--url {url!r} names no database: pass --database NAME or end the URL with /NAME"
        )


def _demo(args: argparse.Namespace) -> int:
    from cqrs_ddd_mongo_demo.tour import run_demo
    from .embedded import server_url

    if args.url:
        check_url(args.url, "demo")
    with server_url(args.url) as url:
        asyncio.run(run_demo(url, orders=args.orders))
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("MONGODB_URL")
    if not url:
        raise UsageError(
            "rebuild needs the server that holds your events: pass --url mongodb://HOST:PORT/DATABASE "
            "or set MONGODB_URL"
        )
    check_url(url, args.database)
    _import_like_python_m()
    from .projections.cli_rebuild import rebuild_command

    return int(asyncio.run(rebuild_command(url, args)))


def _import_like_python_m() -> None:
    """Let ``module:Class`` name a module of the current directory, as ``python -m`` does
    (a console script's ``sys.path`` starts with the script's own directory instead)."""
    here = os.getcwd()
    if "" not in sys.path and here not in sys.path:
        sys.path.insert(0, here)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cqrs_ddd_persistence_mongo")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__} (backend: {BACKEND})")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the end-to-end tour (embedded server unless --url / MONGODB_URL)")
    demo.add_argument("--url", help="MongoDB URL (default: $MONGODB_URL, else the embedded server)")
    demo.add_argument("--orders", type=_positive, default=None,
                      help="orders in the projection tour's history, 10 events each (default: 20000 = 200,000 "
                           "events, about 2 minutes on 2 cores)")
    demo.set_defaults(run=_demo)
    rebuild = commands.add_parser(
        "rebuild", help="rebuild a projection's read model from the event store and swap it in atomically"
    )
    rebuild.add_argument("projection", help="the projection class, as module:ProjectionClass")
    rebuild.add_argument("--url", help="MongoDB URL of the event store (default: $MONGODB_URL; required)")
    rebuild.add_argument("--database", help="database (default: the one in the URL)")
    rebuild.add_argument("--workers", type=_positive, default=1, help="worker processes (partitioned by document id)")
    rebuild.add_argument("--batch-size", type=_positive, default=5000, help="events per read (default: 5000)")
    rebuild.add_argument("--memory-mb", type=_positive, default=256,
                         help="working set kept in memory before a flush, in MB (default: 256)")
    rebuild.add_argument("--events-collection", default="domain_events", help="event collection (default: domain_events)")
    rebuild.add_argument("--fresh", action="store_true", help="start over instead of resuming an interrupted rebuild")
    rebuild.add_argument("--allow-empty", action="store_true",
                         help="swap in the result even if no events were found or it has fewer documents than the live read model")
    rebuild.set_defaults(run=_rebuild)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED
    except (MongoPersistenceError, PyMongoError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    return 0  # not reached: parser.exit raises


if __name__ == "__main__":
    sys.exit(main())
