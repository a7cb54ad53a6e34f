"""MongoProjectionPositionStore on the real-wire server, both drivers."""

from __future__ import annotations

import asyncio

import pytest

from cqrs_ddd_persistence_mongo.advanced.position_store import MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.exceptions import InvalidStoreArgument, PositionStoreError

from .conftest import transaction


async def test_get_save_reset(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection)
    assert await store.get_position("OrderSummary") is None
    assert await store.save_position("OrderSummary", 10) == 10
    assert await store.save_position("OrderSummary", 25) == 25
    assert await store.save_position("CustomerStats", 3) == 3
    assert await store.get_position("OrderSummary") == 25
    assert await store.get_all_positions() == {"OrderSummary": 25, "CustomerStats": 3}
    assert await store.reset_position("OrderSummary") is True
    assert await store.reset_position("OrderSummary") is False
    assert await store.get_position("OrderSummary") is None
    assert await store.get_position("CustomerStats") == 3


async def test_seed_document_shape_and_unique_index(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection, collection="positions")
    await store.save_position("P", 5000)
    doc = await real_connection.db()["positions"].find_one({})
    assert doc["projection_name"] == "P" and doc["position"] == 5000 and doc["updated_at"] is not None
    info = await real_connection.db()["positions"].index_information()
    assert info["projection_name_unique"]["unique"] is True


async def test_concurrent_saves_leave_one_document_per_name(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection)
    await store.ensure_indexes()
    positions = list(range(1, 41))
    await asyncio.gather(*(store.save_position(f"proj-{p % 2}", p) for p in positions))
    coll = real_connection.db()[store.collection_name]
    assert await coll.count_documents({}) == 2
    assert await coll.count_documents({"projection_name": "proj-0"}) == 1
    assert await store.get_position("proj-0") in {p for p in positions if p % 2 == 0}
    assert await store.get_position("proj-1") in {p for p in positions if p % 2 == 1}


async def test_only_forward_never_moves_back_under_concurrency(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection)
    positions = list(range(100, 0, -3))
    await asyncio.gather(*(store.save_position("P", p, only_forward=True) for p in positions))
    assert await store.get_position("P") == max(positions)
    assert await store.save_position("P", 1, only_forward=True) == max(positions)
    assert await store.save_position("P", 1) == 1  # plain save is last-write-wins


async def test_save_inside_aborted_transaction_is_rolled_back(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection)
    await store.save_position("P", 7)
    async with transaction(real_connection, commit=False) as uow:
        await store.save_position("P", 99, uow=uow)
        assert await store.get_position("P", uow=uow) == 99
    assert await store.get_position("P") == 7
    async with transaction(real_connection, commit=True) as uow:
        await store.save_position("P", 42, uow=uow)
    assert await store.get_position("P") == 42


@pytest.mark.parametrize("name,position", [("", 1), (None, 1), ("P", -1), ("P", 1.5), ("P", True), ("P", "3")])
async def test_bad_arguments_raise_and_write_nothing(mock_connection, name, position) -> None:
    store = MongoProjectionPositionStore(mock_connection)
    with pytest.raises(InvalidStoreArgument):
        await store.save_position(name, position)
    assert await mock_connection.db()[store.collection_name].count_documents({}) == 0


async def test_server_errors_become_position_store_errors(real_connection) -> None:
    store = MongoProjectionPositionStore(real_connection)
    await real_connection.db()[store.collection_name].insert_one({"_id": "P", "position": "text"})
    with pytest.raises(PositionStoreError, match="saving the position of 'P'"):
        await store._upsert("P", {"$inc": {"position": 1}}, None)


async def test_checkpoint_store_keeps_the_earlier_name_and_collection(real_connection) -> None:
    from cqrs_ddd_persistence_mongo import MongoCheckpointStore

    checkpoints = MongoCheckpointStore(real_connection)
    assert await checkpoints.get_position("orders") is None
    await checkpoints.save_position("orders", 42)
    assert await checkpoints.get_position("orders") == 42
    stored = await real_connection.db()["projection_checkpoints"].find_one({"_id": "orders"})
    assert stored["position"] == 42
