"""SearchResult over mongomock-motor (the seeds' testing client)."""

from __future__ import annotations

from typing import Any

from cqrs_ddd_persistence_mongo.core import search_collection
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder


async def test_search_on_mongomock(mock_connection: Any) -> None:
    collection = mock_connection.db()["c"]
    await collection.insert_many([{"_id": i, "a": i} for i in range(10)])
    options = QueryOptions().with_ordering("-a").with_pagination(limit=4, offset=1)
    result = search_collection(collection, SpecificationBuilder().where("a", "gte", 3).build(), options, decode=lambda d: d["a"])
    assert await result == [8, 7, 6, 5]
    assert [a async for a in result.stream(batch_size=2)] == [8, 7, 6, 5]
    assert await result.first() == 8
    assert await result.count() == 7
