"""The event store's sharded-cluster protocol, forced on the replica set (``sharded=True``):
indexes a sharded collection accepts, gapless positions without a unique position index,
stream uniqueness, readers that wait at a hole instead of fencing it; and the sharding
helpers' answers where there is no mongos."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import ConcurrencyConflict, MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import EventStoreError, MongoPersistenceError
from cqrs_ddd_persistence_mongo.indexes import recommended_shard_keys, shard_collections
from cqrs_ddd_persistence_mongo.sharding import ShardingError, is_mongos

from ._store_calls import make_stores

pytestmark = pytest.mark.integration

#: through a mongos (CI's sharded job) the replica-set-only checks do not apply
replica_set_only = pytest.mark.skipif(
    os.environ.get("CQRS_DDD_MONGO_TEST_SHARDED") == "1", reason="checks the replica-set protocol"
)


def ev(stream: str, version: int) -> StoredEvent:
    return StoredEvent(event_type="Happened", aggregate_id=stream, version=version, payload={"v": version})


async def indexes_of(connection: MongoConnectionManager, name: str) -> dict[str, dict[str, Any]]:
    return {ix["name"]: ix async for ix in await connection.db()[name].list_indexes()}


async def all_positions(connection: MongoConnectionManager) -> list[int]:
    docs = await connection.db()["domain_events"].find({}, {"position": 1}).sort("position", 1).to_list(None)
    return [d["position"] for d in docs]


async def test_sharded_indexes_are_all_prefixed_by_the_shard_key(pymongo_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(pymongo_connection, sharded=True)
    await store.ensure_indexes()
    indexes = await indexes_of(pymongo_connection, "domain_events")
    assert "position_unique" not in indexes
    assert indexes["position"].get("unique") is not True
    assert indexes["stream_version_unique"]["unique"] is True
    shard_key = list(recommended_shard_keys()["domain_events"])
    for name, index in indexes.items():
        if index.get("unique") and name != "_id_":
            assert list(index["key"])[: len(shard_key)] == shard_key, name


async def test_every_unique_index_of_every_store_is_prefixed_by_its_shard_key(
    pymongo_connection: MongoConnectionManager,
) -> None:
    """What shardCollection and later createIndexes demand on a sharded collection."""
    stores = make_stores(pymongo_connection)
    stores.events = MongoEventStore(pymongo_connection, sharded=True)
    for store in (stores.events, stores.outbox, stores.snapshots, stores.positions, stores.sagas, stores.jobs):
        await store.ensure_indexes()
    keys = recommended_shard_keys()
    checked = 0
    for name in await pymongo_connection.db().list_collection_names():
        shard_key = list(keys[name])
        for index_name, index in (await indexes_of(pymongo_connection, name)).items():
            if index.get("unique") and index_name != "_id_":
                checked += 1
                assert "hashed" not in keys[name].values(), f"{name}: a hashed shard key cannot back {index_name}"
                assert list(index["key"])[: len(shard_key)] == shard_key, f"{name}.{index_name}"
    assert checked >= 2


async def test_sharded_appends_are_gapless_under_concurrency(pymongo_connection: MongoConnectionManager) -> None:
    """No unique position index: positions stay unique and dense because each append is a
    transaction serialized on the counter (write conflicts are retried by the store)."""
    store = MongoEventStore(pymongo_connection, sharded=True)
    await store.ensure_indexes()

    async def writer(w: int) -> None:
        for v in range(1, 6):
            await store.append(ev(f"w{w}", v))

    await asyncio.gather(*(writer(w) for w in range(6)))
    await store.append_batch([ev("batch", 1), ev("batch", 2), ev("batch", 3)])
    assert await all_positions(pymongo_connection) == list(range(1, 34))
    read = await store.get_events_after(0, limit=100)
    assert [e.position for e in read] == list(range(1, 34))


async def test_sharded_stream_conflict_consumes_no_position(pymongo_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(pymongo_connection, sharded=True)
    assert await store.append(ev("s", 1)) == 1
    with pytest.raises(ConcurrencyConflict):
        await store.append(ev("s", 1))
    with pytest.raises(ConcurrencyConflict):
        await store.append_batch([ev("t", 1), ev("s", 1)])
    assert await store.append(ev("s", 2)) == 2  # the failed appends rolled their positions back
    assert await all_positions(pymongo_connection) == [1, 2]
    assert [e.version for e in await store.get_events("t")] == []


async def test_sharded_append_in_the_callers_transaction(pymongo_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(pymongo_connection, sharded=True)
    await store.ensure_indexes()
    async with MongoUnitOfWork(connection=pymongo_connection) as uow:
        await store.append(ev("u", 1), uow=uow)
        await uow.rollback()
    async with MongoUnitOfWork(connection=pymongo_connection) as uow:
        assert await store.append(ev("u", 1), uow=uow) == 1
        await uow.commit()
    assert await all_positions(pymongo_connection) == [1]


async def reserve_without_writing(connection: MongoConnectionManager, count: int) -> None:
    """What a cross-shard commit in flight looks like to a reader: the counter is ahead."""
    await connection.db()["counters"].update_one({"_id": "domain_events_position"}, {"$inc": {"seq": count}})


async def test_sharded_reader_waits_at_a_hole_and_never_fences_it(pymongo_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(pymongo_connection, sharded=True, gap_timeout=0)
    await store.append(ev("a", 1))
    await reserve_without_writing(pymongo_connection, 2)  # positions 2 and 3 in flight
    await store.append(ev("a", 2))  # position 4
    for _ in range(3):  # long past gap_timeout: still waiting, nothing written
        assert [e.position for e in await store.get_events_after(0)] == [1]
        assert [e.position async for e in store.stream_all()] == [1]
    assert await all_positions(pymongo_connection) == [1, 4]
    assert store.reader_holds >= 3
    # the commit lands: the follower sees it, nothing skipped
    events = pymongo_connection.db()["domain_events"]
    for position in (2, 3):
        doc = await events.find_one({"position": 4})
        doc.update(_id=f"late-{position}", aggregate_id="late", version=position, position=position)
        await events.insert_one(doc)
    assert [e.position for e in await store.get_events_after(0)] == [1, 2, 3, 4]


@replica_set_only
@pytest.mark.replica_set_protocol
async def test_replica_set_reader_still_fences_abandoned_holes(pymongo_connection: MongoConnectionManager) -> None:
    """The single-replica-set protocol is unchanged (detected: this server is no mongos)."""
    store = MongoEventStore(pymongo_connection, gap_timeout=0)
    await store.append(ev("a", 1))
    await reserve_without_writing(pymongo_connection, 1)
    await store.append(ev("a", 2))
    assert [e.position for e in await store.get_events_after(0)] == [1, 3]
    assert await all_positions(pymongo_connection) == [1, 2, 3]  # the marker took position 2
    indexes = await indexes_of(pymongo_connection, "domain_events")
    assert indexes["position_unique"]["unique"] is True


async def test_sharded_needs_transactions(mock_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(mock_connection, sharded=True)
    with pytest.raises(MongoPersistenceError):
        await store.append(ev("m", 1))
    with pytest.raises(EventStoreError):
        MongoEventStore(mock_connection, sharded="yes")  # type: ignore[arg-type]


@replica_set_only
async def test_shard_collections_needs_a_mongos(pymongo_connection: MongoConnectionManager) -> None:
    assert await is_mongos(pymongo_connection) is False
    with pytest.raises(ShardingError, match="mongos"):
        await shard_collections(pymongo_connection)


def test_recommended_keys_cover_every_store_and_are_copies() -> None:
    keys = recommended_shard_keys()
    assert set(keys) >= {
        "domain_events", "counters", "outbox", "snapshots", "projection_positions", "projection_checkpoints",
        "sagas", "background_jobs", "projection_dead_letters",
    }
    keys["domain_events"]["x"] = 1
    assert recommended_shard_keys()["domain_events"] == {"aggregate_id": 1}


class _FakeAdmin:
    """What a mongos answers, recorded (there is no mongos on these machines)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.fail_on = fail_on

    async def command(self, name: str, value: Any = None, **options: Any) -> dict[str, Any]:
        if name == "hello":
            return {"msg": "isdbgrid", "ok": 1}
        from pymongo.errors import OperationFailure

        if value == self.fail_on:
            raise OperationFailure("already sharded with another key", 20, {"errmsg": "already sharded", "code": 20})
        self.calls.append((name, value, options))
        return {"ok": 1}


class _FakeConnection:
    operation_timeout = 5.0

    def __init__(self, admin: _FakeAdmin) -> None:
        self.client = type("Client", (), {"admin": admin})()

    def db(self, name: str | None = None) -> Any:
        return type("Db", (), {"name": name or "app"})()


async def test_shard_collections_sends_the_recommended_keys_through_a_mongos() -> None:
    admin = _FakeAdmin()
    done = await shard_collections(_FakeConnection(admin))  # type: ignore[arg-type]
    keys = recommended_shard_keys()
    assert done == [f"app.{name}" for name in keys]
    sent = {value: options for _, value, options in admin.calls}
    assert sent["app.domain_events"] == {"key": {"aggregate_id": 1}}
    assert sent["app.projection_positions"] == {"key": {"projection_name": 1}, "unique": True}
    assert sent["app.outbox"] == {"key": {"_id": "hashed"}}
    with pytest.raises(ShardingError, match="app.sagas"):
        await shard_collections(_FakeConnection(_FakeAdmin(fail_on="app.sagas")))  # type: ignore[arg-type]
