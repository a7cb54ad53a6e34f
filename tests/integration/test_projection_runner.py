"""The projection engine on the real-wire server with the real event and position stores."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import BulkWriteError, OperationFailure, PyMongoError

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.advanced.bulk_upserts import build_upserts, write_upserts
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.core.uow import MongoUnitOfWork
from cqrs_ddd_persistence_mongo.exceptions import MongoPersistenceError, ProjectionError, ProjectionHandlerFailed
from cqrs_ddd_persistence_mongo.projections import Projection, ProjectionRunner, rebuild_checkpoint
from cqrs_ddd_mongo_demo.orders import (
    ORDER_SUMMARIES,
    OrderSummaryProjection,
    differences,
    fold_orders,
    order_history,
    read_model,
)

pytestmark = pytest.mark.integration


class Stores:
    def __init__(self, connection: MongoConnectionManager) -> None:
        self.connection = connection
        self.events = MongoEventStore(connection)
        self.positions = MongoProjectionPositionStore(connection)
        self.history: list[StoredEvent] = []

    async def append(self, events: list[StoredEvent]) -> None:
        for start in range(0, len(events), 2000):
            await self.events.append_batch(events[start : start + 2000])
        self.history.extend(events)

    def runner(self, *projections: Projection, **options: Any) -> ProjectionRunner:
        return ProjectionRunner(self.events, self.positions, projections or [OrderSummaryProjection()],
                                connection=self.connection, **options)

    async def problems(self) -> list[str]:
        return differences(fold_orders(self.history), await read_model(self.connection.db()))


@pytest.fixture
async def stores(pymongo_connection: MongoConnectionManager) -> Stores:
    return Stores(pymongo_connection)


@pytest.fixture
async def any_driver_stores(real_connection: MongoConnectionManager) -> Stores:
    return Stores(real_connection)


async def test_follow_in_small_batches_equals_the_direct_fold(any_driver_stores: Stores) -> None:
    stores = any_driver_stores
    await stores.append(list(order_history(40, 6, concurrent=10)))
    runner = stores.runner()
    while await runner.run_once(batch_size=37):
        pass
    assert await stores.problems() == []
    assert await stores.positions.get_position("order_summary") == len(stores.history)
    # new events are picked up from the checkpoint
    await stores.append(list(order_history(5, 4, seed=99, concurrent=5, prefix="late")))
    while await runner.run_once(batch_size=37):
        pass
    assert await stores.problems() == []


async def test_rebuild_equals_the_direct_fold_and_swaps_atomically(any_driver_stores: Stores) -> None:
    stores = any_driver_stores
    await stores.append(list(order_history(150, 8, concurrent=30)))
    runner = stores.runner()
    report = await runner.rebuild("order_summary", batch_size=300)
    assert report.events == len(stores.history) and report.swapped == [ORDER_SUMMARIES, "product_sales"]
    assert await stores.problems() == []
    names = set(await stores.connection.db().list_collection_names())
    assert not {n for n in names if n.endswith("__rebuild")}
    assert await stores.positions.get_position("order_summary") == len(stores.history)
    assert await stores.positions.get_position(rebuild_checkpoint("order_summary")) is None
    indexes = await stores.connection.db()[ORDER_SUMMARIES].index_information()
    assert "customer_id_1_status_1" in indexes  # built on the shadow, kept by the rename


class FailingEventStore:
    """The real event store, failing (like a lost connection) after ``reads`` batches."""

    def __init__(self, inner: MongoEventStore, reads: int) -> None:
        self.inner = inner
        self.reads = reads
        self.collection_name = inner.collection_name

    async def get_events_after(self, position: int, limit: int = 1000) -> list[StoredEvent]:
        self._read()
        return await self.inner.get_events_after(position, limit)

    def get_events_from_position(self, position: int = 0, batch_size: int = 1000) -> Any:
        inner = self.inner.get_events_from_position(position, batch_size).batches()

        async def batches() -> Any:
            async for batch in inner:
                self._read()
                yield batch

        return SimpleNamespace(batches=batches)

    def _read(self) -> None:
        if self.reads == 0:
            raise ConnectionError("simulated crash")
        self.reads -= 1

    async def get_latest_position(self) -> int:
        return await self.inner.get_latest_position()


async def test_crashed_rebuild_resumes_and_equals_a_clean_rebuild(stores: Stores) -> None:
    await stores.append(list(order_history(100, 6, concurrent=20)))
    clean = stores.runner()
    await clean.rebuild("order_summary", batch_size=100)
    expected = await read_model(stores.connection.db())
    await stores.connection.db()[ORDER_SUMMARIES].update_many({}, {"$set": {"old": True}})
    crashing = ProjectionRunner(FailingEventStore(stores.events, 3), stores.positions,
                                [OrderSummaryProjection()], connection=stores.connection)
    with pytest.raises(ConnectionError):  # a memory budget of 1 byte: a flush after every batch
        await crashing.rebuild("order_summary", batch_size=100, memory_budget=1)
    # the live read model still serves the old data, untouched
    assert await stores.connection.db()[ORDER_SUMMARIES].count_documents({"old": True}) == 100
    report = await stores.runner().rebuild("order_summary", batch_size=100)
    assert report.resumed_from == 300 and report.events == len(stores.history) - 300
    assert await read_model(stores.connection.db()) == expected
    assert await stores.connection.db()[ORDER_SUMMARIES].count_documents({"old": True}) == 0


async def counted(db: Any, collections: Any) -> list[int]:
    return [await db[c].count_documents({}) for c in collections]


@pytest.mark.parametrize("memory_budget", [1, 256 * 1024 * 1024])
async def test_the_counts_before_the_swap_are_the_documents_swapped_in(stores: Stores, memory_budget: int) -> None:
    """Fresh builds count what they wrote (also after evicting and writing cold documents);
    a resumed build, which did not write all of its shadow, asks the server."""
    await stores.append(list(order_history(120, 6, concurrent=30)))
    collections = OrderSummaryProjection.collections
    db = stores.connection.db()
    fresh = await stores.runner().rebuild("order_summary", batch_size=50, memory_budget=memory_budget)
    assert [c.rebuilt for c in fresh.counts] == await counted(db, collections)
    assert [c.collection for c in fresh.counts] == list(collections)
    crashing = ProjectionRunner(FailingEventStore(stores.events, 3), stores.positions,
                                [OrderSummaryProjection()], connection=stores.connection)
    with pytest.raises(ConnectionError):
        await crashing.rebuild("order_summary", batch_size=50, memory_budget=1, fresh=True)  # flushes each batch
    live = await counted(db, collections)
    resumed = await stores.runner().rebuild("order_summary", batch_size=50, memory_budget=memory_budget)
    assert resumed.resumed_from > 0
    assert [c.live for c in resumed.counts] == live
    assert [c.rebuilt for c in resumed.counts] == await counted(db, collections)
    assert await stores.problems() == []


async def test_a_rebuild_that_lost_a_flush_checkpoint_resumes_to_a_clean_result(stores: Stores) -> None:
    await stores.append(list(order_history(100, 6, concurrent=20)))
    # saves: 1 = the fresh rebuild's 0, 2 = the first flush, 3 = the second flush (lost after its writes)
    losing = ProjectionRunner(stores.events, LosingPositionStore(stores.positions, 3), [OrderSummaryProjection()],
                              connection=stores.connection)
    with pytest.raises(ConnectionError):
        await losing.rebuild("order_summary", batch_size=100, memory_budget=1)
    assert await stores.positions.get_position(rebuild_checkpoint("order_summary")) == 100
    report = await stores.runner().rebuild("order_summary", batch_size=100)
    assert report.resumed_from == 100
    assert await stores.problems() == []


class LosingPositionStore:
    """A position store whose saves fail once (after the documents were written)."""

    def __init__(self, inner: MongoProjectionPositionStore, fail_on: int) -> None:
        self.inner = inner
        self.fail_on = fail_on
        self.collection_name = inner.collection_name

    async def save_position(self, name: str, position: int, **kwargs: Any) -> int:
        self.fail_on -= 1
        if self.fail_on == 0:
            raise ConnectionError("lost the checkpoint write")
        return await self.inner.save_position(name, position, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_replayed_batches_without_transactions_leave_the_same_read_model(stores: Stores) -> None:
    await stores.append(list(order_history(60, 6, concurrent=20)))
    runner = ProjectionRunner(stores.events, LosingPositionStore(stores.positions, 3), [OrderSummaryProjection()],
                              connection=stores.connection, transactions=False)
    with pytest.raises(ConnectionError):
        while await runner.run_once(batch_size=50):
            pass
    # documents of batch 3 are written, its checkpoint is not: the next run replays it
    assert await stores.positions.get_position("order_summary") == 100
    replay = stores.runner(transactions=False)
    while await replay.run_once(batch_size=70):
        pass
    assert await stores.problems() == []


async def test_a_stale_write_never_overwrites_newer_state(stores: Stores) -> None:
    collection = stores.connection.db()["guarded"]
    newer = build_upserts([{"_id": "o1", "status": "shipped", "_last_position": 9}], "_id", "_last_position", None)
    older = build_upserts([{"_id": "o1", "status": "placed", "_last_position": 4}], "_id", "_last_position", None)
    await write_upserts(collection, newer)
    result = await write_upserts(collection, older)  # arrives late (out of order)
    assert result.skipped == 1
    assert (await collection.find_one({"_id": "o1"}))["status"] == "shipped"


class Versioned(OrderSummaryProjection):
    """The same read model, stamped with the code version that built it."""

    generation = "v1"

    def on_OrderPlaced(self, doc: dict[str, Any], event: Any) -> None:
        super().on_OrderPlaced(doc, event)
        doc["generation"] = self.generation


class VersionTwo(Versioned):
    projection_name = "order_summary"
    generation = "v2"


async def test_readers_see_the_old_or_the_new_read_model_never_a_mix(stores: Stores) -> None:
    await stores.append(list(order_history(80, 5, concurrent=20)))
    await stores.runner(Versioned()).rebuild("order_summary", batch_size=100)
    collection = stores.connection.db()[ORDER_SUMMARIES]
    seen: list[tuple[int, frozenset[str]]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            docs = await collection.find({}, {"generation": 1}).to_list(None)
            seen.append((len(docs), frozenset(d.get("generation") for d in docs)))
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    await stores.runner(VersionTwo()).rebuild("order_summary", batch_size=40)
    await asyncio.sleep(0.05)
    done.set()
    await task
    assert len(seen) > 3
    assert {generations for _, generations in seen} <= {frozenset({"v1"}), frozenset({"v2"})}
    assert {count for count, _ in seen} == {80}
    assert seen[-1][1] == {"v2"}


class Fragile(OrderSummaryProjection):
    max_retries = 1

    def __init__(self, poison: str) -> None:
        self.poison = poison

    def on_OrderShipped(self, doc: dict[str, Any], event: Any) -> None:
        if event.aggregate_id == self.poison:
            raise ValueError("cannot ship this one")
        super().on_OrderShipped(doc, event)


class FragileStop(Fragile):
    on_error = "stop"


async def test_failing_events_are_parked_and_the_projection_continues(stores: Stores) -> None:
    history = list(order_history(30, 4, concurrent=5))
    await stores.append(history)
    poison = next(e for e in history if e.event_type == "OrderShipped").aggregate_id
    runner = stores.runner(Fragile(poison))
    while await runner.run_once(batch_size=25):
        pass
    parked = await runner.dead_letters.list_parked("order_summary")
    assert [(p["aggregate_id"], p["event_type"], p["attempts"]) for p in parked] == [(poison, "OrderShipped", 2)]
    assert "cannot ship this one" in parked[0]["error"]
    assert await stores.positions.get_position("order_summary") == len(history)
    stored = await stores.connection.db()[ORDER_SUMMARIES].find_one({"_id": poison})
    assert stored["status"] == "placed"  # the parked event left no trace


async def test_stop_mode_parks_and_keeps_the_checkpoint_before_the_event(stores: Stores) -> None:
    history = list(order_history(30, 4, concurrent=5))
    await stores.append(history)
    bad = next(e for e in history if e.event_type == "OrderShipped")
    runner = stores.runner(FragileStop(bad.aggregate_id))
    with pytest.raises(ProjectionHandlerFailed) as failure:
        while await runner.run_once(batch_size=1000):
            pass
    assert failure.value.position == bad.position
    assert await stores.positions.get_position("order_summary") == bad.position - 1
    assert len(await runner.dead_letters.list_parked("order_summary")) == 1
    # the handler is fixed: the next run applies the event and goes on
    fixed = stores.runner()
    while await fixed.run_once(batch_size=1000):
        pass
    assert await stores.problems() == []


async def test_change_stream_wakes_the_follower_at_once_and_a_restart_resumes(any_driver_stores: Stores) -> None:
    stores = any_driver_stores
    await stores.append(list(order_history(5, 3, concurrent=5)))

    async def checkpoint() -> int | None:
        return await stores.positions.get_position("order_summary")

    runner = stores.runner()
    task = asyncio.create_task(runner.run_forever(batch_size=100, poll_interval=30, change_stream=True))
    try:
        for _ in range(200):
            if await checkpoint() == 15:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # now idle, waiting on the change stream (poll is 30 s)
        await stores.append(list(order_history(1, 3, seed=5, concurrent=1, prefix="late")))
        loop = asyncio.get_running_loop()
        started = loop.time()
        while await checkpoint() != 18:
            assert loop.time() - started < 5, "the follower did not wake up on the new event"
            await asyncio.sleep(0.02)
    finally:
        runner.stop()
        await asyncio.wait_for(task, 10)
    # events appended while nobody follows are picked up by a new runner (from the checkpoint)
    await stores.append(list(order_history(2, 3, seed=6, concurrent=2, prefix="offline")))
    restarted = stores.runner()
    task = asyncio.create_task(restarted.run_forever(batch_size=100, poll_interval=30, change_stream=True))
    try:
        for _ in range(200):
            if await checkpoint() == 24:
                break
            await asyncio.sleep(0.05)
    finally:
        restarted.stop()
        await asyncio.wait_for(task, 10)
    assert await checkpoint() == 24
    assert await stores.problems() == []


async def test_a_batch_commits_with_its_checkpoint_or_not_at_all(stores: Stores) -> None:
    await stores.append(list(order_history(30, 4, concurrent=30)))
    runner = ProjectionRunner(stores.events, LosingPositionStore(stores.positions, 2), [OrderSummaryProjection()],
                              connection=stores.connection, transactions=True)
    assert await runner.run_once(batch_size=60) == 60
    with pytest.raises(ConnectionError):
        await runner.run_once(batch_size=60)
    assert await stores.positions.get_position("order_summary") == 60
    # the failed batch's documents were rolled back with its checkpoint
    stored = await read_model(stores.connection.db())
    assert stored == fold_orders(stores.history[:60])


async def test_rebuild_with_two_worker_processes(stores: Stores) -> None:
    await stores.append(list(order_history(120, 6, concurrent=30)))
    report = await stores.runner().rebuild("order_summary", batch_size=200, workers=2)
    assert report.workers == 2 and report.position == len(stores.history)
    assert await stores.problems() == []
    positions = await stores.positions.get_all_positions()
    assert set(positions) == {"order_summary"}


class Audit(Projection):
    """An imperative projection: writes through its own store calls."""

    def __init__(self, db: Any) -> None:
        self.db = db

    async def on_OrderShipped(self, event: Any) -> None:
        await self.db["shipped_log"].update_one({"_id": event.aggregate_id}, {"$set": {"at": event.position}},
                                                upsert=True)

    async def reset(self, db: Any = None) -> None:
        await self.db.drop_collection("shipped_log")


async def test_imperative_projection_follows_and_rebuilds_in_place(stores: Stores) -> None:
    history = list(order_history(20, 3, concurrent=5))
    await stores.append(history)
    db = stores.connection.db()
    runner = stores.runner(Audit(db))
    while await runner.run_once(batch_size=16):
        pass
    shipped = {e.aggregate_id for e in history if e.event_type == "OrderShipped"}
    assert {d["_id"] for d in await db["shipped_log"].find({}).to_list(None)} == shipped
    await db["shipped_log"].insert_one({"_id": "junk"})
    report = await runner.rebuild("Audit", batch_size=16)
    assert report.events == len(history)
    assert {d["_id"] for d in await db["shipped_log"].find({}).to_list(None)} == shipped


async def test_unknown_projection_is_a_clear_error(stores: Stores) -> None:
    with pytest.raises(ProjectionError, match="unknown projection 'nope'; known: order_summary"):
        await stores.runner().rebuild("nope")


async def test_a_document_created_meanwhile_falls_back_to_the_guarded_upsert(stores: Stores) -> None:
    from cqrs_ddd_persistence_mongo.projections.applier import BatchOutcome
    from cqrs_ddd_persistence_mongo.projections.documents import write_documents

    db = stores.connection.db()
    await db["docs"].insert_many([{"_id": "older", "v": 0, "_last_position": 3},
                                  {"_id": "newer", "v": 0, "_last_position": 50}])
    outcome = BatchOutcome(changed={"docs": {
        "older": {"_id": "older", "v": 1, "_last_position": 10},
        "newer": {"_id": "newer", "v": 1, "_last_position": 10},
        "absent": {"_id": "absent", "v": 1, "_last_position": 10},
    }})  # none was loaded: all are written as inserts first
    counts = await write_documents(db, outcome, {}, connection=stores.connection)
    assert (counts.inserted, counts.updated, counts.skipped) == (1, 1, 1)
    stored = {d["_id"]: d["v"] for d in await db["docs"].find({}).to_list(None)}
    assert stored == {"older": 1, "newer": 0, "absent": 1}


async def test_a_follower_batch_never_creates_a_collection_inside_its_transaction(mongo_url: str) -> None:
    """A collection created by a transaction's write is a catalog change that conflicts with
    a concurrent rebuild's DDL (a strict server stalled on it); the runner creates every
    collection its batches write to before the first batch."""
    created: list[str] = []
    log: list[tuple[str, str]] = []

    class Recorder(monitoring.CommandListener):
        def started(self, event: monitoring.CommandStartedEvent) -> None:
            command = event.command
            if event.database_name != connection.database_name:
                return
            if event.command_name in ("create", "createIndexes"):
                created.append(command[event.command_name])
            elif event.command_name in ("insert", "update", "delete", "findAndModify"):
                in_transaction = command.get("autocommit") is False
                log.append((command[event.command_name], "txn" if in_transaction else "ddl"))  # ddl: may create it

        def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
            if event.database_name == connection.database_name and event.command_name in ("create", "createIndexes"):
                log.append((created.pop(0), "ddl"))

        def failed(self, event: monitoring.CommandFailedEvent) -> None:
            if event.database_name == connection.database_name and event.command_name in ("create", "createIndexes"):
                created.pop(0)

    connection = MongoConnectionManager(url=mongo_url, database=f"t_{uuid.uuid4().hex[:12]}", event_listeners=[Recorder()])
    await connection.connect()
    try:
        if not await connection.supports_transactions():
            pytest.skip("the server runs no transactions")
        stores = Stores(connection)
        await stores.append(list(order_history(6, 4, concurrent=3)))
        assert await stores.runner().run_once(batch_size=100) == len(stores.history)
        assert await stores.problems() == []
        written_in_transactions = {name for name, kind in log if kind == "txn"}
        assert {"order_summaries", "product_sales", "projection_positions"} <= written_in_transactions
        for name in written_in_transactions:
            first_write = log.index((name, "txn"))
            assert (name, "ddl") in log[:first_write], f"'{name}' was created by a write inside a transaction"
    finally:
        await connection.client.drop_database(connection.database_name)
        await connection.disconnect()


async def test_rebuild_while_the_same_runner_follows_new_events(stores: Stores) -> None:
    await stores.append(list(order_history(60, 5, concurrent=20)))
    runner = stores.runner()
    follower = asyncio.create_task(runner.run_forever(batch_size=50, poll_interval=0.02, change_stream=False))
    try:
        rebuild = asyncio.create_task(runner.rebuild("order_summary", batch_size=40))
        for seed in range(3):  # new orders keep arriving during the rebuild
            await stores.append(list(order_history(4, 3, seed=seed, concurrent=4, prefix=f"live{seed}")))
            await asyncio.sleep(0.05)
        report = await rebuild
        assert report.swapped
        for _ in range(200):
            if await stores.positions.get_position("order_summary") == len(stores.history):
                break
            await asyncio.sleep(0.05)
    finally:
        runner.stop()
        await asyncio.wait_for(follower, 10)
    assert await stores.positions.get_position("order_summary") == len(stores.history)
    assert await stores.problems() == []


@pytest.mark.parametrize("failure", ["error", "cancel"])
async def test_a_rebuild_whose_shadow_preparation_fails_writes_nothing(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """The shadow is prepared while the first events are read: when the preparation fails
    or the rebuild is cancelled meanwhile, the builder writes nothing and saves no
    checkpoint, and the next rebuild starts clean."""
    from cqrs_ddd_persistence_mongo.projections.rebuild import Rebuild

    await stores.append(list(order_history(40, 5, concurrent=10)))
    prepare = Rebuild._prepare_shadow
    started = asyncio.Event()

    async def failing_prepare(self: Rebuild, *args: Any) -> None:
        started.set()
        await asyncio.sleep(0.2)  # the first read is done by now
        if failure == "error":
            raise ProjectionError("cannot create the shadow")
        await asyncio.sleep(30)

    monkeypatch.setattr(Rebuild, "_prepare_shadow", failing_prepare)
    rebuild = asyncio.create_task(stores.runner().rebuild("order_summary", batch_size=20))
    if failure == "error":
        with pytest.raises(ProjectionError, match="cannot create the shadow"):
            await rebuild
    else:
        await started.wait()
        await asyncio.sleep(0.3)
        rebuild.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rebuild
    db = stores.connection.db()
    assert await stores.positions.get_position(rebuild_checkpoint("order_summary")) is None
    assert not {c for c in await db.list_collection_names() if c.endswith("__rebuild")}
    monkeypatch.setattr(Rebuild, "_prepare_shadow", prepare)
    report = await stores.runner().rebuild("order_summary", batch_size=20)
    assert report.resumed_from == 0 and report.events == len(stores.history)
    assert await stores.problems() == []


async def test_a_rebuild_killed_during_the_swap_is_finished_by_the_next_call(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cqrs_ddd_persistence_mongo.projections.rebuild import Rebuild

    swap = Rebuild._swap

    async def crash_in_swap(self: Rebuild, shadow: dict[str, str], existing: set[str]) -> list[str]:
        await swap(self, dict(list(shadow.items())[:1]), existing)  # a process killed mid-swap
        raise ConnectionError("killed during the swap")

    await stores.append(list(order_history(40, 5, concurrent=10)))
    monkeypatch.setattr(Rebuild, "_swap", crash_in_swap)
    with pytest.raises(ConnectionError):
        await stores.runner().rebuild("order_summary", batch_size=50)
    monkeypatch.setattr(Rebuild, "_swap", swap)
    names = set(await stores.connection.db().list_collection_names())
    assert "order_summaries__rebuild" not in names and "product_sales__rebuild" in names
    report = await stores.runner().rebuild("order_summary", batch_size=50)
    assert report.swapped == ["product_sales"] and report.events == 0
    assert await stores.problems() == []
    assert await stores.positions.get_position("order_summary") == len(stores.history)
    assert await stores.positions.get_position(rebuild_checkpoint("order_summary")) is None


async def test_fresh_rebuild_starts_over_after_a_crash(stores: Stores) -> None:
    await stores.append(list(order_history(30, 5, concurrent=10)))
    crashing = ProjectionRunner(FailingEventStore(stores.events, 2), stores.positions,
                                [OrderSummaryProjection()], connection=stores.connection)
    with pytest.raises(ConnectionError):
        await crashing.rebuild("order_summary", batch_size=40, memory_budget=1)
    assert await stores.positions.get_position(rebuild_checkpoint("order_summary")) == 80
    report = await stores.runner().rebuild("order_summary", batch_size=40, fresh=True)
    assert report.resumed_from == 0 and report.events == len(stores.history)
    assert await stores.problems() == []


@pytest.mark.replica_set_protocol
async def test_two_workers_stop_at_an_in_flight_hole_and_following_applies_everything_after_it(
    stores: Stores,
) -> None:
    await stores.append(list(order_history(60, 6, concurrent=20)))  # positions 1..360
    await stores.events._reserve(1, None)  # 361: reserved by an appender that has not written yet
    await stores.append(list(order_history(60, 6, seed=3, concurrent=20, prefix="late")))  # 362..721
    patient = MongoEventStore(stores.connection, gap_timeout=120)
    rebuilding = ProjectionRunner(patient, stores.positions, [OrderSummaryProjection()], connection=stores.connection)
    report = await rebuilding.rebuild("order_summary", batch_size=100, workers=2)
    assert report.position == 360
    assert await stores.positions.get_position("order_summary") == 360
    # the appender never comes back: once the hole is abandoned, following applies the rest
    impatient = MongoEventStore(stores.connection, gap_timeout=0)
    follower = ProjectionRunner(impatient, stores.positions, [OrderSummaryProjection()], connection=stores.connection)
    while await follower.run_once(batch_size=100):
        pass
    assert await stores.positions.get_position("order_summary") == 721
    assert await stores.problems() == []


async def test_a_rebuild_from_a_misspelled_events_collection_wipes_and_creates_nothing(stores: Stores) -> None:
    await stores.append(list(order_history(20, 4, concurrent=5)))
    while await stores.runner().run_once(batch_size=100):
        pass
    db = stores.connection.db()
    names_before = set(await db.list_collection_names())
    counters_before = await db["counters"].find({}).to_list(None)
    typo = MongoEventStore(stores.connection, collection="domain_evnts")
    runner = ProjectionRunner(typo, stores.positions, [OrderSummaryProjection()], connection=stores.connection)
    with pytest.raises(ProjectionError, match="'domain_evnts'.*holds no events.*allow_empty=True"):
        await runner.rebuild("order_summary")
    assert set(await db.list_collection_names()) == names_before
    assert await db["counters"].find({}).to_list(None) == counters_before
    assert await stores.problems() == []
    assert await stores.positions.get_position("order_summary") == 80


async def test_a_rebuild_in_a_misspelled_database_creates_nothing(stores: Stores) -> None:
    typo_db = stores.connection.database_name + "_typo"
    runner = ProjectionRunner(stores.events, stores.positions, [OrderSummaryProjection()],
                              connection=stores.connection, database=typo_db)
    typo_events = MongoEventStore(stores.connection, typo_db)
    runner = ProjectionRunner(typo_events, MongoProjectionPositionStore(stores.connection, typo_db),
                              [OrderSummaryProjection()], connection=stores.connection, database=typo_db)
    with pytest.raises(ProjectionError, match="holds no events"):
        await runner.rebuild("order_summary", workers=2)
    assert typo_db not in await stores.connection.client.list_database_names()


async def test_a_rebuild_that_would_shrink_the_read_model_is_refused_unless_allowed(stores: Stores) -> None:
    await stores.append(list(order_history(20, 4, concurrent=5)))
    runner = stores.runner()
    await runner.rebuild("order_summary")
    db = stores.connection.db()
    await db[ORDER_SUMMARIES].insert_one({"_id": "kept-by-someone", "status": "placed"})
    with pytest.raises(ProjectionError, match=r"fewer documents.*'order_summaries' 21 -> 20.*allow_empty=True"):
        await runner.rebuild("order_summary")
    assert await db[ORDER_SUMMARIES].count_documents({}) == 21
    seen: list[Any] = []
    report = await runner.rebuild("order_summary", allow_empty=True, before_swap=lambda n, c: seen.append((n, c)))
    assert report.swapped and await db[ORDER_SUMMARIES].count_documents({}) == 20
    assert seen and [(c.collection, c.rebuilt, c.live) for c in seen[0][1]][0] == (ORDER_SUMMARIES, 20, 21)


async def test_an_empty_rebuild_on_purpose_is_allowed(stores: Stores) -> None:
    report = await stores.runner().rebuild("order_summary", allow_empty=True)
    assert report.events == 0 and report.swapped == [ORDER_SUMMARIES, "product_sales"]


async def test_a_batch_in_a_transaction_stops_taking_events_when_its_time_budget_is_spent(stores: Stores) -> None:
    await stores.append(list(order_history(50, 6, concurrent=10)))  # 300 events
    ticks = iter(range(10**6))

    def clock() -> float:  # every look at the clock is one second later
        return float(next(ticks))

    runner = stores.runner(transactions=True, batch_seconds=3, clock=clock)
    first = await runner.run_once(batch_size=300)
    assert 0 < first < 300  # committed what it had when the budget ran out...
    assert await stores.positions.get_position("order_summary") == first
    while await runner.run_once(batch_size=300):  # ...and the next batches went on
        pass
    assert await stores.positions.get_position("order_summary") == 300
    assert await stores.problems() == []


def test_the_time_budget_must_be_positive(stores: Stores) -> None:
    with pytest.raises(ProjectionError, match="batch_seconds must be > 0"):
        stores.runner(batch_seconds=0)


class RecordingPositionStore(LosingPositionStore):
    def __init__(self, inner: MongoProjectionPositionStore) -> None:
        super().__init__(inner, 0)
        self.saved: list[tuple[str, int]] = []

    async def save_position(self, name: str, position: int, **kwargs: Any) -> int:
        self.saved.append((name, position))
        return await self.inner.save_position(name, position, **kwargs)


async def test_a_rebuild_over_its_memory_budget_flushes_with_its_checkpoint_and_equals_the_fold(
    stores: Stores,
) -> None:
    await stores.append(list(order_history(80, 6, concurrent=80)))  # every batch touches every order
    recording = RecordingPositionStore(stores.positions)
    runner = ProjectionRunner(stores.events, recording, [OrderSummaryProjection()], connection=stores.connection)
    await runner.rebuild("order_summary", batch_size=100, memory_budget=1)
    flushes = [p for name, p in recording.saved if name == rebuild_checkpoint("order_summary")]
    assert flushes[:6] == [0, 100, 200, 300, 400, 480]  # a flush (and its checkpoint) after every batch
    assert await stores.problems() == []


async def test_a_rebuild_within_its_memory_budget_writes_once_at_the_end(stores: Stores) -> None:
    await stores.append(list(order_history(80, 6, concurrent=80)))
    recording = RecordingPositionStore(stores.positions)
    runner = ProjectionRunner(stores.events, recording, [OrderSummaryProjection()], connection=stores.connection)
    await runner.rebuild("order_summary", batch_size=100)
    flushes = [p for name, p in recording.saved if name == rebuild_checkpoint("order_summary")]
    assert flushes[:2] == [0, 480]
    assert await stores.problems() == []


class SlowSummaries(OrderSummaryProjection):
    def on_OrderItemAdded(self, doc: dict[str, Any], event: Any) -> None:
        time.sleep(0.005)
        super().on_OrderItemAdded(doc, event)


async def test_batches_stay_inside_a_lowered_transaction_lifetime(stores: Stores) -> None:
    admin = stores.connection.client.admin
    try:
        was = (await admin.command("setParameter", 1, transactionLifetimeLimitSeconds=1))["was"]
    except PyMongoError:
        pytest.skip("this server cannot lower transactionLifetimeLimitSeconds (the injected-clock test covers it)")
    try:
        await stores.append(list(order_history(40, 10, concurrent=40)))  # 320 slow events: ~1.6 s of handlers
        # the control: without the budget, the server aborts the batch's transaction
        async with MongoConnectionManager(url=stores.connection.url, database=stores.connection.database_name,
                                          operation_timeout=5) as bounded:
            unbudgeted = ProjectionRunner(MongoEventStore(bounded), MongoProjectionPositionStore(bounded),
                                          [SlowSummaries()], connection=bounded, transactions=True,
                                          batch_seconds=100)
            with pytest.raises(MongoPersistenceError):
                await asyncio.wait_for(unbudgeted.run_once(batch_size=400), 30)
        assert await stores.positions.get_position("order_summary") in (None, 0)
        runner = stores.runner(SlowSummaries(), transactions=True, batch_seconds=0.3)
        batches = 0
        while await asyncio.wait_for(runner.run_once(batch_size=400), 30):
            batches += 1
        assert batches > 1
        assert await stores.problems() == []
    finally:
        await admin.command("setParameter", 1, transactionLifetimeLimitSeconds=was)


class _ConflictingCollection:
    """A collection whose bulk writes fail once with ``error``, then succeed."""

    name = "docs"

    def __init__(self, error: Exception) -> None:
        self.error: Exception | None = error
        self.calls = 0

    async def bulk_write(self, models: list[Any], **_: Any) -> Any:
        self.calls += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return SimpleNamespace(inserted_count=len(models), matched_count=len(models))


@pytest.mark.parametrize("error", [
    OperationFailure("WriteConflict", code=112,
                     details={"code": 112, "errmsg": "WriteConflict", "errorLabels": ["TransientTransactionError"]}),
    BulkWriteError({"writeErrors": [{"index": 0, "code": 112, "errmsg": "WriteConflict"}], "nInserted": 0}),
], ids=["command error", "write error"])
async def test_a_write_conflict_in_a_batch_transaction_stays_transient_so_the_unit_of_work_retries(
    stores: Stores, error: Exception
) -> None:
    from cqrs_ddd_persistence_mongo.projections.applier import BatchOutcome
    from cqrs_ddd_persistence_mongo.projections.documents import write_documents

    collection = _ConflictingCollection(error)
    db = {"docs": collection}
    outcome = BatchOutcome(changed={"docs": {"a": {"_id": "a", "v": 1, "_last_position": 1}}})
    with pytest.raises(MongoPersistenceError) as raised:
        await write_documents(db, outcome, {}, connection=stores.connection, in_transaction=True)
    assert raised.value.has_error_label("TransientTransactionError"), raised.value
    assert raised.value.transient
    collection.error = error
    attempts = 0

    async def batch(uow: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return await write_documents(db, outcome, {}, connection=stores.connection, session=uow.session,
                                     in_transaction=True)

    counts = await MongoUnitOfWork(connection=stores.connection).run(batch)
    assert attempts == 2 and counts.inserted == 1


class HalfDoneThenFails(OrderSummaryProjection):
    """Mutates the document, then fails: once for ``flaky`` (a retry succeeds), always for ``poison``."""

    max_retries = 1

    def __init__(self, flaky: str, poison: str) -> None:
        self.flaky, self.poison, self.failed = flaky, poison, 0

    def on_OrderShipped(self, doc: dict[str, Any], event: Any) -> None:
        if event.aggregate_id == self.poison or (event.aggregate_id == self.flaky and not self.failed):
            self.failed += 1
            doc["half_done"] = True  # a half-done mutation must never reach the read model
            raise ValueError("cannot ship this one")
        super().on_OrderShipped(doc, event)


@pytest.mark.parametrize("memory_budget", [1, 256 * 1024 * 1024], ids=["flush per batch", "one flush"])
async def test_a_handler_failing_in_a_fresh_rebuild_gets_the_careful_fold(stores: Stores, memory_budget: int) -> None:
    history = list(order_history(60, 5, concurrent=20))
    await stores.append(history)
    shipped = [e.aggregate_id for e in history if e.event_type == "OrderShipped"]
    flaky, poison = shipped[len(shipped) // 2], shipped[-1]
    runner = stores.runner(HalfDoneThenFails(flaky, poison))
    report = await runner.rebuild("order_summary", batch_size=50, memory_budget=memory_budget)
    assert report.events == len(history)
    parked = await runner.dead_letters.list_parked("order_summary")
    assert [(p["aggregate_id"], p["attempts"]) for p in parked] == [(poison, 2)]
    expected = fold_orders(e for e in history if not (e.aggregate_id == poison and e.event_type == "OrderShipped"))
    assert differences(expected, await read_model(stores.connection.db())) == []


@pytest.mark.parametrize("gc_threshold", [12_345, None])
async def test_a_rebuild_folds_with_fewer_garbage_collections_and_restores_the_collector(
    stores: Stores, gc_threshold: int | None
) -> None:
    import gc

    seen: set[int] = set()

    class Recording(OrderSummaryProjection):
        def on_OrderShipped(self, doc: dict[str, Any], event: Any) -> None:
            seen.add(gc.get_threshold()[0])
            super().on_OrderShipped(doc, event)

    await stores.append(list(order_history(20, 5, concurrent=5)))
    before = gc.get_threshold()
    report = await stores.runner(Recording()).rebuild("order_summary", batch_size=30, gc_threshold=gc_threshold)
    assert report.events == len(stores.history) and await stores.problems() == []
    if gc_threshold is not None:
        assert seen == {gc_threshold}
    else:  # the fold leaves the collector alone; reads of the next batch, in flight meanwhile, do not
        from cqrs_ddd_persistence_mongo._gc import GC_THRESHOLD

        assert seen and seen <= {before[0], GC_THRESHOLD}
    assert gc.get_threshold() == before


async def test_cold_documents_are_written_during_the_build_and_a_crash_after_them_resumes_cleanly(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Documents no event of the current batch touched are written while the build goes on
    (without a checkpoint); products keep changing after such a write and are written again.
    A crash then leaves the shadow ahead of its checkpoint, which the resumed build handles."""
    from cqrs_ddd_persistence_mongo.projections import builder

    monkeypatch.setattr(builder, "COLD_WRITE_MIN", 1)
    await stores.append(list(order_history(150, 5, concurrent=10)))
    await stores.runner().rebuild("order_summary", batch_size=100)
    expected = await read_model(stores.connection.db())
    recording = RecordingPositionStore(stores.positions)
    crashing = ProjectionRunner(FailingEventStore(stores.events, 5), recording,
                                [OrderSummaryProjection()], connection=stores.connection)
    with pytest.raises(ConnectionError):
        await crashing.rebuild("order_summary", batch_size=100, fresh=True)
    # the crash's idempotent flush saved the position it reached; the cold writes came before it
    assert [p for name, p in recording.saved if name == rebuild_checkpoint("order_summary")][0] == 0
    shadow = stores.connection.db()[ORDER_SUMMARIES + "__rebuild"]
    assert await shadow.count_documents({}) > 0
    report = await stores.runner().rebuild("order_summary", batch_size=100)
    assert report.events == len(stores.history) - report.resumed_from
    assert await read_model(stores.connection.db()) == expected
    assert await stores.problems() == []


async def test_cold_writes_and_the_final_flush_together_write_each_document_at_least_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cqrs_ddd_persistence_mongo.projections import builder

    monkeypatch.setattr(builder, "COLD_WRITE_MIN", 1)
    writes: list[tuple[str, int]] = []
    write = builder.ShadowBuilder._write

    async def counting(self: Any, collection: str, models: list[Any]) -> None:
        writes.append((collection, len(models)))
        await write(self, collection, models)

    monkeypatch.setattr(builder.ShadowBuilder, "_write", counting)
    await stores.append(list(order_history(150, 5, concurrent=10)))
    await stores.runner().rebuild("order_summary", batch_size=100)
    assert await stores.problems() == []
    summaries = [n for c, n in writes if c == ORDER_SUMMARIES]
    assert len(summaries) > 2  # written while the build went on, not only at the end
    assert sum(summaries) == 150  # an order closed a batch ago never changes again: written once
