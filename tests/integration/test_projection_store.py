"""MongoProjectionStore on the real-wire server, with both async drivers."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionStore, build_upserts, write_upserts
from cqrs_ddd_persistence_mongo.exceptions import (
    DuplicateEntityError,
    InvalidDocument,
    UnsafeQueryError,
    VersionMismatchError,
)
from cqrs_ddd_persistence_mongo.indexes import ensure_indexes

from .transactions import TransactionScope

pytestmark = pytest.mark.integration
C = "summaries"


@pytest.fixture
def store(real_connection: MongoConnectionManager) -> MongoProjectionStore:
    return MongoProjectionStore(real_connection)


async def test_out_of_order_events_leave_the_highest_position(store: MongoProjectionStore) -> None:
    results = []
    for position in [3, 1, 5, 2, 4]:
        results.append(await store.upsert(C, "o1", {"status": f"s{position}"}, event_position=position))
    assert results == [True, False, True, False, False]
    doc = await store.find_one(C, "o1")
    assert doc == {"id": "o1", "status": "s5", "_last_position": 5}


async def test_replayed_event_is_skipped_for_that_document_only(store: MongoProjectionStore) -> None:
    assert await store.upsert(C, "o1", {"n": 1}, event_id="e1")
    assert not await store.upsert(C, "o1", {"n": 99}, event_id="e1")
    assert await store.upsert(C, "o2", {"n": 2}, event_id="e1")  # same event, another document
    assert (await store.find_one(C, "o1"))["n"] == 1
    assert (await store.find_one(C, "o2"))["_last_event_id"] == "e1"
    assert await store.upsert(C, "o1", {"n": 3}, event_id="e2")
    assert (await store.find_one(C, "o1"))["n"] == 3


async def test_composite_keys_in_either_order_hit_one_document(store: MongoProjectionStore) -> None:
    await store.upsert(C, {"customer_id": "c1", "product_id": "p1"}, {"quantity": 1})
    await store.upsert(C, {"product_id": "p1", "customer_id": "c1"}, {"quantity": 5})
    await store.bulk_upsert(C, [{"id": {"product_id": "p1", "customer_id": "c1"}, "note": "bulk"}])
    assert await store.count(C) == 1
    for key in ({"customer_id": "c1", "product_id": "p1"}, {"product_id": "p1", "customer_id": "c1"}):
        doc = await store.find_one(C, key)
        assert doc is not None and doc["quantity"] == 5 and doc["note"] == "bulk"
    assert await store.find(C, {"id": {"product_id": "p1", "customer_id": "c1"}}) != []
    assert await store.delete(C, {"product_id": "p1", "customer_id": "c1"})
    assert await store.count(C) == 0


async def test_concurrent_upserts_of_a_new_id_make_one_document_at_the_top_position(
    store: MongoProjectionStore,
) -> None:
    for round_ in range(3):
        key = f"new-{round_}"
        positions = list(range(1, 21))
        random.Random(round_).shuffle(positions)
        results = await asyncio.gather(
            *(store.upsert(C, key, {"p": p}, event_position=p) for p in positions)
        )
        assert any(results)
        assert await store.count(C, {"id": key}) == 1
        doc = await store.find_one(C, key)
        assert doc["_last_position"] == 20 and doc["p"] == 20
    unguarded = await asyncio.gather(*(store.upsert(C, "plain", {"n": i}) for i in range(10)))
    assert all(unguarded) and await store.count(C, {"id": "plain"}) == 1


async def test_concurrent_bulk_upserts_never_duplicate(store: MongoProjectionStore) -> None:
    batches = [[{"id": f"k{i}", "_last_position": b * 100 + i} for i in range(50)] for b in range(4)]
    results = await asyncio.gather(*(store.bulk_upsert(C, batch) for batch in batches))
    assert sum(r.inserted for r in results) == 50
    assert await store.count(C) == 50
    docs = await store.find(C, sort=[("id", 1)])
    assert all(d["_last_position"] == 300 + int(d["id"][1:]) for d in docs)


async def test_expected_version(store: MongoProjectionStore) -> None:
    assert await store.upsert(C, "v", {"n": 1}, expected_version=0)
    assert (await store.find_one(C, "v"))["_version"] == 1
    current = await store.find_one(C, "v")
    assert await store.upsert(C, "v", {**current, "n": 2, "_version": 2}, expected_version=1)
    with pytest.raises(VersionMismatchError) as info:
        await store.upsert(C, "v", {"n": 3}, expected_version=1)
    assert (info.value.expected, info.value.actual, info.value.entity_id) == (1, 2, "v")
    with pytest.raises(VersionMismatchError):
        await store.upsert(C, "v", {"n": 3}, expected_version=0)
    with pytest.raises(VersionMismatchError) as info:
        await store.upsert(C, "missing", {"n": 3}, expected_version=4)
    assert info.value.actual is None and await store.find_one(C, "missing") is None
    assert (await store.find_one(C, "v"))["n"] == 2


async def test_expected_version_with_a_position_skip_is_not_a_conflict(store: MongoProjectionStore) -> None:
    assert await store.upsert(C, "v", {"n": 1}, expected_version=0, event_position=10)
    assert not await store.upsert(C, "v", {"n": 2}, expected_version=1, event_position=9)


async def test_unsafe_filters_and_pipelines_are_rejected(real_connection: MongoConnectionManager) -> None:
    store = MongoProjectionStore(real_connection)
    await store.upsert(C, "a", {"status": "x"})
    with pytest.raises(UnsafeQueryError):
        await store.find(C, {"$where": "sleep(1000) || true"})
    with pytest.raises(UnsafeQueryError):
        await store.count(C, {"a": {"$elemMatch": {"$where": "1"}}})
    with pytest.raises(UnsafeQueryError):
        await store.find(C, {}, projection={"x": {"$function": {"body": "f", "args": [], "lang": "js"}}})
    with pytest.raises(UnsafeQueryError):
        await store.aggregate(C, [{"$group": {"_id": 1, "x": {"$accumulator": {}}}}])
    with pytest.raises(UnsafeQueryError):
        await store.aggregate(C, [{"$match": {}}, {"$out": "copy"}])
    assert await MongoProjectionStore(real_connection).count("copy") == 0
    writer = MongoProjectionStore(real_connection, allow_write_stages=True)
    await writer.aggregate(C, [{"$match": {}}, {"$out": "copy"}])
    assert await writer.count("copy") == 1


async def test_queries_restore_the_id_field(store: MongoProjectionStore) -> None:
    await ensure_indexes(store.connection.db()[C], [("status", 1)])
    await store.bulk_upsert(C, [{"id": f"o{i}", "status": "open" if i % 2 else "done", "n": i} for i in range(10)])
    found = await store.find(C, {"status": "open"}, sort=[("n", -1)], limit=2, skip=1)
    assert [d["id"] for d in found] == ["o7", "o5"]
    assert await store.find(C, {"id": "o3"}, projection={"n": 1}) == [{"id": "o3", "n": 3}]
    assert await store.count(C, {"status": "done"}) == 5
    totals = await store.aggregate(C, [{"$match": {"status": "open"}}, {"$group": {"_id": None, "t": {"$sum": "$n"}}}])
    assert totals[0]["t"] == 1 + 3 + 5 + 7 + 9
    assert await store.delete(C, "o3") and not await store.delete(C, "o3")
    await store.drop_collection(C)
    assert await store.count(C) == 0


async def test_bulk_upsert_counts(store: MongoProjectionStore) -> None:
    first = await store.bulk_upsert(C, ({"id": f"d{i}", "_last_position": 10, "v": 1} for i in range(20)))
    assert (first.inserted, first.updated, first.skipped) == (20, 0, 0)
    docs = [{"id": f"d{i}", "_last_position": 10 + (i % 2) * 5, "v": 2} for i in range(20)]
    docs += [{"id": "fresh", "_last_position": 1}]
    second = await store.upsert_batch(C, docs)
    assert (second.inserted, second.updated, second.skipped) == (1, 10, 10)
    stored = {d["id"]: d.get("v") for d in await store.find(C)}
    assert [stored[f"d{i}"] for i in range(4)] == [1, 2, 1, 2]
    again = await store.bulk_upsert(C, docs)  # replaying the batch is a no-op
    assert (again.inserted, again.updated, again.skipped) == (0, 0, 21)


async def test_invalid_batch_writes_nothing(store: MongoProjectionStore) -> None:
    good = [{"id": f"g{i}", "n": i} for i in range(5)]
    for bad in ({"id": "b", "a.b": 1}, {"id": "b", "x": [{"$y": 1}]}, {"n": 1}, {"id": "g1"}, {"id": "b", "s": {1}}):
        with pytest.raises(InvalidDocument):
            await store.bulk_upsert(C, [*good, bad])
    assert await store.count(C) == 0


async def test_bulk_split_to_small_limits(real_connection: MongoConnectionManager) -> None:
    store = MongoProjectionStore(real_connection, max_batch_count=7, max_batch_bytes=2_000)
    docs = [{"id": f"s{i}", "payload": "x" * (i % 5) * 40} for i in range(60)]
    result = await store.bulk_upsert(C, docs)
    assert result.inserted == 60 and result.batches >= 60 // 7 + 1
    assert await store.count(C) == 60
    with pytest.raises(InvalidDocument, match="over the 2000-byte limit"):
        await store.bulk_upsert(C, [{"id": "big", "payload": "x" * 3_000}])


async def test_other_unique_index_conflicts_are_errors_not_skips(store: MongoProjectionStore) -> None:
    await ensure_indexes(store.connection.db()[C], [{"keys": [("email", 1)], "unique": True}])
    await store.upsert(C, "u1", {"email": "a@x"})
    with pytest.raises(DuplicateEntityError):
        await store.upsert(C, "u2", {"email": "a@x"})
    with pytest.raises(DuplicateEntityError):
        await store.bulk_upsert(C, [{"id": "u3", "email": "a@x"}])


async def test_guard_skips_inside_a_transaction_keep_it_alive(store: MongoProjectionStore) -> None:
    if not await store.connection.supports_transactions():
        pytest.skip("server without transactions")
    await store.bulk_upsert(C, [{"id": "t1", "_last_position": 5, "v": "old"}])
    async with TransactionScope(store.connection) as uow:
        assert not await store.upsert(C, "t1", {"v": "stale"}, event_position=4, uow=uow)
        assert await store.upsert(C, "t2", {"v": "new"}, event_position=1, uow=uow)
        result = await store.bulk_upsert(
            C, [{"id": "t1", "_last_position": 3}, {"id": "t1b", "_last_position": 1}, {"id": "t2", "_last_position": 2, "v": "newer"}], uow=uow
        )
        assert (result.inserted, result.updated, result.skipped) == (1, 1, 1)
        await uow.commit()
    assert (await store.find_one(C, "t1"))["v"] == "old"
    assert (await store.find_one(C, "t2"))["v"] == "newer"
    assert await store.count(C) == 3


async def test_bulk_in_an_aborted_transaction_writes_nothing(store: MongoProjectionStore) -> None:
    if not await store.connection.supports_transactions():
        pytest.skip("server without transactions")
    async with TransactionScope(store.connection) as uow:
        await store.bulk_upsert(C, [{"id": f"a{i}"} for i in range(10)], uow=uow)
        assert await store.count(C, uow=uow) == 10
    assert await store.count(C) == 0


@pytest.mark.parametrize("insert_first", [True, False])
async def test_write_upserts_with_and_without_the_insert_pass(
    pymongo_connection: MongoConnectionManager, insert_first: bool
) -> None:
    collection = pymongo_connection.db()[C]
    await write_upserts(collection, build_upserts([{"id": "a", "_last_position": 5, "v": "old"}]))
    statements = build_upserts(
        [{"id": "a", "_last_position": 9, "v": "new"}, {"id": "b", "_last_position": 1, "v": "b"},
         {"id": "a2", "_last_position": 2}]
    )
    result = await write_upserts(collection, statements, insert_first=insert_first)
    assert (result.inserted, result.updated, result.skipped) == (2, 1, 0)
    again = await write_upserts(collection, statements, insert_first=insert_first)
    assert (again.inserted, again.updated, again.skipped) == (0, 0, 3)
    assert (await collection.find_one({"_id": "a"}))["v"] == "new"
    assert await collection.count_documents({}) == 3


class CountingCollection:
    """A collection that records which kinds of write each bulk_write sent."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.sent: list[tuple[str, int]] = []

    async def bulk_write(self, models: list[Any], **kwargs: Any) -> Any:
        self.sent.append((type(models[0]).__name__, len(models)))
        return await self.inner.bulk_write(models, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_bulk_upserts_probe_whether_keys_exist_and_write_nothing_twice(
    pymongo_connection: MongoConnectionManager,
) -> None:
    collection = CountingCollection(pymongo_connection.db()["probed"])
    docs = [{"id": f"k{i:04d}", "v": i} for i in range(500)]
    fresh = await write_upserts(collection, build_upserts(docs, "id", None, None))
    # the 64 probing upserts created their documents: the rest go out as plain inserts
    assert fresh.inserted == 500 and collection.sent == [("UpdateOne", 64), ("InsertOne", 436)]
    collection.sent.clear()
    again = await write_upserts(collection, build_upserts([{**d, "v": -1} for d in docs], "id", None, None))
    assert again.updated == 500 and again.inserted == 0
    # the 64 probing upserts met existing keys: the rest go out as upserts, no wasted inserts
    assert collection.sent == [("UpdateOne", 64), ("UpdateOne", 436)]
    stored = await pymongo_connection.db()["probed"].find({"v": -1}).to_list(None)
    assert len(stored) == 500


@pytest.mark.parametrize("in_transaction", [False, True], ids=["own writes", "in a transaction"])
async def test_bulk_upsert_replace_writes_documents_whole_with_the_same_guards(
    store: MongoProjectionStore, in_transaction: bool
) -> None:
    if in_transaction and not await store.connection.supports_transactions():
        pytest.skip("server without transactions")
    first = [{"id": f"r{i}", "_last_position": 10, "status": "placed", "note": "old"} for i in range(100)]
    await store.bulk_upsert(C, first)
    later = [{"id": f"r{i}", "_last_position": 10 + (i % 2) * 5, "status": "shipped"} for i in range(100)]
    later.append({"id": "new", "_last_position": 1, "status": "placed"})
    if in_transaction:
        async with TransactionScope(store.connection) as uow:
            result = await store.bulk_upsert(C, later, replace=True, uow=uow)
            await uow.commit()
    else:
        result = await store.bulk_upsert(C, later, replace=True)
    assert (result.inserted, result.updated, result.skipped) == (1, 50, 50)
    stored = {d["id"]: d for d in await store.find(C)}
    assert stored["r1"]["status"] == "shipped" and "note" not in stored["r1"]  # replaced whole
    assert stored["r0"] == {**first[0]}  # its guard failed: untouched
    assert stored["new"]["status"] == "placed"
    merged = await store.bulk_upsert(C, [{"id": "r3", "_last_position": 20, "extra": 1}])
    assert merged.updated == 1
    assert (await store.find_one(C, "r3"))["status"] == "shipped"  # the default sets, keeps the rest


async def test_bulk_upsert_builds_with_fewer_garbage_collections_and_restores_the_collector(
    store: MongoProjectionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gc

    from cqrs_ddd_persistence_mongo.advanced import projection_store

    seen: list[int] = []
    build = projection_store.build_upserts

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.get_threshold()[0])
        return build(*args, **kwargs)

    monkeypatch.setattr(projection_store, "build_upserts", recording)
    before = gc.get_threshold()
    gc.set_threshold(700, before[1], before[2])
    try:
        await store.bulk_upsert(C, [{"id": f"g{i}", "n": i} for i in range(10)])
        assert seen == [20_000] and gc.get_threshold()[0] == 700
    finally:
        gc.set_threshold(*before)
