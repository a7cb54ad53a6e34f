"""The seeds' MongoProjectionStore examples (mongo-advanced-persistence.md, overview), run as written.

Deviations, each forced by the spec: the database is the test's fresh one instead of "myapp".
The retry loops run as written (the Mongo seed catches pymongo's ``DuplicateKeyError``, the
SQL seed ``OptimisticConcurrencyError``); a concurrent writer is slipped in between their
``find_one(uow=)`` and ``upsert(expected_version=..., uow=)`` on the first attempt, so the
first attempt really conflicts inside its transaction. ``MongoUnitOfWork`` comes from
``cqrs_ddd_persistence_mongo.core`` when that module is present, else a transaction scope on
the same driver adapter.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo.errors import DuplicateKeyError

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionStore
from cqrs_ddd_persistence_mongo.exceptions import OptimisticConcurrencyError, VersionMismatchError
from cqrs_ddd_persistence_mongo.indexes import ensure_indexes

from integration.transactions import TransactionScope  # tests/ is on sys.path (rootdir packages)

try:
    from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork  # type: ignore[attr-defined]
except ImportError:  # built on another branch
    MongoUnitOfWork = TransactionScope  # type: ignore[misc,assignment]

pytestmark = pytest.mark.integration


@pytest.fixture
async def connection(real_connection: MongoConnectionManager) -> MongoConnectionManager:
    if not await real_connection.supports_transactions():
        pytest.skip("the seed examples run inside transactions")
    await ensure_indexes(real_connection.db()["order_summaries"], [("status", 1), ("created_at", -1)])
    return real_connection


@pytest.fixture
def projection_store(connection: MongoConnectionManager) -> MongoProjectionStore:
    return MongoProjectionStore(
        connection=connection,
        database=connection.database_name,
        id_field="id",  # Custom ID field (maps to _id in MongoDB)
    )


async def test_usage(connection: MongoConnectionManager, projection_store: MongoProjectionStore) -> None:
    async with MongoUnitOfWork(connection=connection) as uow:
        doc = {
            "id": "order-123",
            "customer_name": "John Doe",
            "total_amount": 99.99,
            "item_count": 3,
            "status": "pending",
            "created_at": datetime.now(timezone.utc),
            "_version": 1,
            "_last_event_id": "event-456",
        }
        await projection_store.upsert(collection="order_summaries", doc_id="order-123", doc=doc, uow=uow)
        await uow.commit()

    projection = await projection_store.find_one(collection="order_summaries", doc_id="order-123")
    assert projection["customer_name"] == "John Doe"

    projections = await projection_store.find(
        collection="order_summaries",
        filter={"status": "pending"},
        sort=[("created_at", -1)],
        limit=10,
    )
    assert [p["id"] for p in projections] == ["order-123"]

    async with MongoUnitOfWork(connection=connection) as uow:
        docs = [{"id": f"order-{i}", "customer_name": f"Customer {i}", "status": "new"} for i in range(100)]
        await projection_store.bulk_upsert(collection="order_summaries", docs=docs, id_field="id", uow=uow)
        await uow.commit()
    assert await projection_store.count("order_summaries") == 101

    await projection_store.delete(collection="order_summaries", doc_id="order-123")
    assert await projection_store.find_one(collection="order_summaries", doc_id="order-123") is None


async def test_idempotent_event_processing(connection: MongoConnectionManager, projection_store: MongoProjectionStore) -> None:
    handled: list[str] = []

    async def handle_order_created(event: Any, uow: Any = None) -> None:
        existing = await projection_store.find_one(collection="order_summaries", doc_id=event.order_id)
        if existing and existing.get("_last_event_id") == event.event_id:
            return
        doc = {
            "id": event.order_id,
            "customer_name": event.customer_name,
            "_version": (existing.get("_version", 0) + 1) if existing else 1,
            "_last_event_id": event.event_id,
        }
        await projection_store.upsert(collection="order_summaries", doc_id=event.order_id, doc=doc, uow=uow)
        handled.append(event.event_id)

    event = SimpleNamespace(order_id="o-1", customer_name="Ann", event_id="e-1")
    await handle_order_created(event)
    await handle_order_created(event)  # replay
    assert handled == ["e-1"]
    assert (await projection_store.find_one("order_summaries", "o-1"))["_version"] == 1


async def test_version_based_concurrency(connection: MongoConnectionManager, projection_store: MongoProjectionStore) -> None:
    await projection_store.upsert("order_summaries", "order-9", {"id": "order-9", "status": "pending", "_version": 1})

    async def update_projection(order_id: str, new_status: str) -> None:
        async with MongoUnitOfWork(connection=connection) as uow:
            projection = await projection_store.find_one(collection="order_summaries", doc_id=order_id, uow=uow)
            if not projection:
                raise ValueError(f"Order {order_id} not found")
            updated_doc = {**projection, "status": new_status, "_version": projection["_version"] + 1}
            await projection_store.upsert(
                collection="order_summaries",
                doc_id=order_id,
                doc=updated_doc,
                expected_version=projection["_version"],
                uow=uow,
            )
            await uow.commit()

    await update_projection("order-9", "shipped")
    stored = await projection_store.find_one("order_summaries", "order-9")
    assert (stored["status"], stored["_version"]) == ("shipped", 2)

    stale = {**stored, "status": "lost", "_version": 2}
    with pytest.raises(VersionMismatchError):
        await projection_store.upsert("order_summaries", "order-9", stale, expected_version=1)

    assert (await projection_store.find_one("order_summaries", "order-9"))["_version"] == 2


def interfere_once(projection_store: MongoProjectionStore, connection: MongoConnectionManager) -> list[int]:
    """After the next ``find_one(uow=...)``, another writer bumps the document's version
    outside that transaction: the caller's guarded upsert then conflicts."""
    rival = MongoProjectionStore(connection=connection)
    read = projection_store.find_one
    attempts: list[int] = []

    async def find_one(*args: Any, **kwargs: Any) -> Any:
        doc = await read(*args, **kwargs)
        attempts.append(doc["_version"])
        if len(attempts) == 1:
            await rival.upsert("order_summaries", doc["id"], {"status": "rival", "_version": doc["_version"] + 1},
                               expected_version=doc["_version"])
        return doc

    projection_store.find_one = find_one  # type: ignore[method-assign]
    return attempts


async def test_version_conflict_retry_as_written(connection: MongoConnectionManager, projection_store: MongoProjectionStore) -> None:
    """mongo-advanced-persistence.md, Error Handling / Version Conflict: catches DuplicateKeyError."""
    await projection_store.upsert("order_summaries", "order-9", {"id": "order-9", "status": "pending", "_version": 1})
    attempts = interfere_once(projection_store, connection)

    async def update_with_retry(order_id: str, new_status: str, max_retries: int = 3):
        """Retry on version conflict."""
        for attempt in range(max_retries):
            async with MongoUnitOfWork(connection=connection) as uow:
                try:
                    projection = await projection_store.find_one(
                        collection="order_summaries",
                        doc_id=order_id,
                        uow=uow,
                    )

                    updated_doc = {
                        **projection,
                        "status": new_status,
                        "_version": projection["_version"] + 1,
                    }

                    await projection_store.upsert(
                        collection="order_summaries",
                        doc_id=order_id,
                        doc=updated_doc,
                        expected_version=projection["_version"],
                        uow=uow,
                    )

                    await uow.commit()
                    return

                except DuplicateKeyError:
                    if attempt == max_retries - 1:
                        raise
                    await asyncio.sleep(0.1 * (2 ** attempt))  # Exponential backoff

    await update_with_retry("order-9", "delivered")
    assert attempts == [1, 2]  # the first attempt conflicted, the second read the rival's write
    stored = await projection_store.find_one("order_summaries", "order-9")
    assert (stored["status"], stored["_version"]) == ("delivered", 3)


async def test_sql_seed_retry_catches_optimistic_concurrency_error(
    connection: MongoConnectionManager, projection_store: MongoProjectionStore
) -> None:
    """sqlalchemy-advanced-persistence.md, Projection Version Conflict, in Mongo form."""
    await projection_store.upsert("order_summaries", "order-7", {"id": "order-7", "status": "pending", "_version": 1})
    attempts = interfere_once(projection_store, connection)

    async def update_with_retry(order_id: str, new_status: str, max_retries: int = 3):
        """Retry on version conflict."""
        for attempt in range(max_retries):
            async with MongoUnitOfWork(connection=connection) as uow:
                try:
                    projection = await projection_store.find_one(
                        collection="order_summaries",
                        doc_id=order_id,
                        uow=uow,
                    )

                    updated_doc = {
                        **projection,
                        "status": new_status,
                        "_version": projection["_version"] + 1,
                    }

                    await projection_store.upsert(
                        collection="order_summaries",
                        doc_id=order_id,
                        doc=updated_doc,
                        expected_version=projection["_version"],
                        uow=uow,
                    )

                    await uow.commit()
                    return

                except OptimisticConcurrencyError:
                    if attempt == max_retries - 1:
                        raise
                    await asyncio.sleep(0.1 * (2 ** attempt))  # Exponential backoff

    await update_with_retry("order-7", "delivered")
    assert attempts == [1, 2]
    assert (await projection_store.find_one("order_summaries", "order-7"))["_version"] == 3


async def test_composite_primary_keys(projection_store: MongoProjectionStore) -> None:
    doc = {
        "customer_id": "cust-123",
        "product_id": "prod-456",
        "purchase_date": "2024-01-01",
        "quantity": 5,
        "_version": 1,
    }
    await projection_store.upsert(
        collection="customer_purchases",
        doc_id={"customer_id": "cust-123", "product_id": "prod-456"},
        doc=doc,
    )
    found = await projection_store.find_one("customer_purchases", {"product_id": "prod-456", "customer_id": "cust-123"})
    assert found["quantity"] == 5


async def test_query_support(projection_store: MongoProjectionStore) -> None:
    now = datetime.now(timezone.utc)
    await projection_store.bulk_upsert(
        "order_summaries",
        [
            {"id": f"o{i}", "customer_id": f"c{i % 3}", "status": ["pending", "processing", "completed"][i % 3],
             "total_amount": 50 * i, "created_at": now - timedelta(days=i)}
            for i in range(12)
        ],
    )
    projections = await projection_store.find(
        collection="order_summaries",
        filter={
            "status": {"$in": ["pending", "processing"]},
            "total_amount": {"$gte": 100},
            "created_at": {"$gte": datetime.now(timezone.utc) - timedelta(days=7)},
        },
        sort=[("total_amount", -1), ("created_at", -1)],
        limit=20,
    )
    assert [p["id"] for p in projections] == ["o6", "o4", "o3"]  # o7 is just over 7 days old

    pipeline = [
        {"$match": {"status": "completed"}},
        {"$group": {"_id": "$customer_id", "total_spent": {"$sum": "$total_amount"}, "order_count": {"$sum": 1}}},
        {"$sort": {"total_spent": -1}},
        {"$limit": 10},
    ]
    results = await projection_store.aggregate(collection="order_summaries", pipeline=pipeline)
    assert results == [{"_id": "c2", "total_spent": 50 * (2 + 5 + 8 + 11), "order_count": 4}]


async def test_overview_example_and_batch_updates(connection: MongoConnectionManager) -> None:
    projection_store = MongoProjectionStore(connection=connection)
    await projection_store.upsert(
        collection="order_summaries",
        doc_id="123",
        doc={"order_id": "123", "total": 99.99, "_version": 1},
    )
    summary = await projection_store.find_one(collection="order_summaries", doc_id="123")
    assert summary["total"] == 99.99 and summary["id"] == "123"

    docs = [{"id": f"b{i}", "n": i} for i in range(50)]
    async with MongoUnitOfWork(connection=connection) as uow:
        await projection_store.bulk_upsert("order_summaries", docs, "id", uow=uow)
        await uow.commit()
    assert await projection_store.count("order_summaries") == 51
