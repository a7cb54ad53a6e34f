"""The projection part of ``python -m cqrs_ddd_persistence_mongo demo``.

1. place orders through the repository and a unit of work: the order, its events and
   their outbox messages commit in one transaction;
2. publish the outbox;
3. append a larger synthetic history (``orders`` orders, 10 events each);
4. rebuild the order-summary projection (progress bar on a terminal);
5. verify every read-model document against a direct fold of the stored events;
6. print the throughput.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cqrs_ddd_persistence_mongo.advanced.position_store import MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.core.event_store import MongoEventStore
from cqrs_ddd_persistence_mongo.core.outbox import MongoOutboxStorage
from cqrs_ddd_persistence_mongo.core.outbox_publisher import OutboxPublisher
from cqrs_ddd_persistence_mongo.core.repository import MongoRepository
from cqrs_ddd_persistence_mongo.core.uow import MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import AggregateRoot, DomainEvent, OutboxMessage
from cqrs_ddd_persistence_mongo.exceptions import MongoPersistenceError
from .orders import OrderSummaryProjection, differences, fold_orders, order_history, read_model
from cqrs_ddd_persistence_mongo.projections.progress import Progress, human_duration
from cqrs_ddd_persistence_mongo.projections.runner import ProjectionRunner
from cqrs_ddd_persistence_mongo.roles import ConnectionRole

DEFAULT_ORDERS = 20_000
APPEND_CHUNK = 5_000


class OrderPlaced(DomainEvent):
    customer_id: str


class OrderItemAdded(DomainEvent):
    sku: str
    quantity: int
    unit_price: float


class OrderShipped(DomainEvent):
    pass


class Order(AggregateRoot):
    customer_id: str = ""
    status: str = "new"
    total: float = 0.0

    @classmethod
    def place(cls, order_id: str, customer_id: str) -> Order:
        order = cls(id=order_id, customer_id=customer_id, status="placed")
        order.record_event(OrderPlaced(customer_id=customer_id))
        return order

    def add_item(self, sku: str, quantity: int, unit_price: float) -> None:
        self.total = round(self.total + quantity * unit_price, 2)
        self.record_event(OrderItemAdded(sku=sku, quantity=quantity, unit_price=unit_price))

    def ship(self) -> None:
        self.status = "shipped"
        self.record_event(OrderShipped())


async def place_orders(connection: ConnectionRole, events: MongoEventStore, outbox: MongoOutboxStorage, count: int) -> int:
    """Save ``count`` orders; each commits with its events and outbox messages atomically."""
    repository: MongoRepository[Order, str] = MongoRepository(connection, "orders", Order)
    for i in range(count):
        order = Order.place(f"web-{i:03d}", f"cust-web-{i % 3}")
        order.add_item("sku-001", 2, 9.5)
        order.add_item("sku-002", 1, 20.0)
        order.ship()
        recorded = order.pull_domain_events()

        async def work(uow: MongoUnitOfWork, order: Order = order, recorded: list[DomainEvent] = recorded) -> None:
            await repository.add(order, uow=uow)
            await events.append_batch(recorded, uow=uow)
            await outbox.save_messages(
                [OutboxMessage(message_id=e.event_id, event_type=e.event_type, payload=e.payload()) for e in recorded],
                uow=uow,
            )

        await MongoUnitOfWork(connection=connection, require_replica_set=False).run(work)
    return count


async def run_tour(connection: ConnectionRole, orders: int = DEFAULT_ORDERS, out: Callable[[str], Any] = print,
                   progress_stream: Any = None) -> dict[str, float]:
    """Run the projection tour on ``connection``'s database; raises if verification fails."""
    events = MongoEventStore(connection)
    outbox = MongoOutboxStorage(connection)
    positions = MongoProjectionPositionStore(connection)

    placed = await place_orders(connection, events, outbox, 3)
    published: list[str] = []

    async def publish(message: Any) -> None:
        published.append(message.event_type)

    publisher = OutboxPublisher(outbox, publish, batch_size=50)
    while await publisher.run_once():
        pass
    if len(published) != placed * 4:
        raise MongoPersistenceError(f"the outbox published {len(published)} messages, expected {placed * 4}")
    out(f"  [orders] {placed} orders saved with their events and outbox messages in one transaction each; "
        f"outbox published {len(published)} messages")

    started = time.perf_counter()
    batch: list[Any] = []
    appended = 0
    appending = Progress("  append history", orders * 10, stream=progress_stream)
    for event in order_history(orders, 10, concurrent=200):
        batch.append(event)
        if len(batch) == APPEND_CHUNK:
            await events.append_batch(batch)
            appended += len(batch)
            appending.update(appended)
            batch = []
    if batch:
        await events.append_batch(batch)
        appended += len(batch)
    appending.update(appended)
    appending.finish()
    append_seconds = time.perf_counter() - started
    out(f"  [history] appended {appended:,} events over {orders:,} orders in {human_duration(append_seconds)} "
        f"({appended / append_seconds:,.0f} events/s)")

    runner = ProjectionRunner(events, positions, [OrderSummaryProjection()], connection=connection)
    report = await runner.rebuild(
        "order_summary", batch_size=5000,
        progress=lambda name, total: Progress(f"  rebuild {name}", total, stream=progress_stream),
    )
    out(f"  [rebuild] {report.events:,} events in {human_duration(report.seconds)} = "
        f"{report.events_per_second:,.0f} events/s "
        f"(batched, coalesced, swapped in atomically)")

    stored = [event async for event in events.get_events_from_position(0, 5000)]
    problems = differences(fold_orders(stored), await read_model(connection.db()))
    if problems:
        raise MongoPersistenceError(
            f"the rebuilt read model differs from the events in {len(problems)} documents, first: {problems[0]}"
        )
    summaries = await connection.db()["order_summaries"].count_documents({})
    out(f"  [verify] all {summaries:,} order summaries and the product totals equal a direct fold of the events")
    return {"events": float(report.events), "events_per_second": report.events_per_second,
            "append_events_per_second": appended / append_seconds}
