"""MongoEventStore on the real-wire server (both async drivers): positions, stream
concurrency, transactions, reads, hole handling, and bad input."""

from __future__ import annotations

import asyncio
from contextlib import aclosing
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import ConcurrencyConflict, EventStoreError, MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.domain import AggregateRoot, DomainEvent, StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import InvalidEvent

from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork


def ev(stream: str, version: int, **payload: Any) -> StoredEvent:
    return StoredEvent(event_type="Happened", aggregate_id=stream, aggregate_type="Thing",
                       version=version, payload=payload)


async def positions_in_db(connection: MongoConnectionManager) -> list[int]:
    docs = await connection.db().domain_events.find({}, {"position": 1}).sort("position", 1).to_list(None)
    return [d["position"] for d in docs]


async def test_append_assigns_increasing_positions_and_round_trips(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    first = StoredEvent(event_id="e1", event_type="OrderCreated", aggregate_id="o1", aggregate_type="Order",
                        version=1, payload={"total": 9.5, "items": [{"sku": "a"}]}, metadata={"user": "u"},
                        occurred_at=datetime(2024, 1, 1, tzinfo=timezone.utc), correlation_id="c",
                        causation_id="k", tenant_id="t")
    assert await store.append(first) == 1
    assert first.position == 1
    assert await store.append_batch([ev("o1", 2), ev("o2", 1), ev("o1", 3)]) == [2, 3, 4]
    loaded = (await store.get_events("o1"))[0]
    assert loaded == first
    assert [e.version for e in await store.get_events("o1")] == [1, 2, 3]
    assert [e.version for e in await store.get_events("o1", after_version=1)] == [2, 3]
    assert await store.get_latest_position() == 4
    raw = await real_connection.db().domain_events.find_one({"_id": "e1"})
    assert raw["position"] == 1 and raw["aggregate_id"] == "o1" and raw["payload"]["total"] == 9.5


async def test_domain_events_are_appended_through_to_stored(real_connection: MongoConnectionManager) -> None:
    class Shipped(DomainEvent):
        carrier: str

    class Order(AggregateRoot):
        pass

    order = Order(id="o9")
    order.record_event(Shipped(carrier="dhl"))
    order.record_event(Shipped(carrier="ups"))
    store = MongoEventStore(real_connection)
    await store.append_batch(order.pull_domain_events())
    events = await store.get_events("o9")
    assert [(e.event_type, e.version, e.payload, e.aggregate_type) for e in events] == [
        ("Shipped", 1, {"carrier": "dhl"}, "Order"), ("Shipped", 2, {"carrier": "ups"}, "Order")]


@pytest.mark.replica_set_protocol
async def test_existing_version_is_a_conflict_and_positions_are_never_reused(
        real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.append_batch([ev("s", 1), ev("s", 2)])
    with pytest.raises(ConcurrencyConflict, match="already has version 2") as info:
        await store.append(ev("s", 2))
    assert info.value.entity_id == "s"
    # outside a transaction the reserved position is burnt and marked at once ...
    assert await store.append(ev("s", 3)) == 4
    # ... so a follower passes it without waiting for gap_timeout (10 s by default)
    assert [e.position for e in await store.get_events_after(0)] == [1, 2, 4]
    assert [e.version for e in await store.get_events("s")] == [1, 2, 3]


async def test_batch_without_uow_is_atomic_where_transactions_exist(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.append(ev("s", 3))
    with pytest.raises(ConcurrencyConflict, match="already has version 3"):
        await store.append_batch([ev("s", 1), ev("s", 2), ev("s", 3)])
    assert [e.version for e in await store.get_events("s")] == [3]  # the first two are not stored
    assert [e.version for e in await store.get_events_after(0)] == [3]


async def test_concurrent_batches_without_uow_all_land(real_connection: MongoConnectionManager) -> None:
    """Own transactions conflict on the position counter; the store retries them."""
    store = MongoEventStore(real_connection)
    await store.ensure_indexes()
    await asyncio.gather(*(store.append_batch([ev(f"s{i}", 1), ev(f"s{i}", 2)]) for i in range(4)))
    assert [e.position for e in await store.get_events_after(0)] == list(range(1, 9))


async def test_batch_without_transactions_keeps_prefix_and_says_so(mock_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(mock_connection)
    await store.append(ev("s", 2))
    with pytest.raises(ConcurrencyConflict, match="1 of 3 events before it were stored"):
        await store.append_batch([ev("s", 1), ev("s", 2), ev("s", 3)])
    assert [e.version for e in await store.get_events("s")] == [1, 2]


async def test_batch_that_conflicts_with_itself_writes_nothing(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    with pytest.raises(ConcurrencyConflict, match="twice"):
        await store.append_batch([ev("s", 1), ev("s", 1)])
    with pytest.raises(InvalidEvent, match="twice"):
        await store.append_batch([StoredEvent(event_id="x", event_type="T", aggregate_id="a", version=1),
                                  StoredEvent(event_id="x", event_type="T", aggregate_id="b", version=1)])
    assert await positions_in_db(real_connection) == []


async def test_expected_version_checks_the_stream_head(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.append(ev("s", 1), expected_version=0)
    await store.append(ev("s", 2), expected_version=1)
    with pytest.raises(ConcurrencyConflict) as info:
        await store.append(ev("s", 3), expected_version=1)
    assert (info.value.expected, info.value.actual) == (1, 2)
    assert await store.get_latest_position() == 2  # nothing reserved for the refused append


async def test_batch_in_transaction_is_gapless_and_atomic(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.ensure_indexes()
    async with MongoUnitOfWork(connection=real_connection) as uow:
        assert await store.append_batch([ev("a", 1), ev("a", 2)], uow=uow) == [1, 2]
        await uow.commit()
    await store.append(ev("b", 1))  # position 3
    # a conflicting batch in a transaction: nothing of it, nor its positions, survives
    with pytest.raises(ConcurrencyConflict):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await store.append_batch([ev("c", 1), ev("b", 1), ev("c", 2)], uow=uow)
            await uow.commit()
    # an aborted transaction gives its positions back too
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await store.append_batch([ev("d", 1)], uow=uow)
            raise RuntimeError("abort")
    # a conflict caught inside the block: leaving it rolls back, nothing is committed
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await store.append_batch([ev("f", 1)], uow=uow)
        with pytest.raises(ConcurrencyConflict):
            await store.append(ev("b", 1), uow=uow)
    assert await store.append(ev("e", 1)) == 4
    assert await positions_in_db(real_connection) == [1, 2, 3, 4]
    assert await store.get_events("c") == [] and await store.get_events("d") == []
    assert await store.get_events("f") == []


async def test_concurrent_appending_transactions_conflict_instead_of_interleaving(
        real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.ensure_indexes()
    async with MongoUnitOfWork(connection=real_connection) as first:
        await store.append(ev("a", 1), uow=first)
        with pytest.raises(ConcurrencyConflict, match="retry the unit of work"):
            async with MongoUnitOfWork(connection=real_connection) as second:
                await store.append(ev("b", 1), uow=second)
        await first.commit()
    assert await positions_in_db(real_connection) == [1]


async def test_paging_and_streaming_read_everything_in_order(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    await store.append_batch([ev(f"s{i % 7}", i // 7 + 1, n=i) for i in range(250)])
    position, seen = 0, []
    while True:  # the seed's pagination loop
        batch = await store.get_events_after(position, limit=40)
        if not batch:
            break
        for event in batch:
            seen.append(event.payload["n"])
            position = event.position
    assert seen == list(range(250))
    streamed = [e.payload["n"] async for e in await store.get_events_from_position(0, batch_size=33)]
    assert streamed == list(range(250))
    tail = [e.position async for e in store.get_events_from_position(245, batch_size=2)]
    assert tail == [246, 247, 248, 249, 250]
    async with aclosing(store.stream_all(batch_size=10)) as stream:
        async for event in stream:
            if event.position == 3:
                break
    assert await store.get_events_after(250) == []


class _PausedCollection:
    """Proxy of the events collection whose inserts wait for a gate: an appender that has
    reserved its positions and not written them yet."""

    def __init__(self, inner: Any, gate: asyncio.Event, reserved: asyncio.Event) -> None:
        self._inner, self._gate, self._reserved = inner, gate, reserved

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def insert_many(self, docs: Any, **kwargs: Any) -> Any:
        self._reserved.set()
        await self._gate.wait()
        return await self._inner.insert_many(docs, **kwargs)


class SlowAppender(MongoEventStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate, self.reserved = asyncio.Event(), asyncio.Event()

    def _collection(self) -> Any:
        return _PausedCollection(super()._collection(), self.gate, self.reserved)


@pytest.mark.replica_set_protocol
async def test_reader_holds_back_at_a_hole_still_in_flight(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection, gap_timeout=60)
    await store.ensure_indexes()
    slow = SlowAppender(real_connection)
    pending = asyncio.create_task(slow.append(ev("slow", 1)))
    await slow.reserved.wait()  # position 1 reserved, not written
    assert await store.append(ev("fast", 1)) == 2
    assert await store.get_events_after(0) == []  # 2 is visible but 1 may still come
    assert [e async for e in store.get_events_from_position(0)] == []
    slow.gate.set()
    assert await pending == 1
    assert [e.position for e in await store.get_events_after(0)] == [1, 2]


@pytest.mark.replica_set_protocol
async def test_abandoned_hole_is_fenced_and_the_late_appender_fails(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection, gap_timeout=0.3)
    await store.ensure_indexes()
    slow = SlowAppender(real_connection)
    # a single event: a batch outside a unit of work runs in its own transaction here
    pending = asyncio.create_task(slow.append(ev("slow", 1)))
    await slow.reserved.wait()
    await store.append(ev("fast", 1))  # position 2
    assert await store.get_events_after(0) == []
    await asyncio.sleep(0.35)
    assert [e.position for e in await store.get_events_after(0)] == [2]  # 1 declared abandoned
    slow.gate.set()
    with pytest.raises(EventStoreError, match="declared abandoned"):
        await pending
    assert await store.get_events("slow") == []  # never visible behind a follower's checkpoint
    assert [e.position for e in await store.get_events_after(0)] == [2]
    assert await store.get_latest_position() == 2


@pytest.mark.parametrize(
    "bad, message",
    [
        (StoredEvent(event_type="T", aggregate_id=None, version=1), "aggregate_id is missing"),
        (StoredEvent(event_type="", aggregate_id="a", version=1), "event_type must be"),
        (StoredEvent(event_type="T", aggregate_id="a", version=-1), "version must be an int >= 0"),
        (StoredEvent(event_type="T", aggregate_id="a", version=1, payload={"$set": 1}), "payload"),
        (StoredEvent(event_id="", event_type="T", aggregate_id="a", version=1), "needs an event_id"),
    ],
)
async def test_bad_events_are_refused_before_anything_is_written(
        real_connection: MongoConnectionManager, bad: StoredEvent, message: str) -> None:
    store = MongoEventStore(real_connection)
    with pytest.raises(InvalidEvent, match=message):
        await store.append(bad)
    assert await store.get_latest_position() == 0


async def test_unencodable_payload_burns_and_marks_its_position(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    with pytest.raises(InvalidEvent, match="BSON"):
        await store.append(ev("a", 1, price=object()))
    assert await store.append(ev("a", 1, price=str(Decimal("1.5")))) == 2
    assert [e.position for e in await store.get_events_after(0)] == [2]


async def test_duck_typed_events_are_accepted(real_connection: MongoConnectionManager) -> None:
    class Foreign:
        def __init__(self) -> None:
            self.event_id, self.event_type, self.aggregate_id, self.version = "f1", "Foreign", "z", 1
            self.payload = {"k": 1}

    store = MongoEventStore(real_connection, collection="other_events")
    await store.append(Foreign())
    [event] = await store.get_events("z")
    assert (event.event_id, event.payload, event.position) == ("f1", {"k": 1}, 1)


async def test_works_on_mongomock_without_transactions(mock_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(mock_connection)
    await store.append_batch([ev("m", 1), ev("m", 2)])
    with pytest.raises(ConcurrencyConflict):
        await store.append(ev("m", 2))
    await store.append(ev("m", 3))
    assert [e.position for e in await store.get_events_after(0)] == [1, 2, 4]


async def test_bad_arguments(mock_connection: MongoConnectionManager) -> None:
    with pytest.raises(EventStoreError, match="gap_timeout"):
        MongoEventStore(mock_connection, gap_timeout=-1)
    store = MongoEventStore(mock_connection)
    with pytest.raises(InvalidEvent, match="needs an aggregate_id"):
        await store.get_events(None)  # hole markers have no stream; nobody reads them as one
    with pytest.raises(EventStoreError, match="limit"):
        await store.get_events_after(0, limit=0)
    with pytest.raises(EventStoreError, match="batch_size"):
        store.get_events_from_position(0, batch_size=0)


async def test_first_use_inside_a_unit_of_work_after_other_writes(real_connection: MongoConnectionManager) -> None:
    """The store's collection and unique indexes are created inside the transaction when it
    is the first use, instead of a catalog change the transaction would conflict with."""
    store = MongoEventStore(real_connection)
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await real_connection.db().orders.insert_one({"_id": 1}, session=uow.session)
            await store.append(ev("a", 1), uow=uow)
            raise RuntimeError("abort")
    # aborted: nothing was written
    assert "domain_events" not in await real_connection.db().list_collection_names()
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await real_connection.db().orders.insert_one({"_id": 2}, session=uow.session)
        assert await store.append_batch([ev("a", 1), ev("a", 2)], uow=uow) == [1, 2]
        await uow.commit()
    with pytest.raises(ConcurrencyConflict):  # the unique stream index exists for good
        await store.append(ev("a", 2))
    assert [e.version for e in await store.get_events_after(0)] == [1, 2]


@pytest.mark.replica_set_protocol
async def test_crashed_appender_at_the_head_is_fenced_after_gap_timeout(
        real_connection: MongoConnectionManager) -> None:
    """A hole with nothing after it yet: the counter says the positions are reserved, so the
    reader holds back, then fences them, and later appends are read without waiting."""
    store = MongoEventStore(real_connection, gap_timeout=0.2)
    await store.append(ev("a", 1))  # position 1
    slow = SlowAppender(real_connection)
    crashed = asyncio.create_task(slow.append(ev("b", 1)))  # one event: no own transaction
    await slow.reserved.wait()
    crashed.cancel()  # the process dies between reserving 2 and writing it
    await asyncio.gather(crashed, return_exceptions=True)
    assert [e.position for e in await store.get_events_after(0)] == [1]
    assert store.reader_holds >= 1
    await asyncio.sleep(0.25)
    assert await store.get_events_after(1) == []  # fenced now: nothing to read, nothing to wait for
    await store.append(ev("a", 2))
    assert [e.position for e in await store.get_events_after(1)] == [3]


async def test_original_read_api(real_connection: MongoConnectionManager) -> None:
    """get_events_after(None), get_by_aggregate, get_all, aggregate and specification=."""
    from cqrs_ddd_persistence_mongo import ResultTooLarge, UnsafeQueryError
    from cqrs_ddd_persistence_mongo.specifications import SpecificationBuilder

    store = MongoEventStore(real_connection)
    await store.append_batch([ev("a", 1, n=1), ev("a", 2, n=2), ev("b", 1, n=3)])
    assert [e.position for e in await store.get_events_after(None)] == [1, 2, 3]
    assert [e.version for e in await store.get_by_aggregate("a")] == [1, 2]
    assert await store.get_by_aggregate("a", "Other") == []
    assert [e.position for e in await store.get_all()] == [1, 2, 3]
    big = SpecificationBuilder().where("payload.n", "gte", 2).build()
    assert [e.position for e in await store.get_all(specification=big)] == [2, 3]
    assert [e.position for e in await store.get_events_after(0, specification=big)] == [2, 3]
    assert [e.version for e in await store.get_events("a", specification=big)] == [2]
    assert [e.position async for e in store.get_events_from_position(0, batch_size=1, specification=big)] == [2, 3]
    with pytest.raises(ResultTooLarge, match="more than 2 events"):
        await store.get_all(limit=2)
    counts = await store.aggregate([{"$match": {"aggregate_id": {"$in": ["a", "b"]}}},
                                    {"$group": {"_id": "$aggregate_id", "n": {"$sum": 1}}},
                                    {"$sort": {"_id": 1}}])
    assert counts == [{"_id": "a", "n": 2}, {"_id": "b", "n": 1}]
    with pytest.raises(UnsafeQueryError):
        await store.aggregate([{"$out": "copy"}])


async def test_aggregate_streams_under_the_same_checks(real_connection: MongoConnectionManager) -> None:
    """``async for doc in store.aggregate(p)`` streams past the awaited form's cap; a refused
    pipeline fails at the call, before anything runs; stopping early closes the cursor."""
    from cqrs_ddd_persistence_mongo import ResultTooLarge, UnsafeQueryError

    store = MongoEventStore(real_connection)
    await store.append_batch([ev("a", v, n=v) for v in range(1, 6)])
    pipeline = [{"$match": {"aggregate_id": "a"}}, {"$sort": {"version": 1}}, {"$project": {"_id": 0, "version": 1}}]
    streamed = [doc["version"] async for doc in store.aggregate(pipeline, limit=2, batch_size=2)]
    assert streamed == [1, 2, 3, 4, 5]
    with pytest.raises(ResultTooLarge, match="more than 2 documents"):
        await store.aggregate(pipeline, limit=2)
    assert await store.aggregate(pipeline, limit=5) == [{"version": v} for v in range(1, 6)]
    with pytest.raises(UnsafeQueryError):
        store.aggregate([{"$merge": {"into": "copy"}}])
    async with aclosing(store.aggregate(pipeline, batch_size=1).__aiter__()) as docs:  # type: ignore[type-var]
        async for doc in docs:
            assert doc == {"version": 1}
            break
    assert "copy" not in await real_connection.db().list_collection_names()


async def test_awaited_stream_is_not_awaitable(real_connection: MongoConnectionManager) -> None:
    """A loop that awaits until the result is no longer awaitable ends after one step."""
    import inspect

    store = MongoEventStore(real_connection)
    await store.append_batch([ev("a", 1), ev("a", 2)])
    result: Any = store.get_events_from_position(0)
    steps = 0
    while inspect.isawaitable(result):
        result = await result
        steps += 1
        assert steps < 3, "the stream awaits to itself forever"
    assert [e.position async for e in result] == [1, 2]
    assert [e.position async for e in await store.get_events_from_position(1)] == [2]
