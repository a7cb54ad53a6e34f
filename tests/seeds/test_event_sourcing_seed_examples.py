"""The seeds' reconstitution examples, ``order.apply(event)`` loops with and without a
snapshot, run as written against the real event store: mongo-core-persistence.md
("Event Reconstitution"), mongo-persistence-overview.md ("3. Event Sourcing"),
mongo-advanced-persistence.md (§2 MongoSnapshotStore and Pattern 3) and the identical
snapshot example of sqlalchemy-advanced-persistence.md. The seeds do not show ``Order``;
here it is an event-sourced aggregate with ``@applies`` handlers. Adaptations are marked
``# adapted:``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from cqrs_ddd_persistence_mongo.advanced import MongoProjectionStore, MongoSnapshotStore
from cqrs_ddd_persistence_mongo.connection import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.domain import DomainEvent, EventSourcedAggregate, StoredEvent, applies

logger = logging.getLogger(__name__)


class OrderCreated(DomainEvent):
    customer_id: str


class OrderShipped(DomainEvent):
    pass


class ItemAdded(DomainEvent):
    amount: float


class Order(EventSourcedAggregate):
    customer_id: str = ""
    total: float = 0.0
    status: str = "pending"

    @applies(OrderCreated)
    def _created(self, event: OrderCreated) -> None:
        self.customer_id = event.customer_id

    @applies(ItemAdded)
    def _item_added(self, event: ItemAdded) -> None:
        self.total += event.amount

    @applies(OrderShipped)
    def _shipped(self, event: OrderShipped) -> None:
        self.status = "shipped"


async def _history(event_store: MongoEventStore, order_id: str, items: int, shipped: bool = False) -> None:
    order = Order(id=order_id)
    order.record_event(OrderCreated(customer_id="cust-456"))
    for _ in range(items):
        order.record_event(ItemAdded(amount=1.0))
    if shipped:
        order.record_event(OrderShipped())
    await event_store.append_batch(order.pull_domain_events())


# --- mongo-core-persistence.md, "Event Reconstitution" --------------------------------
async def test_core_reconstitute_order_example(real_connection: MongoConnectionManager) -> None:
    event_store = MongoEventStore(real_connection)
    await _history(event_store, "order-1", items=0, shipped=True)

    async def reconstitute_order(order_id: str, event_store: MongoEventStore) -> Order:
        """Rebuild order from event history."""
        # Get all events for aggregate
        events = await event_store.get_events(order_id)

        # Start with empty order
        order = Order(id=order_id)

        # Apply each event
        for event in events:
            if event.event_type == "OrderCreated":
                order.apply(OrderCreated(**event.payload))
            elif event.event_type == "OrderShipped":
                order.apply(OrderShipped(**event.payload))
            # ... more event handlers

        return order

    order = await reconstitute_order("order-1", event_store)
    assert (order.customer_id, order.status, order.version) == ("cust-456", "shipped", 2)


# --- mongo-persistence-overview.md, "3. Event Sourcing" -------------------------------
async def test_overview_event_sourcing_example(real_connection: MongoConnectionManager) -> None:
    event_store = MongoEventStore(real_connection)
    order = Order(id="order-456")  # adapted: the seed's order exists before the snippet

    # Append events
    event = StoredEvent(
        event_id="evt-123",
        event_type="OrderCreated",
        aggregate_id="order-456",
        payload={"customer_id": "cust-789"},
    )
    await event_store.append(event)

    # Replay events
    events = await event_store.get_events("order-456")
    for event in events:
        order.apply(event)

    assert (order.customer_id, order.version) == ("cust-789", 1)


# --- mongo-advanced-persistence.md §2 (= sqlalchemy-advanced-persistence.md §3) ---------
async def test_advanced_reconstitute_with_snapshot_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    snapshot_store = MongoSnapshotStore(
        connection=connection,
        database=connection.database_name,  # adapted: "myapp" -> the test's database
    )
    event_store = MongoEventStore(connection)
    await _history(event_store, "order-123", items=119)
    replayed: list[int] = []  # adapted: the test records how many events each call replayed

    # Save snapshot after N events
    async def reconstitute_order(order_id: str, event_store: MongoEventStore) -> Order:
        """Reconstitute order with snapshot optimization."""
        # Try to load latest snapshot
        snapshot = await snapshot_store.get_latest_snapshot(
            aggregate_type="Order",
            aggregate_id=order_id,
        )

        if snapshot:
            # Start from snapshot
            order = Order(**snapshot["snapshot_data"])
            version = snapshot["version"]
            logger.info(f"Loaded snapshot at version {version}")
        else:
            # Start from beginning
            order = Order(id=order_id)
            version = 0
            logger.info("No snapshot found, starting from scratch")

        # Replay only events after snapshot
        events = await event_store.get_events(order_id, after_version=version)

        for event in events:
            order.apply(event)

        # Save snapshot every 50 events
        if len(events) >= 50:
            await snapshot_store.save_snapshot(
                aggregate_type="Order",
                aggregate_id=order_id,
                snapshot_data=order.model_dump(),
                version=order.version,
            )
            logger.info(f"Saved snapshot at version {order.version}")

        replayed.append(len(events))
        return order

    first = await reconstitute_order("order-123", event_store)
    assert (first.total, first.version, first.customer_id) == (119.0, 120, "cust-456")
    await _more_items(event_store, first, 3)
    second = await reconstitute_order("order-123", event_store)  # from the snapshot
    assert (second.total, second.version, replayed) == (122.0, 123, [120, 3])

    # Delete snapshots (cleanup)
    await snapshot_store.delete_snapshot(
        aggregate_type="Order",
        aggregate_id="order-123",
    )
    assert await snapshot_store.get_latest_snapshot(aggregate_type="Order", aggregate_id="order-123") is None


# --- mongo-advanced-persistence.md §2, "Snapshot Strategy", Strategy 2 -----------------
async def test_time_based_snapshot_strategy(real_connection: MongoConnectionManager) -> None:
    """``async for doc in event_store.aggregate(pipeline)`` streams the pipeline's results."""
    event_store = MongoEventStore(real_connection)
    snapshot_store = MongoSnapshotStore(real_connection)
    await _history(event_store, "order-old", items=3)
    await _history(event_store, "order-new", items=1)
    # adapted: the seed's event documents carry ``updated_at``; ours record ``occurred_at``,
    # so the test gives the stored documents the field the seed's pipeline matches on
    events = real_connection.db()[event_store.collection_name]
    await events.update_many({"aggregate_id": "order-old"}, {"$set": {"updated_at": datetime.now(timezone.utc) - timedelta(hours=25)}})
    await events.update_many({"aggregate_id": "order-new"}, {"$set": {"updated_at": datetime.now(timezone.utc)}})

    # Strategy 2: Time-based snapshots
    async def snapshot_old_aggregates():
        """Snapshot aggregates not updated in 24 hours."""
        threshold = datetime.now(timezone.utc) - timedelta(hours=24)

        # Query aggregates not updated recently
        pipeline = [
            {"$match": {
                "updated_at": {"$lt": threshold},
            }},
            {"$group": {
                "_id": "$aggregate_id",
                "latest_version": {"$max": "$version"},
            }},
        ]

        # For each aggregate, create snapshot
        async for doc in event_store.aggregate(pipeline):
            # Reconstitute and snapshot
            # adapted: the seed's "..." written out
            order = Order(id=doc["_id"])
            for event in await event_store.get_events(doc["_id"]):
                order.apply(event)
            await snapshot_store.save_snapshot("Order", order.id, order.model_dump(), doc["latest_version"])

    await snapshot_old_aggregates()
    snapshot = await snapshot_store.get_latest_snapshot(aggregate_type="Order", aggregate_id="order-old")
    assert snapshot is not None and snapshot["version"] == 4 and snapshot["snapshot_data"]["total"] == 3.0
    assert await snapshot_store.get_latest_snapshot(aggregate_type="Order", aggregate_id="order-new") is None


async def _more_items(event_store: MongoEventStore, order: Order, items: int) -> None:
    for _ in range(items):
        order.record_event(ItemAdded(amount=1.0))
    await event_store.append_batch(order.pull_domain_events())


# --- mongo-advanced-persistence.md, "Pattern 3: Snapshot with Projection" --------------
async def test_snapshot_with_projection_pattern(real_connection: MongoConnectionManager) -> None:
    event_store = MongoEventStore(real_connection)
    snapshot_store = MongoSnapshotStore(real_connection)
    projection_store = MongoProjectionStore(real_connection)
    await _history(event_store, "order-big", items=59)
    await _history(event_store, "order-small", items=2)
    big = Order(id="order-big")
    for event in await event_store.get_events("order-big"):
        big.apply(event)
    await snapshot_store.save_snapshot("Order", "order-big", big.model_dump(), big.version)
    await _more_items(event_store, big, 2)
    await projection_store.upsert("order_summaries", "order-small", {
        "id": "order-small", "customer_id": "cust-456", "total_amount": 2.0, "status": "pending",
    })

    async def reconstitute_order(order_id: str, event_store: MongoEventStore) -> Order:  # adapted: the §2 fold
        order = Order(id=order_id)
        for event in await event_store.get_events(order_id):
            order.apply(event)
        return order

    async def reconstitute_with_snapshot_and_projection(aggregate_id: str) -> Order:
        """Reconstitute using both snapshots and projections."""
        # Try snapshot first (write model)
        snapshot = await snapshot_store.get_latest_snapshot(
            aggregate_type="Order",
            aggregate_id=aggregate_id,
        )

        if snapshot and snapshot["version"] >= 50:
            # Snapshot is recent enough
            order = Order(**snapshot["snapshot_data"])
            events = await event_store.get_events(
                aggregate_id,
                after_version=snapshot["version"],
            )
            for event in events:
                order.apply(event)
            return order

        # Fall back to projection (read model)
        projection = await projection_store.find_one(
            collection="order_summaries",
            doc_id=aggregate_id,
        )

        if projection:
            # Rebuild from projection (faster than full replay)
            order = Order(
                id=projection["id"],
                customer_id=projection["customer_id"],
                total=projection["total_amount"],
                status=projection["status"],
            )
            # May need to replay some events if projection is stale
            return order

        # Full replay (last resort)
        return await reconstitute_order(aggregate_id, event_store)

    from_snapshot = await reconstitute_with_snapshot_and_projection("order-big")
    assert (from_snapshot.total, from_snapshot.version) == (61.0, 62)
    from_projection = await reconstitute_with_snapshot_and_projection("order-small")
    assert (from_projection.total, from_projection.customer_id) == (2.0, "cust-456")
    await _history(event_store, "order-new", items=1)
    replayed = await reconstitute_with_snapshot_and_projection("order-new")
    assert (replayed.total, replayed.version) == (1.0, 2)
