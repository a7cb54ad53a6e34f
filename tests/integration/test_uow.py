"""MongoUnitOfWork on the real-wire server with both async drivers: commit, abort on
exception, commit on leaving the block normally, both session patterns, hooks, retries, and the
replica-set check (once per connection, clear error on a standalone)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import OperationFailure

from cqrs_ddd_persistence_mongo import MongoConnectionManager, MongoUnitOfWorkError, TransactionsNotSupported
from cqrs_ddd_persistence_mongo.core.uow import MongoUnitOfWork


async def _collections(conn: MongoConnectionManager, *names: str) -> list[Any]:
    db = conn.db()
    for name in names:  # create up front: the embedded server and old mongod need it outside tx
        await db.create_collection(name)
    return [db[name] for name in names]


async def test_commit_writes_both_collections(real_connection: MongoConnectionManager) -> None:
    a, b = await _collections(real_connection, "a", "b")
    async with MongoUnitOfWork(connection=real_connection) as uow:
        assert uow.session is not None and uow.transactional
        await a.insert_one({"_id": 1}, session=uow.session)
        await b.insert_one({"_id": 1}, session=uow.session)
        assert await a.count_documents({}) == 0  # not visible outside before commit
        await uow.commit()
    assert await a.count_documents({}) == 1
    assert await b.count_documents({}) == 1
    assert not uow.is_active  # self-managed session ended on exit
    with pytest.raises(MongoUnitOfWorkError, match="inside 'async with"):
        uow.session


async def test_exception_aborts_both_collections(real_connection: MongoConnectionManager) -> None:
    a, b = await _collections(real_connection, "a", "b")
    with pytest.raises(RuntimeError, match="boom"):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await a.insert_one({"_id": 1}, session=uow.session)
            await b.insert_one({"_id": 1}, session=uow.session)
            raise RuntimeError("boom")
    assert await a.count_documents({}) == 0
    assert await b.count_documents({}) == 0


async def test_leaving_without_commit_commits(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    ran: list[str] = []
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.on_commit(lambda: ran.append("committed"))
        assert await a.count_documents({}) == 0
    assert await a.count_documents({}) == 1
    assert ran == ["committed"]


async def test_work_after_commit_is_committed_on_exit(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        await uow.commit()
        await uow.commit()  # nothing new: a no-op
        await a.insert_one({"_id": 2}, session=uow.session)
        assert await a.find_one({"_id": 1}, session=uow.session) == {"_id": 1}
    assert [d["_id"] async for d in a.find({})] == [1, 2]


async def test_session_before_entering_raises(real_connection: MongoConnectionManager) -> None:
    uow = MongoUnitOfWork(connection=real_connection)
    with pytest.raises(MongoUnitOfWorkError, match="inside 'async with"):
        uow.session


async def test_hooks_registered_before_entering_are_kept(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    ran: list[str] = []
    uow = MongoUnitOfWork(connection=real_connection)
    uow.on_commit(lambda: ran.append("early"))
    async with uow:
        await a.insert_one({"_id": 1}, session=uow.session)
    assert ran == ["early"]


async def test_doomed_unit_of_work_rolls_back_on_exit(real_connection: MongoConnectionManager) -> None:
    """A store error that doomed the transaction was seen by the caller: leaving the block
    rolls back (an explicit commit() would raise)."""
    (a,) = await _collections(real_connection, "a")
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.set_rollback_only("a batch save failed")
    assert await a.count_documents({}) == 0


async def test_rollback_discards_and_continues(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        await uow.rollback()
        await a.insert_one({"_id": 2}, session=uow.session)
        await uow.commit()
    assert [d["_id"] async for d in a.find({})] == [2]


async def test_client_managed_session_is_left_open(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    adapter = real_connection.driver()
    session = await adapter.start_session(real_connection.client)
    try:
        async with MongoUnitOfWork(session=session) as uow:
            assert uow.session is session
            await a.insert_one({"_id": 1}, session=uow.session)
            await uow.commit()
        assert not session.has_ended
        assert not adapter.in_transaction(session)
        # the same session serves a second unit of work
        async with MongoUnitOfWork(connection=real_connection, session=session) as uow:
            await a.insert_one({"_id": 2}, session=uow.session)
        assert not session.has_ended
    finally:
        await adapter.end_session(session)
    assert [d["_id"] async for d in a.find({})] == [1, 2]  # the second block committed on exit


async def test_session_already_in_transaction_is_refused(real_connection: MongoConnectionManager) -> None:
    adapter = real_connection.driver()
    session = await adapter.start_session(real_connection.client)
    try:
        await adapter.start_transaction(session)
        with pytest.raises(MongoUnitOfWorkError, match="already in a transaction"):
            async with MongoUnitOfWork(session=session):
                pass
        await adapter.abort_transaction(session)
    finally:
        await adapter.end_session(session)


async def test_commit_hooks_run_only_after_commit(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    ran: list[str] = []

    async def async_hook() -> None:
        # runs after the commit: the write is visible outside the transaction
        ran.append(f"async:{await a.count_documents({})}")

    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            uow.on_commit(lambda: ran.append("failed-block"))
            raise RuntimeError
    async with MongoUnitOfWork(connection=real_connection) as uow:
        uow.on_commit(lambda: ran.append("rolled-back"))
        await uow.rollback()
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.on_commit(lambda: ran.append("sync"))
        uow.on_commit(async_hook)
        assert ran == []
        await uow.commit()
        assert ran == ["sync", "async:1"]
        await uow.commit()  # hooks are consumed by the commit that ran them
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            uow.on_commit(lambda: ran.append("never-committed"))
            raise RuntimeError
    assert ran == ["sync", "async:1"]


async def test_failing_commit_hook_still_runs_the_others(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    ran: list[int] = []

    def bad() -> None:
        raise ValueError("hook failed")

    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.on_commit(bad)
        uow.on_commit(lambda: ran.append(1))
        with pytest.raises(ValueError, match="hook failed"):
            await uow.commit()
    assert ran == [1]
    assert await a.count_documents({}) == 1  # the commit itself stands


async def test_run_retries_a_transient_error(real_connection: MongoConnectionManager) -> None:
    """A real write conflict (TransientTransactionError) makes run() repeat the block."""
    (a,) = await _collections(real_connection, "a")
    await a.insert_one({"_id": 1, "n": 0})
    adapter = real_connection.driver()
    blocker = await adapter.start_session(real_connection.client)
    await adapter.start_transaction(blocker)
    await a.update_one({"_id": 1}, {"$set": {"n": 100}}, session=blocker)
    attempts: list[int] = []
    rolled_back: list[int] = []

    async def block(uow: MongoUnitOfWork) -> str:
        attempts.append(len(attempts) + 1)
        uow.on_rollback(lambda: rolled_back.append(len(attempts)))
        try:
            await a.update_one({"_id": 1}, {"$inc": {"n": 1}}, session=uow.session)
        except OperationFailure as exc:
            assert exc.has_error_label("TransientTransactionError")
            await adapter.abort_transaction(blocker)  # the other writer gives up
            raise
        return "done"

    try:
        result = await MongoUnitOfWork(connection=real_connection).run(block)
    finally:
        await adapter.end_session(blocker)
    assert result == "done"
    assert attempts == [1, 2]
    assert rolled_back == [1]
    assert (await a.find_one({"_id": 1}))["n"] == 1


async def test_run_does_not_retry_other_errors(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")
    attempts = 0

    async def block(uow: MongoUnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        await a.insert_one({"_id": attempts}, session=uow.session)
        raise KeyError("business rule")

    async with MongoUnitOfWork(connection=real_connection) as uow:
        with pytest.raises(KeyError):
            await uow.run(block)
        assert uow.is_active  # run() inside a block leaves the block to its owner
    assert attempts == 1
    assert await a.count_documents({}) == 0


async def test_run_gives_up_after_time_limit(real_connection: MongoConnectionManager) -> None:
    attempts = 0

    async def block(uow: MongoUnitOfWork) -> None:
        nonlocal attempts
        attempts += 1
        raise OperationFailure("always conflicting", code=112, details={"errorLabels": ["TransientTransactionError"]})

    with pytest.raises(OperationFailure):
        await MongoUnitOfWork(connection=real_connection).run(block, time_limit=0.2)
    assert attempts > 1


async def test_commit_retries_unknown_commit_result(
    real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = await _collections(real_connection, "a")
    adapter = real_connection.driver()
    real_commit = adapter.commit_transaction
    calls = 0

    async def flaky_commit(session: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationFailure(
                "network blip", code=91, details={"errorLabels": ["UnknownTransactionCommitResult"]}
            )
        await real_commit(session)

    monkeypatch.setattr(adapter, "commit_transaction", flaky_commit)
    hooks: list[int] = []
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.on_commit(lambda: hooks.append(1))
        await uow.commit()
        assert calls == 2
    assert hooks == [1]
    assert await a.count_documents({}) == 1


async def test_failed_commit_is_a_library_error_and_aborts(
    real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = await _collections(real_connection, "a")
    adapter = real_connection.driver()

    calls: list[int] = []
    real_commit = adapter.commit_transaction

    async def broken_commit(session: Any) -> None:
        calls.append(1)
        if len(calls) > 1:  # the first commit fails; the (empty) one on exit succeeds
            return await real_commit(session)
        raise OperationFailure("no such transaction", code=251, details={"errorLabels": ["TransientTransactionError"]})

    monkeypatch.setattr(adapter, "commit_transaction", broken_commit)
    hooks: list[int] = []
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await a.insert_one({"_id": 1}, session=uow.session)
        uow.on_commit(lambda: hooks.append(1))
        with pytest.raises(MongoUnitOfWorkError, match="commit failed") as info:
            await uow.commit()
        assert isinstance(info.value.__cause__, OperationFailure)
    assert hooks == []
    assert await a.count_documents({}) == 0


async def test_standalone_is_refused_before_any_write(
    real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = await _collections(real_connection, "a")
    hello = dict(await real_connection.server_hello())
    hello.pop("setName", None)  # what a standalone mongod answers
    monkeypatch.setattr(real_connection, "_hello", hello)
    assert not await real_connection.supports_transactions()
    entered = False
    with pytest.raises(TransactionsNotSupported, match="replica set") as info:
        async with MongoUnitOfWork(connection=real_connection):
            entered = True
            await a.insert_one({"_id": 1})
    assert "require_replica_set=False" in str(info.value)
    assert isinstance(info.value, RuntimeError)  # what the seed's code catches
    assert not entered
    assert await a.count_documents({}) == 0


async def test_standalone_without_requirement_runs_without_transaction(
    real_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (a,) = await _collections(real_connection, "a")

    async def standalone() -> bool:
        return False

    monkeypatch.setattr(real_connection, "supports_transactions", standalone)
    caplog.set_level(logging.WARNING, logger="cqrs_ddd_persistence_mongo.core.uow")
    for i in range(3):
        async with MongoUnitOfWork(connection=real_connection, require_replica_set=False) as uow:
            assert uow.session is None and not uow.transactional
            await a.insert_one({"_id": i}, session=uow.session)
            await uow.rollback()  # cannot undo: no transaction
    warnings = [r for r in caplog.records if "WITHOUT transactions" in r.getMessage()]
    assert len(warnings) == 1
    assert await a.count_documents({}) == 3


class _HelloCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.hellos = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name.lower() in {"hello", "ismaster"}:
            self.hellos += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_replica_set_check_runs_once_per_connection(mongo_url: str) -> None:
    counter = _HelloCounter()
    conn = MongoConnectionManager(url=mongo_url, database="uow_hello_once", event_listeners=[counter])
    await conn.connect()
    try:
        for _ in range(5):
            async with MongoUnitOfWork(connection=conn) as uow:
                assert uow.transactional
        assert counter.hellos == 1
    finally:
        await conn.client.drop_database("uow_hello_once")
        await conn.disconnect()


async def test_needs_connection_or_session() -> None:
    with pytest.raises(MongoUnitOfWorkError, match="needs connection="):
        MongoUnitOfWork()


async def test_commit_outside_the_block_is_explained(real_connection: MongoConnectionManager) -> None:
    uow = MongoUnitOfWork(connection=real_connection)
    with pytest.raises(MongoUnitOfWorkError, match="async with MongoUnitOfWork"):
        await uow.commit()
    async with uow:
        with pytest.raises(MongoUnitOfWorkError, match="already active"):
            await uow.begin()


async def test_concurrent_units_of_work_are_isolated(real_connection: MongoConnectionManager) -> None:
    (a,) = await _collections(real_connection, "a")

    async def writer(i: int) -> None:
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await a.insert_one({"_id": i}, session=uow.session)
            await asyncio.sleep(0)
            if i % 2:
                await uow.rollback()

    await asyncio.gather(*(writer(i) for i in range(6)))
    assert sorted([d["_id"] async for d in a.find({})]) == [0, 2, 4]


async def test_session_of_another_client_is_refused(real_connection: MongoConnectionManager, mongo_url: str) -> None:
    other = MongoConnectionManager(url=mongo_url, database=real_connection.database_name)
    await other.connect()
    session = await other.driver().start_session(other.client)
    try:
        with pytest.raises(MongoUnitOfWorkError, match="another client"):
            MongoUnitOfWork(connection=real_connection, session=session)
    finally:
        await other.driver().end_session(session)
        await other.disconnect()
