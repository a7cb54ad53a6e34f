"""Test servers, chosen by environment, and what each one can do.

``MONGODB_URL`` (any MongoDB-wire server: mongod, mongos, ...) wins. Otherwise
``CQRS_DDD_MONGO_TEST_SERVER`` picks the server the tests start themselves:

* ``embedded`` (default): SecantusDB, the pip-installed Python server;
* ``secantus-rs``: the Rust server ``secantusd-rs`` (crate ``secantus-mdb``), stricter and
  faster; ``scripts/test.sh`` installs it. ``SECANTUSD_RS`` may name the binary.

Tests skip what a server cannot do by probing it (:func:`probe`), never by reading its
error messages.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from cqrs_ddd_persistence_mongo.embedded import server_url

SERVER_ENV = "CQRS_DDD_MONGO_TEST_SERVER"
RUST_BINARY_ENV = "SECANTUSD_RS"
RUST_REPLICA_SET = "secantus"
READY_TIMEOUT_S = 60.0


class ServerStartError(RuntimeError):
    """A test server did not come up; the message says why and what to do."""


def chosen_server() -> str:
    """Name of the server the tests use: 'url' (MONGODB_URL), 'embedded' or 'secantus-rs'."""
    if os.environ.get("MONGODB_URL"):
        return "url"
    name = os.environ.get(SERVER_ENV, "embedded") or "embedded"
    if name not in ("embedded", "secantus-rs"):
        raise ServerStartError(f"{SERVER_ENV}={name!r}: expected 'embedded' or 'secantus-rs'")
    return name


@contextmanager
def server_under_test(*, separate_process: bool = False) -> Iterator[str]:
    """URL of the chosen server, started for the ``with`` block when the tests own it.

    ``separate_process`` only matters for the embedded server (the Rust one always runs
    in its own process).
    """
    if chosen_server() == "secantus-rs":
        with rust_server() as url:
            yield url
    else:
        with server_url(separate_process=separate_process) as url:
            yield url


def rust_binary() -> str:
    """Path of ``secantusd-rs``: $SECANTUSD_RS when set (then only there), else PATH, else
    $CARGO_HOME/bin (default ~/.cargo/bin), where the install script puts it."""
    named = os.environ.get(RUST_BINARY_ENV)
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    candidates = [named] if named else [shutil.which("secantusd-rs"), str(cargo_home / "bin" / "secantusd-rs")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if named:
        raise ServerStartError(f"{RUST_BINARY_ENV}={named!r} is not an executable secantusd-rs")
    raise ServerStartError(
        "secantusd-rs not found (set SECANTUSD_RS or put it on PATH); install it with "
        "'cargo install secantus-mdb --version 0.5.3-beta.196 --ignore-rust-version' "
        "(scripts/test.sh does this), or unset " + SERVER_ENV
    )


def rust_binary_or_skip() -> str:
    """:func:`rust_binary` for tests that run on the Rust server besides the chosen one:
    skipped where it is not installed, except under ``scripts/test.sh`` (which exports
    ``SECANTUSD_RS`` after installing it), where a missing binary fails the test."""
    import pytest

    try:
        return rust_binary()
    except ServerStartError as exc:
        if os.environ.get(RUST_BINARY_ENV):
            pytest.fail(str(exc))
        pytest.skip(f"secantusd-rs is not installed ({exc})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the test process dies, even when killed -9."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Return once the server answers ``hello`` as a writable primary; raise if it exits or
    never gets there."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(
                f"secantusd-rs exited with code {process.returncode} before it was ready; "
                f"its output:\n{log.read_text(errors='replace')[-2000:]}"
            )
        client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            if client.admin.command("hello").get("isWritablePrimary"):
                return
            last_error = "hello answered but not as a writable primary"
        except PyMongoError as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        finally:
            client.close()
        time.sleep(0.2)
    raise ServerStartError(
        f"secantusd-rs did not become a writable primary within {timeout_s:.0f}s at {url} "
        f"(last: {last_error}); its output:\n{log.read_text(errors='replace')[-2000:]}"
    )


@contextmanager
def rust_server(*, cache_size: str = "1G", timeout_s: float = READY_TIMEOUT_S) -> Iterator[str]:
    """Start ``secantusd-rs`` on a free port with a fresh storage directory, yield its URL
    once it is a writable primary, then stop it and delete its storage."""
    binary = rust_binary()
    storage = Path(tempfile.mkdtemp(prefix="secantusd-rs-"))
    log = storage.parent / f"{storage.name}.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        for attempt in range(3):  # the port may be taken between choosing and binding it
            port = _free_port()
            url = f"mongodb://127.0.0.1:{port}/?replicaSet={RUST_REPLICA_SET}"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(storage / "data"),
                     "--cache-size", cache_size],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                )
            try:
                _wait_ready(url, process, log, timeout_s)
                break
            except ServerStartError:
                exited = process.poll() is not None  # e.g. the port was taken: try another
                _stop(process)
                if attempt == 2 or not exited:
                    raise
        yield url
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(storage, ignore_errors=True)
        log.unlink(missing_ok=True)


@dataclass(frozen=True)
class Capabilities:
    """What the server under test does; tests that need more skip with the reason."""

    text_indexes: bool
    rejects_open_geojson_ring: bool
    """when the query is parsed, as mongod does, not only when a document is compared with it"""
    near_sorts_by_distance: bool


def probe(url: str) -> Capabilities:
    """Try each capability in a scratch database (dropped afterwards)."""
    client: MongoClient[dict[str, object]] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    db = client[f"probe_{uuid.uuid4().hex[:12]}"]
    try:
        try:
            db.text.create_index([("body", "text")])
            text_indexes = True
        except OperationFailure:
            text_indexes = False
        places = db.places
        places.create_index([("loc", "2dsphere")])
        places.insert_many([
            {"_id": "far", "loc": {"type": "Point", "coordinates": [20.0, 0.0]}},
            {"_id": "near", "loc": {"type": "Point", "coordinates": [1.0, 0.0]}},
            {"_id": "mid", "loc": {"type": "Point", "coordinates": [10.0, 0.0]}},
        ])
        # a ring far from every stored point: a server that validates only while comparing
        # documents with it never notices that the ring is open
        far = db.far
        far.create_index([("loc", "2dsphere")])
        far.insert_one({"_id": 1, "loc": {"type": "Point", "coordinates": [100.0, 60.0]}})
        try:
            far.count_documents({"loc": {"$geoWithin": {"$geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}}}})
            rejects_open_ring = False
        except OperationFailure:
            rejects_open_ring = True
        origin = {"$geometry": {"type": "Point", "coordinates": [0.0, 0.0]}}
        order = [d["_id"] for d in places.find({"loc": {"$near": origin}})]
        return Capabilities(text_indexes, rejects_open_ring, order == ["near", "mid", "far"])
    finally:
        client.drop_database(db.name)
        client.close()
