"""Every targeted write carries its collection's shard key: a workload over every store and
the projection engine runs through a client with a command listener, and each single-document
``update``, ``delete`` and ``findAndModify`` it sees must filter with equality on every field
of the recommended shard key of its collection (the application's own collections: ``_id``).
Multi-document writes (``update_many``/``delete_many``) are broadcast by design and only
counted."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from pymongo import monitoring

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork
from cqrs_ddd_persistence_mongo.indexes import recommended_shard_keys, shard_collections
from cqrs_ddd_persistence_mongo.projections import ProjectionRunner
from cqrs_ddd_persistence_mongo.projections.applier import Parked
from cqrs_ddd_persistence_mongo.projections.dead_letters import DeadLetters
from cqrs_ddd_persistence_mongo.advanced import MongoSnapshotStore
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.sharding import APPLICATION_KEY
from cqrs_ddd_mongo_demo.orders import OrderSummaryProjection, order_history

from ._store_calls import Stores, every_call, make_stores, seed

pytestmark = pytest.mark.integration

SHARDED_ENV = "CQRS_DDD_MONGO_TEST_SHARDED"

WRITES = ("update", "delete", "findAndModify")


class WriteRecorder(monitoring.CommandListener):
    """Collects (collection, filter, single-document?) of every write command started."""

    def __init__(self) -> None:
        self.database = ""
        self.writes: list[tuple[str, dict[str, Any], bool]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in WRITES or event.database_name != self.database:
            return
        command = event.command
        collection = command[event.command_name]
        if event.command_name == "findAndModify":
            self.writes.append((collection, dict(command.get("query", {})), True))
        elif event.command_name == "update":
            for statement in command["updates"]:
                self.writes.append((collection, dict(statement["q"]), not statement.get("multi", False)))
        else:
            for statement in command["deletes"]:
                self.writes.append((collection, dict(statement["q"]), statement.get("limit", 0) == 1))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def is_equality(value: Any) -> bool:
    """A filter value that pins one shard-key value (a plain value, a sub-document without
    operators, or ``{"$eq": v}``)."""
    if not isinstance(value, Mapping):
        return True
    keys = list(value)
    if keys == ["$eq"]:
        return True
    return not any(str(key).startswith("$") for key in keys)


def missing_shard_key(collection: str, filter_: Mapping[str, Any]) -> list[str]:
    key = recommended_shard_keys().get(collection, APPLICATION_KEY)
    return [field for field in key if field not in filter_ or not is_equality(filter_[field])]


@pytest.fixture
async def recorded(mongo_url: str) -> AsyncIterator[tuple[MongoConnectionManager, WriteRecorder]]:
    recorder = WriteRecorder()
    connection = MongoConnectionManager(url=mongo_url, database=f"shard_{uuid.uuid4().hex[:12]}", event_listeners=[recorder])
    await connection.connect()
    recorder.database = connection.database_name
    if os.environ.get(SHARDED_ENV) == "1":
        await shard_collections(connection)
    try:
        yield connection, recorder
    finally:
        await connection.client.drop_database(connection.database_name)
        await connection.disconnect()


async def workload(stores: Stores) -> None:
    """Every public store method, plus the writes the simple list does not reach: versioned
    saves, saga updates, snapshot pruning, dead letters, a transactional append."""
    await seed(stores)
    for name, run in every_call(stores).items():
        try:
            await run()
        except Exception as exc:  # a conflict or not-found is fine: the write was still sent
            if not getattr(exc, "__module__", "").startswith("cqrs_ddd_persistence_mongo"):
                raise AssertionError(f"{name} raised {exc!r}") from exc
    order = await stores.repo.get("o2")
    assert order is not None
    order.total = 3.0
    await stores.repo.add(order)
    await stores.repo.delete("o2", expected_version=order.version)
    saga = await stores.sagas.get("saga1")
    if saga is not None:
        await stores.sagas.add(saga)
    pruning = MongoSnapshotStore(stores.connection, keep_last=1)
    for version in (2, 3, 4):
        await pruning.save_snapshot("Order", "o1", {"n": version}, version)
    await pruning.delete_snapshot("Order", "o1", before_version=4)
    async with MongoUnitOfWork(connection=stores.connection) as uow:
        await stores.events.append(
            StoredEvent(event_type="X", aggregate_id="tx", version=1), uow=uow
        )
        await stores.snapshots.save_snapshot("Order", "tx", {"n": 1}, 1, uow=uow)
        await uow.commit()


async def projection_workload(connection: MongoConnectionManager, stores: Stores) -> None:
    """The engine's writes: read-model upserts, checkpoints, dead letters, a rebuild."""
    await stores.events.append_batch(list(order_history(12, 4, concurrent=4)))
    runner = ProjectionRunner(stores.events, stores.positions, [OrderSummaryProjection()], connection=connection)
    while await runner.run_once(batch_size=7):
        pass
    await runner.rebuild("order_summary")

    events = await stores.events.get_events_after(0, limit=2)
    dead = DeadLetters(connection.db(), connection=connection)
    await dead.park("order_summary", [Parked(event=events[0], error=ValueError("x"), attempts=1)])


async def test_every_targeted_write_filters_on_its_shard_key(
    recorded: tuple[MongoConnectionManager, WriteRecorder],
) -> None:
    connection, recorder = recorded
    stores = make_stores(connection)
    await workload(stores)
    await projection_workload(connection, stores)
    single = [(c, f) for c, f, one in recorder.writes if one]
    seen = {c for c, _ in single}
    # the workload reached the write paths of every store
    for collection in ("orders", "counters", "outbox", "snapshots", "projection_positions", "sagas",
                       "background_jobs", "summaries", "projection_dead_letters"):
        assert collection in seen, f"no targeted write to '{collection}' was seen; the workload misses a store"
    problems = [
        f"{collection}: {filter_} lacks equality on {missing}"
        for collection, filter_ in single
        if (missing := missing_shard_key(collection, filter_))
    ]
    assert problems == []


def test_the_equality_rule_itself() -> None:
    assert missing_shard_key("snapshots", {"_id": {"t": "A", "a": 1, "v": 2}}) == ["aggregate_type", "aggregate_id"]
    assert missing_shard_key("snapshots", {"aggregate_type": "A", "aggregate_id": {"$eq": 1}}) == []
    assert missing_shard_key("outbox", {"_id": {"$in": [1, 2]}}) == ["_id"]
    assert missing_shard_key("orders", {"_id": "o1", "_version": 2}) == []
    assert missing_shard_key("background_jobs", {"status": "pending"}) == ["_id"]


async def build_shard_key_indexes(connection: MongoConnectionManager) -> None:
    """The index ``shardCollection`` builds for each recommended key (its default name;
    unique where ``shard_collections`` asks for it), as on a freshly sharded cluster."""
    from cqrs_ddd_persistence_mongo.sharding import _UNIQUE_KEYS

    for name, key in recommended_shard_keys().items():
        if dict(key) == {"_id": 1} or "hashed" in key.values():
            continue  # served by the _id index itself / no store asks for a hashed index
        unique = name in _UNIQUE_KEYS
        await connection.db()[name].create_index(list(key.items()), unique=unique)


async def test_the_stores_indexes_coexist_with_the_shard_key_indexes(
    recorded: tuple[MongoConnectionManager, WriteRecorder],
) -> None:
    connection, _ = recorded
    await build_shard_key_indexes(connection)
    stores = make_stores(connection)
    await seed(stores)  # every store's ensure_indexes() after sharding, as docs/sharding.md says
    for store in (stores.events, stores.outbox, stores.snapshots, stores.positions, stores.sagas, stores.jobs):
        await store.ensure_indexes()  # and again: idempotent
    assert await stores.positions.get_position("p2") == 2
    # a store whose first write is inside a transaction finds its index under the shard key's name
    fresh = make_stores(connection)
    async with MongoUnitOfWork(connection) as uow:
        await fresh.positions.save_position("p3", 3, uow=uow)
    assert await fresh.positions.get_position("p3") == 3
