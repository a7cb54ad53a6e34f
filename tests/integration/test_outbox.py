"""MongoOutboxStorage and OutboxPublisher on the real-wire server: transactional save,
pending order, leases, retries with backoff, dead letters, concurrent publishers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager, OutboxError
from cqrs_ddd_persistence_mongo.core import MongoOutboxStorage, OutboxPublisher
from cqrs_ddd_persistence_mongo.domain import OutboxMessage
from cqrs_ddd_persistence_mongo.exceptions import InvalidOutboxMessage

from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


def msgs(n: int, prefix: str = "m") -> list[OutboxMessage]:
    return [OutboxMessage(message_id=f"{prefix}{i:05d}", event_type="Happened", payload={"n": i},
                          created_at=T0 + timedelta(milliseconds=i)) for i in range(n)]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime]:
    """The outbox's clock, driven by the test: a slow machine cannot end a lease or a backoff early."""
    from cqrs_ddd_persistence_mongo.core import outbox as outbox_module

    now = [datetime(2030, 1, 1, tzinfo=timezone.utc)]
    monkeypatch.setattr(outbox_module, "utc_now", lambda: now[0])
    return now


async def statuses(connection: MongoConnectionManager, collection: str = "outbox") -> Counter[str]:
    docs = await connection.db()[collection].find({}, {"status": 1}).to_list(None)
    return Counter(d["status"] for d in docs)


async def test_save_in_transaction_commits_or_vanishes_with_it(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.ensure_indexes()
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await outbox.save_messages(msgs(3, "a"), uow=uow)
            await real_connection.db().orders.insert_one({"_id": "o1"}, session=uow.session)
            raise RuntimeError("the handler failed")
    assert await outbox.get_pending() == []  # aborted with the rest of the unit of work
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await outbox.save_messages(msgs(3, "b"), uow=uow)
        await outbox.save_messages([], uow=uow)  # no-op
        await uow.commit()
    pending = await outbox.get_pending()
    assert [m.message_id for m in pending] == ["b00000", "b00001", "b00002"]
    assert pending[0].payload == {"n": 0} and pending[0].status == "pending" and pending[0].created_at == T0


async def test_pending_oldest_first_and_mark_published(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(list(reversed(msgs(5))))
    assert [m.message_id for m in await outbox.get_pending(limit=3)] == ["m00000", "m00001", "m00002"]
    assert await outbox.mark_published(["m00000", "m00002"]) == 2
    assert await outbox.mark_published(["m00000"]) == 0  # idempotent
    assert [m.message_id for m in await outbox.get_pending()] == ["m00001", "m00003", "m00004"]
    published = await outbox.get_message("m00000")
    assert published.status == "published" and published.published_at is not None
    assert published.next_attempt_at is None


async def test_duplicate_message_id_and_bad_messages(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(msgs(1))
    with pytest.raises(OutboxError, match="already saved"):
        await outbox.save_messages(msgs(1))
    with pytest.raises(InvalidOutboxMessage, match="event_type"):
        await outbox.save_messages([OutboxMessage(message_id="x")])
    with pytest.raises(InvalidOutboxMessage, match="payload"):
        await outbox.save_messages([OutboxMessage(message_id="x", event_type="E", payload={"a.b": 1})])
    with pytest.raises(InvalidOutboxMessage, match="pending"):
        await outbox.save_messages([OutboxMessage(message_id="x", event_type="E", status="published")])
    with pytest.raises(OutboxError, match="no outbox message"):
        await outbox.mark_failed("nope", "boom")


async def test_retries_back_off_then_dead_letter_then_requeue(
    real_connection: MongoConnectionManager, clock: list[datetime]
) -> None:
    outbox = MongoOutboxStorage(real_connection, max_retries=2, retry_backoff=timedelta(milliseconds=150))
    await outbox.save_messages(msgs(2))
    assert await outbox.mark_failed("m00000", "broker down") == "failed"
    failed = await outbox.get_message("m00000")
    assert failed.retry_count == 1 and failed.error == "broker down"
    clock[0] += timedelta(milliseconds=149)
    assert [m.message_id for m in await outbox.get_pending()] == ["m00001"]  # backing off
    clock[0] += timedelta(milliseconds=51)
    assert [m.message_id for m in await outbox.get_pending()] == ["m00001", "m00000"]  # due again, by due time
    assert await outbox.mark_failed("m00000", "still down") == "failed"
    assert outbox.backoff(2) == timedelta(milliseconds=300)
    assert await outbox.mark_failed("m00000", "gone") == "dead"  # 1 attempt + 2 retries failed
    assert await outbox.mark_failed("m00000", "again") == "dead"  # final states stay
    [dead] = await outbox.get_dead()
    assert (dead.message_id, dead.status, dead.error, dead.retry_count) == ("m00000", "dead", "gone", 3)
    assert [m.message_id for m in await outbox.claim_batch("w", 10)] == ["m00001"]  # dead is not due
    assert await outbox.requeue_dead(["m00000"]) == 1
    requeued = await outbox.get_message("m00000")
    assert (requeued.status, requeued.retry_count) == ("pending", 0)
    assert await outbox.get_dead() == []


async def test_claims_are_exclusive_until_the_lease_expires(
    real_connection: MongoConnectionManager, clock: list[datetime]
) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(msgs(10))
    first = await outbox.claim_batch("w1", 6, lease=timedelta(milliseconds=300))
    second = await outbox.claim_batch("w2", 6, lease=timedelta(seconds=30))
    first_ids, second_ids = [m.message_id for m in first], [m.message_id for m in second]
    assert len(first_ids) == 6 and first_ids == sorted(first_ids)  # oldest first within the batch
    assert sorted(first_ids + second_ids) == [f"m{i:05d}" for i in range(10)]  # disjoint, complete
    assert {m.locked_by for m in first} == {"w1"} and first[0].status == "publishing"
    assert await outbox.claim_batch("w3", 10) == []
    clock[0] += timedelta(milliseconds=299)
    assert await outbox.claim_batch("w3", 10) == []  # w1's lease still holds
    clock[0] += timedelta(milliseconds=2)  # w1 died: its lease runs out
    third = await outbox.claim_batch("w3", 10)
    assert [m.message_id for m in third] == first_ids
    assert await outbox.release([m.message_id for m in third], "someone-else") == 0
    assert await outbox.release([m.message_id for m in third], "w3") == 6


async def wait_until(condition: Any, seconds: float) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)


async def test_four_publishers_publish_each_message_exactly_once(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(msgs(2000))
    published: list[str] = []

    async def publish(message: OutboxMessage) -> None:
        published.append(message.message_id)
        await asyncio.sleep(0)

    publishers = [OutboxPublisher(outbox, publish, batch_size=100, poll_interval=0.01, worker_id=f"p{i}")
                  for i in range(4)]
    for publisher in publishers:
        publisher.start()
    await wait_until(lambda: len(published) >= 2000, 120)
    for publisher in publishers:  # stop() lets each finish (and mark) its batch
        await publisher.stop()
    assert len(published) == 2000 and len(set(published)) == 2000
    assert await statuses(real_connection) == Counter({"published": 2000})


async def test_a_publisher_dying_mid_lease_loses_nothing(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(msgs(300))
    published: list[str] = []
    hung = asyncio.Event()

    async def hang(message: OutboxMessage) -> None:
        hung.set()
        await asyncio.Event().wait()  # never returns: the process "dies" holding its lease

    async def publish(message: OutboxMessage) -> None:
        published.append(message.message_id)

    dying = OutboxPublisher(outbox, hang, batch_size=40, lease=timedelta(milliseconds=400), worker_id="dying")
    task = dying.start()
    await hung.wait()
    task.cancel()  # killed: no release, no mark
    await asyncio.gather(task, return_exceptions=True)
    assert (await statuses(real_connection))["publishing"] == 40
    survivors = [OutboxPublisher(outbox, publish, batch_size=25, poll_interval=0.02, worker_id=f"s{i}")
                 for i in range(3)]
    for publisher in survivors:
        publisher.start()
    await wait_until(lambda: len(set(published)) >= 300, 60)
    for publisher in survivors:
        await publisher.stop()
    assert sorted(set(published)) == [m.message_id for m in msgs(300)]
    assert len(published) == 300  # the survivors themselves never overlapped
    assert await statuses(real_connection) == Counter({"published": 300})


async def test_failing_publish_is_retried_then_dead_lettered(real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection, max_retries=1, retry_backoff=timedelta(milliseconds=20))
    await outbox.save_messages(msgs(3))
    attempts: Counter[str] = Counter()

    async def publish(message: OutboxMessage) -> None:
        attempts[message.message_id] += 1
        if message.message_id == "m00001":
            raise ConnectionError("broker refused")

    publisher = OutboxPublisher(outbox, publish, batch_size=10, poll_interval=0.01)
    publisher.start()
    for _ in range(200):
        if (await statuses(real_connection)) == Counter({"published": 2, "dead": 1}):
            break
        await asyncio.sleep(0.02)
    await publisher.stop()
    assert attempts == Counter({"m00000": 1, "m00001": 2, "m00002": 1})
    [dead] = await outbox.get_dead()
    assert dead.error == "ConnectionError: broker refused"


async def test_stop_finishes_the_message_in_hand_and_releases_the_rest(
        real_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(real_connection)
    await outbox.save_messages(msgs(10))
    started = asyncio.Event()
    published: list[str] = []

    async def slow(message: OutboxMessage) -> None:
        started.set()
        await asyncio.sleep(0.05)
        published.append(message.message_id)

    publisher = OutboxPublisher(outbox, slow, batch_size=10, lease=timedelta(minutes=5))
    publisher.start()
    await started.wait()
    await publisher.stop()
    assert 1 <= len(published) < 10
    counts = await statuses(real_connection)
    assert counts == Counter({"published": len(published), "pending": 10 - len(published)})
    assert len(await outbox.get_pending()) == 10 - len(published)  # due at once, not after the lease


async def test_outbox_on_mongomock(mock_connection: MongoConnectionManager) -> None:
    outbox = MongoOutboxStorage(mock_connection)
    await outbox.save_messages(msgs(3))
    claimed = [m.message_id for m in await outbox.claim_batch("w", 2)]
    assert len(set(claimed)) == 2
    await outbox.mark_published(claimed)
    assert [m.message_id for m in await outbox.get_pending()] == sorted({"m00000", "m00001", "m00002"} - set(claimed))


def test_bad_arguments() -> None:
    with pytest.raises(OutboxError, match="max_retries"):
        MongoOutboxStorage(object(), max_retries=-1)


async def test_reads_and_marks_take_uow_and_specification(real_connection: MongoConnectionManager) -> None:
    from cqrs_ddd_persistence_mongo.specifications import SpecificationBuilder

    outbox = MongoOutboxStorage(real_connection)
    await outbox.ensure_indexes()
    await outbox.save_messages(msgs(3, "a"))
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=real_connection) as uow:
            await outbox.save_messages(msgs(1, "u"), uow=uow)
            pending = sorted(m.message_id for m in await outbox.get_pending(uow=uow))
            assert pending == ["a00000", "a00001", "a00002", "u00000"]  # its own message too
            assert await outbox.mark_published(["a00000"], uow=uow) == 1
            assert await outbox.mark_failed("a00001", "smtp down", uow=uow) == "failed"
            raise RuntimeError("abort")
    assert sorted((await statuses(real_connection)).items()) == [("pending", 3)]  # all undone
    async with MongoUnitOfWork(connection=real_connection) as uow:
        await outbox.mark_published(["a00000"], uow=uow)
    assert (await outbox.get_message("a00000")).status == "published"
    second = SpecificationBuilder().where("message_id", "eq", "a00002").build()
    assert [m.message_id for m in await outbox.get_pending(specification=second)] == ["a00002"]
