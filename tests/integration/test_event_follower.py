"""A follower polling get_events_after while many appenders commit concurrently sees every
event exactly once, in position order (both async drivers, embedded real-wire server)."""

from __future__ import annotations

import asyncio
import random

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.core._event_codec import EVENT_CODEC
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import EventStoreError


APPENDERS = 8
EVENTS_EACH = 200


async def follow(store: MongoEventStore, done: asyncio.Event, total: int) -> tuple[list[int], int]:
    """Poll like a projection: checkpoint = last position returned. Returns (positions, polls)."""
    checkpoint, seen, polls = 0, [], 0
    while len(seen) < total:
        batch = await store.get_events_after(checkpoint, limit=64)
        polls += 1
        for event in batch:
            seen.append(event.position)
            checkpoint = event.position
        if not batch:
            if done.is_set() and len(seen) >= total:
                break
            await asyncio.sleep(0.001)
    return seen, polls


async def test_follower_never_skips_with_concurrent_appenders(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection, gap_timeout=30)
    await store.ensure_indexes()
    rng = random.Random(5)
    plans = [[rng.randint(1, 4) for _ in range(EVENTS_EACH)] for _ in range(APPENDERS)]

    async def appender(worker: int) -> None:
        version = 0
        for size in plans[worker]:
            if version >= EVENTS_EACH:
                break
            size = min(size, EVENTS_EACH - version)
            await store.append_batch(
                [StoredEvent(event_type="Tick", aggregate_id=f"w{worker}", version=version + i + 1)
                 for i in range(size)]
            )
            version += size
            await asyncio.sleep(0)  # let the others reserve between our reserve and insert

    done = asyncio.Event()
    total = APPENDERS * EVENTS_EACH
    follower = asyncio.create_task(follow(store, done, total))
    await asyncio.gather(*(appender(w) for w in range(APPENDERS)))
    done.set()
    seen, polls = await asyncio.wait_for(follower, 60)

    stored = [e.position async for e in store.get_events_from_position(0, batch_size=500)]
    assert len(stored) == total
    assert seen == sorted(stored)  # every event, once, in position order
    assert stored == list(range(1, total + 1))  # nothing failed, so no holes at all
    assert polls > 10  # the follower really ran alongside the appenders
    assert store.reader_holds > 0  # and met holes in flight: a naive reader would have skipped


async def test_follower_with_transactional_appenders(real_connection: MongoConnectionManager) -> None:
    """Appenders in transactions serialize on the counter: a write conflict surfaces as
    ConcurrencyConflict carrying the driver's TransientTransactionError, which
    MongoUnitOfWork.run() retries. Positions are gapless and the follower sees them all."""
    store = MongoEventStore(real_connection, gap_timeout=30)
    await store.ensure_indexes()
    appenders, each = 4, 25
    attempts = 0

    async def appender(worker: int) -> None:
        for version in range(1, each + 1):
            async def append_one(uow: MongoUnitOfWork, version: int = version) -> None:
                nonlocal attempts
                attempts += 1
                await store.append(StoredEvent(event_type="Tick", aggregate_id=f"t{worker}", version=version),
                                   uow=uow)
                await asyncio.sleep(0)  # let the others try while we hold the counter

            await MongoUnitOfWork(connection=real_connection).run(append_one)

    done = asyncio.Event()
    follower = asyncio.create_task(follow(store, done, appenders * each))
    await asyncio.gather(*(appender(w) for w in range(appenders)))
    done.set()
    seen, _ = await asyncio.wait_for(follower, 60)
    assert seen == list(range(1, appenders * each + 1))
    assert attempts > appenders * each  # conflicts happened and were retried


async def history_with_holes(connection: MongoConnectionManager) -> MongoEventStore:
    """Events at 1-5 and 8-10; 6, 7 and 11 reserved by appenders still writing. The store
    holds back at holes for 30 s."""
    store = MongoEventStore(connection, gap_timeout=30)
    await store.append_batch([StoredEvent(event_type="Tick", aggregate_id="a", version=v) for v in range(1, 6)])
    await store._reserve(2, None)  # positions 6 and 7: reserved by an appender still writing
    await store.append_batch([StoredEvent(event_type="Tick", aggregate_id="b", version=v) for v in range(1, 4)])
    await store._reserve(1, None)  # position 11: a hole at the tail
    return store


@pytest.mark.replica_set_protocol
async def test_streaming_stops_at_an_in_flight_hole_and_passes_an_abandoned_one(
    real_connection: MongoConnectionManager,
) -> None:
    store = await history_with_holes(real_connection)
    assert [e.position async for e in store.get_events_from_position(0, batch_size=2)] == [1, 2, 3, 4, 5]
    assert [e.position async for e in store.get_events_from_position(7, batch_size=2)] == [8, 9, 10]
    impatient = MongoEventStore(real_connection, gap_timeout=0)
    assert [e.position async for e in impatient.get_events_from_position(0, batch_size=2)] == [1, 2, 3, 4, 5, 8, 9, 10]
    batches = [b async for b in impatient.get_events_from_position(0, batch_size=3).batches()]
    assert [[e.position for e in b] for b in batches] == [[1, 2, 3], [4, 5, 8], [9, 10]]  # 6, 7 are fenced now


@pytest.mark.replica_set_protocol
async def test_pages_stop_at_an_in_flight_hole_and_pass_an_abandoned_one(
    real_connection: MongoConnectionManager,
) -> None:
    store = await history_with_holes(real_connection)
    assert [e.position for e in await store.get_events_after(0, 100)] == [1, 2, 3, 4, 5]
    assert [e.position for e in await store.get_events_after(7, 100)] == [8, 9, 10]
    impatient = MongoEventStore(real_connection, gap_timeout=0)
    assert [e.position for e in await impatient.get_events_after(0, 100)] == [1, 2, 3, 4, 5, 8, 9, 10]
    assert [e.position for e in await impatient.get_events_after(3, 3)] == [4, 5, 8]  # markers fill 6, 7
    assert [e.position for e in await store.get_events_after(10, 100)] == []  # 11 is fenced, nothing after


async def test_a_foreign_document_in_the_events_collection_is_a_clear_error(
    real_connection: MongoConnectionManager,
) -> None:
    store = MongoEventStore(real_connection, collection="events_with_a_stranger")
    await store.append_batch([StoredEvent(event_type="Tick", aggregate_id="a", version=v) for v in range(1, 3)])
    await real_connection.db()["events_with_a_stranger"].insert_one({"_id": "stranger", "note": "not an event"})
    with pytest.raises(EventStoreError, match="has no 'position' field"):
        [e async for e in store.get_events_from_position(0)]


async def test_the_connections_clients_decode_as_the_raw_batch_decoder_does(
    real_connection: MongoConnectionManager,
) -> None:
    """Streams and pages read raw batches only when the client decodes with EVENT_CODEC;
    a default of the connection changed alone would silently turn the native decoder off."""
    store = MongoEventStore(real_connection)
    collection = real_connection.db()[store.collection_name]
    assert collection.codec_options == EVENT_CODEC
    assert store._reads_raw_batches(collection)


async def test_reading_an_event_store_creates_nothing(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection, collection="never_written")
    assert await store.get_events_after(0) == []
    assert await store.get_latest_position() == 0
    assert [e async for e in store.get_events_from_position(0)] == []
    assert await store.get_events("nobody") == []
    db = real_connection.db()
    assert "never_written" not in await db.list_collection_names()
    assert await db["counters"].find_one({"_id": "never_written_position"}) is None
