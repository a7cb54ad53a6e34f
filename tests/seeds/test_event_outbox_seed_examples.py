"""The event store and outbox examples of the seeds (mongo-core-persistence.md,
mongo-persistence-overview.md), run as written on the real-wire server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore, MongoOutboxStorage, MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import AggregateRoot, DomainEvent, OutboxMessage, StoredEvent


class OrderCreated(DomainEvent):
    customer_id: str
    total: float


class OrderShipped(DomainEvent):
    pass


class Order(AggregateRoot):
    customer_id: str = ""
    total: float = 0.0
    status: str = "new"

    @classmethod
    def create(cls, order_id: str, customer_id: str, total: float) -> Order:
        order = cls(id=order_id)
        order.apply(OrderCreated(customer_id=customer_id, total=total))
        order.record_event(OrderCreated(customer_id=customer_id, total=total))
        return order

    def ship(self) -> None:
        self.status = "shipped"
        self.record_event(OrderShipped())

    def apply(self, event: DomainEvent) -> None:
        if isinstance(event, OrderCreated):
            self.customer_id, self.total = event.customer_id, event.total
        elif isinstance(event, OrderShipped):
            self.status = "shipped"


async def test_core_event_store_usage(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    event_store = MongoEventStore(
        connection=connection,
        database=connection.database_name,
    )

    # Append single event
    event = StoredEvent(
        event_id="evt-123",
        event_type="OrderCreated",
        aggregate_id="order-456",
        aggregate_type="Order",
        version=1,
        payload={"customer_id": "cust-789", "total": 99.99},
        metadata={"user_id": "user-123"},
        occurred_at=datetime.now(timezone.utc),
    )
    await event_store.append(event)

    # Append batch (atomic)
    event1, event2, event3 = (
        StoredEvent(event_type="OrderShipped", aggregate_id="order-456", aggregate_type="Order", version=v)
        for v in (2, 3, 4)
    )
    events = [event1, event2, event3]
    await event_store.append_batch(events)

    # Get events for aggregate
    events = await event_store.get_events("order-456")
    assert [e.version for e in events] == [1, 2, 3, 4]

    # Get events after version (for reconstitution)
    events = await event_store.get_events("order-456", after_version=5)
    assert events == []
    assert [e.version for e in await event_store.get_events("order-456", after_version=2)] == [3, 4]

    processed: list[int] = []

    async def process_event(e: StoredEvent) -> None:
        processed.append(e.position)

    # Cursor-based pagination
    position = 0
    while True:
        batch = await event_store.get_events_after(position, limit=1000)
        if not batch:
            break
        for event in batch:
            await process_event(event)
            position = event.position
    assert processed == [1, 2, 3, 4]

    # Streaming (memory-efficient)
    async for event in await event_store.get_events_from_position(0):
        await process_event(event)
    assert processed == [1, 2, 3, 4, 1, 2, 3, 4]

    # the documented document shapes
    doc = await connection.db().domain_events.find_one({"_id": "evt-123"})
    assert {k: doc[k] for k in ("event_type", "aggregate_id", "aggregate_type", "version", "position")} == {
        "event_type": "OrderCreated", "aggregate_id": "order-456", "aggregate_type": "Order",
        "version": 1, "position": 1}
    assert doc["payload"] == {"customer_id": "cust-789", "total": 99.99}
    assert await connection.db().counters.find_one({"_id": "domain_events_position"}) == {
        "_id": "domain_events_position", "seq": 4}


async def test_core_reconstitution(real_connection: MongoConnectionManager) -> None:
    event_store = MongoEventStore(connection=real_connection)
    placed = Order.create("order-1", "cust-1", 10.0)
    placed.ship()
    await event_store.append_batch(placed.pull_domain_events())

    async def reconstitute_order(order_id: str, event_store: MongoEventStore) -> Order:
        """Rebuild order from event history."""
        events = await event_store.get_events(order_id)
        order = Order(id=order_id)
        for event in events:
            if event.event_type == "OrderCreated":
                order.apply(OrderCreated(**event.payload))
            elif event.event_type == "OrderShipped":
                order.apply(OrderShipped(**event.payload))
        return order

    order = await reconstitute_order("order-1", event_store)
    assert (order.customer_id, order.total, order.status) == ("cust-1", 10.0, "shipped")


async def test_overview_event_sourcing(real_connection: MongoConnectionManager) -> None:
    event_store = MongoEventStore(real_connection)
    event = StoredEvent(
        event_id="evt-123",
        event_type="OrderCreated",
        aggregate_id="order-456",
        payload={"customer_id": "cust-789"},
    )
    await event_store.append(event)
    events = await event_store.get_events("order-456")
    applied = []
    for event in events:
        applied.append(event.payload)
    assert applied == [{"customer_id": "cust-789"}]


async def test_core_transactional_outbox_and_publisher(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    outbox = MongoOutboxStorage(
        connection=connection,
        database=connection.database_name,
    )
    order_repo = MongoRepository(connection, "orders", Order)
    order = Order.create("order-456", "cust-1", 5.0)
    order.ship()

    # Save events in same transaction as aggregate
    async with MongoUnitOfWork(connection=connection) as uow:
        await order_repo.add(order, uow=uow)
        domain_events = order.pull_domain_events()
        outbox_messages = [
            OutboxMessage(
                message_id=event.event_id,
                event_type=event.event_type,
                payload=event.model_dump(),
                created_at=datetime.now(timezone.utc),
            )
            for event in domain_events
        ]
        await outbox.save_messages(outbox_messages, uow=uow)
        # Both aggregate and outbox committed atomically
        await uow.commit()

    # a unit of work left by an exception writes neither ("automatic commit/abort")
    with pytest.raises(RuntimeError):
        async with MongoUnitOfWork(connection=connection) as uow:
            other = Order.create("order-999", "cust-2", 1.0)
            await order_repo.add(other, uow=uow)
            await outbox.save_messages([OutboxMessage(message_id="lost", event_type="OrderCreated")], uow=uow)
            raise RuntimeError("payment declined")
    assert await order_repo.get("order-999") is None

    sent: list[tuple[str, str]] = []

    class FlakyKafka:
        async def send(self, topic: str, key: str, value: dict) -> None:
            if topic == "domain.OrderShipped" and not any(t == topic for t, _ in sent):
                sent.append((topic, "refused"))
                raise ConnectionError("broker unavailable")
            sent.append((topic, key))

    kafka_producer = FlakyKafka()

    # Background worker (one iteration of the seed's loop)
    async def outbox_publisher_iteration() -> None:
        messages = await outbox.get_pending(limit=100)
        for msg in messages:
            try:
                await kafka_producer.send(
                    topic=f"domain.{msg.event_type}",
                    key=msg.message_id,
                    value=msg.payload,
                )
                await outbox.mark_published([msg.message_id])
            except Exception as e:
                await outbox.mark_failed(msg.message_id, str(e))
        await asyncio.sleep(0)

    outbox.retry_backoff = outbox.retry_backoff * 0  # the seed's "will be retried": now, for the test
    await outbox_publisher_iteration()
    await outbox_publisher_iteration()
    ids = [m.message_id for m in outbox_messages]
    assert [key for _, key in sent] == [ids[0], "refused", ids[1]]
    assert await outbox.get_pending() == []
    doc = await connection.db().outbox.find_one({"_id": ids[1]})
    assert (doc["status"], doc["retry_count"], doc["error"]) == ("published", 1, "broker unavailable")
    assert doc["published_at"] is not None and doc["payload"]["event_type"] == "OrderShipped"
