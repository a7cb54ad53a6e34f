"""SearchResult on a raw collection, both async drivers: list, stream, first, count, with
ordering, pagination and field selection applied by the server."""

from __future__ import annotations

from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import InvalidSpecification
from cqrs_ddd_persistence_mongo.core import SearchResult, search_collection
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder

pytestmark = pytest.mark.integration
b = SpecificationBuilder()


class Recorder:
    """A collection proxy that records how ``find`` is called."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.calls: list[tuple[Any, ...]] = []

    def find(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self._collection.find(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)


async def _orders(connection: Any) -> Any:
    collection = connection.db()["orders"]
    await collection.create_index([("status", 1), ("total", -1)])
    await collection.insert_many(
        [{"_id": f"o{i}", "status": "pending" if i % 3 else "paid", "total": i * 10, "note": "x" * i} for i in range(12)]
    )
    return collection


async def test_list_with_order_pagination_and_decode(real_connection: Any) -> None:
    collection = await _orders(real_connection)
    options = (
        QueryOptions()
        .with_specification(b.where("status", "eq", "pending").build())
        .with_ordering("-total")
        .with_pagination(limit=3, offset=1)
    )
    result = search_collection(collection, options, decode=lambda d: (d["_id"], d["total"]))
    assert isinstance(result, SearchResult)
    assert await result == [("o10", 100), ("o8", 80), ("o7", 70)]
    assert await result.count() == 8  # a total: ignores limit/offset
    assert await result.first() == ("o10", 100)


async def test_selected_fields_are_projected_on_the_server(real_connection: Any) -> None:
    collection = await _orders(real_connection)
    options = QueryOptions().with_fields("total").with_ordering("total").with_pagination(limit=2)
    docs = await search_collection(collection, options, decode=lambda d: pytest.fail("no decode with fields"))
    assert docs == [{"_id": "o0", "total": 0}, {"_id": "o1", "total": 10}]


async def test_stream_reads_in_batches_and_decodes_lazily(real_connection: Any) -> None:
    collection = Recorder(await _orders(real_connection))
    decoded: list[str] = []

    def decode(doc: dict[str, Any]) -> str:
        decoded.append(doc["_id"])
        return doc["_id"]

    result = search_collection(collection, b.where("total", "gte", 20).build(), QueryOptions().with_ordering("total"), decode=decode)
    stream = result.stream(batch_size=4)
    assert await stream.__anext__() == "o2"
    assert decoded == ["o2"]
    rest = [item async for item in stream]
    assert rest == [f"o{i}" for i in range(3, 12)]
    assert collection.calls[-1][1]["batch_size"] == 4
    with pytest.raises(InvalidSpecification):
        [x async for x in result.stream(batch_size=0)]


async def test_spec_and_options_combine_and_first_of_nothing(real_connection: Any) -> None:
    collection = await _orders(real_connection)
    spec = b.where("status", "eq", "paid").build()
    options = QueryOptions().with_specification(b.where("total", "gt", 50).build()).with_ordering("total")
    assert [d["_id"] for d in await search_collection(collection, spec, options)] == ["o6", "o9"]
    assert await search_collection(collection, {"attr": "total", "op": "gt", "val": 10_000}).first() is None
    assert await search_collection(collection).count() == 12


async def test_bad_criteria_fail_when_the_search_is_built(real_connection: Any) -> None:
    collection = real_connection.db()["orders"]
    with pytest.raises(InvalidSpecification, match="field names may not start with"):
        search_collection(collection, {"attr": "$where", "op": "eq", "val": 1})
    with pytest.raises(InvalidSpecification, match="ordered twice"):
        search_collection(collection, QueryOptions().with_ordering("a", "-a"))


async def test_search_inside_a_session(real_connection: Any) -> None:
    collection = await _orders(real_connection)
    adapter = real_connection.driver()
    session = await adapter.start_session(real_connection.client)
    try:
        result = search_collection(collection, b.where("total", "lt", 20).build(), session=session, adapter=adapter)
        assert sorted(d["_id"] for d in await result) == ["o0", "o1"]
        assert await result.count() == 2
    finally:
        await adapter.end_session(session)


async def test_values_are_data_on_the_server(real_connection: Any) -> None:
    """Each case would match documents if the value were interpreted as an operator/pattern."""
    collection = real_connection.db()["data"]
    await collection.insert_many(
        [{"_id": 1, "a": "abc"}, {"_id": 2, "a": 5}, {"_id": 3, "a": {"$gt": ""}}, {"_id": 4, "a": "a.c"}]
    )

    async def ids(spec: dict[str, Any]) -> list[int]:
        return sorted(d["_id"] for d in await search_collection(collection, spec))

    assert await ids({"attr": "a", "op": "eq", "val": {"$gt": ""}}) == [3]
    assert await ids({"attr": "a", "op": "ne", "val": {"$gt": ""}}) == [1, 2, 4]
    assert await ids({"attr": "a", "op": "in", "val": [{"$gt": ""}]}) == [3]
    assert await ids({"attr": "a", "op": "not_in", "val": [{"$gt": ""}, 5]}) == [1, 4]
    assert await ids({"attr": "a", "op": "contains", "val": "a.c"}) == [4]
    assert await ids({"attr": "a", "op": "like", "val": "a.%"}) == [4]
    assert await ids({"attr": "a", "op": "startswith", "val": ".*"}) == []
