"""MongoSagaRepository on the real-wire server, both drivers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from cqrs_ddd_persistence_mongo.advanced.saga import SAGA_INDEXES, MongoSagaRepository
from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import SagaState, SagaStatus, utc_now
from cqrs_ddd_persistence_mongo.exceptions import InvalidStoreArgument, VersionMismatchError

from .conftest import assert_uses_index


class OrderFulfillmentSaga(SagaState):
    order_id: str
    payment_id: str | None = None
    shipment_id: str | None = None


def _saga(i: int, **fields) -> OrderFulfillmentSaga:
    return OrderFulfillmentSaga(id=f"saga-{i}", order_id=f"order-{i}", correlation_id=f"order-{i}", **fields)


async def _store(repo: MongoSagaRepository, sagas: list[OrderFulfillmentSaga]) -> None:
    """Save without touching updated_at (the finders look at stored timestamps)."""
    for saga in sagas:
        await repo.add(saga)


def test_is_a_repository() -> None:
    assert issubclass(MongoSagaRepository, MongoRepository)


async def test_add_get_and_optimistic_concurrency(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    saga = _saga(1)
    saga.record_step("reserve", sku="A")
    await repo.add(saga)
    first = await repo.get("saga-1")
    second = await repo.get("saga-1")
    assert first.step_history[0]["step"] == "reserve" and first.version == 1
    first.payment_id = "pay-1"
    await repo.add(first)
    second.shipment_id = "ship-1"
    with pytest.raises(VersionMismatchError):
        await repo.add(second)
    assert (await repo.get("saga-1")).payment_id == "pay-1"


async def test_concurrent_saves_of_one_version_let_exactly_one_win(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    await repo.add(_saga(1))
    copies = [await repo.get("saga-1") for _ in range(6)]
    for n, copy in enumerate(copies):
        copy.current_step = f"step-{n}"
    results = await asyncio.gather(*(repo.add(c) for c in copies), return_exceptions=True)
    assert results.count("saga-1") == 1  # add() returns the id of the one save that won
    assert all(isinstance(r, VersionMismatchError) for r in results if r != "saga-1")


async def test_find_by_correlation_id(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    old = _saga(1, created_at=utc_now() - timedelta(days=1), status=SagaStatus.COMPLETED)
    new = OrderFulfillmentSaga(id="saga-1b", order_id="order-1", correlation_id="order-1")
    await _store(repo, [old, new, _saga(2)])
    found = await repo.find_by_correlation_id(correlation_id="order-1", saga_type="OrderFulfillmentSaga")
    assert found.id == "saga-1b" and isinstance(found, OrderFulfillmentSaga)
    assert (await repo.find_by_correlation_id("order-2")).id == "saga-2"
    assert await repo.find_by_correlation_id("order-1", saga_type="OtherSaga") is None
    assert await repo.find_by_correlation_id("order-9") is None


async def test_find_stalled_sagas_oldest_first_across_statuses(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    now = utc_now()
    ages = {1: (SagaStatus.RUNNING, 30), 2: (SagaStatus.COMPENSATING, 50), 3: (SagaStatus.PENDING, 10),
            4: (SagaStatus.RUNNING, 1), 5: (SagaStatus.SUSPENDED, 90), 6: (SagaStatus.COMPLETED, 99),
            7: (SagaStatus.RUNNING, 70)}
    await _store(repo, [_saga(i, status=s, updated_at=now - timedelta(minutes=m)) for i, (s, m) in ages.items()])
    stalled = await repo.find_stalled_sagas(limit=10)
    assert [s.id for s in stalled] == ["saga-7", "saga-2", "saga-1", "saga-3"]
    assert [s.id for s in await repo.find_stalled_sagas(timedelta(minutes=40), limit=10)] == ["saga-7", "saga-2"]
    assert [s.id for s in await repo.find_stalled_sagas(stalled_for=20 * 60, limit=2)] == ["saga-7", "saga-2"]


async def test_find_suspended_and_expired_oldest_first(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    now = utc_now()
    sagas = []
    for i, (suspended_ago, timeout_in) in enumerate([(10, -1), (30, 60), (20, -5), (5, None)]):
        saga = _saga(i)
        saga.suspend("waiting", None if timeout_in is None else now + timedelta(minutes=timeout_in))
        saga.suspended_at = now - timedelta(minutes=suspended_ago)
        sagas.append(saga)
    sagas.append(_saga(9, timeout_at=now - timedelta(hours=1)))  # running: never "expired"
    await _store(repo, sagas)
    assert [s.id for s in await repo.find_suspended_sagas(limit=10)] == ["saga-1", "saga-2", "saga-0", "saga-3"]
    assert [s.id for s in await repo.find_suspended_sagas(limit=2)] == ["saga-1", "saga-2"]
    assert [s.id for s in await repo.find_expired_suspended_sagas(limit=10)] == ["saga-2", "saga-0"]
    later = await repo.find_expired_suspended_sagas(limit=10, now=now + timedelta(hours=2))
    assert [s.id for s in later] == ["saga-2", "saga-0", "saga-1"]
    # the seed's loop: resume/cancel and save
    expired = await repo.find_expired_suspended_sagas(limit=10)
    for saga in expired:
        saga.mark_as_cancelled("Timeout exceeded")
        await repo.add(saga)
    assert await repo.find_expired_suspended_sagas(limit=10) == []


async def test_finders_use_their_indexes(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    await _store(repo, [_saga(i) for i in range(3)])
    await repo.ensure_indexes()
    coll = repo.collection()
    now = utc_now()
    await assert_uses_index(coll, coll.find({"correlation_id": "order-1", "saga_type": "X"}).sort(
        [("created_at", -1), ("_id", -1)]), "saga_correlation")
    await assert_uses_index(coll, coll.find({"status": "running", "updated_at": {"$lt": now}}).sort(
        [("updated_at", 1)]), "saga_status_updated")
    await assert_uses_index(coll, coll.find({"status": "suspended"}).sort(
        [("suspended_at", 1), ("_id", 1)]), "saga_status_suspended")
    await assert_uses_index(coll, coll.find({"status": "suspended", "timeout_at": {"$lte": now}}).sort(
        [("timeout_at", 1), ("_id", 1)]), "saga_status_timeout")
    info = await coll.index_information()
    assert {spec["name"] for spec in SAGA_INDEXES} <= set(info)


async def test_add_in_unit_of_work(real_connection) -> None:
    repo = MongoSagaRepository(real_connection, OrderFulfillmentSaga)
    await repo.ensure_indexes()
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await repo.add(_saga(1), uow=uow)
        await uow.rollback()
    assert await repo.get("saga-1") is None
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await repo.add(_saga(1), uow=uow)
        await uow.commit()
    assert (await repo.find_by_correlation_id("order-1")).id == "saga-1"


async def test_bad_arguments(mock_connection) -> None:
    with pytest.raises(InvalidStoreArgument, match="saga_cls"):
        MongoSagaRepository(mock_connection, dict)  # type: ignore[arg-type]
    repo = MongoSagaRepository(mock_connection, OrderFulfillmentSaga)
    with pytest.raises(InvalidStoreArgument, match="stalled_for"):
        await repo.find_stalled_sagas(stalled_for=-1)
    with pytest.raises(InvalidStoreArgument, match="stalled_for"):
        await repo.find_stalled_sagas(stalled_for="5m")  # type: ignore[arg-type]
    with pytest.raises(InvalidStoreArgument, match="limit"):
        await repo.find_suspended_sagas(limit=0)
    with pytest.raises(InvalidStoreArgument, match="correlation_id"):
        await repo.find_by_correlation_id("")
