"""Where the demo and CLI find a server: ``MONGODB_URL`` if set, else the embedded one.

The embedded server is SecantusDB (extra ``embedded``): a MongoDB-wire server on
WiredTiger, started in-process, presenting itself as a one-member replica set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from .exceptions import MongoConnectionError


@contextmanager
def server_url(url: str | None = None) -> Iterator[str]:
    """Yield ``url``, else ``$MONGODB_URL``, else the URL of a fresh in-memory embedded server."""
    url = url or os.environ.get("MONGODB_URL")
    if url:
        yield url
        return
    try:
        from secantus import SecantusDBServer
    except ImportError as exc:
        raise MongoConnectionError(
            "no MONGODB_URL and the embedded server is not installed: "
            "pip install 'cqrs-ddd-persistence-mongo[embedded]' or set MONGODB_URL"
        ) from exc
    with SecantusDBServer(storage_path=":memory:") as server:
        yield server.uri
