"""The seeds' examples for the snapshot, position, saga and job stores and for
ensure_indexes (mongo-advanced-persistence.md, mongo-persistence-overview.md, and the
saga/job examples of sqlalchemy-advanced-persistence.md, built for MongoDB), run as
documented on the real-wire server. Adaptations are marked ``# adapted:``."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from uuid import uuid4

from cqrs_ddd_persistence_mongo.advanced import (
    MongoBackgroundJobRepository,
    MongoProjectionPositionStore,
    MongoSagaRepository,
    MongoSnapshotStore,
)
from cqrs_ddd_persistence_mongo.connection import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import (
    AggregateRoot,
    BaseBackgroundJob,
    JobStatus,
    SagaState,
    SagaStatus,
    StoredEvent,
    saga_step,
    utc_now,
)
from cqrs_ddd_persistence_mongo.indexes import ensure_indexes

logger = logging.getLogger(__name__)


class Order(AggregateRoot):
    id: str
    customer_id: str = "cust-456"
    total: float = 0.0
    status: str = "pending"

    def apply(self, event: StoredEvent) -> None:
        self.total += event.payload["amount"]
        self.version = event.version


class FakeEventStore:
    """adapted: the event store is issue 5's; the example only needs get_events/get_events_after."""

    def __init__(self, events: list[StoredEvent]) -> None:
        self.events = events

    async def get_events(self, aggregate_id: str, after_version: int = 0) -> list[StoredEvent]:
        return [e for e in self.events if e.aggregate_id == aggregate_id and e.version > after_version]

    async def get_events_after(self, position: int, limit: int = 1000) -> list[StoredEvent]:
        return [e for e in self.events if e.position > position][:limit]


def _events(order_id: str, n: int) -> list[StoredEvent]:
    return [
        StoredEvent(aggregate_id=order_id, aggregate_type="Order", event_type="ItemAdded",
                    version=v, position=v, payload={"amount": 1.0})
        for v in range(1, n + 1)
    ]


# --- mongo-advanced-persistence.md §2: MongoSnapshotStore ----------------------------------
async def test_snapshot_reconstitute_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    snapshot_store = MongoSnapshotStore(
        connection=connection,
        database=connection.database_name,  # adapted: "myapp" -> the test's database
    )
    event_store = FakeEventStore(_events("order-123", 120))

    async def reconstitute_order(order_id: str, event_store: Any) -> Order:
        snapshot = await snapshot_store.get_latest_snapshot(
            aggregate_type="Order",
            aggregate_id=order_id,
        )
        if snapshot:
            order = Order(**snapshot["snapshot_data"])
            version = snapshot["version"]
        else:
            order = Order(id=order_id)
            version = 0
        events = await event_store.get_events(order_id, after_version=version)
        for event in events:
            order.apply(event)
        if len(events) >= 50:
            await snapshot_store.save_snapshot(
                aggregate_type="Order",
                aggregate_id=order_id,
                snapshot_data=order.model_dump(),
                version=order.version,
            )
        return order, len(events)  # adapted: also return how many events were replayed

    order, replayed = await reconstitute_order("order-123", event_store)
    assert (order.total, order.version, replayed) == (120.0, 120, 120)
    order, replayed = await reconstitute_order("order-123", event_store)
    assert (order.total, order.version, replayed) == (120.0, 120, 0)  # from the snapshot

    await snapshot_store.delete_snapshot(
        aggregate_type="Order",
        aggregate_id="order-123",
    )
    assert await snapshot_store.get_latest_snapshot(aggregate_type="Order", aggregate_id="order-123") is None


async def test_snapshot_threshold_strategy_and_overview_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    snapshot_store = MongoSnapshotStore(connection=connection)
    SNAPSHOT_THRESHOLD = 50

    async def maybe_snapshot(aggregate: AggregateRoot) -> None:
        if aggregate.version % SNAPSHOT_THRESHOLD == 0:
            await snapshot_store.save_snapshot(
                aggregate_type=type(aggregate).__name__,
                aggregate_id=aggregate.id,
                snapshot_data=aggregate.model_dump(),
                version=aggregate.version,
            )

    for version in (49, 50, 51, 100):
        await maybe_snapshot(Order(id="123", version=version))
    latest = await snapshot_store.get_latest_snapshot(aggregate_type="Order", aggregate_id="123")
    assert latest["version"] == 100 and latest["snapshot_data"]["id"] == "123"

    # mongo-persistence-overview.md, "Advanced Package" example
    order = Order(id="123", total=99.99, version=50)
    await snapshot_store.save_snapshot(
        aggregate_type="Order",
        aggregate_id="123",
        snapshot_data=order.model_dump(),
        version=50,
    )
    assert (await snapshot_store.get_latest_snapshot("Order", "123"))["version"] == 100  # older never wins


# --- mongo-advanced-persistence.md §3: MongoProjectionPositionStore ---------------------------
async def test_position_store_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    position_store = MongoProjectionPositionStore(
        connection=connection,
        database=connection.database_name,  # adapted: "myapp" -> the test's database
    )
    event_store = FakeEventStore(_events("order-1", 30))
    built: list[int] = []

    async def update_projection(event: StoredEvent) -> None:
        built.append(event.position)

    position = await position_store.get_position(
        projection_name="OrderSummaryProjection",
    )
    if position is None:
        position = 0
    events = await event_store.get_events_after(position, limit=1000)
    async with MongoUnitOfWork(connection=connection) as uow:  # adapted: the uow the example uses
        for event in events:
            await update_projection(event)
            await position_store.save_position(
                projection_name="OrderSummaryProjection",
                position=event.position,
                uow=uow,
            )
        await uow.commit()
    assert built == list(range(1, 31))

    projections = ["OrderSummaryProjection", "CustomerStatsProjection"]
    seen = {}
    for proj_name in projections:
        seen[proj_name] = await position_store.get_position(proj_name)
    assert seen == {"OrderSummaryProjection": 30, "CustomerStatsProjection": None}

    # "FAST: Batch position update"
    await position_store.save_position(
        projection_name="OrderSummary",
        position=events[-1].position,
    )
    assert await position_store.get_position("OrderSummary") == 30


# --- sqlalchemy-advanced-persistence.md §1, built for MongoDB: saga repository ---------------
class OrderFulfillmentSaga(SagaState):
    order_id: str
    payment_id: str | None = None
    shipment_id: str | None = None
    status: SagaStatus = SagaStatus.RUNNING

    @saga_step(compensation="cancel_payment")
    async def process_payment(self, payment_service):
        self.payment_id = await payment_service.charge(self.order_id)

    @saga_step(compensation="cancel_shipment")
    async def create_shipment(self, shipment_service):
        self.shipment_id = await shipment_service.ship(self.order_id)

    async def cancel_payment(self, payment_service):
        await payment_service.refund(self.payment_id)

    async def cancel_shipment(self, shipment_service):
        await shipment_service.cancel(self.shipment_id)


class PaymentService:
    def __init__(self) -> None:
        self.refunded: list[str] = []

    async def charge(self, order_id: str) -> str:
        return f"pay-{order_id}"

    async def refund(self, payment_id: str) -> None:
        self.refunded.append(payment_id)


class ShipmentService:
    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.cancelled: list[str] = []

    async def ship(self, order_id: str) -> str:
        if self.fail:
            raise RuntimeError("carrier unavailable")
        return f"ship-{order_id}"

    async def cancel(self, shipment_id: str) -> None:
        self.cancelled.append(shipment_id)


async def test_saga_repository_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    saga_repo = MongoSagaRepository(connection, saga_cls=OrderFulfillmentSaga)

    async with MongoUnitOfWork(connection=connection) as uow:
        saga = OrderFulfillmentSaga(
            id="saga-123",
            order_id="order-456",
            correlation_id="order-456",
        )
        await saga_repo.add(saga, uow=uow)
        await uow.commit()

    saga = await saga_repo.find_by_correlation_id(
        correlation_id="order-456",
        saga_type="OrderFulfillmentSaga",
    )
    assert saga.id == "saga-123" and saga.order_id == "order-456"

    # adapted: make it stalled (not updated in 5 minutes) by saving an old timestamp
    saga.updated_at = utc_now() - timedelta(minutes=6)
    await saga_repo.add(saga)
    stalled = await saga_repo.find_stalled_sagas(limit=10)
    assert [s.id for s in stalled] == ["saga-123"]

    saga.suspend("waiting for payment", timeout_at=utc_now() + timedelta(hours=1))
    await saga_repo.add(saga)
    suspended = await saga_repo.find_suspended_sagas(limit=10)
    for saga in suspended:
        if saga.correlation_id == "order-456":  # check_external_event(...)
            saga.resume()
            async with MongoUnitOfWork(connection=connection) as uow:
                await saga_repo.add(saga, uow=uow)
                await uow.commit()
    assert await saga_repo.find_suspended_sagas(limit=10) == []

    saga.suspend("waiting for shipment", timeout_at=utc_now() - timedelta(seconds=1))
    await saga_repo.add(saga)
    expired = await saga_repo.find_expired_suspended_sagas(limit=10)
    assert [s.id for s in expired] == ["saga-123"]
    for saga in expired:
        saga.mark_as_cancelled("Timeout exceeded")
        async with MongoUnitOfWork(connection=connection) as uow:
            await saga_repo.add(saga, uow=uow)
            await uow.commit()
    final = await saga_repo.get("saga-123")
    assert final.status is SagaStatus.CANCELLED and final.error == "Timeout exceeded"


async def test_saga_with_compensation_pattern(real_connection: MongoConnectionManager) -> None:
    """Integration pattern 1: a failing step compensates the completed ones, in reverse."""
    connection = real_connection
    saga_repo = MongoSagaRepository(connection, saga_cls=OrderFulfillmentSaga)
    payment_service, shipment_service = PaymentService(), ShipmentService(fail=True)

    async def fulfill_order(order_id: str) -> None:
        async with MongoUnitOfWork(connection=connection) as uow:
            saga = await saga_repo.find_by_correlation_id(
                correlation_id=order_id,
                saga_type="OrderFulfillmentSaga",
            )
            if not saga:
                saga = OrderFulfillmentSaga(id=str(uuid4()), order_id=order_id, correlation_id=order_id)
            try:
                if not saga.payment_id:
                    await saga.process_payment(payment_service)
                if not saga.shipment_id:
                    await saga.create_shipment(shipment_service)
                saga.mark_as_completed()
            except Exception as e:
                await saga.compensate_all()
                saga.mark_as_cancelled(str(e))
            await saga_repo.add(saga, uow=uow)
            await uow.commit()

    await fulfill_order("order-9")
    assert payment_service.refunded == ["pay-order-9"] and shipment_service.cancelled == []
    stored = await saga_repo.find_by_correlation_id(correlation_id="order-9", saga_type="OrderFulfillmentSaga")
    assert stored.status is SagaStatus.CANCELLED and stored.error == "carrier unavailable"
    assert [(h["step"], h["status"]) for h in stored.step_history] == [
        ("process_payment", "completed"),
        ("create_shipment", "failed"),
        ("cancel_payment", "compensated"),
    ]


async def test_saga_timeout_compensates_a_loaded_saga(real_connection: MongoConnectionManager) -> None:
    """Error handling, "Saga Timeout", as written: a saga loaded from the store has no live
    services; the repository's ``services=`` gives them to it, so a bare
    ``compensate_all()`` undoes its steps."""
    from cqrs_ddd_persistence_mongo.exceptions import OptimisticConcurrencyError

    connection = real_connection
    payment_service, shipment_service = PaymentService(), ShipmentService()
    # adapted: the repository is built for MongoDB, with the services loaded sagas use
    saga_repo = MongoSagaRepository(
        connection,
        saga_cls=OrderFulfillmentSaga,
        services={"payment_service": payment_service, "shipment_service": shipment_service},
    )
    saga = OrderFulfillmentSaga(id="saga-t", order_id="o-t", correlation_id="o-t")
    await saga.process_payment(payment_service)
    await saga.create_shipment(shipment_service)
    saga.suspend("waiting for delivery", timeout_at=utc_now() - timedelta(seconds=1))
    await saga_repo.add(saga)

    async def handle_saga_timeout():
        """Handle expired suspended sagas."""
        expired = await saga_repo.find_expired_suspended_sagas(limit=10)

        for saga in expired:
            async with MongoUnitOfWork(connection=connection) as uow:  # adapted: the Mongo unit of work
                try:
                    # Compensate all completed steps
                    await saga.compensate_all()
                    saga.mark_as_cancelled("Timeout exceeded")

                    await saga_repo.add(saga, uow=uow)
                    await uow.commit()

                except OptimisticConcurrencyError:
                    # Saga was updated by another process
                    logger.info(f"Saga {saga.id} already handled")

    await handle_saga_timeout()
    assert shipment_service.cancelled == ["ship-o-t"] and payment_service.refunded == ["pay-o-t"]
    final = await saga_repo.get("saga-t")
    assert final.status is SagaStatus.CANCELLED and final.error == "Timeout exceeded"
    assert [h["step"] for h in final.step_history if h["status"] == "compensated"] == [
        "cancel_shipment", "cancel_payment",
    ]
    assert await final.compensate_all() == []  # nothing left to undo


async def test_saga_compensation_services_by_keyword_still_work(real_connection: MongoConnectionManager) -> None:
    """Without ``services=``, the services are passed to ``compensate_all`` by keyword."""
    saga_repo = MongoSagaRepository(real_connection, saga_cls=OrderFulfillmentSaga)
    payment_service = PaymentService()
    saga = OrderFulfillmentSaga(id="saga-k", order_id="o-k", correlation_id="o-k")
    await saga.process_payment(payment_service)
    assert await saga_repo.add(saga) == "saga-k"  # add() returns the id
    loaded = await saga_repo.get("saga-k")
    assert await loaded.compensate_all(payment_service=payment_service) == ["cancel_payment"]
    assert payment_service.refunded == ["pay-o-k"]


# --- sqlalchemy-advanced-persistence.md §4, built for MongoDB: background jobs ----------------
class EmailService:
    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[tuple[str, str]] = []
        self.fail_first = fail_first

    async def send(self, email_id: str, template_id: str) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("smtp down")
        self.sent.append((email_id, template_id))


class EmailBatchJob(BaseBackgroundJob):
    email_ids: list[str]
    template_id: str

    async def execute(self, email_service: EmailService) -> None:
        for i, email_id in enumerate(self.email_ids):
            await email_service.send(email_id, self.template_id)
            self.processed_items = i + 1


async def test_background_job_example(real_connection: MongoConnectionManager) -> None:
    connection = real_connection
    job_repo = MongoBackgroundJobRepository(
        connection,
        job_cls=EmailBatchJob,
        stale_job_timeout_seconds=3600,
    )
    async with MongoUnitOfWork(connection=connection) as uow:
        job = EmailBatchJob(
            id="job-123",
            email_ids=["email-1", "email-2", "email-3"],
            template_id="welcome-email",
            total_items=3,
        )
        await job_repo.add(job, uow=uow)
        await uow.commit()

    email_service = EmailService(fail_first=1)

    async def job_worker_pass() -> None:
        """One pass of the seed's `while True` loop (adapted: one uow per commit)."""
        async with MongoUnitOfWork(connection=connection) as uow:
            jobs = await job_repo.find_by_status(
                status=JobStatus.PENDING,
                limit=10,
                uow=uow,
            )
        for job in jobs:
            try:
                job.mark_as_running()
                await job_repo.add(job)
                await job.execute(email_service)
                job.mark_as_completed()
                await job_repo.add(job)
            except Exception as e:
                if job.retry_count < job.max_retries:
                    job.mark_for_retry()
                else:
                    job.mark_as_failed(str(e))
                await job_repo.add(job)

    await job_worker_pass()  # fails once, goes back to pending
    assert (await job_repo.get("job-123")).retry_count == 1
    await job_worker_pass()
    async with MongoUnitOfWork(connection=connection) as uow:
        job = await job_repo.get("job-123", uow=uow)
    progress_percent = (job.processed_items / job.total_items) * 100
    assert job.status is JobStatus.COMPLETED and progress_percent == 100.0
    assert email_service.sent == [("email-1", "welcome-email"), ("email-2", "welcome-email"), ("email-3", "welcome-email")]

    # Detect stale jobs
    stuck = EmailBatchJob(id="job-stuck", email_ids=[], template_id="t")
    stuck.mark_as_running("w-gone")
    stuck.heartbeat_at = utc_now() - timedelta(hours=2)
    await job_repo.add(stuck)
    async with MongoUnitOfWork(connection=connection) as uow:
        stale_jobs = await job_repo.get_stale_jobs(timeout_seconds=3600, uow=uow)
        for job in stale_jobs:
            job.mark_as_failed("Job stalled")
            await job_repo.add(job, uow=uow)
        await uow.commit()
    assert [j.id for j in stale_jobs] == ["job-stuck"]
    assert (await job_repo.get("job-stuck")).status is JobStatus.FAILED


# --- ensure_indexes (mongo-advanced-persistence.md §4, mongo-persistence-overview.md) ----------
async def test_ensure_indexes_examples(real_connection: MongoConnectionManager) -> None:
    db = real_connection.db()
    await ensure_indexes(
        db["order_summaries"],
        [
            ("customer_id", 1),
            ("status", 1),
            ("created_at", -1),
            ("customer_id", 1, "status", 1),  # Compound index
        ],
    )
    await ensure_indexes(
        db["orders"],
        [
            ("customer_id", 1),
            ("status", 1),
            ("created_at", -1),
            ("customer_id", 1, "status", 1),
        ],
        background=True,  # Don't block operations
    )
    for name in ("order_summaries", "orders"):
        info = await db[name].index_information()
        assert info["customer_id_1_status_1"]["key"] == [("customer_id", 1), ("status", 1)]
    await db["orders"].insert_many([{"customer_id": "cust-123", "status": s} for s in ("pending", "paid")])
    plan = await db["orders"].find({"customer_id": "cust-123", "status": "pending"}).explain()
    assert "IXSCAN" in str(plan["queryPlanner"]["winningPlan"])  # "Uses index efficiently"
