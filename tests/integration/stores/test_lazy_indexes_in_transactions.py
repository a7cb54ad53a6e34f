"""A store used for the first time inside a transaction that already wrote elsewhere:
its lazily created indexes must not make the transaction conflict with itself."""

from __future__ import annotations

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore, MongoSnapshotStore
from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork


async def test_first_use_inside_a_busy_transaction_commits(real_connection: MongoConnectionManager) -> None:
    positions = MongoProjectionPositionStore(real_connection)
    snapshots = MongoSnapshotStore(real_connection)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await real_connection.db().read_model.insert_one({"_id": 1}, session=uow.session)
        await positions.save_position("p", 7, uow=uow)
        await snapshots.save_snapshot("Order", "o-1", {"total": 1}, 3, uow=uow)
        await uow.commit()
    assert await positions.get_position("p") == 7
    assert (await snapshots.get_latest_snapshot("Order", "o-1"))["version"] == 3
    assert await real_connection.db().read_model.count_documents({}) == 1
