"""MongoProjectionStore under the original library's API: pydantic documents, ``client=``,
``get`` / ``get_batch``, ``find(offset=)``, and the version-conflict error of a transaction."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from bson import Decimal128
from pydantic import BaseModel
from pymongo.errors import DuplicateKeyError

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionStore
from cqrs_ddd_persistence_mongo.exceptions import (
    InvalidDocument,
    ProjectionError,
    ProjectionVersionConflict,
    UnsafeKeyError,
    VersionMismatchError,
)

from .transactions import TransactionScope

pytestmark = pytest.mark.integration
C = "summaries"


class Line(BaseModel):
    sku: str
    price: Decimal


class OrderSummary(BaseModel):
    id: str
    customer: uuid.UUID
    total: Decimal
    placed_at: datetime
    lines: list[Line] = []


@pytest.fixture
def store(real_connection: MongoConnectionManager) -> MongoProjectionStore:
    return MongoProjectionStore(real_connection)


def summary(i: int) -> OrderSummary:
    return OrderSummary(
        id=f"o{i}",
        customer=uuid.UUID(int=i),
        total=Decimal("9.99"),
        placed_at=datetime(2024, 1, 1, tzinfo=timezone.utc),
        lines=[Line(sku="a", price=Decimal("1.50"))],
    )


async def test_upsert_accepts_a_pydantic_model(store: MongoProjectionStore) -> None:
    assert await store.upsert(C, "o1", summary(1), expected_version=0)
    doc = await store.find_one(C, "o1")
    assert doc["customer"] == uuid.UUID(int=1)
    assert doc["total"] == Decimal128("9.99") and doc["lines"] == [{"sku": "a", "price": Decimal128("1.50")}]
    assert doc["_version"] == 1
    with pytest.raises(InvalidDocument, match="same document"):
        await store.upsert(C, "other", summary(1))


async def test_bulk_upsert_accepts_pydantic_models(store: MongoProjectionStore) -> None:
    result = await store.bulk_upsert(C, [summary(i) for i in range(3)] + [{"id": "o9", "total": 1}])
    assert result.inserted == 4
    assert (await store.find_one(C, "o2"))["customer"] == uuid.UUID(int=2)
    with pytest.raises(InvalidDocument, match=r"docs\[1\]"):
        await store.bulk_upsert(C, [summary(5), object()])  # type: ignore[list-item]
    assert await store.find_one(C, "o5") is None


async def test_store_built_from_a_client_and_database(real_connection: MongoConnectionManager) -> None:
    store = MongoProjectionStore(client=real_connection.client, database=real_connection.database_name)
    await store.upsert(C, "c1", {"n": 1})
    assert (await MongoProjectionStore(real_connection).find_one(C, "c1"))["n"] == 1
    with pytest.raises(ProjectionError, match="exactly one of"):
        MongoProjectionStore()
    with pytest.raises(ProjectionError, match="exactly one of"):
        MongoProjectionStore(real_connection, client=real_connection.client)


async def test_get_and_get_batch(store: MongoProjectionStore) -> None:
    await store.bulk_upsert(C, [{"id": f"k{i}", "n": i} for i in range(5)])
    await store.upsert(C, {"b": 2, "a": 1}, {"n": 99})
    assert (await store.get(C, "k1"))["n"] == 1
    assert await store.get(C, "missing") is None
    batch = await store.get_batch(C, ["k3", "missing", "k1", "k3", {"a": 1, "b": 2}])
    assert [d["n"] for d in batch] == [3, 1, 99]
    assert await store.get_batch(C, []) == []
    with pytest.raises(UnsafeKeyError):
        await store.get_batch(C, [{"$ne": None}])
    with pytest.raises(ProjectionError, match="list of keys"):
        await store.get_batch(C, "k1")


async def test_get_batch_reads_more_keys_than_one_chunk(store: MongoProjectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from cqrs_ddd_persistence_mongo.advanced import projection_store as module

    monkeypatch.setattr(module, "GET_BATCH_CHUNK", 3)
    await store.bulk_upsert(C, [{"id": i, "n": i} for i in range(10)])
    assert [d["n"] for d in await store.get_batch(C, list(range(9, -1, -1)))] == list(range(9, -1, -1))


async def test_find_accepts_offset(store: MongoProjectionStore) -> None:
    await store.bulk_upsert(C, [{"id": f"k{i}", "n": i} for i in range(6)])
    page = await store.find(C, sort=[("n", 1)], limit=2, offset=2)
    assert [d["n"] for d in page] == [2, 3]
    assert [d["n"] for d in await store.find(C, sort=[("n", 1)], skip=4, offset=4)] == [4, 5]
    with pytest.raises(ProjectionError, match="only one"):
        await store.find(C, skip=1, offset=2)


async def test_conflict_inside_a_transaction_is_the_version_conflict_error(
    real_connection: MongoConnectionManager, store: MongoProjectionStore
) -> None:
    if not await real_connection.supports_transactions():
        pytest.skip("needs transactions")
    await store.upsert(C, "o1", {"status": "a", "_version": 1})
    async with TransactionScope(real_connection) as uow:
        read = await store.find_one(C, "o1", uow=uow)
        await store.upsert(C, "o1", {"status": "rival", "_version": 2}, expected_version=1)
        with pytest.raises(ProjectionVersionConflict) as caught:
            await store.upsert(C, "o1", {**read, "status": "b", "_version": 2}, expected_version=1, uow=uow)
    error = caught.value
    assert isinstance(error, VersionMismatchError) and isinstance(error, DuplicateKeyError)
    assert not isinstance(error, ProjectionError)
    assert error.code == 11000 and error.transient
    assert (await store.find_one(C, "o1"))["status"] == "rival"


async def test_stale_version_outside_a_transaction_is_the_same_error(store: MongoProjectionStore) -> None:
    await store.upsert(C, "o1", {"_version": 3})
    with pytest.raises(ProjectionVersionConflict) as caught:
        await store.upsert(C, "o1", {"status": "late"}, expected_version=2)
    assert (caught.value.expected, caught.value.actual) == (2, 3)
    assert not caught.value.transient
