"""Test servers for every test: mongomock-motor (fast unit tests) and one real-wire
server per session, chosen by environment (``tests/_servers.py``): ``MONGODB_URL``, else
the embedded SecantusDB, or the Rust ``secantusd-rs`` with
``CQRS_DDD_MONGO_TEST_SERVER=secantus-rs``; with both async drivers."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from _servers import Capabilities, probe, server_under_test
from cqrs_ddd_persistence_mongo import MongoConnectionManager

DRIVERS = ["pymongo", "motor"]
SHARDED_ENV = "CQRS_DDD_MONGO_TEST_SHARDED"


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """URL of the real MongoDB-wire server chosen by environment, started for the session.

    The embedded server runs in its own process, as a deployed server does: in this one it
    would share the interpreter (and its lock) with the tests, so a busy test could starve
    it into timeouts, and its threads formatting their own tracebacks would race pytest's.
    """
    with server_under_test(separate_process=True) as url:
        yield url


@pytest.fixture(scope="session")
def server_capabilities(mongo_url: str) -> Capabilities:
    """What the server under test can do, probed once (tests skip on what it cannot)."""
    return probe(mongo_url)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a sharded cluster the event store runs its sharded protocol (readers wait at holes,
    never fence them): the tests of the replica-set protocol do not apply there."""
    if os.environ.get(SHARDED_ENV) != "1":
        return
    skip = pytest.mark.skip(reason="replica-set append protocol; the cluster runs the sharded one")
    for item in items:
        if item.get_closest_marker("replica_set_protocol") is not None:
            item.add_marker(skip)


def unique_db_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def _shard_like_a_cluster_user(connection: MongoConnectionManager) -> None:
    """On a sharded cluster (``CQRS_DDD_MONGO_TEST_SHARDED=1``), shard the library's
    collections in the test's database with the recommended keys before the test runs,
    as a user does once before the application starts."""
    if os.environ.get(SHARDED_ENV) != "1":
        return
    from cqrs_ddd_persistence_mongo.indexes import shard_collections

    await shard_collections(connection)


@pytest.fixture(params=DRIVERS)
async def real_connection(request: pytest.FixtureRequest, mongo_url: str) -> AsyncIterator[MongoConnectionManager]:
    """A connected manager on the real-wire server, once per async driver, on a fresh database."""
    connection = MongoConnectionManager(url=mongo_url, database=unique_db_name(), driver=request.param)
    await connection.connect()
    await _shard_like_a_cluster_user(connection)
    try:
        yield connection
    finally:
        await connection.client.drop_database(connection.database_name)
        await connection.disconnect()


@pytest.fixture
async def pymongo_connection(mongo_url: str) -> AsyncIterator[MongoConnectionManager]:
    """A connected PyMongo-async manager on the real-wire server (single driver, for heavy tests)."""
    connection = MongoConnectionManager(url=mongo_url, database=unique_db_name())
    await connection.connect()
    await _shard_like_a_cluster_user(connection)
    try:
        yield connection
    finally:
        await connection.client.drop_database(connection.database_name)
        await connection.disconnect()


@pytest.fixture
async def mock_connection() -> AsyncIterator[MongoConnectionManager]:
    """A manager over mongomock-motor: no server, no transactions; for fast unit tests."""
    from mongomock_motor import AsyncMongoMockClient

    connection = MongoConnectionManager(
        client=AsyncMongoMockClient(tz_aware=True, uuidRepresentation="standard"),
        database="test_db",
    )
    await connection.connect()
    yield connection
    await connection.disconnect()
