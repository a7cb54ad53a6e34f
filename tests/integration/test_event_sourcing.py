"""EventSourcedRepository on the real-wire server (both drivers): loads equal the direct
fold with and without snapshots, optimistic streams, units of work."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import (
    AggregateRoot,
    EventSourcedAggregate,
    EventSourcedRepository,
    MongoConnectionManager,
    MongoEventStore,
    MongoOutboxStorage,
    MongoSnapshotStore,
    MongoUnitOfWork,
    SnapshotEvery,
    applies,
)
from cqrs_ddd_persistence_mongo.domain import DomainEvent, OutboxMessage
from cqrs_ddd_persistence_mongo.exceptions import (
    ConcurrencyConflict,
    EventSourcingError,
    InvalidStoreArgument,
    UnhandledEvent,
)

pytestmark = pytest.mark.integration


class Deposited(DomainEvent):
    amount: int


class Withdrawn(DomainEvent):
    amount: int


class Account(EventSourcedAggregate):
    balance: int = 0
    moves: int = 0

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount
        self.moves += 1

    @applies(Withdrawn)
    def _withdrawn(self, event: Withdrawn) -> None:
        self.balance -= event.amount
        self.moves += 1

    def deposit(self, amount: int) -> None:
        self.record_event(Deposited(amount=amount))

    def withdraw(self, amount: int) -> None:
        if amount > self.balance:
            raise ValueError("insufficient funds")
        self.record_event(Withdrawn(amount=amount))


class SpyEventStore(MongoEventStore):
    """Records the ``after_version`` of every stream read."""

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.reads: list[int] = []

    async def get_events(self, aggregate_id: Any, after_version: int = 0, uow: Any = None) -> Any:
        self.reads.append(after_version)
        return await super().get_events(aggregate_id, after_version, uow)


async def direct_fold(store: MongoEventStore, account_id: str) -> Account:
    account = Account(id=account_id)
    for event in await store.get_events(account_id):
        account.apply(event)
    return account


async def test_save_then_get_equals_the_direct_fold(real_connection: MongoConnectionManager) -> None:
    repo = EventSourcedRepository(real_connection, Account)
    assert await repo.get("a1") is None
    account = Account(id="a1")
    for amount in range(1, 21):
        account.deposit(amount)
    account.withdraw(50)
    positions = await repo.save(account)
    assert len(positions) == 21 and account.domain_events == () and account.version == 21
    loaded = await repo.get("a1")
    assert loaded == account == await direct_fold(repo.event_store, "a1")
    assert (loaded.balance, loaded.moves, loaded.version) == (160, 21, 21)
    assert await repo.save(loaded) == []  # nothing pending: no write
    loaded.withdraw(10)
    await repo.save(loaded)
    assert (await repo.get("a1")).balance == 150


async def test_snapshots_every_n_events_and_loads_replay_only_the_tail(
    real_connection: MongoConnectionManager,
) -> None:
    events = SpyEventStore(real_connection)
    snapshots = MongoSnapshotStore(real_connection)
    repo = EventSourcedRepository(real_connection, Account, event_store=events, snapshot_store=snapshots,
                                  snapshot_policy=10)
    account = Account(id="a2")
    for batch in (7, 5, 1, 9, 3):  # versions 7, 12, 13, 22, 25: crosses 10 and 20
        for _ in range(batch):
            account.deposit(2)
        await repo.save(account)
    latest = await snapshots.get_latest_snapshot("Account", "a2")
    assert latest["version"] == 22  # taken after the save that crossed 20, at the stream's head then
    assert await snapshots.get_snapshot("Account", "a2", 12) is not None

    events.reads.clear()
    loaded = await repo.get("a2")
    assert events.reads == [22]
    plain = EventSourcedRepository(real_connection, Account)  # no snapshots at all
    assert loaded == account == await plain.get("a2") == await direct_fold(events, "a2")


async def test_a_snapshot_of_another_schema_is_ignored(real_connection: MongoConnectionManager,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    events = SpyEventStore(real_connection)
    repo = EventSourcedRepository(real_connection, Account, event_store=events, snapshot_policy=SnapshotEvery(5))
    account = Account(id="a3")
    for _ in range(6):
        account.deposit(1)
    await repo.save(account)
    monkeypatch.setattr(Account, "snapshot_schema", 2)
    events.reads.clear()
    assert await repo.get("a3") == account and events.reads == [0]  # full replay
    account.deposit(1)
    for _ in range(3):
        account.deposit(1)
    await repo.save(account)  # crosses 10: a snapshot of schema 2
    events.reads.clear()
    assert await repo.get("a3") == account and events.reads == [10]


async def test_a_snapshot_that_no_longer_validates_is_ignored(real_connection: MongoConnectionManager) -> None:
    snapshots = MongoSnapshotStore(real_connection)
    repo = EventSourcedRepository(real_connection, Account, snapshot_store=snapshots)
    account = Account(id="a4")
    account.deposit(5)
    await repo.save(account)
    await snapshots.save_snapshot("Account", "a4", {"id": "a4", "version": 1, "balance": "lots"}, 1)
    assert await repo.get("a4") == account


async def test_two_concurrent_saves_one_wins_the_loser_writes_nothing(
    real_connection: MongoConnectionManager,
) -> None:
    repo = EventSourcedRepository(real_connection, Account)
    account = Account(id="a5")
    account.deposit(100)
    await repo.save(account)
    first, second = await repo.get("a5"), await repo.get("a5")
    first.withdraw(60)
    second.withdraw(70)
    second.deposit(1)
    results = await asyncio.gather(repo.save(first), repo.save(second), return_exceptions=True)
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(conflicts) == 1, results
    winner, loser = (first, second) if results[1] is conflicts[0] else (second, first)
    stored = await repo.event_store.get_events("a5")
    stored_ids = {e.event_id for e in stored}
    assert all(e.event_id not in stored_ids for e in loser.domain_events)
    assert [e.version for e in stored] == list(range(1, winner.version + 1))
    assert await repo.get("a5") == winner
    assert len(loser.domain_events) > 0  # kept: the caller reloads and retries


async def test_a_stale_aggregate_conflicts_and_writes_nothing(real_connection: MongoConnectionManager) -> None:
    repo = EventSourcedRepository(real_connection, Account)
    account = Account(id="a6")
    account.deposit(10)
    await repo.save(account)
    stale = await repo.get("a6")
    fresh = await repo.get("a6")
    fresh.deposit(1)
    await repo.save(fresh)
    stale.deposit(2)
    stale.deposit(3)
    with pytest.raises(ConcurrencyConflict, match="reload and retry"):
        await repo.save(stale)
    assert await repo.get("a6") == fresh
    retry = await repo.get("a6")
    retry.deposit(2)
    await repo.save(retry)
    assert (await repo.get("a6")).balance == 13


async def test_inside_a_unit_of_work_events_commit_with_outbox_and_other_writes(
    real_connection: MongoConnectionManager,
) -> None:
    repo = EventSourcedRepository(real_connection, Account, snapshot_policy=2)
    outbox = MongoOutboxStorage(real_connection)
    account = Account(id="a7")
    account.deposit(3)
    account.deposit(4)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await repo.save(account, uow=uow)
        await outbox.save_messages([OutboxMessage(event_type="Deposited", payload={"amount": 7})], uow=uow)
        await real_connection.db().ledger.insert_one({"_id": "a7", "seen": 2}, session=uow.session)
        assert await repo.snapshot_store.get_latest_snapshot("Account", "a7") is None  # not before commit
        await uow.rollback()
    assert account.version == 2 and len(account.domain_events) == 2  # pending again after the rollback
    assert await repo.get("a7") is None
    assert await real_connection.db().ledger.find_one({"_id": "a7"}) is None
    assert await repo.snapshot_store.get_latest_snapshot("Account", "a7") is None

    async with MongoUnitOfWork(connection=real_connection) as uow:
        await repo.save(account, uow=uow)
        await outbox.save_messages([OutboxMessage(event_type="Deposited", payload={"amount": 7})], uow=uow)
        await real_connection.db().ledger.insert_one({"_id": "a7", "seen": 2}, session=uow.session)
        await uow.commit()
    assert await repo.get("a7") == account and account.domain_events == ()
    assert await real_connection.db().ledger.find_one({"_id": "a7"}) == {"_id": "a7", "seen": 2}
    assert len(await outbox.get_pending()) == 1
    assert (await repo.snapshot_store.get_latest_snapshot("Account", "a7"))["version"] == 2


async def test_a_conflict_inside_a_unit_of_work_writes_nothing(real_connection: MongoConnectionManager) -> None:
    repo = EventSourcedRepository(real_connection, Account)
    account = Account(id="a8")
    account.deposit(1)
    await repo.save(account)
    stale, fresh = await repo.get("a8"), await repo.get("a8")
    fresh.deposit(5)
    await repo.save(fresh)
    stale.deposit(7)
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await real_connection.db().ledger.insert_one({"_id": "a8"}, session=uow.session)
        with pytest.raises(ConcurrencyConflict):
            await repo.save(stale, uow=uow)
    assert await repo.get("a8") == fresh
    assert await real_connection.db().ledger.find_one({"_id": "a8"}) is None


async def test_wrong_use_raises_library_errors(mock_connection: MongoConnectionManager) -> None:
    class Plain(AggregateRoot):  # state-stored
        pass

    with pytest.raises(EventSourcingError, match="EventSourcedAggregate subclass"):
        EventSourcedRepository(mock_connection, Plain)
    with pytest.raises(InvalidStoreArgument):
        EventSourcedRepository(mock_connection, Account, snapshot_policy=0)
    repo = EventSourcedRepository(mock_connection, Account)
    with pytest.raises(InvalidStoreArgument):
        await repo.get(None)
    with pytest.raises(EventSourcingError, match="stores Account"):
        await repo.save(Plain(id="x"))  # type: ignore[arg-type]
    nameless = Account()
    nameless.deposit(1)
    with pytest.raises(EventSourcingError, match="has no id"):
        await repo.save(nameless)

    class Required(EventSourcedAggregate):
        owner: str

    assert await EventSourcedRepository(mock_connection, Required).get("r") is None
    await repo.event_store.append_batch([Deposited(amount=1, aggregate_id="r", aggregate_type="Required",
                                                   version=1)])
    with pytest.raises(EventSourcingError, match="give every field"):
        await EventSourcedRepository(mock_connection, Required).get("r")
    await repo.event_store.append_batch([DomainEvent(event_type="Closed", aggregate_id="u", version=1)])
    with pytest.raises(UnhandledEvent):
        await repo.get("u")


async def test_two_concurrent_transactional_saves_one_commits(real_connection: MongoConnectionManager) -> None:
    repo = EventSourcedRepository(real_connection, Account)
    account = Account(id="a9")
    account.deposit(100)
    await repo.save(account)
    both_loaded = asyncio.Barrier(2)

    async def withdraw(amount: int) -> Account:
        async with MongoUnitOfWork(connection=real_connection) as uow:
            mine = await repo.get("a9", uow=uow)
            await both_loaded.wait()
            mine.withdraw(amount)
            await repo.save(mine, uow=uow)
            await uow.commit()
        return mine

    results = await asyncio.gather(withdraw(30), withdraw(40), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and isinstance(failures[0], ConcurrencyConflict), results
    winner = next(r for r in results if isinstance(r, Account))
    stored = await repo.event_store.get_events("a9")
    assert [e.version for e in stored] == [1, 2] and await repo.get("a9") == winner
