"""Rules the embedded server does not enforce but real MongoDB does, checked by what the
library sends: transaction concerns, majority reads for followers, indexes never built
beside an open transaction, reads that create nothing, no statement retried after a
duplicate key inside a transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import DuplicateKeyError

from cqrs_ddd_persistence_mongo import MongoConnectionManager, MongoEventStore, StoredEvent
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore, MongoSnapshotStore
from cqrs_ddd_persistence_mongo.core import MongoOutboxStorage, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.exceptions import MongoPersistenceError

from ._store_calls import make_stores


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append({"name": event.command_name, **dict(event.command)})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, *names: str) -> list[dict[str, Any]]:
        return [c for c in self.commands if c["name"] in names]


@contextmanager
def recorded(mongo_url: str, database: str, **options: Any) -> Iterator[tuple[MongoConnectionManager, Recorder]]:
    recorder = Recorder()
    yield MongoConnectionManager(url=mongo_url, database=database, event_listeners=[recorder], **options), recorder


def ev(stream: str, version: int) -> StoredEvent:
    return StoredEvent(event_type="Happened", aggregate_id=stream, version=version)


async def test_transactions_start_with_snapshot_reads_and_majority_commits(mongo_url: str) -> None:
    with recorded(mongo_url, "concerns_default") as (connection, recorder):
        async with connection:
            store = MongoEventStore(connection)
            await store.ensure_indexes()
            async with MongoUnitOfWork(connection=connection) as uow:
                await store.append(ev("s", 1), uow=uow)
                await uow.commit()
            first_in_txn = [c for c in recorder.commands if c.get("startTransaction")]
            assert first_in_txn and first_in_txn[0]["readConcern"]["level"] == "snapshot"
            commit = recorder.named("commitTransaction")[-1]
            assert commit["writeConcern"]["w"] == "majority"
            await connection.client.drop_database("concerns_default")


async def test_transaction_concerns_are_configurable(mongo_url: str) -> None:
    with recorded(mongo_url, "concerns_custom", transaction_read_concern="majority",
                  transaction_write_concern=1) as (connection, recorder):
        async with connection:
            store = MongoEventStore(connection)
            await store.ensure_indexes()
            async with MongoUnitOfWork(connection=connection) as uow:
                await store.append(ev("s", 1), uow=uow)
                await uow.commit()
            async with MongoUnitOfWork(connection=connection, read_concern="local") as uow:
                await store.append(ev("s", 2), uow=uow)
                await uow.commit()
            starts = [c for c in recorder.commands if c.get("startTransaction")]
            assert [c["readConcern"]["level"] for c in starts] == ["majority", "local"]
            assert recorder.named("commitTransaction")[0]["writeConcern"]["w"] == 1
            await connection.client.drop_database("concerns_custom")


async def test_follower_reads_use_read_concern_majority(mongo_url: str) -> None:
    with recorded(mongo_url, "concerns_follow") as (connection, recorder):
        async with connection:
            store = MongoEventStore(connection)
            await store.append_batch([ev("s", 1), ev("s", 2)])
            recorder.commands.clear()
            assert [e.version for e in await store.get_events_after(0)] == [1, 2]
            assert [e.version async for e in store.get_events_from_position(0)] == [1, 2]
            assert await store.get_latest_position() == 2
            reads = recorder.named("find")
            assert reads and all(c.get("readConcern", {}).get("level") == "majority" for c in reads)
            await connection.client.drop_database("concerns_follow")


async def test_two_appends_to_a_brand_new_event_store_in_one_unit_of_work(real_connection: MongoConnectionManager) -> None:
    store = MongoEventStore(real_connection)
    outbox = MongoOutboxStorage(real_connection)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await store.append(ev("a", 1), uow=uow)
        await store.append(ev("a", 2), uow=uow)
        await store.append_batch([ev("b", 1)], uow=uow)
        await uow.commit()
    assert [e.position for e in await store.get_events_after(0)] == [1, 2, 3]
    names = set(await real_connection.db().domain_events.index_information())
    assert {"position_unique", "stream_version_unique"} <= names
    from cqrs_ddd_persistence_mongo.indexes import ensure_all_indexes

    await ensure_all_indexes(store, outbox)  # idempotent at startup


async def test_indexes_are_never_built_beside_an_open_transaction(real_connection: MongoConnectionManager) -> None:
    """A collection that exists without the store's indexes: a write inside a transaction
    refuses (and says to call ensure_indexes at startup) instead of building an index next to
    the transaction, which on mongod waits for the transaction's lock."""
    await real_connection.db().domain_events.insert_one({"_id": "someone else's"})
    store = MongoEventStore(real_connection)
    with recorded_commands(real_connection) as commands:
        async with MongoUnitOfWork(connection=real_connection) as uow:
            with pytest.raises(MongoPersistenceError, match="ensure_indexes"):
                await store.append(ev("a", 1), uow=uow)
    assert "createIndexes" not in commands
    await store.ensure_indexes()
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await store.append(ev("a", 1), uow=uow)
        await uow.commit()


@contextmanager
def recorded_commands(connection: MongoConnectionManager) -> Iterator[list[str]]:
    """Names of the commands sent while the block runs (patched at the collection level)."""
    names: list[str] = []
    db = connection.db()
    collection_cls = type(db.domain_events)
    original = collection_cls.create_indexes

    async def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        names.append("createIndexes")
        return await original(self, *args, **kwargs)

    collection_cls.create_indexes = spy  # type: ignore[method-assign]
    try:
        yield names
    finally:
        collection_cls.create_indexes = original  # type: ignore[method-assign]


async def test_reads_create_no_collection_index_or_counter(real_connection: MongoConnectionManager) -> None:
    stores = make_stores(real_connection)
    s = stores
    await s.repo.get("x")
    await s.events.get_events("x")
    await s.events.get_events_after(0)
    await s.events.get_latest_position()
    assert [e async for e in s.events.stream_all()] == []
    await s.outbox.get_pending()
    await s.outbox.get_message("m")
    await s.outbox.get_dead()
    await s.projections.find_one("c", "x")
    await s.projections.find("c")
    await s.snapshots.get_latest_snapshot("Order", "x")
    await s.positions.get_position("p")
    await s.positions.get_all_positions()
    await s.sagas.find_by_correlation_id("c")
    await s.sagas.find_stalled_sagas()
    await s.jobs.get("j")
    await s.jobs.find_by_status("pending")
    await s.jobs.count_by_status()
    assert await real_connection.db().list_collection_names() == []


@pytest.mark.parametrize("store_name", ["events", "snapshots", "positions"])
async def test_no_statement_is_retried_after_a_duplicate_key_inside_a_transaction(
    real_connection: MongoConnectionManager, store_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server aborts a transaction on E11000; repeating the statement in the same session
    would fail again (or, worse, run outside the caller's transaction)."""
    stores = make_stores(real_connection)
    store = getattr(stores, store_name)
    await store.ensure_indexes()
    calls = {"n": 0}
    collection_cls = type(real_connection.db().anything)
    methods = {"events": "find_one_and_update", "snapshots": "replace_one", "positions": "find_one_and_update"}
    name = methods[store_name]

    async def duplicate(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        raise DuplicateKeyError("E11000 duplicate key", 11000, {"code": 11000, "keyPattern": {"_id": 1}})

    monkeypatch.setattr(collection_cls, name, duplicate)
    actions = {
        "events": lambda uow: stores.events.append(ev("a", 1), uow=uow),
        "snapshots": lambda uow: stores.snapshots.save_snapshot("Order", "o", {}, 1, uow=uow),
        "positions": lambda uow: stores.positions.save_position("p", 1, uow=uow),
    }
    async with MongoUnitOfWork(connection=real_connection) as uow:
        with pytest.raises(MongoPersistenceError):
            await actions[store_name](uow)
    assert calls["n"] == 1
