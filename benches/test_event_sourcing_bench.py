"""Event-sourced repository gates on the embedded real-wire server (or MONGODB_URL),
each measured side by side in one run:

* loading a 1,000-event aggregate without a snapshot costs <= 1.5x a raw cursor fetch of
  the same documents plus ``model_validate`` of each event;
* with a snapshot every 100 events, load time stays flat as the stream grows from 1,000
  to 10,000 events (<= 1.5x); both curves (with and without snapshots) are reported;
* saving 10 new events sends the same commands as ``append_batch`` of 10.
"""

from __future__ import annotations

from typing import Any

from cqrs_ddd_persistence_mongo import EventSourcedAggregate, EventSourcedRepository, applies
from cqrs_ddd_persistence_mongo.advanced import MongoSnapshotStore
from cqrs_ddd_persistence_mongo.domain import DomainEvent

from .conftest import best_pair, report
from .test_event_store_bench import CommandCounter, Session

SIZES = (1_000, 2_000, 5_000, 10_000)
SNAPSHOT_EVERY = 100
TAIL = 50  # events after the last snapshot, replayed by every load
KEEP_SNAPSHOTS = 3


class Reading(DomainEvent):
    value: int
    label: str


class Meter(EventSourcedAggregate):
    total: int = 0
    last: str = ""

    @applies(Reading)
    def _reading(self, event: Reading) -> None:
        self.total += event.value
        self.last = event.label


def record(meter: Meter, count: int) -> None:
    for i in range(count):
        meter.record_event(Reading(value=i % 7, label=f"r{meter.version}"))


async def fill(repo: EventSourcedRepository[Meter], meter_id: str, size: int, chunk: int) -> Meter:
    """A stream of ``size`` events saved ``chunk`` at a time (the policy snapshots as it goes),
    then ``TAIL`` more after the last snapshot."""
    meter = Meter(id=meter_id)
    for _ in range(size // chunk):
        record(meter, chunk)
        await repo.save(meter)
    record(meter, TAIL)
    await repo.save(meter)
    return meter


def test_load_without_snapshot_costs_like_a_raw_fetch(benchmark: Any, mongo_url: str) -> None:
    session = Session(mongo_url)
    repo = EventSourcedRepository(session.connection, Meter, event_store=session.store)
    try:
        meter = session.run(fill(repo, "m-1k", 1_000 - TAIL, 1_000 - TAIL))
        assert meter.version == 1_000
        collection = session.connection.db()[session.store.collection_name]
        driver = session.connection.driver()

        async def raw() -> list[Reading]:
            cursor = collection.find({"aggregate_id": "m-1k"}, sort=[("version", 1)], batch_size=1000)
            docs = await driver.to_list(cursor, None)
            return [
                Reading.model_validate({
                    **doc["payload"], "event_id": doc["_id"], "event_type": doc["event_type"],
                    "aggregate_id": doc["aggregate_id"], "aggregate_type": doc["aggregate_type"],
                    "version": doc["version"], "schema_version": doc["schema_version"],
                    "occurred_at": doc["occurred_at"], "metadata": doc["metadata"],
                    "correlation_id": doc["correlation_id"], "causation_id": doc["causation_id"],
                })
                for doc in docs
            ]

        async def load() -> Meter | None:
            return await repo.get("m-1k")

        assert len(session.run(raw())) == 1_000 and session.run(load()) == meter
        benchmark.pedantic(lambda: session.run(load()), rounds=5, iterations=1)
        load_time, raw_time = session.run(best_pair(load, raw, number=5, repeat=4))
        ratio = load_time / raw_time
        report(f"event-sourced load of 1,000 events (no snapshot) {load_time * 1e3:.1f} ms vs raw fetch + "
               f"model_validate {raw_time * 1e3:.1f} ms: {ratio:.2f}x (gate <= 1.5x)")
        assert ratio <= 1.5
    finally:
        session.close()


def test_snapshot_loads_stay_flat_as_the_stream_grows(benchmark: Any, mongo_url: str) -> None:
    session = Session(mongo_url)
    # keep_last bounds the snapshots per aggregate: the embedded server sorts every snapshot
    # of the aggregate to find the latest (mongod walks the index backwards and stops at one)
    snapshots = MongoSnapshotStore(session.connection, keep_last=KEEP_SNAPSHOTS)
    with_snapshots = EventSourcedRepository(session.connection, Meter, event_store=session.store,
                                            snapshot_store=snapshots, snapshot_policy=SNAPSHOT_EVERY)
    replay_all = EventSourcedRepository(session.connection, Meter, event_store=session.store)
    try:
        meters = {size: session.run(fill(with_snapshots, f"m-{size}", size, SNAPSHOT_EVERY)) for size in SIZES}
        for size, meter in meters.items():
            latest = session.run(snapshots.get_latest_snapshot("Meter", f"m-{size}"))
            assert latest["version"] == size and meter.version == size + TAIL
            assert session.run(with_snapshots.get(f"m-{size}")) == meter == session.run(replay_all.get(f"m-{size}"))

        def loader(repo: EventSourcedRepository[Meter], size: int) -> Any:
            return lambda: repo.get(f"m-{size}")

        benchmark.pedantic(lambda: session.run(with_snapshots.get("m-10000")), rounds=5, iterations=1)
        curve: dict[int, float] = {}
        ratios: dict[int, float] = {}
        for size in SIZES[1:]:  # each size side by side with the 1,000 one
            small, large = session.run(best_pair(loader(with_snapshots, SIZES[0]), loader(with_snapshots, size),
                                                 number=10, repeat=4))
            curve[SIZES[0]] = min(curve.get(SIZES[0], small), small)
            curve[size] = large
            ratios[size] = large / small  # within one pair: both sides got the same samples
        full = {size: session.run(best_pair(loader(replay_all, size), loader(with_snapshots, size),
                                            number=1, repeat=3))[0] for size in SIZES}
        fmt = ", ".join
        report(f"event-sourced load, snapshot every 100 (keep_last={KEEP_SNAPSHOTS}, +{TAIL} tail events): "
               + fmt(f"{size:,}: {t * 1e3:.1f} ms" for size, t in curve.items()))
        report("event-sourced load, no snapshot:                          "
               + fmt(f"{size:,}: {t * 1e3:.1f} ms" for size, t in full.items()))
        ratio = ratios[10_000]
        report(f"snapshot load at 10,000 / at 1,000 events: {ratio:.2f}x (gate <= 1.5x)")
        assert ratio <= 1.5
    finally:
        session.close()


def test_saving_ten_events_costs_the_commands_of_append_batch(mongo_url: str) -> None:
    counter = CommandCounter()
    session = Session(mongo_url, event_listeners=[counter])
    plain = EventSourcedRepository(session.connection, Meter, event_store=session.store)
    with_policy = EventSourcedRepository(session.connection, Meter, event_store=session.store,
                                         snapshot_store=MongoSnapshotStore(session.connection),
                                         snapshot_policy=SNAPSHOT_EVERY)
    try:
        costs: dict[str, tuple[int, dict[str, int]]] = {}
        for name, repo in (("save", plain), ("save with a snapshot policy", with_policy)):
            meter = Meter(id=f"c-{len(costs)}")
            record(meter, 10)
            session.run(repo.save(meter))  # a stream that already exists
            record(meter, 10)
            counter.names.clear()
            session.run(repo.save(meter))
            costs[name] = (counter.total(), dict(counter.names))
        other = Meter(id="c-batch")
        record(other, 10)
        session.run(session.store.append_batch(other.pull_domain_events()))
        record(other, 10)
        counter.names.clear()
        session.run(session.store.append_batch(other.pull_domain_events()))
        costs["append_batch"] = (counter.total(), dict(counter.names))
        report("commands to store 10 events: " + ", ".join(f"{k} {v[0]} {v[1]}" for k, v in costs.items()))
        assert costs["save"] == costs["save with a snapshot policy"] == costs["append_batch"]
        # reserve positions, insert, and commit the batch's own transaction (atomic batches)
        assert costs["append_batch"][1] == {"findAndModify": 1, "insert": 1, "commitTransaction": 1}
    finally:
        session.close()
