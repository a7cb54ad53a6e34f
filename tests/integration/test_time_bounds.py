"""Every public operation is time-bounded and raises only library errors: with the server
stalled (SIGSTOP), dead (killed), busy with a user pattern, or blocked by an orphaned
transaction. Each test starts its own server process, so stopping it harms nobody else."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from _servers import rust_binary_or_skip

from cqrs_ddd_persistence_mongo import MongoConnectionManager, MongoEventStore, MongoRepository, StoredEvent
from cqrs_ddd_persistence_mongo.connection import time_limit
from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork
from cqrs_ddd_persistence_mongo.embedded import _SERVER_PROCESS
from cqrs_ddd_persistence_mongo.exceptions import (
    MongoConnectionError,
    MongoPersistenceError,
    OperationTimedOut,
)
from cqrs_ddd_persistence_mongo.specifications import SpecificationBuilder

from ._store_calls import (
    NOT_WALKED,
    WALKED_CLASSES,
    Order,
    Stores,
    every_call,
    make_stores,
    public_methods,
    seed,
    server_classes,
)

BOUND = 1.5  # seconds: the operation_timeout these tests configure
SLACK = 2.0  # scheduling on a loaded 2-core machine, plus connection set-up
#: calls made of several store calls, each bounded on its own; value: how many bounds
#: (none today: the projection engine's run_once is one bound as a whole)
COMPOSITE: dict[str, int] = {}


def _limit(name: str) -> float:
    return COMPOSITE.get(name, 1) * BOUND + SLACK

if os.environ.get("MONGODB_URL"):
    pytestmark = pytest.mark.skip(reason="these tests start, stop and kill their own server process")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(kind: str, tmp_path: Any) -> subprocess.Popen[str]:
    """``kind`` "embedded" or the path of the Rust server's binary."""
    if kind == "embedded":
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER_PROCESS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        process.url = process.stdout.readline().strip()  # type: ignore[attr-defined]
        return process
    port = _free_port()
    process = subprocess.Popen(
        [kind, "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(tmp_path), "--cache-size", "256M"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    process.url = f"mongodb://127.0.0.1:{port}/?replicaSet=secantus"  # type: ignore[attr-defined]
    return process


@pytest.fixture(params=["embedded", "rust"])
def server(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[subprocess.Popen[str]]:
    """A fresh server in a child process of this test (its URL as ``process.url``): the
    embedded one, and the Rust one when ``secantusd-rs`` is installed."""
    process = _start("embedded" if request.param == "embedded" else rust_binary_or_skip(), tmp_path)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
        process.wait(timeout=30)


@pytest.fixture(params=["pymongo", "motor"])
async def bounded(request: pytest.FixtureRequest, server: subprocess.Popen[str]) -> AsyncIterator[MongoConnectionManager]:
    connection = MongoConnectionManager(
        url=server.url, database="bounds", driver=request.param, operation_timeout=BOUND  # type: ignore[attr-defined]
    )
    await connection.connect()
    try:
        yield connection
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGCONT)
        await connection.disconnect()


async def _timed(call: Any) -> tuple[float, BaseException | None]:
    started = time.monotonic()
    try:
        await call()
    except Exception as exc:  # noqa: BLE001 - inspected by the test
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


async def _walk_all(stores: Stores) -> dict[str, tuple[float, BaseException | None]]:
    calls = every_call(stores)
    results = await asyncio.gather(*(_timed(call) for call in calls.values()))
    return dict(zip(calls, results))


def test_the_walk_covers_every_public_method_that_calls_the_server() -> None:
    walked = {name.split("(")[0] for name in every_call(None)}  # type: ignore[arg-type]
    assert public_methods() - walked == set()
    classes = {f"{cls.__module__}.{cls.__qualname__}" for cls in WALKED_CLASSES}
    found = server_classes()
    assert found - classes - set(NOT_WALKED) == set(), "walk these classes or say in NOT_WALKED why not"
    assert set(NOT_WALKED) - found == set(), "stale NOT_WALKED entries"


async def test_a_stalled_server_fails_every_operation_within_the_bound(
    bounded: MongoConnectionManager, server: subprocess.Popen[str]
) -> None:
    stores = make_stores(bounded)
    await seed(stores)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        results = await _walk_all(stores)
    finally:
        os.kill(server.pid, signal.SIGCONT)
    problems = []
    for name, (elapsed, error) in results.items():
        if not isinstance(error, MongoPersistenceError):
            problems.append(f"{name}: {'returned' if error is None else repr(error)[:200]}")
        elif not isinstance(error, (OperationTimedOut, MongoConnectionError)):
            problems.append(f"{name}: {type(error).__name__} is neither OperationTimedOut nor ConnectionFailed")
        elif not error.transient:  # a retry loop on .transient must retry a stalled server
            problems.append(f"{name}: {type(error).__name__} is not .transient")
        if elapsed > _limit(name):
            problems.append(f"{name}: took {elapsed:.1f}s with a {BOUND}s bound")
    assert not problems, "\n".join(problems)


LONG_BOUND = 8.0  # the connection's bound in the override tests: far above OVERRIDE + SLACK
OVERRIDE = 0.5


@pytest.mark.parametrize("driver", ["pymongo", "motor"])
async def test_a_shorter_bound_per_call_or_around_a_block_overrides_the_connections(
    server: subprocess.Popen[str], driver: str
) -> None:
    assert OVERRIDE + SLACK < LONG_BOUND  # else ignoring the override would go unnoticed
    connection = MongoConnectionManager(
        url=server.url, database="overrides", driver=driver, operation_timeout=LONG_BOUND  # type: ignore[attr-defined]
    )
    await connection.connect()
    try:
        stores = make_stores(connection)
        await stores.repo.add(Order(id="o1"))
        await stores.projections.upsert("summaries", "s1", {"n": 1})
        spec = SpecificationBuilder().where("customer_id", "eq", "c1").build()

        async def in_time_limit() -> Any:
            with time_limit(OVERRIDE):
                return await stores.repo.get("o1")

        async def search() -> Any:
            return await (await stores.repo.search(spec, timeout=OVERRIDE))

        calls = {
            "time_limit(...): repo.get": in_time_limit,
            "repo.search(timeout=)": search,
            "projections.find(timeout=)": lambda: stores.projections.find("summaries", {}, timeout=OVERRIDE),
            "projections.count(timeout=)": lambda: stores.projections.count("summaries", {}, timeout=OVERRIDE),
            "projections.aggregate(timeout=)": lambda: stores.projections.aggregate(
                "summaries", [{"$match": {}}], timeout=OVERRIDE
            ),
        }
        os.kill(server.pid, signal.SIGSTOP)
        try:
            results = await asyncio.gather(*(_timed(call) for call in calls.values()))
        finally:
            os.kill(server.pid, signal.SIGCONT)
        problems = [
            f"{name}: {'returned' if error is None else repr(error)[:200]} after {elapsed:.2f}s"
            for name, (elapsed, error) in zip(calls, results)
            if not isinstance(error, (OperationTimedOut, MongoConnectionError)) or elapsed > OVERRIDE + SLACK
        ]
        assert not problems, "\n".join(problems)
    finally:
        await connection.disconnect()


async def test_a_dead_server_gives_only_library_errors_within_the_bound(
    bounded: MongoConnectionManager, server: subprocess.Popen[str]
) -> None:
    stores = make_stores(bounded)
    await seed(stores)
    server.kill()
    server.wait(timeout=30)
    results = await _walk_all(stores)
    problems = [
        f"{name}: {'returned' if error is None else repr(error)[:200]}"
        for name, (elapsed, error) in results.items()
        if not isinstance(error, MongoPersistenceError)
    ]
    problems += [f"{name}: took {elapsed:.1f}s" for name, (elapsed, _) in results.items() if elapsed > _limit(name)]
    problems += [
        f"{name}: {type(error).__name__} is not .transient"
        for name, (_, error) in results.items()
        if isinstance(error, (OperationTimedOut, MongoConnectionError)) and not error.transient
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "operator, pattern", [("like", "%a%a%a%a%a%a%a%b"), ("regex", "^(a+)+b"), ("regex", "(a|a?)+b")]
)
async def test_user_patterns_run_under_the_bound(server: subprocess.Popen[str], operator: str, pattern: str) -> None:
    """The caller gets control back within the bound. Whether the server stops working on
    the pattern then depends on the server (docs/gateway.md): the Rust one's regex engine is
    linear and answers at once; the embedded one keeps evaluating after the client gave up."""
    url = server.url  # type: ignore[attr-defined]
    connection = MongoConnectionManager(url=url, database="patterns", operation_timeout=BOUND)
    patient = MongoConnectionManager(url=url, database="patterns", operation_timeout=LONG_BOUND)
    async with connection, patient:
        repo: MongoRepository[Order, str] = MongoRepository(connection, "orders", Order)
        await repo.add_many([Order(id=f"o{i}", customer_id="a" * 28 + "c") for i in range(300)])
        spec = SpecificationBuilder().where("customer_id", operator, pattern).build()
        # a per-search bound overrides the connection's, here a far longer one
        started = time.monotonic()
        try:
            found = await (await MongoRepository(patient, "orders", Order).search(spec, timeout=OVERRIDE))
        except OperationTimedOut:
            found = None
        assert time.monotonic() - started < OVERRIDE + SLACK < LONG_BOUND
        assert found in (None, [])
        # the connection's bound
        started = time.monotonic()
        try:
            found = await (await repo.search(spec))
        except OperationTimedOut:
            found = None
        assert time.monotonic() - started < BOUND + SLACK
        assert found in (None, [])


async def test_an_orphaned_transaction_cannot_block_appends_indefinitely(server: subprocess.Popen[str]) -> None:
    """A client that dies inside an appending transaction holds the position counter; a plain
    append then fails (or succeeds) within the bound instead of waiting for the server to
    expire the transaction."""
    url = server.url  # type: ignore[attr-defined]
    orphan = MongoConnectionManager(url=url, database="orphan", operation_timeout=30)
    victim = MongoConnectionManager(url=url, database="orphan", operation_timeout=BOUND)
    async with orphan, victim:
        orphan_store, store = MongoEventStore(orphan), MongoEventStore(victim)
        await store.ensure_indexes()
        uow = MongoUnitOfWork(connection=orphan)
        await uow.begin()
        await orphan_store.append(StoredEvent(event_type="X", aggregate_id="held", version=1), uow=uow)
        started = time.monotonic()
        try:
            await store.append(StoredEvent(event_type="X", aggregate_id="free", version=1))
        except MongoPersistenceError:
            pass
        assert time.monotonic() - started < BOUND + SLACK
        await uow.close()
