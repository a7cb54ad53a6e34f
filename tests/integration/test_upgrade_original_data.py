"""Data written by the original library, in the shapes its documentation shows, on the
real-wire server: the stores refuse what they would misread, reads write nothing, and
``upgrade_original_data`` upgrades it once, idempotently, saying what it changed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from bson import ObjectId

from cqrs_ddd_persistence_mongo import (
    InvalidStoreArgument,
    MongoCheckpointStore,
    MongoConnectionManager,
    MongoOutboxStorage,
    MongoProjectionPositionStore,
    PositionStoreError,
    upgrade_original_data,
)

NAME = "OrderSummaryProjection"


async def _documents(connection: MongoConnectionManager, collection: str) -> list[dict[str, Any]]:
    return [doc async for doc in connection.db()[collection].find({}).sort("_id", 1)]


async def _seed_position(connection: MongoConnectionManager, store: MongoProjectionPositionStore, position: int) -> Any:
    """A checkpoint as the original library stored it, under its unique projection_name index."""
    await store.ensure_indexes()
    original_id = ObjectId()
    await connection.db()[store.collection_name].insert_one(
        {"_id": original_id, "projection_name": NAME, "position": position,
         "updated_at": datetime(2024, 1, 1, tzinfo=timezone.utc)}
    )
    return original_id


@pytest.mark.parametrize("store_cls", [MongoProjectionPositionStore, MongoCheckpointStore])
async def test_an_original_checkpoint_is_refused_until_upgraded_then_kept(
    real_connection: MongoConnectionManager, store_cls: type[MongoProjectionPositionStore]
) -> None:
    store = store_cls(real_connection)
    other = MongoProjectionPositionStore(real_connection, collection="other_positions")
    original_id = await _seed_position(real_connection, store, 5000)
    await other.save_position("Mine", 7)  # written by this package: never touched
    before = await _documents(real_connection, store.collection_name)

    with pytest.raises(PositionStoreError, match=r"original library.*upgrade_original_data"):
        await store.get_position(NAME)
    with pytest.raises(PositionStoreError, match=r"original library.*upgrade_original_data"):
        await store.save_position(NAME, 5001)
    assert await _documents(real_connection, store.collection_name) == before  # nothing written

    dry = await upgrade_original_data(
        real_connection, position_collections=[store.collection_name, "other_positions"], dry_run=True
    )
    assert dry.positions_rekeyed[store.collection_name] == [NAME] and dry.changed
    assert await _documents(real_connection, store.collection_name) == before

    report = await upgrade_original_data(real_connection, position_collections=[store.collection_name, "other_positions"])
    assert report.positions_rekeyed == {store.collection_name: [NAME], "other_positions": []}
    assert report.conflicts == [] and not report.dry_run
    assert f"re-keyed 1 position(s) in '{store.collection_name}'" in str(report)
    [doc] = await _documents(real_connection, store.collection_name)
    assert doc["_id"] == NAME and doc["position"] == 5000 and doc["_id"] != original_id
    assert doc["updated_at"].replace(tzinfo=timezone.utc) == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert await store.get_position(NAME) == 5000
    assert await store.save_position(NAME, 5001) == 5001
    assert await other.get_position("Mine") == 7

    again = await upgrade_original_data(real_connection, position_collections=[store.collection_name])
    assert not again.changed and again.conflicts == []


async def test_a_checkpoint_in_both_shapes_is_a_conflict_left_alone(real_connection: MongoConnectionManager) -> None:
    collection = real_connection.db()["projection_positions"]  # no unique index: both shapes can exist
    await collection.insert_many([
        {"_id": ObjectId(), "projection_name": NAME, "position": 10},
        {"_id": NAME, "projection_name": NAME, "position": 12},
    ])
    before = await _documents(real_connection, "projection_positions")
    report = await upgrade_original_data(real_connection, outbox_collection=None)
    assert not report.changed
    [conflict] = report.conflicts
    assert NAME in conflict and "position 10" in conflict and "position 12" in conflict
    assert await _documents(real_connection, "projection_positions") == before


async def test_original_outbox_messages_are_scheduled_once(real_connection: MongoConnectionManager) -> None:
    now = datetime.now(timezone.utc)
    created = now - timedelta(hours=1)
    outbox = MongoOutboxStorage(real_connection)

    def original(message_id: str, status: str, **extra: Any) -> dict[str, Any]:
        return {"_id": message_id, "event_type": "OrderShipped", "payload": {"order_id": "order-456"},
                "status": status, "retry_count": 0, "error": None, "created_at": created,
                "published_at": None, **extra}

    await real_connection.db().outbox.insert_many([
        original("pending", "pending"),
        original("failed", "failed", retry_count=2, error="broker down"),
        original("published", "published", published_at=now),
        {**original("undated", "pending"), "created_at": None},
    ])
    assert await outbox.get_pending() == []  # the original shape is not due: the upgrade fixes it
    before = await _documents(real_connection, "outbox")

    dry = await upgrade_original_data(real_connection, dry_run=True)
    assert dry.outbox_messages_scheduled == 3 and await _documents(real_connection, "outbox") == before

    report = await upgrade_original_data(real_connection)
    assert report.outbox_messages_scheduled == 3 and "scheduled 3 outbox message(s)" in str(report)
    pending = await outbox.get_pending()
    assert sorted(m.message_id for m in pending) == ["failed", "pending", "undated"]
    due = {m.message_id: m.next_attempt_at for m in pending}
    assert due["pending"] is not None and due["pending"].replace(tzinfo=timezone.utc) == created.replace(microsecond=created.microsecond // 1000 * 1000)
    assert (await outbox.get_message("published")).next_attempt_at is None  # type: ignore[union-attr]
    assert (await upgrade_original_data(real_connection)).outbox_messages_scheduled == 0


async def test_a_single_collection_name_is_refused(real_connection: MongoConnectionManager) -> None:
    with pytest.raises(InvalidStoreArgument, match=r"\['projection_positions'\]"):
        await upgrade_original_data(real_connection, position_collections="projection_positions")


async def test_without_transactions_each_move_is_logged_first(
    real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = MongoProjectionPositionStore(real_connection)
    await _seed_position(real_connection, store, 42)

    async def no_transactions() -> bool:
        return False

    monkeypatch.setattr(real_connection, "supports_transactions", no_transactions)
    with caplog.at_level("WARNING", logger="cqrs_ddd_persistence_mongo.advanced.position_store"):
        report = await upgrade_original_data(real_connection, outbox_collection=None)
    assert report.positions_rekeyed["projection_positions"] == [NAME]
    assert f"'{NAME}'" in caplog.records[0].getMessage() and "42" in caplog.records[0].getMessage()
    assert await store.get_position(NAME) == 42
