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
