"""MongoConnectionManager with all three clients, bad URLs, unreachable servers and
transactions through the driver adapter on the real-wire server."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import pytest
from typing import Any

from cqrs_ddd_persistence_mongo import MongoConnectionError, MongoConnectionManager


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_pymongo_async_is_the_default_client(mongo_url: str) -> None:
    from pymongo import AsyncMongoClient

    async with MongoConnectionManager(url=mongo_url, database="conn_default") as conn:
        assert isinstance(conn.client, AsyncMongoClient)
        assert conn.driver().kind == "pymongo"
        assert await conn.health_check()


async def test_motor_client_passed_in(mongo_url: str) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    client = AsyncIOMotorClient(mongo_url, tz_aware=True, uuidRepresentation="standard")
    conn = MongoConnectionManager(client=client, database="conn_motor")
    await conn.connect()
    assert conn.driver().kind == "motor"
    await conn.db().things.insert_one({"_id": 1})
    assert await conn.db().things.find_one({"_id": 1}) == {"_id": 1}
    await conn.client.drop_database("conn_motor")
    await conn.disconnect()
    # a client passed in belongs to its owner: still usable after disconnect
    assert (await client.admin.command("ping"))["ok"] == 1
    client.close()


async def test_motor_driver_without_motor_installed_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "motor" or m.startswith("motor.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "motor", None)  # what an install without the extra looks like
    conn = MongoConnectionManager(url="mongodb://127.0.0.1:1/", database="x", driver="motor")
    with pytest.raises(MongoConnectionError, match=r"pip install 'cqrs-ddd-persistence-mongo\[motor\]'"):
        await conn.connect()


async def test_mongomock_client(mock_connection: MongoConnectionManager) -> None:
    assert mock_connection.driver().kind == "mongomock"
    assert not await mock_connection.supports_transactions()
    await mock_connection.db().x.insert_one({"_id": "a", "n": 1})
    assert await mock_connection.db().x.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    assert await mock_connection.health_check()


async def test_datetimes_and_uuids_round_trip(real_connection: MongoConnectionManager) -> None:
    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    key = uuid4()
    await real_connection.db().x.insert_one({"_id": key, "at": when})
    doc = await real_connection.db().x.find_one({"_id": key})
    assert doc == {"_id": key, "at": when}
    assert doc["at"].tzinfo is not None


async def test_bad_url_is_a_connection_error() -> None:
    with pytest.raises(MongoConnectionError, match="invalid MongoDB URL"):
        await MongoConnectionManager(url="postgres://nope", database="x").connect()


def test_default_url_is_localhost() -> None:
    assert MongoConnectionManager(database="x").url == "mongodb://localhost:27017"


async def test_connects_lazily_on_first_use(mongo_url: str) -> None:
    """The seed's dependency-injection example never calls connect()."""
    from cqrs_ddd_persistence_mongo.core import MongoRepository
    from cqrs_ddd_persistence_mongo.domain import AggregateRoot

    class Note(AggregateRoot[str]):
        text: str = ""

    conn = MongoConnectionManager(url=mongo_url, database=f"lazy_{uuid4().hex[:8]}")
    repo: MongoRepository[Note, str] = MongoRepository(conn, "notes", Note)
    try:
        assert await repo.add(Note(id="n1", text="hi")) == "n1"
        assert (await repo.get("n1")).text == "hi"
    finally:
        await conn.client.drop_database(conn.database_name)
        await conn.disconnect()


async def test_close_without_await_still_closes(mongo_url: str) -> None:
    conn = await MongoConnectionManager(url=mongo_url, database="x").connect()
    client = conn.client
    conn.close()  # not awaited: the manager lets go of the client at once ...
    assert not conn.is_connected
    assert conn.client is not client  # ... and a later use builds a new one
    await conn.close()  # awaited: the same, and waits for the sockets to close


async def test_an_unawaited_close_is_kept_alive_until_it_ends() -> None:
    """The event loop holds tasks only weakly: the library holds the close task until done."""
    import gc
    import weakref

    class SlowClient:  # a driver client whose close waits on a gate only the task holds
        closed = False
        gate: Any = None

        async def close(self) -> None:
            gate = asyncio.get_running_loop().create_future()
            self.gate = weakref.ref(gate)
            await gate
            self.closed = True

    conn = MongoConnectionManager(url="mongodb://127.0.0.1:1", database="x")
    slow = SlowClient()
    conn._client = slow  # the client the manager built and owns
    task = weakref.ref(conn.close())  # the caller drops the returned task
    await asyncio.sleep(0)  # the close starts and waits
    gc.collect()
    assert task() is not None and not task().done()  # type: ignore[union-attr]
    slow.gate().set_result(None)
    for _ in range(3):
        await asyncio.sleep(0)
    assert slow.closed
    gc.collect()
    assert task() is None  # let go once it ended


async def test_text_index_helper_builds_one_text_index() -> None:
    from cqrs_ddd_persistence_mongo.indexes import create_text_index

    class Recorder:  # the embedded server has no text indexes: check what would be sent
        name = "things"
        models: list[Any] = []

        async def create_indexes(self, models: list[Any]) -> list[str]:
            self.models.extend(models)
            return [m.document["name"] for m in models]

    recorder = Recorder()
    assert await create_text_index(recorder, ["title", "body"], weights={"title": 3}, name="search") == "search"
    document = recorder.models[0].document
    assert dict(document["key"]) == {"title": "text", "body": "text"} and document["weights"] == {"title": 3}


def test_close_outside_an_event_loop_raises() -> None:
    with pytest.raises(MongoConnectionError, match="running event loop"):
        MongoConnectionManager(database="x").close()


async def test_original_index_helpers(mongo_url: str) -> None:
    from cqrs_ddd_persistence_mongo.indexes import (
        create_compound_index,
        create_text_index,
        create_ttl_index,
        ensure_ttl_index,
    )

    conn = await MongoConnectionManager(url=mongo_url, database=f"idx_{uuid4().hex[:8]}").connect()
    try:
        collection = conn.db().things
        assert await create_ttl_index(collection, "expires_at", 60) == "expires_at_1"
        assert await ensure_ttl_index(collection, "expires_at", 60) == "expires_at_1"  # idempotent
        assert await create_compound_index(collection, [("a", 1), ("b", -1)], unique=True) == "a_1_b_-1"
        info = {i["name"]: i async for i in await collection.list_indexes()}
        assert info["expires_at_1"]["expireAfterSeconds"] == 60 and info["a_1_b_-1"]["unique"]
    finally:
        await conn.client.drop_database(conn.database_name)
        await conn.disconnect()


async def test_unreachable_server_fails_fast() -> None:
    conn = MongoConnectionManager(
        url=f"mongodb://127.0.0.1:{_free_port()}/", database="x", server_selection_timeout_ms=500
    )
    started = time.monotonic()
    with pytest.raises(MongoConnectionError, match="cannot reach MongoDB"):
        await conn.connect()
    assert time.monotonic() - started < 5
    assert not await conn.health_check()


async def test_first_use_of_an_unreachable_server_is_a_connection_error() -> None:
    from cqrs_ddd_persistence_mongo.core import MongoOutboxStorage

    conn = MongoConnectionManager(url="mongodb://127.0.0.1:1/", database="x", server_selection_timeout_ms=300)
    try:
        with pytest.raises(MongoConnectionError):
            await MongoOutboxStorage(conn).get_pending()
    finally:
        await conn.disconnect()


def with_database(url: str, database: str) -> str:
    """``url`` with its path set to ``database``, its options (query string) kept."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def test_with_database_keeps_options() -> None:
    assert with_database("mongodb://h:1/?replicaSet=rs0", "d") == "mongodb://h:1/d?replicaSet=rs0"
    assert with_database("mongodb://h:1", "d") == "mongodb://h:1/d"
    assert with_database("mongodb://u:p@h:1,h:2/old?w=majority&tls=false", "d") == (
        "mongodb://u:p@h:1,h:2/d?w=majority&tls=false"
    )


async def test_database_from_url(mongo_url: str) -> None:
    url = with_database(mongo_url, "from_url")
    async with MongoConnectionManager(url=url) as conn:
        assert conn.db().name == "from_url"
        assert conn.db("other").name == "other"


async def test_replica_set_detected_once(real_connection: MongoConnectionManager) -> None:
    assert await real_connection.supports_transactions()
    first = await real_connection.server_hello()
    assert await real_connection.server_hello() is first  # cached


@pytest.mark.parametrize("outcome", ["commit", "abort"])
async def test_transactions_through_the_adapter(real_connection: MongoConnectionManager, outcome: str) -> None:
    adapter = real_connection.driver()
    db = real_connection.db()
    await db.create_collection("a")
    await db.create_collection("b")
    session = await adapter.start_session(real_connection.client)
    try:
        await adapter.start_transaction(session)
        assert adapter.in_transaction(session)
        await db.a.insert_one({"_id": 1}, session=session)
        await db.b.insert_one({"_id": 1}, session=session)
        if outcome == "commit":
            await adapter.commit_transaction(session)
        else:
            await adapter.abort_transaction(session)
    finally:
        await adapter.end_session(session)
    expected = 1 if outcome == "commit" else 0
    assert await db.a.count_documents({}) == expected
    assert await db.b.count_documents({}) == expected
    assert await adapter.to_list(db.a.find({}), None) == ([{"_id": 1}] if expected else [])


def test_url_options_are_honoured_and_explicit_arguments_win() -> None:
    from_url = MongoConnectionManager(url="mongodb://h:1/?serverSelectionTimeoutMS=300", database="x")
    assert "serverSelectionTimeoutMS" not in from_url._options  # the URL's value applies
    explicit = MongoConnectionManager(
        url="mongodb://h:1/?serverSelectionTimeoutMS=300", database="x", server_selection_timeout_ms=50
    )
    assert explicit._options["serverSelectionTimeoutMS"] == 50
    default = MongoConnectionManager(url="mongodb://h:1/", database="x", socket_timeout_ms=0, max_pool_size=7)
    assert default._options["serverSelectionTimeoutMS"] == 10_000
    assert default._options["maxPoolSize"] == 7
    assert "socketTimeoutMS" not in default._options  # 0 = no timeout = driver default
    assert default._options["tz_aware"] is True
    assert default._options["uuidRepresentation"] == "standard"
