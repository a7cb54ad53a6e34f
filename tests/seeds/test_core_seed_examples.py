"""The repository and unit-of-work examples of the seeds (mongo-core-persistence.md,
mongo-persistence-overview.md), run as documented: real-wire server for the
transactional ones, mongomock-motor for the testing-fixture pattern."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mongomock_motor import AsyncMongoMockClient

from cqrs_ddd_persistence_mongo.connection import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.core import uow as uow_module
from cqrs_ddd_persistence_mongo.domain import AggregateRoot
from cqrs_ddd_persistence_mongo.exceptions import TransactionsNotSupported, VersionMismatchError

logger = logging.getLogger(__name__)


class Order(AggregateRoot):
    id: str
    customer_id: str
    total: float
    status: str = "pending"


class Payment(AggregateRoot):
    id: str
    order_id: str
    amount: float


def _repo(connection: MongoConnectionManager) -> MongoRepository[Order, str]:
    return MongoRepository(
        connection=connection,
        collection="orders",
        model_cls=Order,
        id_field="id",  # Maps to _id in MongoDB
    )


# --- mongo-core-persistence.md: MongoRepository usage ------------------------------------
async def test_repository_usage_with_unit_of_work(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    order_repo = _repo(connection)

    async with MongoUnitOfWork(connection=connection) as uow:
        order = Order(id="order-123", customer_id="customer-456", total=99.99, status="pending")
        await order_repo.add(order, uow=uow)
        await uow.commit()

    async with MongoUnitOfWork(connection=connection) as uow:
        order = await order_repo.get("order-123", uow=uow)
        assert order.status == "pending"


async def test_document_mapping(real_connection: MongoConnectionManager) -> None:
    repo = _repo(real_connection)
    entity = Order(id="order-123", customer_id="customer-456", total=99.99, status="pending", version=1)
    doc = repo._mapper.to_doc(entity)
    assert doc == {"_id": "order-123", "customer_id": "customer-456", "total": 99.99, "status": "pending", "_version": 1}
    assert repo._mapper.from_doc(doc) == entity


class OrderWithItems(AggregateRoot):
    id: str
    items: list[str] = []
    total: float = 0.0


class OrderRepository(MongoRepository[OrderWithItems, str]):
    def _mapper_to_doc(self, entity: OrderWithItems) -> dict[str, Any]:
        """Custom mapping with computed fields."""
        doc = self._mapper.to_doc(entity)
        doc["total_items"] = len(entity.items)
        doc["discounted_total"] = entity.total * 0.9  # 10% discount
        return doc

    def _mapper_from_doc(self, doc: dict[str, Any]) -> OrderWithItems:
        """Custom mapping with derived fields."""
        entity = self._mapper.from_doc(doc)
        entity._total_items = doc.get("total_items", 0)
        return entity


async def test_custom_field_mapping(real_connection: MongoConnectionManager) -> None:
    repo = OrderRepository(connection=real_connection, collection="orders", model_cls=OrderWithItems)
    await repo.add(OrderWithItems(id="o1", items=["a", "b", "c"], total=100.0))
    stored = await real_connection.db().orders.find_one({"_id": "o1"})
    assert stored["total_items"] == 3 and stored["discounted_total"] == 90.0
    assert (await repo.get("o1"))._total_items == 3


# --- MongoUnitOfWork: the two session patterns -------------------------------------------
async def test_pattern_1_client_managed_session(mongo_url: str) -> None:
    from motor.motor_asyncio import AsyncIOMotorClient

    from cqrs_ddd_persistence_mongo.core.uow import MongoUnitOfWork as SeedImport

    assert SeedImport is MongoUnitOfWork

    client = AsyncIOMotorClient(mongo_url)
    connection = MongoConnectionManager(client=client, database="seed_pattern_1")
    await connection.connect()
    order_repo = _repo(connection)
    order = Order(id="o1", customer_id="c1", total=5.0)
    try:
        session = await client.start_session()

        async with MongoUnitOfWork(session=session) as uow:
            await order_repo.add(order, uow=uow)
            await uow.commit()  # Commits transaction, keeps session open

        assert not session.has_ended
        await session.end_session()
        assert (await order_repo.get("o1")).version == 1
    finally:
        await client.drop_database("seed_pattern_1")
        client.close()


async def test_pattern_2_self_managed_session(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    order_repo = _repo(connection)
    order = Order(id="o1", customer_id="c1", total=5.0)

    async with MongoUnitOfWork(connection=connection) as uow:
        await order_repo.add(order, uow=uow)
        await uow.commit()  # Commits and closes session

    assert not uow.is_active  # the session ended with the block
    assert (await order_repo.get("o1")).total == 5.0


async def test_transaction_requirements(real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = real_connection
    monkeypatch.setattr(uow_module, "_warned", type(uow_module._warned)())

    async def standalone() -> bool:  # what a mongod without --replSet answers
        return False

    monkeypatch.setattr(connection, "supports_transactions", standalone)
    order_repo = _repo(connection)
    # BAD: Standalone (no transactions, raises error)
    with pytest.raises(TransactionsNotSupported):
        async with MongoUnitOfWork(connection=connection) as uow:
            await order_repo.add(Order(id="o1", customer_id="c", total=1.0), uow=uow)
    assert await order_repo.get("o1") is None

    # TESTING ONLY: Disable replica set check
    async with MongoUnitOfWork(connection=connection, require_replica_set=False) as uow:
        # Operations succeed but aren't transactional
        await order_repo.add(Order(id="o2", customer_id="c", total=1.0), uow=uow)
    assert await order_repo.get("o2") is not None


async def test_error_handling_aborts(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    order_repo = _repo(connection)
    payment_repo: MongoRepository[Payment, str] = MongoRepository(connection, "payments", Payment)
    order = Order(id="o1", customer_id="c", total=1.0)
    payment = Payment(id="p1", order_id="o1", amount=float("nan"))
    await real_connection.db().create_collection("payments")
    await real_connection.db().payments.create_index("order_id", unique=True)
    await real_connection.db().payments.insert_one({"_id": "other", "order_id": "o1", "amount": 1.0, "_version": 1})

    with pytest.raises(Exception) as info:
        async with MongoUnitOfWork(connection=connection) as uow:
            try:
                await order_repo.add(order, uow=uow)
                await payment_repo.add(payment, uow=uow)  # violates the unique index
                await uow.commit()  # Both succeed or both fail
            except Exception as e:
                # Automatic abort on exception
                logger.error(f"Transaction failed: {e}")
                raise
    assert "unique index" in str(info.value)
    assert await order_repo.get("o1") is None


async def test_standalone_mode_without_uow(real_connection: MongoConnectionManager) -> None:
    order_repo = _repo(real_connection)
    await order_repo.add(Order(id="order-123", customer_id="c", total=1.0))  # Individual operations succeed
    order = await order_repo.get("order-123", uow=None)  # No UoW needed
    assert order.version == 1
    await order_repo.add(order)
    assert order.version == 2


# --- Performance: batch operations in one transaction ------------------------------------
async def test_batch_insert_in_single_transaction(real_connection: MongoConnectionManager) -> None:
    repo = _repo(real_connection)
    orders = [Order(id=f"o{i}", customer_id="c", total=i) for i in range(20)]
    async with MongoUnitOfWork(connection=real_connection) as uow:
        for order in orders:
            await repo.add(order, uow=uow)
        await uow.commit()  # Single transaction
    assert len(await repo.list_all([o.id for o in orders])) == 20


# --- overview: FastAPI dependency, optimistic concurrency ----------------------------------
async def test_fastapi_style_dependency(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    order_repo = _repo(connection)

    async def get_uow() -> AsyncIterator[MongoUnitOfWork]:
        async with MongoUnitOfWork(connection=connection) as uow:
            yield uow

    async def create_order(order_data: dict[str, Any], uow: MongoUnitOfWork) -> dict[str, Any]:
        order = Order(**order_data)
        await order_repo.add(order, uow=uow)
        await uow.commit()
        return {"id": order.id}

    dependency = get_uow()
    uow = await dependency.__anext__()
    assert await create_order({"id": "o1", "customer_id": "c", "total": 3.0}, uow) == {"id": "o1"}
    await dependency.aclose()
    assert (await order_repo.get("o1")).total == 3.0


async def test_optimistic_concurrency_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    repo = _repo(connection)
    await repo.add(Order(id="123", customer_id="c", total=1.0))
    # the concurrent transaction loaded version 1 before the first one committed
    async with MongoUnitOfWork(connection=connection) as uow:
        stale = await repo.get("123", uow=uow)

    # First transaction
    async with MongoUnitOfWork(connection=connection) as uow:
        order = await repo.get("123", uow=uow)
        order.status = "shipped"
        await repo.add(order, uow=uow)  # version = 1 -> 2
        await uow.commit()
    assert order.version == 2

    # Concurrent transaction (fails)
    async with MongoUnitOfWork(connection=connection) as uow:
        stale.status = "delivered"
        with pytest.raises(VersionMismatchError):
            await repo.add(stale, uow=uow)  # Version mismatch
    assert (await repo.get("123")).status == "shipped"


# --- Testing section: mongomock fixtures, as written in the seed ----------------------------
@pytest.fixture
async def connection() -> AsyncIterator[MongoConnectionManager]:
    """Mock MongoDB connection for testing."""
    connection = MongoConnectionManager(
        client=AsyncMongoMockClient(),
        database="test_db",
    )
    await connection.connect()
    yield connection
    await connection.disconnect()


@pytest.fixture
async def uow(connection: MongoConnectionManager) -> AsyncIterator[MongoUnitOfWork]:
    async with MongoUnitOfWork(
        connection=connection,
        require_replica_set=False,  # Mock doesn't support replica sets
    ) as uow:
        yield uow


@pytest.fixture
def order_repo(connection: MongoConnectionManager) -> MongoRepository[Order, str]:
    return _repo(connection)


async def test_repository_add(uow: MongoUnitOfWork, order_repo: MongoRepository[Order, str]) -> None:
    """Test adding entity to repository."""
    order = Order(id="order-1", customer_id="cust-1", total=99.99)
    await order_repo.add(order, uow=uow)
    await uow.commit()

    # Verify
    loaded = await order_repo.get("order-1", uow=uow)
    assert loaded.id == "order-1"
    assert loaded.total == 99.99


async def test_create_order(uow: MongoUnitOfWork, order_repo: MongoRepository[Order, str]) -> None:
    """Test order creation (overview's variant: read back without a unit of work)."""
    order = Order(id="123", customer_id="456", total=99.99)
    await order_repo.add(order, uow=uow)
    await uow.commit()

    loaded = await order_repo.get("123")
    assert loaded.id == "123"
    assert loaded.total == 99.99


def test_original_extras_are_declared() -> None:
    """'pip install cqrs-ddd-persistence-mongo[core,advanced]' (the original layout) resolves."""
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert extras["core"] == [] and extras["advanced"] == []
