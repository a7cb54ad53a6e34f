"""MongoRepository on the embedded real-wire server: the price of optimistic concurrency
and mapping over raw driver calls, and what add_many / streaming buy. Same-run ratios."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import AggregateRoot

from .conftest import best_pair, report


class Order(AggregateRoot):
    id: str
    customer_id: str = "c1"
    total: float = 0.0
    status: str = "pending"
    lines: list[dict[str, Any]] = []


def _order(i: int) -> Order:
    return Order(id=f"o{i:05d}", total=i, lines=[{"sku": f"s{j}", "qty": j} for j in range(5)])



@pytest.fixture
def loop() -> Any:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def conn(loop: Any, mongo_url: str) -> Any:
    connection = MongoConnectionManager(url=mongo_url, database="bench_repository")
    loop.run_until_complete(connection.connect())
    loop.run_until_complete(connection.client.drop_database("bench_repository"))
    yield connection
    loop.run_until_complete(connection.client.drop_database("bench_repository"))
    loop.run_until_complete(connection.disconnect())


def test_versioned_save_costs_little_over_raw_replace(benchmark: Any, loop: Any, conn: MongoConnectionManager) -> None:
    repo = MongoRepository(conn, "orders", Order)
    raw = conn.db().raw_orders
    order = _order(1)
    loop.run_until_complete(repo.add(order))
    doc = repo._mapper.to_doc(order)
    loop.run_until_complete(raw.insert_one(doc))

    async def save() -> None:
        order.total += 1
        await repo.add(order)

    async def raw_replace() -> None:  # the same statement with nothing checked or mapped
        await raw.replace_one({"_id": doc["_id"]}, doc)

    benchmark(lambda: loop.run_until_complete(save()))
    t_repo, t_raw = loop.run_until_complete(best_pair(save, raw_replace, 50, repeat=7))
    ratio = t_repo / t_raw
    report(f"versioned save: repo.add {t_repo * 1e6:.0f} us, raw replace_one {t_raw * 1e6:.0f} us -> {ratio:.2f}x")
    # an extra round trip would make this >= 2x; mapping + version filter stay well below
    assert ratio <= 1.8, "a versioned save should cost at most 1.8x a raw replace_one"


def test_add_many_beats_one_by_one(loop: Any, conn: MongoConnectionManager) -> None:
    repo = MongoRepository(conn, "orders", Order)
    n = 200
    counter = iter(range(10**9))

    async def many() -> None:
        base = next(counter) * n
        await repo.add_many([_order(base + i) for i in range(n)])

    async def one_by_one() -> None:
        base = next(counter) * n
        for i in range(n):
            await repo.add(_order(base + i))

    t_many, t_single = loop.run_until_complete(best_pair(many, one_by_one, 1, repeat=3))
    report(f"add {n} new aggregates: add_many {t_many * 1e3:.1f} ms, add x{n} {t_single * 1e3:.1f} ms -> {t_single / t_many:.1f}x")
    assert t_single / t_many >= 2, "one bulk write should be >= 2x faster than single inserts"


def test_streaming_list_all_costs_little_over_raw_cursor(loop: Any, conn: MongoConnectionManager) -> None:
    repo = MongoRepository(conn, "orders", Order)
    loop.run_until_complete(repo.add_many([_order(i) for i in range(1000)]))
    mapper = repo._mapper

    async def stream() -> None:
        async for _ in repo.list_all():
            pass

    async def raw() -> None:  # driver cursor + the same mapping, no batching logic
        async for doc in repo.collection().find({}).sort("_id", 1).batch_size(repo.batch_size):
            mapper.from_doc(doc)

    t_stream, t_raw = loop.run_until_complete(best_pair(stream, raw, 1, repeat=5))
    ratio = t_stream / t_raw
    report(f"stream 1000 aggregates: list_all {t_stream * 1e3:.1f} ms, raw cursor+from_doc {t_raw * 1e3:.1f} ms -> {ratio:.2f}x")
    assert ratio <= 1.5, "streaming list_all should cost at most 1.5x a raw cursor with the same mapping"


def test_unit_of_work_commit_overhead(loop: Any, conn: MongoConnectionManager) -> None:
    repo = MongoRepository(conn, "orders", Order)
    loop.run_until_complete(conn.db().create_collection("uow_orders"))
    tx_repo = MongoRepository(conn, "uow_orders", Order)
    counter = iter(range(10**9))

    async def in_uow() -> None:
        async with MongoUnitOfWork(connection=conn) as uow:
            await tx_repo.add(_order(next(counter)), uow=uow)
            await uow.commit()

    async def plain() -> None:
        await repo.add(_order(10**8 + next(counter)))

    t_uow, t_plain = loop.run_until_complete(best_pair(in_uow, plain, 30, repeat=5))
    ratio = t_uow / t_plain
    report(f"one insert: in a unit of work {t_uow * 1e6:.0f} us, without {t_plain * 1e6:.0f} us -> {ratio:.2f}x")
    # session + commit are one extra round trip; the hello check must not add another
    assert ratio <= 3.0, "a one-write unit of work should cost at most 3x a plain write"
