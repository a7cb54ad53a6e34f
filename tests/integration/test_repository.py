"""MongoRepository on the real-wire server with both async drivers: optimistic
concurrency (stale saves, concurrent units of work, concurrent inserts), atomicity
across collections, streaming list_all, add_many as one bulk write."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import BaseModel
from pymongo import monitoring

from cqrs_ddd_persistence_mongo import (
    DuplicateEntityError,
    MongoConnectionManager,
    MongoQueryError,
    MongoUnitOfWorkError,
    OptimisticConcurrencyError,
    VersionMismatchError,
)
from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.core.entity_stream import ResultTooLarge
from cqrs_ddd_persistence_mongo.domain import AggregateRoot
from cqrs_ddd_persistence_mongo.specifications import SpecificationBuilder


class Order(AggregateRoot):
    id: str
    customer_id: str = "c1"
    total: float = 0.0
    status: str = "pending"


class Payment(AggregateRoot):
    id: str
    amount: float = 0.0


class Ticket(AggregateRoot):
    id: uuid.UUID
    title: str = ""


class Tag(BaseModel):  # no version field: plain upserts
    id: str
    label: str


async def _repos(conn: MongoConnectionManager) -> tuple[MongoRepository[Order, str], MongoRepository[Payment, str]]:
    db = conn.db()
    await db.create_collection("orders")
    await db.create_collection("payments")
    return MongoRepository(conn, "orders", Order), MongoRepository(conn, "payments", Payment)


async def test_save_load_save_save_versions(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    order = Order(id="o1", total=10)
    await orders.add(order)
    assert order.version == 1
    loaded = await orders.get("o1")
    assert loaded is not None and loaded.version == 1
    loaded.status = "paid"
    await orders.add(loaded)
    assert loaded.version == 2
    loaded.status = "shipped"
    await orders.add(loaded)
    assert loaded.version == 3
    raw = await real_connection.db().orders.find_one({"_id": "o1"})
    assert raw["_version"] == 3 and raw["status"] == "shipped"
    assert "version" not in raw and "id" not in raw
    assert (await orders.get("o1")) == loaded


async def test_same_object_saved_repeatedly_in_one_uow(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    order = Order(id="o1")
    async with MongoUnitOfWork(connection=real_connection) as uow:
        for expected in (1, 2, 3):
            await orders.add(order, uow=uow)
            assert order.version == expected
        assert (await orders.get("o1", uow=uow)).version == 3  # reads its own writes
        assert await orders.get("o1") is None  # invisible outside before commit
        await uow.commit()
    assert (await orders.get("o1")).version == 3


async def test_stale_save_names_versions_and_writes_nothing(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="o1", total=1))
    first, second = await orders.get("o1"), await orders.get("o1")
    first.total = 2
    await orders.add(first)
    second.total = 3
    with pytest.raises(OptimisticConcurrencyError) as info:
        await orders.add(second)
    err = info.value
    assert isinstance(err, VersionMismatchError)
    assert (err.entity_id, err.expected, err.actual, err.collection) == ("o1", 1, 2, "orders")
    assert "expected version 1" in str(err) and "found 2" in str(err)
    assert second.version == 1  # unchanged: the caller may reload and retry
    stored = await orders.get("o1")
    assert (stored.total, stored.version) == (2, 2)


async def test_save_of_deleted_aggregate_conflicts(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    order = Order(id="o1")
    await orders.add(order)
    assert await orders.delete("o1") == "o1"
    with pytest.raises(VersionMismatchError) as info:
        await orders.add(order)
    assert info.value.actual is None
    assert await orders.get("o1") is None  # not resurrected


async def test_two_units_of_work_exactly_one_commits(real_connection: MongoConnectionManager) -> None:
    """Interleaved: both load v1, A saves (uncommitted), B saves -> conflict, A commits."""
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="o1", status="new"))
    async with MongoUnitOfWork(connection=real_connection) as a, MongoUnitOfWork(connection=real_connection) as b:
        in_a = await orders.get("o1", uow=a)
        in_b = await orders.get("o1", uow=b)
        in_a.status = "by-a"
        in_b.status = "by-b"
        await orders.add(in_a, uow=a)
        with pytest.raises(VersionMismatchError) as info:
            await orders.add(in_b, uow=b)
        assert info.value.expected == 1
        assert in_b.version == 1
        await a.commit()
    stored = await real_connection.db().orders.find_one({"_id": "o1"})
    assert (stored["status"], stored["_version"]) == ("by-a", 2)


async def test_two_units_of_work_second_is_stale_after_first_commit(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="o1", status="new"))

    async def worker(name: str, go: asyncio.Event, loaded: asyncio.Event) -> str:
        async with MongoUnitOfWork(connection=real_connection) as uow:
            order = await orders.get("o1", uow=uow)
            loaded.set()
            await go.wait()
            order.status = name
            try:
                await orders.add(order, uow=uow)
                await uow.commit()
                return "committed"
            except VersionMismatchError as exc:
                return f"conflict {exc.expected}->{exc.actual}"

    go_a, go_b, loaded_a, loaded_b = (asyncio.Event() for _ in range(4))
    task_a = asyncio.create_task(worker("a", go_a, loaded_a))
    task_b = asyncio.create_task(worker("b", go_b, loaded_b))
    await loaded_a.wait()
    await loaded_b.wait()
    go_a.set()
    assert await task_a == "committed"
    go_b.set()
    assert await task_b == "conflict 1->2"
    stored = await real_connection.db().orders.find_one({"_id": "o1"})
    assert (stored["status"], stored["_version"]) == ("a", 2)


async def test_exception_leaves_neither_collection_written(real_connection: MongoConnectionManager) -> None:
    orders, payments = await _repos(real_connection)
    order, payment = Order(id="o1"), Payment(id="p1", amount=5)
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await orders.add(order, uow=uow)
            await payments.add(payment, uow=uow)
            raise RuntimeError("payment declined")
    assert await orders.get("o1") is None
    assert await payments.get("p1") is None
    # versions restored by the rollback: the same objects insert cleanly afterwards
    assert (order.version, payment.version) == (0, 0)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await orders.add(order, uow=uow)
        await payments.add(payment, uow=uow)
        await uow.commit()
    assert (await orders.get("o1")).version == 1
    assert (await payments.get("p1")).amount == 5


async def test_concurrent_inserts_in_units_of_work(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    async with MongoUnitOfWork(connection=real_connection) as a, MongoUnitOfWork(connection=real_connection) as b:
        await orders.add(Order(id="new", status="a"), uow=a)
        with pytest.raises(DuplicateEntityError) as info:
            await orders.add(Order(id="new", status="b"), uow=b)
        assert info.value.expected == 0
        await a.commit()
    assert (await orders.get("new")).status == "a"


async def test_concurrent_inserts_without_unit_of_work(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    results = await asyncio.gather(
        *(orders.add(Order(id="new", status=str(i))) for i in range(4)), return_exceptions=True
    )
    assert sum(r == "new" for r in results) == 1
    conflicts = [r for r in results if r != "new"]
    assert len(conflicts) == 3 and all(isinstance(r, DuplicateEntityError) for r in conflicts)
    assert "already exists" in str(conflicts[0])
    assert (await orders.get("new")).version == 1


async def test_run_retries_a_conflicting_block(real_connection: MongoConnectionManager) -> None:
    """The block reloads, so after the other writer commits the retry saves on top of it."""
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="o1", total=0))
    other = MongoUnitOfWork(connection=real_connection)
    await other.begin()
    theirs = await orders.get("o1", uow=other)
    theirs.total += 100
    await orders.add(theirs, uow=other)
    attempts = 0

    async def add_ten(uow: MongoUnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        order = await orders.get("o1", uow=uow)
        order.total += 10
        try:
            await orders.add(order, uow=uow)
        except VersionMismatchError:
            if attempts == 1:
                await other.commit()
                await other.close()
            raise

    await MongoUnitOfWork(connection=real_connection).run(add_ten)
    stored = await orders.get("o1")
    assert attempts == 2
    assert (stored.total, stored.version) == (110, 3)


async def test_unversioned_models_upsert_plainly(real_connection: MongoConnectionManager) -> None:
    tags: MongoRepository[Tag, str] = MongoRepository(real_connection, "tags", Tag)
    assert not tags.versioned
    await tags.add(Tag(id="t1", label="a"))
    await tags.add(Tag(id="t1", label="b"))  # last writer wins, no version involved
    raw = await real_connection.db().tags.find_one({"_id": "t1"})
    assert raw == {"_id": "t1", "label": "b"}
    await tags.add_many([Tag(id="t1", label="c"), Tag(id="t2", label="d")])
    assert [t.label for t in await tags.list_all(["t1", "t2"])] == ["c", "d"]


async def test_get_exists_delete(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    assert await orders.get("missing") is None
    assert not await orders.exists("o1")
    await orders.add(Order(id="o1"))
    assert await orders.exists("o1")
    with pytest.raises(VersionMismatchError) as info:
        await orders.delete("o1", expected_version=7)
    assert (info.value.expected, info.value.actual) == (7, 1)
    assert await orders.exists("o1")
    assert await orders.delete("o1", expected_version=1) == "o1"  # the id, like the original
    assert await orders.delete("o1") is None
    assert not await orders.exists("o1")


async def test_uuid_ids(real_connection: MongoConnectionManager) -> None:
    tickets: MongoRepository[Ticket, uuid.UUID] = MongoRepository(real_connection, "tickets", Ticket)
    ids = [uuid.uuid4() for _ in range(3)]
    for i, key in enumerate(ids):
        await tickets.add(Ticket(id=key, title=str(i)))
    assert (await tickets.get(ids[1])).title == "1"
    assert await tickets.exists(ids[2])
    listed = await tickets.list_all([ids[2], uuid.uuid4(), ids[0]])
    assert [t.id for t in listed] == [ids[2], ids[0]]
    assert await tickets.delete(ids[0])


async def test_list_all_by_ids(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    for i in range(5):
        await orders.add(Order(id=f"o{i}", total=i))
    assert await orders.list_all([]) == []
    listed = await orders.list_all(["o3", "nope", "o1", "o3", "o0"])
    assert [o.id for o in listed] == ["o3", "o1", "o0"]
    assert all(o.version == 1 for o in listed)
    orders.ids_per_query = 2  # many $in queries, same answer
    assert [o.id async for o in orders.list_all(["o4", "o2", "o0", "o1"])] == ["o4", "o2", "o0", "o1"]


async def test_list_all_streams_in_batches(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add_many([Order(id=f"o{i:02d}", total=i) for i in range(25)])
    sizes = [len(batch) async for batch in orders.list_all(batch_size=10).batches()]
    assert sizes == [10, 10, 5]
    streamed = [o.id async for o in orders.list_all(batch_size=7)]
    assert streamed == [f"o{i:02d}" for i in range(25)]  # _id order
    assert len(await orders.list_all()) == 25
    assert [o.id for o in await orders.list_all().to_list(limit=3)] == ["o00", "o01", "o02"]
    orders.max_list_all = 20
    with pytest.raises(ResultTooLarge, match="async for entity in repo.list_all"):
        await orders.list_all()
    count = 0
    async for _ in orders.list_all():  # streaming is never capped
        count += 1
    assert count == 25


async def test_list_all_in_a_unit_of_work_sees_its_writes(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await orders.add(Order(id="o1"), uow=uow)
        assert [o.id async for o in orders.list_all(uow=uow)] == ["o1"]
        assert await orders.list_all() == []


class _Counter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass


async def test_add_many_is_one_bulk_write(mongo_url: str) -> None:
    counter = _Counter()
    conn = MongoConnectionManager(url=mongo_url, database="repo_add_many_once", event_listeners=[counter])
    await conn.connect()
    try:
        orders = MongoRepository(conn, "orders", Order)
        await conn.db().create_collection("orders")
        batch = [Order(id=f"o{i}") for i in range(50)]
        counter.commands.clear()
        await orders.add_many(batch)
        assert counter.commands == ["insert"]
        assert {o.version for o in batch} == {1}
        for order in batch[:10]:
            order.status = "paid"
        counter.commands.clear()
        await orders.add_many(batch[:10] + [Order(id="fresh")])
        assert counter.commands == ["update", "insert"] or counter.commands == ["insert", "update"]
        assert {o.version for o in batch[:10]} == {2}
    finally:
        await conn.client.drop_database("repo_add_many_once")
        await conn.disconnect()


async def test_add_many_conflict_in_transaction_writes_nothing(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add_many([Order(id="a"), Order(id="b")])
    a, b = await orders.list_all(["a", "b"])
    stale_b = await orders.get("b")
    await orders.add(b)  # b moves to version 2
    a.status = stale_b.status = "paid"
    async with MongoUnitOfWork(connection=real_connection) as uow:
        with pytest.raises(VersionMismatchError) as info:
            await orders.add_many([a, stale_b, Order(id="c")], uow=uow)
        assert (info.value.entity_id, info.value.expected, info.value.actual) == ("b", 1, 2)
        assert (a.version, stale_b.version) == (1, 1)
        with pytest.raises(MongoUnitOfWorkError, match="cannot commit"):
            await uow.commit()  # the half-applied batch can never be committed
    assert (await orders.get("a")).status == "pending"
    assert await orders.get("c") is None


async def test_add_many_conflict_outside_transaction(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="taken"))
    fresh = [Order(id="x"), Order(id="taken"), Order(id="y")]
    with pytest.raises(DuplicateEntityError) as info:
        await orders.add_many(fresh)
    assert info.value.entity_id == "taken"
    assert "1 of 3 saves" in str(info.value)
    assert [o.version for o in fresh] == [1, 0, 1]  # written ones know their version
    assert [o.id for o in await orders.list_all(["x", "y"])] == ["x", "y"]


class OrderWithItems(AggregateRoot):
    id: str
    items: list[str] = []
    total: float = 0.0


class OrderRepository(MongoRepository[OrderWithItems, str]):
    def _mapper_to_doc(self, entity: OrderWithItems) -> dict[str, Any]:
        doc = self._mapper.to_doc(entity)
        doc["total_items"] = len(entity.items)
        return doc

    def _mapper_from_doc(self, doc: dict[str, Any]) -> OrderWithItems:
        entity = self._mapper.from_doc(doc)
        entity._total_items = doc.get("total_items", 0)
        return entity


async def test_custom_mapping_hooks(real_connection: MongoConnectionManager) -> None:
    repo = OrderRepository(real_connection, "orders_custom", OrderWithItems)
    order = OrderWithItems(id="o1", items=["a", "b"], total=3)
    await repo.add(order)
    raw = await real_connection.db().orders_custom.find_one({"_id": "o1"})
    assert raw["total_items"] == 2 and raw["_version"] == 1
    loaded = await repo.get("o1")
    assert loaded._total_items == 2
    assert [o._total_items for o in await repo.list_all(["o1"])] == [2]


async def test_add_many_write_conflict_between_transactions(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    await orders.add(Order(id="a"))
    async with MongoUnitOfWork(connection=real_connection) as first, MongoUnitOfWork(connection=real_connection) as second:
        mine = await orders.get("a", uow=first)
        theirs = await orders.get("a", uow=second)
        mine.status = "first"
        await orders.add(mine, uow=first)
        theirs.status = "second"
        fresh = Order(id="b")
        with pytest.raises(VersionMismatchError, match="concurrent transaction") as info:
            await orders.add_many([theirs, fresh], uow=second)
        assert info.value.__cause__ is not None
        assert (theirs.version, fresh.version) == (1, 0)
        with pytest.raises(MongoUnitOfWorkError):
            await second.commit()
        await first.commit()
    assert (await orders.get("a")).status == "first"
    assert await orders.get("b") is None


class Invoice(AggregateRoot[str]):  # generic over the id type, as the original library
    amount: float = 0.0


async def test_add_returns_the_stored_id(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    assert await orders.add(Order(id="o1")) == "o1"
    invoices: MongoRepository[Invoice, Any] = MongoRepository(real_connection, "invoices", Invoice)
    invoice = Invoice(amount=3)
    generated = await invoices.add(invoice)
    assert generated is not None and generated == invoice.id
    assert (await invoices.get(generated)).amount == 3
    tickets: MongoRepository[Ticket, uuid.UUID] = MongoRepository(real_connection, "tickets", Ticket)
    ticket_id = uuid.uuid4()
    returned = await tickets.add(Ticket(id=ticket_id))
    assert type(returned) is uuid.UUID and returned == ticket_id  # the model's id, not its stored Binary
    assert (await tickets.get(returned)).id == ticket_id


async def test_specification_is_and_ed_with_the_id(real_connection: MongoConnectionManager) -> None:
    orders, _ = await _repos(real_connection)
    for i in range(4):
        await orders.add(Order(id=f"o{i}", total=i, status="paid" if i % 2 else "new"))
    paid = SpecificationBuilder().where("status", "eq", "paid").build()
    assert await orders.get("o0", specification=paid) is None
    assert (await orders.get("o1", specification=paid)).total == 1
    assert [o.id for o in await orders.list_all(specification=paid)] == ["o1", "o3"]
    assert [o.id for o in await orders.list_all(["o3", "o0", "o1"], specification=paid)] == ["o3", "o1"]
    assert await orders.delete("o0", specification=paid) is None
    assert await orders.exists("o0")
    assert await orders.delete("o1", specification=paid) == "o1"
    assert not await orders.exists("o1")


async def test_caught_duplicate_in_a_unit_of_work_rolls_back_on_exit(real_connection: MongoConnectionManager) -> None:
    """The server aborted the transaction at the duplicate: leaving the block rolls back
    (nothing half-committed, no error at exit: the caller handled the one it got)."""
    orders, payments = await _repos(real_connection)
    await orders.add(Order(id="o1"))
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await payments.add(Payment(id="p1", amount=5), uow=uow)
        with pytest.raises(DuplicateEntityError):
            await orders.add(Order(id="o1"), uow=uow)
    assert await payments.get("p1") is None
    async with MongoUnitOfWork(connection=real_connection) as uow:  # an error before the server dooms nothing
        await payments.add(Payment(id="p2"), uow=uow)
        with pytest.raises(MongoQueryError, match="an id is required"):
            await orders.get(None, uow=uow)  # type: ignore[arg-type]
    assert await payments.get("p2") is not None
