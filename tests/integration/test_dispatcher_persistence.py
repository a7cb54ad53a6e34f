"""The dispatcher persistence bases, each used as a subclass on the real-wire server."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from cqrs_ddd_persistence_mongo import (
    AggregateRoot,
    MongoConnectionManager,
    MongoProjectionStore,
    QueryOptions,
    SpecificationBuilder,
    VersionMismatchError,
)
from cqrs_ddd_persistence_mongo.advanced.persistence import (
    MongoOperationPersistence,
    MongoProjectionDualPersistence,
    MongoQueryPersistence,
    MongoQuerySpecificationPersistence,
    MongoRetrievalPersistence,
)
from cqrs_ddd_persistence_mongo.exceptions import MongoPersistenceError, UnsafeQueryError


class Order(AggregateRoot):
    id: str
    total: int = 0


class OrderView(BaseModel):
    id: str
    total: int


def persistence_classes(connection: MongoConnectionManager) -> tuple[Any, ...]:
    class Save(MongoOperationPersistence[Order, str]):
        collection_name = "orders"

    class Load(MongoRetrievalPersistence[Order, str]):
        collection_name = "orders"
        model_cls = Order

    class ById(MongoQueryPersistence[OrderView, str]):
        collection_name = "orders"

        def to_dto(self, doc: dict[str, Any]) -> OrderView:
            return OrderView(id=doc["_id"], total=doc["total"])

    class BySpec(MongoQuerySpecificationPersistence[OrderView]):
        collection_name = "orders"

        def to_dto(self, doc: dict[str, Any]) -> OrderView:
            return OrderView(id=doc["_id"], total=doc["total"])

    for cls in (Save, Load, ById, BySpec):
        cls.connection = connection
    return Save(), Load(), ById(), BySpec()


async def test_command_and_query_roles(real_connection: MongoConnectionManager) -> None:
    save, load, by_id, by_spec = persistence_classes(real_connection)
    for i in range(1, 4):
        assert await save.persist(Order(id=f"o-{i}", total=i * 10)) == f"o-{i}"
    assert [o.id for o in await load.retrieve(["o-3", "missing", "o-1"])] == ["o-3", "o-1"]

    stale = (await load.retrieve(["o-2"]))[0]
    fresh = (await load.retrieve(["o-2"]))[0]
    fresh.total = 99
    await save.persist(fresh)
    stale.total = 1
    with pytest.raises(VersionMismatchError):
        await save.persist(stale)

    assert {v.id: v.total for v in await by_id.fetch(["o-1", "o-2"])} == {"o-1": 10, "o-2": 99}
    spec = SpecificationBuilder().where("total", "gte", 30).build()
    options = QueryOptions().with_specification(spec).with_ordering("-total")
    assert [v.id for v in await by_spec.fetch(options)] == ["o-2", "o-3"]
    assert [v.id async for v in by_spec.fetch(spec).stream()] in (["o-2", "o-3"], ["o-3", "o-2"])


async def test_a_missing_class_attribute_is_named(real_connection: MongoConnectionManager) -> None:
    class Incomplete(MongoRetrievalPersistence[Order, str]):
        connection = real_connection
        model_cls = Order

    with pytest.raises(MongoPersistenceError, match="collection_name"):
        await Incomplete().retrieve(["x"])


class Summary(BaseModel):
    id: str
    orders: int


class SummaryDual(MongoProjectionDualPersistence[Summary, str]):
    collection = "summaries"

    def to_dto(self, doc: dict[str, Any]) -> Summary:
        return Summary(id=doc["id"], orders=doc["orders"])


async def test_projection_dual_reads_and_refreshes(real_connection: MongoConnectionManager) -> None:
    dual = SummaryDual(MongoProjectionStore(real_connection))
    assert await dual.refresh("c-1", Summary(id="c-1", orders=1), event_position=5)
    assert not await dual.refresh("c-1", {"id": "c-1", "orders": 7}, event_position=4)  # out of order: skipped
    await dual.refresh_batch([{"id": "c-2", "orders": 3}, Summary(id="c-3", orders=9)])

    assert [s.id for s in await dual.fetch(["c-3", "nope", "c-1"])] == ["c-3", "c-1"]
    spec = SpecificationBuilder().where("orders", "gte", 3).build()
    assert sorted(s.id for s in await dual.fetch(spec)) == ["c-2", "c-3"]
    assert [s.id for s in await dual.fetch({"orders": 1})] == ["c-1"]
    with pytest.raises(UnsafeQueryError):
        await dual.fetch({"$where": "true"})
    with pytest.raises(MongoPersistenceError, match="override build_filter"):
        await dual.fetch(42)
