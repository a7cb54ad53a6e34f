"""MongoRepository and MongoUnitOfWork over mongomock-motor (no server, no transactions),
EntityStream on a fake source, and the error-label walk used by uow.run()."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo.errors import OperationFailure

from cqrs_ddd_persistence_mongo import (
    DuplicateEntityError,
    MongoConnectionManager,
    MongoPersistenceError,
    MongoQueryError,
    TransactionsNotSupported,
    VersionMismatchError,
)
from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.core.entity_stream import EntityStream, ResultTooLarge
from cqrs_ddd_persistence_mongo.core.uow import has_error_label
from cqrs_ddd_persistence_mongo.domain import AggregateRoot


class Order(AggregateRoot):
    id: str
    total: float = 0.0


class Note(AggregateRoot):  # id: Any = None inherited: the driver assigns one
    text: str = ""


@pytest.fixture
def orders(mock_connection: MongoConnectionManager) -> MongoRepository[Order, str]:
    return MongoRepository(mock_connection, "orders", Order)


async def test_mongomock_refuses_transactions_by_default(mock_connection: MongoConnectionManager) -> None:
    with pytest.raises(TransactionsNotSupported, match="require_replica_set=False"):
        async with MongoUnitOfWork(connection=mock_connection):
            pass


async def test_mongomock_unit_of_work_without_transactions(
    mock_connection: MongoConnectionManager, orders: MongoRepository[Order, str]
) -> None:
    async with MongoUnitOfWork(connection=mock_connection, require_replica_set=False) as uow:
        assert uow.session is None
        order = Order(id="o1")
        await orders.add(order, uow=uow)
        await uow.rollback()  # no transaction: the write stays, and so does the version
        assert order.version == 1
    assert (await orders.get("o1")).version == 1


async def test_versioned_round_trip_on_mongomock(orders: MongoRepository[Order, str]) -> None:
    order = Order(id="o1", total=1)
    await orders.add(order)
    await orders.add(order)
    assert order.version == 2
    stale = Order(id="o1", total=5, version=1)
    with pytest.raises(VersionMismatchError) as info:
        await orders.add(stale)
    assert (info.value.expected, info.value.actual) == (1, 2)
    with pytest.raises(DuplicateEntityError):
        await orders.add(Order(id="o1"))
    assert (await orders.get("o1")).total == 1
    assert await orders.exists("o1")
    assert await orders.delete("o1") == "o1"
    assert await orders.delete("o1") is None


async def test_list_all_on_mongomock(orders: MongoRepository[Order, str]) -> None:
    await orders.add_many([Order(id=f"o{i}") for i in range(7)])  # inserts only
    assert [o.id for o in await orders.list_all(["o5", "o2"])] == ["o5", "o2"]
    sizes = [len(b) async for b in orders.list_all(batch_size=3).batches()]
    assert sizes == [3, 3, 1]


async def test_add_many_replacements_on_mongomock_are_explained(orders: MongoRepository[Order, str]) -> None:
    batch = [Order(id="a"), Order(id="b")]
    await orders.add_many(batch)
    with pytest.raises(MongoPersistenceError, match="one by one with add"):
        await orders.add_many(batch)
    assert [o.version for o in batch] == [1, 1]


async def test_generated_object_id(mock_connection: MongoConnectionManager) -> None:
    notes: MongoRepository[Note, Any] = MongoRepository(mock_connection, "notes", Note)
    note = Note(text="hi")
    await notes.add(note)
    assert isinstance(note.id, ObjectId) and note.version == 1
    assert (await notes.get(note.id)).text == "hi"


async def test_bad_versions_and_ids_are_explained(orders: MongoRepository[Order, str]) -> None:
    with pytest.raises(MongoPersistenceError, match="non-negative int"):
        await orders.add(Order(id="x", version=-1))
    with pytest.raises(MongoQueryError, match="an id is required"):
        await orders.get(None)  # type: ignore[arg-type]
    assert await orders.get("x") is None


async def test_generic_subscription(mock_connection: MongoConnectionManager) -> None:
    import typing

    class OrderRepository(MongoRepository[Order, str]):
        pass

    assert typing.get_args(OrderRepository.__orig_bases__[0]) == (Order, str)  # type: ignore[attr-defined]
    repo = OrderRepository(mock_connection, "orders", Order)
    await repo.add(Order(id="x"))
    assert (await repo.get("x")).version == 1
    typed = MongoRepository[Order, str](mock_connection, "orders", Order)
    assert await typed.exists("x")


# --- EntityStream on a fake source ---------------------------------------------------
def _stream(n: int, *, batch_size: int = 4, max_items: int | None = None) -> tuple[EntityStream[int], list[int]]:
    sizes: list[int] = []

    async def source(size: int) -> AsyncIterator[list[dict[str, Any]]]:
        for start in range(0, n, size):
            chunk = [{"v": i} for i in range(start, min(n, start + size))]
            sizes.append(len(chunk))
            yield chunk

    return EntityStream(source, lambda d: d["v"], batch_size=batch_size, max_items=max_items), sizes


async def test_stream_iterates_in_batches() -> None:
    stream, sizes = _stream(10)
    assert [v async for v in stream] == list(range(10))
    assert sizes == [4, 4, 2]
    assert [b async for b in stream.batches()] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [v async for v in stream.stream(5)] == list(range(10))


async def test_stream_await_and_limits() -> None:
    stream, _ = _stream(10, max_items=10)
    assert await stream == list(range(10))
    assert await stream.to_list(limit=3) == [0, 1, 2]
    assert await stream.to_list(limit=0) == []
    too_many, sizes = _stream(11, max_items=10)
    with pytest.raises(ResultTooLarge, match="more than 10"):
        await too_many
    assert sum(sizes) <= 12  # stopped reading once over the cap
    with pytest.raises(MongoQueryError, match="limit must be"):
        await stream.to_list(limit=-1)
    with pytest.raises(MongoQueryError, match="batch_size"):
        _stream(1, batch_size=0)


# --- transient-label detection --------------------------------------------------------
def test_error_labels_are_found_through_causes() -> None:
    transient = OperationFailure("conflict", code=112, details={"errorLabels": ["TransientTransactionError"]})
    try:
        try:
            raise transient
        except OperationFailure as exc:
            raise VersionMismatchError(entity_id="x", expected=1, actual=2) from exc
    except VersionMismatchError as wrapped:
        assert has_error_label(wrapped, "TransientTransactionError")
        assert not has_error_label(wrapped, "UnknownTransactionCommitResult")
    assert not has_error_label(ValueError("plain"), "TransientTransactionError")
    try:
        try:
            raise transient
        except OperationFailure:
            raise ValueError("a business error raised while handling it")  # noqa: B904
    except ValueError as implicit:
        assert not has_error_label(implicit, "TransientTransactionError")
    assert not has_error_label(None, "TransientTransactionError")


async def test_warning_logged_once_per_connection(
    mock_connection: MongoConnectionManager, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cqrs_ddd_persistence_mongo.core.uow")
    for _ in range(3):
        async with MongoUnitOfWork(connection=mock_connection, require_replica_set=False):
            pass
    assert sum("WITHOUT transactions" in r.getMessage() for r in caplog.records) == 1


async def test_finished_unit_of_work_is_refused(
    mock_connection: MongoConnectionManager, orders: MongoRepository[Order, str]
) -> None:
    from cqrs_ddd_persistence_mongo import MongoUnitOfWorkError

    async with MongoUnitOfWork(connection=mock_connection, require_replica_set=False) as uow:
        await orders.add(Order(id="o1"), uow=uow)
    with pytest.raises(MongoUnitOfWorkError, match="not active"):
        await orders.add(Order(id="o2"), uow=uow)
    with pytest.raises(MongoUnitOfWorkError, match="not active"):
        await orders.get("o1", uow=uow)
    assert await orders.get("o2") is None


async def test_list_all_accepts_the_seed_keyword(orders: MongoRepository[Order, str]) -> None:
    await orders.add(Order(id="o1"))
    assert [o.id for o in await orders.list_all(entity_ids=["o1"])] == ["o1"]
    assert [o.id for o in await orders.list_all(ids=["o1"])] == ["o1"]
    with pytest.raises(MongoQueryError, match="not both"):
        orders.list_all(ids=["o1"], entity_ids=["o1"])
    with pytest.raises(MongoQueryError, match="a list of ids"):
        orders.list_all("o1")


async def test_add_many_with_generated_ids(mock_connection: MongoConnectionManager) -> None:
    notes: MongoRepository[Note, Any] = MongoRepository(mock_connection, "notes", Note)
    batch = [Note(text="a"), Note(text="b")]
    await notes.add_many(batch)
    assert all(isinstance(n.id, ObjectId) and n.version == 1 for n in batch)
    assert [n.text for n in await notes.list_all([batch[1].id, batch[0].id])] == ["b", "a"]
    with pytest.raises(MongoPersistenceError, match="must keep its id"):
        await notes.add_many([Note(text="c", version=3)])
