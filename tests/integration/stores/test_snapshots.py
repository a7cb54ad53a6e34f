"""MongoSnapshotStore on the real-wire server, both drivers."""

from __future__ import annotations

import asyncio
import random

import pytest

from cqrs_ddd_persistence_mongo.advanced.snapshots import MongoSnapshotStore
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument, InvalidStoreArgument

from .conftest import transaction


async def test_save_and_get_latest(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    assert await store.get_latest_snapshot("Order", "o-1") is None
    assert await store.save_snapshot("Order", "o-1", {"id": "o-1", "total": 1}, 50)
    assert await store.save_snapshot("Order", "o-1", {"id": "o-1", "total": 2}, 100)
    await store.save_snapshot("Order", "o-2", {"id": "o-2"}, 500)
    await store.save_snapshot("Invoice", "o-1", {"id": "o-1"}, 700)
    latest = await store.get_latest_snapshot("Order", "o-1")
    assert latest["version"] == 100 and latest["snapshot_data"] == {"id": "o-1", "total": 2}
    assert latest["aggregate_type"] == "Order" and latest["aggregate_id"] == "o-1"
    assert latest["created_at"].tzinfo is not None
    assert (await store.get_snapshot("Order", "o-1", 50))["snapshot_data"]["total"] == 1


async def test_older_save_never_overwrites_newer(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    await store.save_snapshot("Order", "o-1", {"total": 10}, 10)
    await store.save_snapshot("Order", "o-1", {"total": 5}, 5)
    latest = await store.get_latest_snapshot("Order", "o-1")
    assert latest["version"] == 10 and latest["snapshot_data"] == {"total": 10}


async def test_keep_last_one_skips_older_save(real_connection) -> None:
    store = MongoSnapshotStore(real_connection, keep_last=1)
    assert await store.save_snapshot("Order", "o-1", {"total": 10}, 10) is True
    assert await store.save_snapshot("Order", "o-1", {"total": 5}, 5) is False
    coll = real_connection.db()["snapshots"]
    assert [d["version"] async for d in coll.find({})] == [10]


async def test_same_version_save_is_an_idempotent_overwrite(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    await store.save_snapshot("Order", "o-1", {"total": 1}, 10)
    await store.save_snapshot("Order", "o-1", {"total": 2}, 10)
    assert await real_connection.db()["snapshots"].count_documents({}) == 1
    assert (await store.get_latest_snapshot("Order", "o-1"))["snapshot_data"] == {"total": 2}


async def test_keep_last_prunes_to_the_newest_n(real_connection) -> None:
    store = MongoSnapshotStore(real_connection, keep_last=3)
    for version in range(1, 11):
        await store.save_snapshot("Order", "o-1", {"v": version}, version)
    await store.save_snapshot("Order", "o-2", {"v": 1}, 1)
    coll = real_connection.db()["snapshots"]
    assert sorted([d["version"] async for d in coll.find({"aggregate_id": "o-1"})]) == [8, 9, 10]
    assert await coll.count_documents({"aggregate_id": "o-2"}) == 1


async def test_concurrent_saves_converge_on_newest(real_connection) -> None:
    store = MongoSnapshotStore(real_connection, keep_last=2)
    await store.ensure_indexes()
    versions = list(range(1, 31))
    random.Random(7).shuffle(versions)
    await asyncio.gather(*(store.save_snapshot("Order", "o-1", {"v": v}, v) for v in versions))
    coll = real_connection.db()["snapshots"]
    assert sorted([d["version"] async for d in coll.find({})]) == [29, 30]
    assert (await store.get_latest_snapshot("Order", "o-1"))["snapshot_data"] == {"v": 30}


async def test_delete_snapshot(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    for version in (1, 2, 3):
        await store.save_snapshot("Order", "o-1", {}, version)
    await store.save_snapshot("Order", "o-2", {}, 1)
    assert await store.delete_snapshot("Order", "o-1", before_version=3) == 2
    assert (await store.get_latest_snapshot("Order", "o-1"))["version"] == 3
    assert await store.delete_snapshot(aggregate_type="Order", aggregate_id="o-1") == 1
    assert await store.get_latest_snapshot("Order", "o-1") is None
    assert await store.get_latest_snapshot("Order", "o-2") is not None


async def test_latest_uses_the_seed_index(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    await store.save_snapshot("Order", "o-1", {}, 1)
    info = await real_connection.db()["snapshots"].index_information()
    assert info["aggregate_latest"]["key"] == [("aggregate_id", 1), ("aggregate_type", 1), ("version", -1)]
    plan = await real_connection.db()["snapshots"].find(
        {"aggregate_id": "o-1", "aggregate_type": "Order"}
    ).sort([("aggregate_id", 1), ("aggregate_type", 1), ("version", -1)]).limit(1).explain()
    assert "aggregate_latest" in str(plan["queryPlanner"]["winningPlan"])


async def test_save_in_aborted_transaction_leaves_nothing(real_connection) -> None:
    store = MongoSnapshotStore(real_connection, keep_last=1)
    await store.save_snapshot("Order", "o-1", {"v": 1}, 1)
    async with transaction(real_connection, commit=False) as uow:
        await store.save_snapshot("Order", "o-1", {"v": 2}, 2, uow=uow)
        assert (await store.get_latest_snapshot("Order", "o-1", uow=uow))["version"] == 2
    assert (await store.get_latest_snapshot("Order", "o-1"))["version"] == 1


async def test_bad_input(mock_connection) -> None:
    store = MongoSnapshotStore(mock_connection)
    with pytest.raises(InvalidStoreArgument, match="version"):
        await store.save_snapshot("Order", "o-1", {}, -1)
    with pytest.raises(InvalidStoreArgument, match="snapshot_data"):
        await store.save_snapshot("Order", "o-1", ["x"], 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidStoreArgument, match="aggregate_type"):
        await store.save_snapshot("", "o-1", {}, 1)
    with pytest.raises(InvalidStoreArgument, match="aggregate_id"):
        await store.get_latest_snapshot("Order", None)
    with pytest.raises(InvalidStoreArgument, match="keep_last"):
        MongoSnapshotStore(mock_connection, keep_last=0)


async def test_unencodable_data_raises_invalid_document(real_connection) -> None:
    store = MongoSnapshotStore(real_connection)
    with pytest.raises(InvalidDocument, match="model_dump"):
        await store.save_snapshot("Order", "o-1", {"x": object()}, 1)
    assert await store.get_latest_snapshot("Order", "o-1") is None
