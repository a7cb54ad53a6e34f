"""Projection rebuild: the batched, coalesced engine vs the seed's per-event pattern.

Same history, same server, same run. The server is the embedded SecantusDB started in its
own process (so client and server do not share one interpreter), or ``MONGODB_URL``.
History size: ``PROJECTION_BENCH_ORDERS`` orders x 10 events (default 3,000 -> 30,000
events; the 200,000-event history of the demo takes minutes just to append on the
embedded server). The per-event baseline runs on the first ``PROJECTION_BENCH_BASELINE``
events of it (default 2,000: at 12-60 ms per event on the embedded server a 5,000-event
slice alone takes minutes; its rate per event does not depend on the slice length).

Gates: engine >= 20x the per-event pattern (events/s); peak client memory of a rebuild
over 4x more events stays within 1.5x (bounded by the batch size, not the history).
"""

from __future__ import annotations

import asyncio
import os
import time
import tracemalloc
import uuid
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore, MongoProjectionStore
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.projections import ProjectionRunner
from cqrs_ddd_persistence_mongo.projections.applier import apply_batch
from cqrs_ddd_persistence_mongo.projections.orders import (
    OrderSummaryProjection,
    differences,
    fold_orders,
    order_history,
    read_model,
)
from cqrs_ddd_persistence_mongo.projections.runner import Target

from .conftest import report

ORDERS = int(os.environ.get("PROJECTION_BENCH_ORDERS", "3000"))
BASELINE_EVENTS = int(os.environ.get("PROJECTION_BENCH_BASELINE", "2000"))
BATCH = 5_000

def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Bench:
    def __init__(self, url: str, database: str) -> None:
        self.url = url
        self.database = database

    async def __aenter__(self) -> Bench:
        self.connection = await MongoConnectionManager(url=self.url, database=self.database).connect()
        self.events = MongoEventStore(self.connection)
        self.positions = MongoProjectionPositionStore(self.connection)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.disconnect()

    def runner(self) -> ProjectionRunner:
        return ProjectionRunner(self.events, self.positions, [OrderSummaryProjection()], connection=self.connection)


@pytest.fixture(scope="module")
def history(mongo_url: str) -> tuple[str, str, int]:
    database = f"bench_{uuid.uuid4().hex[:8]}"

    async def fill() -> int:
        async with Bench(mongo_url, database) as bench:
            events = list(order_history(ORDERS, 10, concurrent=200))
            for start in range(0, len(events), 5000):
                await bench.events.append_batch(events[start : start + 5000])
            return len(events)

    return mongo_url, database, run(fill())


async def per_event_baseline(bench: Bench, limit: int) -> int:
    """The seed's pattern: per event one find_one, one guarded upsert, one position save."""
    projection = OrderSummaryProjection()
    store = MongoProjectionStore(bench.connection, id_field="_id")
    position, done = 0, 0
    while done < limit:
        events = await bench.events.get_events_after(position, limit=min(500, limit - done))
        if not events:
            break
        for event in events:
            for collection, doc_id in projection.addresses(event):
                stored = await store.find_one(f"baseline_{collection}", doc_id)
                loaded = {collection: {doc_id: stored}} if stored else {}
                outcome = apply_batch(projection, [event], loaded)
                for doc in outcome.changed.get(collection, {}).values():
                    body = {k: v for k, v in doc.items() if k not in ("_id", "_last_position")}
                    await store.upsert(f"baseline_{collection}", doc_id, body, event_position=event.position)
            await bench.positions.save_position("baseline", event.position)
            position = event.position
            done += 1
    return done


def test_rebuild_engine_vs_per_event_pattern(benchmark: Any, history: tuple[str, str, int]) -> None:
    url, database, total = history

    async def engine() -> float:
        async with Bench(url, database) as bench:
            report_ = await bench.runner().rebuild("order_summary", batch_size=BATCH, fresh=True)
            assert report_.events == total
            return report_.events_per_second

    rates: list[float] = []
    benchmark.pedantic(lambda: rates.append(run(engine())), rounds=1, iterations=1)
    engine_rate = rates[0]

    async def verify() -> list[str]:
        async with Bench(url, database) as bench:
            stored = [e async for e in bench.events.get_events_from_position(0, 5000)]
            return differences(fold_orders(stored), await read_model(bench.connection.db()))

    assert run(verify()) == []

    async def workers() -> float:
        async with Bench(url, database) as bench:
            return (await bench.runner().rebuild("order_summary", batch_size=BATCH, workers=2, fresh=True)).events_per_second

    workers_rate = run(workers())
    assert run(verify()) == []

    async def baseline() -> float:
        async with Bench(url, database) as bench:
            started = time.perf_counter()
            done = await per_event_baseline(bench, BASELINE_EVENTS)
            return done / (time.perf_counter() - started)

    baseline_rate = run(baseline())
    ratio = engine_rate / baseline_rate
    report(
        f"projection rebuild ({total:,} events, batch {BATCH}): engine {engine_rate:,.0f} events/s, "
        f"--workers 2 {workers_rate:,.0f} events/s, per-event pattern {baseline_rate:,.0f} events/s "
        f"(on {BASELINE_EVENTS:,} events) -> {ratio:.1f}x (gate >= 20x)"
    )
    assert ratio >= 20, f"the batched engine is only {ratio:.1f}x the per-event pattern"


def test_rebuild_memory_is_bounded_by_the_batch(history: tuple[str, str, int]) -> None:
    url, database, total = history
    small, large = total // 8, total // 2

    async def peak(upto: int) -> int:
        async with Bench(url, database) as bench:
            runner = bench.runner()
            projection = runner.projection("order_summary")
            physical = {c: f"mem_{upto}_{c}" for c in projection.collections}
            target = Target(projection, f"memory_{upto}", physical, upto=upto)
            await bench.events.get_events_after(0, 1)  # warm up imports and indexes
            tracemalloc.start()
            try:
                await runner.drain(target, 500)
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

    peak_small, peak_large = run(peak(small)), run(peak(large))
    growth = peak_large / peak_small
    report(
        f"projection rebuild memory (batch 500): peak {peak_small / 1e6:.1f} MB over {small:,} events, "
        f"{peak_large / 1e6:.1f} MB over {large:,} events -> {growth:.2f}x for 4x the history (gate <= 1.5x)"
    )
    assert growth <= 1.5
