"""Event store gates on the embedded real-wire server (or MONGODB_URL):

* append_batch of 1,000 events is >= 10x faster than appending them one by one with a
  counter round trip each (the seed's pattern), and sends a constant number of commands;
* streaming 100,000 events keeps memory bounded by the batch size, not the history.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import pytest
from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.core._event_codec import to_document
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from pymongo import monitoring

from .conftest import best_time, report

HISTORY = 100_000
BATCH = 1_000


class CommandCounter(monitoring.CommandListener):
    """Counts the commands the client sends, by name."""

    def __init__(self) -> None:
        self.names: Counter[str] = Counter()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names[event.command_name] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def total(self) -> int:
        return sum(n for name, n in self.names.items() if name not in ("endSessions", "hello", "ismaster"))


class Session:
    """An event loop plus a connected store on a fresh database, for synchronous benchmarks."""

    def __init__(self, url: str, *, indexes: bool = True, **client_options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.connection = MongoConnectionManager(url=url, database=f"bench_{uuid.uuid4().hex[:10]}", **client_options)
        self.run(self.connection.connect())
        self.store = MongoEventStore(self.connection)
        if indexes:
            self.run(self.store.ensure_indexes())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.connection.client.drop_database(self.connection.database_name))
        self.run(self.connection.disconnect())
        self.loop.close()


_streams = itertools.count()


def events(n: int) -> list[StoredEvent]:
    stream = f"s{next(_streams)}"
    return [StoredEvent(event_type="Ticked", aggregate_id=stream, aggregate_type="Clock", version=i + 1,
                        payload={"i": i, "label": "tick"}) for i in range(n)]


def test_append_batch_vs_one_by_one(benchmark: Any, mongo_url: str) -> None:
    counter = CommandCounter()
    session = Session(mongo_url, event_listeners=[counter])
    store = session.store
    try:
        # commands per batch: constant in the batch size
        per_batch = {}
        for size in (1, 10, 1000):
            batch = events(size)
            counter.names.clear()
            session.run(store.append_batch(batch))
            per_batch[size] = (counter.total(), dict(counter.names))
        # one event: reserve + insert; a batch also commits its own transaction (atomic)
        own_transaction = session.run(session.connection.supports_transactions())
        batch_commands = 3 if own_transaction else 2
        assert per_batch[1][0] == 2, per_batch
        assert per_batch[10][0] == per_batch[1000][0] == batch_commands, per_batch
        expected_names = {"findAndModify": 1, "insert": 1}
        if own_transaction:
            expected_names["commitTransaction"] = 1
        assert per_batch[1000][1] == expected_names

        # the cost of the batch's own transaction, side by side with the non-atomic path
        if own_transaction:
            connection = session.connection
            real_supports = connection.supports_transactions

            async def no_transactions() -> bool:
                return False

            atomic_times, plain_times = [], []
            for _ in range(3):
                atomic_times.append(best_time(lambda: session.run(store.append_batch(events(BATCH))), repeat=2))
                connection.supports_transactions = no_transactions  # type: ignore[method-assign]
                try:
                    plain_times.append(best_time(lambda: session.run(store.append_batch(events(BATCH))), repeat=2))
                finally:
                    connection.supports_transactions = real_supports  # type: ignore[method-assign]
            small_atomic = best_time(lambda: session.run(store.append_batch(events(10))), repeat=5)
            connection.supports_transactions = no_transactions  # type: ignore[method-assign]
            try:
                small_plain = best_time(lambda: session.run(store.append_batch(events(10))), repeat=5)
            finally:
                connection.supports_transactions = real_supports  # type: ignore[method-assign]
            report(f"append_batch own transaction: 1,000 events {min(atomic_times) * 1e3:.1f} ms vs "
                   f"{min(plain_times) * 1e3:.1f} ms without; 10 events {small_atomic * 1e3:.2f} ms vs "
                   f"{small_plain * 1e3:.2f} ms without")

        # main measurement: one batch of 1,000
        benchmark.pedantic(lambda batch: session.run(store.append_batch(batch)),
                           setup=lambda: ((events(BATCH),), {}), rounds=5, iterations=1)

        async def one_by_one(batch: list[StoredEvent]) -> None:
            for event in batch:  # the seed's pattern: a counter round trip per event
                await store.append(event)

        pending = [events(BATCH) for _ in range(6)]
        batch_times, single_times = [], []
        for _ in range(2):  # interleaved, so both see the same machine load
            batch_times.append(best_time(lambda: session.run(store.append_batch(pending.pop())), repeat=2))
            single_times.append(best_time(lambda: session.run(one_by_one(pending.pop())), repeat=1))
        batch_time, single_time = min(batch_times), min(single_times)
        counter.names.clear()
        session.run(one_by_one(events(100)))
        single_commands = counter.total()
        ratio = single_time / batch_time
        report(f"event store append 1,000 events: batch {batch_time * 1e3:.1f} ms ({per_batch[1000][0]} commands) "
               f"vs one by one {single_time * 1e3:.1f} ms ({single_commands * 10} commands): {ratio:.1f}x "
               "(gate >= 10x)")
        assert single_commands == 200
        RATIOS["append_batch / one by one"] = ratio
    finally:
        session.close()


# Measured by the test above, checked here. CI runs the gates on the Rust test server
# (secantusd-rs), where the ratio measured 14-31x. On the embedded Python server, whose
# per-document index work is 92-94% of a batch, it straddles the gate (9-13x); see
# docs/event-store.md.
RATIOS: dict[str, float] = {}


def test_append_batch_is_ten_times_one_by_one() -> None:
    ratio = RATIOS.get("append_batch / one by one")
    assert ratio is not None, "test_append_batch_vs_one_by_one did not run"
    assert ratio >= 10, f"append_batch only {ratio:.1f}x faster than one by one"


def _insert_history(session: Session, total: int) -> None:
    """Bulk insert the history (the store's own documents, 10,000 per insert_many).

    Only the position index exists (created here; reads create nothing): streaming needs
    nothing else, and each extra index doubles the embedded server's insert time.
    """
    store = session.store
    assert session.run(store.get_latest_position()) == 0
    collection = session.connection.db()[store.collection_name]
    session.run(collection.create_index([("position", 1)], unique=True, name="position_unique"))
    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for start in range(0, total, 10_000):
        docs = []
        for i in range(start, min(start + 10_000, total)):
            doc = to_document(StoredEvent(event_type="Ticked", aggregate_id=f"h{i // 1000}", version=i % 1000 + 1,
                                          payload={"i": i}, occurred_at=at))
            doc["position"] = i + 1
            docs.append(doc)
        session.run(collection.insert_many(docs, ordered=False))
    counters = session.connection.db()[store.counters_collection_name]
    session.run(counters.update_one({"_id": store.position_counter}, {"$set": {"seq": total}}, upsert=True))
    assert session.run(store.get_latest_position()) == total


def _stream_peaks(session: Session, batch_size: int, marks: tuple[int, ...]) -> dict[int, int]:
    """Stream the history under tracemalloc; the peak traced bytes seen after each mark."""
    peaks: dict[int, int] = {}

    async def consume() -> None:
        count = 0
        stream = session.store.get_events_from_position(0, batch_size=batch_size)
        async for _ in stream:
            count += 1
            if count in marks:
                peaks[count] = tracemalloc.get_traced_memory()[1]
                if count == marks[-1]:
                    await stream.aclose()
                    return

    tracemalloc.start()
    try:
        session.run(consume())
    finally:
        tracemalloc.stop()
    return peaks


def test_streaming_memory_is_bounded_by_the_batch(benchmark: Any, mongo_url: str) -> None:
    session = Session(mongo_url, indexes=False)
    try:
        started = time.perf_counter()
        _insert_history(session, HISTORY)
        insert_seconds = time.perf_counter() - started

        async def stream_all() -> int:
            count = 0
            async for _ in session.store.get_events_from_position(0, batch_size=BATCH):
                count += 1
            return count

        started = time.perf_counter()
        streamed = benchmark.pedantic(lambda: session.run(stream_all()), rounds=1, iterations=1)
        rate = HISTORY / (time.perf_counter() - started)
        assert streamed == HISTORY

        started = time.perf_counter()
        small = _stream_peaks(session, 250, (10_000, HISTORY))
        large = _stream_peaks(session, 2_500, (10_000,))
        traced_seconds = time.perf_counter() - started
        growth_with_history = small[HISTORY] / small[10_000]
        growth_with_batch = large[10_000] / small[10_000]
        report(f"event store streaming {HISTORY:,} events: {rate:,.0f} events/s (batch {BATCH}); "
               f"history insert {HISTORY / insert_seconds:,.0f} events/s; peak memory batch 250: "
               f"{small[10_000] / 1e6:.2f} MB after 10k, {small[HISTORY] / 1e6:.2f} MB after 100k "
               f"(x{growth_with_history:.2f}); batch 2,500: {large[10_000] / 1e6:.2f} MB (x{growth_with_batch:.2f}); "
               f"setup {insert_seconds:.0f} s, traced passes {traced_seconds:.0f} s")
        assert growth_with_history < 1.3, "peak memory grew with the history length"
        assert growth_with_batch > 3, "peak memory should follow the batch size"
    finally:
        session.close()
