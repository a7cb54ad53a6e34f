"""The seeds' specification / query-builder examples, run as written (imports mapped per
ARCHITECTURE.md: ``cqrs_ddd_specifications`` -> ``cqrs_ddd_persistence_mongo.specifications``)."""

from __future__ import annotations

from typing import Any

import pytest

from cqrs_ddd_persistence_mongo.core import search_collection
from cqrs_ddd_persistence_mongo.operators import (
    compile_geometry,
    compile_jsonb,
    compile_null,
    compile_set,
    compile_standard,
    compile_string,
)
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder, build_default_registry


def test_overview_query_builder_example() -> None:
    builder = SpecificationBuilder()
    spec = (
        builder
        .where("status", "eq", "active")
        .and_where("total", "gte", 100)
        .build()
    )
    query_builder = MongoQueryBuilder()
    filter_dict = query_builder.build_match(spec)
    assert filter_dict == {"$and": [{"status": {"$eq": "active"}}, {"total": {"$gte": 100}}]}
    assert query_builder.build_sort("-created_at") == [("created_at", -1)]


def test_core_mongodb_specific_examples() -> None:
    builder = SpecificationBuilder()
    qb = MongoQueryBuilder()
    spec = builder.where("address.city", "eq", "New York").build()
    assert qb.build_match(spec) == {"address.city": {"$eq": "New York"}}
    spec = builder.where("tags", "in", ["premium", "featured"]).build()
    assert qb.build_match(spec) == {"tags": {"$in": ["premium", "featured"]}}
    spec = builder.where("metadata.customer_tier", "eq", "gold").build()
    assert qb.build_match(spec) == {"metadata.customer_tier": {"$eq": "gold"}}


def test_operators_package_families() -> None:
    assert compile_standard("total", "gte", 100) == {"total": {"$gte": 100}}
    assert compile_string("name", "icontains", "smith") == {"name": {"$regex": "smith", "$options": "i"}}
    assert compile_set("status", "in", ["a", "b"]) == {"status": {"$in": ["a", "b"]}}
    assert compile_null("deleted_at", "is_null") == {"deleted_at": {"$eq": None}}
    assert compile_jsonb("tags", "size", 2) == {"tags": {"$size": 2}}
    point = {"type": "Point", "coordinates": [1, 2]}
    assert compile_geometry("loc", "near", {"geometry": point}) == {"loc": {"$near": {"$geometry": point}}}
    from cqrs_ddd_persistence_mongo import InvalidSpecification

    with pytest.raises(InvalidSpecification, match="not a standard operator"):
        compile_standard("a", "contains", "x")


@pytest.mark.integration
async def test_overview_execute_on_collection(real_connection: Any) -> None:
    db = real_connection.db()
    await db["orders"].insert_many(
        [{"_id": 1, "status": "active", "total": 150}, {"_id": 2, "status": "active", "total": 50}, {"_id": 3, "status": "done", "total": 500}]
    )
    spec = SpecificationBuilder().where("status", "eq", "active").and_where("total", "gte", 100).build()
    filter_dict = MongoQueryBuilder().build_match(spec)
    cursor = db["orders"].find(filter_dict)
    assert [d["_id"] async for d in cursor] == [1]


@pytest.mark.integration
async def test_core_search_with_query_options_on_a_collection(real_connection: Any) -> None:
    """The core README's search example, on a collection (the repository delegates here)."""
    collection = real_connection.db()["orders"]
    await collection.create_index([("status", 1), ("created_at", -1)])
    await collection.insert_many([{"_id": i, "status": "pending" if i % 2 else "paid", "created_at": i} for i in range(30)])
    registry = build_default_registry()
    builder = SpecificationBuilder()
    spec = builder.where("status", "eq", "pending").build()
    options = (
        QueryOptions()
        .with_specification(spec, registry=registry)
        .with_ordering("-created_at")
        .with_pagination(limit=20, offset=0)
    )
    result = search_collection(collection, options=options)
    orders = await result
    assert [o["_id"] for o in orders] == list(range(29, 0, -2))
    streamed = [order["_id"] async for order in search_collection(collection, options=options).stream(batch_size=100)]
    assert streamed == [o["_id"] for o in orders]


# --- the repository's search (mongo-core-persistence.md, mongo-persistence-overview.md) -----
from datetime import datetime, timedelta, timezone  # noqa: E402
from enum import Enum  # noqa: E402

from cqrs_ddd_persistence_mongo.core import MongoRepository, MongoUnitOfWork  # noqa: E402
from cqrs_ddd_persistence_mongo.domain import AggregateRoot  # noqa: E402


class Status(str, Enum):
    PENDING = "pending"
    PAID = "paid"


class Order(AggregateRoot):
    id: str
    customer_id: str
    total: float
    status: Status = Status.PENDING
    created_at: datetime


START = datetime(2024, 1, 1, tzinfo=timezone.utc)


async def _order_repo(connection: Any) -> MongoRepository[Order, str]:
    order_repo: MongoRepository[Order, str] = MongoRepository(
        connection=connection, collection="orders", model_cls=Order, id_field="id"
    )
    collection = order_repo.collection()
    await collection.create_index([("status", 1), ("created_at", -1)])
    async with MongoUnitOfWork(connection=connection) as uow:
        for i in range(30):
            await order_repo.add(
                Order(
                    id=f"order-{i:02}",
                    customer_id=f"c{i % 4}",
                    total=10.0 * i,
                    status=Status.PENDING if i % 2 else Status.PAID,
                    created_at=START + timedelta(hours=i),
                ),
                uow=uow,
            )
        await uow.commit()
    return order_repo


@pytest.mark.integration
async def test_core_repository_search_example(real_connection: Any) -> None:
    order_repo = await _order_repo(real_connection)
    processed: list[str] = []

    def process(order: Order) -> None:
        processed.append(order.id)

    async with MongoUnitOfWork(connection=real_connection) as uow:
        # Build specification
        registry = build_default_registry()
        builder = SpecificationBuilder()
        spec = builder.where("status", "eq", "pending").build()

        # Search with QueryOptions
        options = (
            QueryOptions()
            .with_specification(spec, registry=registry)
            .with_ordering("-created_at")
            .with_pagination(limit=20, offset=0)
        )

        result = await order_repo.search(options=options, uow=uow)
        orders = await result  # List[Order]

        # Or stream for large datasets
        async for order in (await order_repo.search(options=options, uow=uow)).stream():
            process(order)

    assert all(isinstance(o, Order) and o.status is Status.PENDING for o in orders)
    assert [o.id for o in orders] == [f"order-{i:02}" for i in range(29, 0, -2)]
    assert processed == [o.id for o in orders]


@pytest.mark.integration
async def test_overview_and_performance_search_examples(real_connection: Any) -> None:
    repo = await _order_repo(real_connection)
    builder = SpecificationBuilder()
    options = QueryOptions().with_ordering("-total").with_pagination(limit=5)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        # overview: spec and options given separately
        spec = builder.where("status", "eq", "active").build()
        orders = await repo.search(spec, options, uow=uow)
        assert await orders == []
        spec = builder.where("status", "eq", Status.PAID).and_where("total", "gte", 100).build()
        orders = await (await repo.search(spec, options, uow=uow))
        assert [o.id for o in orders] == ["order-28", "order-26", "order-24", "order-22", "order-20"]
        # performance section: await the awaited search; stream with a batch size
        options = QueryOptions().with_specification(spec).with_ordering("created_at")
        streamed = [o.id async for o in (await repo.search(options=options, uow=uow)).stream(batch_size=100)]
        assert streamed == [f"order-{i:02}" for i in range(10, 30, 2)]
        assert await (await repo.search(options=options, uow=uow)).count() == 10


@pytest.mark.integration
async def test_repository_search_speaks_model_field_names(real_connection: Any) -> None:
    repo = await _order_repo(real_connection)
    builder = SpecificationBuilder()
    spec = builder.where("id", "in", ["order-03", "order-05", "nope"]).and_where("version", "gte", 1).build()
    result = await repo.search(spec, QueryOptions().with_ordering("-id"))
    assert [o.id for o in await result] == ["order-05", "order-03"]
    first = await (await repo.search(builder.where("created_at", "gt", START + timedelta(hours=27)).build())).first()
    assert first is not None and first.id in ("order-28", "order-29")
    rows = await (await repo.search(options=QueryOptions().with_fields("total").with_ordering("id").with_pagination(limit=2)))
    assert rows == [{"_id": "order-00", "total": 0.0}, {"_id": "order-01", "total": 10.0}]


@pytest.mark.integration
async def test_repository_search_orders_by_a_comma_separated_string(real_connection: Any) -> None:
    """The documented comma form orders by every field named, model names renamed (``id``)."""
    repo = await _order_repo(real_connection)
    options = QueryOptions().with_ordering("status,-id").with_pagination(limit=3)
    assert [o.id for o in await (await repo.search(options=options))] == ["order-28", "order-26", "order-24"]
