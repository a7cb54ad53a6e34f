"""Rebuild swaps a sharded read model cannot take by ``renameCollection``: the pointer swap,
forced on the replica set by opting the projection in (``use_pointer_swap``), since no
collection is sharded here."""

from __future__ import annotations

from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.projections import ProjectionRunner
from cqrs_ddd_persistence_mongo.projections.generations import (
    POINTER_COLLECTION,
    is_sharded,
    resolve_read_model,
    resolve_read_models,
    swaps_by_pointer,
    use_pointer_swap,
)
from cqrs_ddd_mongo_demo.orders import (
    ORDER_SUMMARIES,
    PRODUCT_SALES,
    OrderSummaryProjection,
    differences,
    fold_orders,
    order_history,
    strip_engine_fields,
)

pytestmark = pytest.mark.integration

NAME = "order_summary"
COLLECTIONS = (ORDER_SUMMARIES, PRODUCT_SALES)


async def resolved_read_model(db: Any) -> dict[str, dict[Any, dict[str, Any]]]:
    """The read model as a reader sees it: each collection through the pointer."""
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    for name in COLLECTIONS:
        docs = await (await resolve_read_model(db, NAME, name)).find({}).to_list(None)
        out[name] = {doc["_id"]: strip_engine_fields(doc) for doc in docs}
    return out


async def generations(db: Any) -> set[str]:
    physical = await resolve_read_models(db, NAME, COLLECTIONS)
    return {name.rpartition("__g")[2] if "__g" in name else "0" for name in physical.values()}


async def test_pointer_swap_rebuilds_into_the_next_generation(pymongo_connection: MongoConnectionManager) -> None:
    db = pymongo_connection.db()
    events = MongoEventStore(pymongo_connection)
    positions = MongoProjectionPositionStore(pymongo_connection)
    history: list[StoredEvent] = list(order_history(30, 5, concurrent=8))
    await events.append_batch(history)
    runner = ProjectionRunner(events, positions, [OrderSummaryProjection()], connection=pymongo_connection)
    assert not await swaps_by_pointer(db, NAME, COLLECTIONS)  # nothing is sharded here
    assert not await is_sharded(db, ORDER_SUMMARIES)
    while await runner.run_once(batch_size=50):
        pass
    await use_pointer_swap(db, NAME, COLLECTIONS)
    await use_pointer_swap(db, NAME, COLLECTIONS)  # idempotent
    assert await swaps_by_pointer(db, NAME, COLLECTIONS)
    before = await resolved_read_model(db)
    assert differences(fold_orders(history), before) == []

    seen_during_swap: list[set[str]] = []

    def before_swap(_events: int, _counts: Any) -> None:
        seen_during_swap.append(set(_counts and [c.collection for c in _counts]))

    report = await runner.rebuild(NAME, before_swap=before_swap)
    assert sorted(report.swapped) == sorted(COLLECTIONS)
    assert seen_during_swap == [set(COLLECTIONS)]
    pointer = await db[POINTER_COLLECTION].find_one({"_id": NAME})
    assert pointer["generation"] == 1
    assert pointer["collections"] == {c: f"{c}__g1" for c in COLLECTIONS}
    names = set(await db.list_collection_names())
    assert {f"{c}__g1" for c in COLLECTIONS} <= names
    assert set(COLLECTIONS) <= names  # the replaced generation (the logical names) stays one rebuild longer
    assert differences(fold_orders(history), await resolved_read_model(db)) == []

    # the follower writes into the current generation
    late = list(order_history(5, 4, seed=99, concurrent=5, prefix="late"))
    await events.append_batch(late)
    history += late
    while await runner.run_once(batch_size=50):
        pass
    assert differences(fold_orders(history), await resolved_read_model(db)) == []

    # a reader that resolved the pointer before the next switch still finds generation 1
    handles_before = {c: await resolve_read_model(db, NAME, c) for c in COLLECTIONS}

    # a second rebuild: generation 2; generation 1 stays, generation 0 is dropped; every
    # collection flips together
    report = await runner.rebuild(NAME)
    assert await generations(db) == {"2"}
    names = set(await db.list_collection_names())
    assert {f"{c}__g1" for c in COLLECTIONS} <= names
    assert not (set(COLLECTIONS) & names)
    read_late = {
        c: {doc["_id"]: strip_engine_fields(doc) for doc in await handle.find({}).to_list(None)}
        for c, handle in handles_before.items()
    }
    assert [h.name for h in handles_before.values()] == [f"{c}__g1" for c in COLLECTIONS]
    assert differences(fold_orders(history), read_late) == []
    # a third: generation 1 goes
    await runner.rebuild(NAME)
    assert not ({f"{c}__g1" for c in COLLECTIONS} & set(await db.list_collection_names()))
    assert differences(fold_orders(history), await resolved_read_model(db)) == []


async def test_rename_swap_is_kept_when_nothing_is_sharded(pymongo_connection: MongoConnectionManager) -> None:
    db = pymongo_connection.db()
    events = MongoEventStore(pymongo_connection)
    positions = MongoProjectionPositionStore(pymongo_connection)
    await events.append_batch(list(order_history(10, 3, concurrent=4)))
    runner = ProjectionRunner(events, positions, [OrderSummaryProjection()], connection=pymongo_connection)
    await runner.rebuild(NAME)
    assert await db[POINTER_COLLECTION].find_one({"_id": NAME}) is None
    assert set(COLLECTIONS) <= set(await db.list_collection_names())
    assert await resolve_read_models(db, NAME, COLLECTIONS) == {c: c for c in COLLECTIONS}
