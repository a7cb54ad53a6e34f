"""Test servers for every test: mongomock-motor (fast unit tests), the embedded
real-wire server (SecantusDB, started once per session) or a real ``mongod`` when
``MONGODB_URL`` is set, with both async drivers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.embedded import server_url

DRIVERS = ["pymongo", "motor"]


@pytest.fixture(scope="session")
def mongo_url() -> Iterator[str]:
    """URL of a real MongoDB-wire server: MONGODB_URL, else the embedded one."""
    with server_url() as url:
        yield url


def unique_db_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=DRIVERS)
async def real_connection(request: pytest.FixtureRequest, mongo_url: str) -> AsyncIterator[MongoConnectionManager]:
    """A connected manager on the real-wire server, once per async driver, on a fresh database."""
    connection = MongoConnectionManager(url=mongo_url, database=unique_db_name(), driver=request.param)
    await connection.connect()
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
