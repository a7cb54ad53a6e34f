"""Where the demo and CLI find a server: ``MONGODB_URL`` if set, else the embedded one.

The embedded server is SecantusDB (extra ``embedded``): a MongoDB-wire server on
WiredTiger, started in-process, presenting itself as a one-member replica set.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .exceptions import MongoConnectionError


_SERVER_PROCESS = (
    "import sys\n"
    "from secantus import SecantusDBServer\n"
    "with SecantusDBServer(storage_path=':memory:') as server:\n"
    "    print(server.uri, flush=True)\n"
    "    sys.stdin.read()  # runs until the parent closes stdin\n"
)


@contextmanager
def server_url(url: str | None = None, *, separate_process: bool = False) -> Iterator[str]:
    """Yield ``url``, else ``$MONGODB_URL``, else the URL of a fresh in-memory embedded server.

    The embedded server normally runs in this process. ``separate_process=True`` starts it
    in a child process instead, so that client and server do not compete for one
    interpreter: what benchmarks need to measure the client's side steadily.
    """
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
    if not separate_process:
        with SecantusDBServer(storage_path=":memory:") as server:
            yield server.uri
        return
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        started = process.stdout.readline().strip()
        if not started:
            raise MongoConnectionError("the embedded server process exited before it printed its URL")
        yield started
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
