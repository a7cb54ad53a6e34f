"""Spans and gauges on the real-wire server, read back with the OpenTelemetry SDK's
in-memory span exporter and metric reader."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from cqrs_ddd_persistence_mongo import MongoConnectionManager, _gateway
from cqrs_ddd_persistence_mongo.advanced import MongoBackgroundJobRepository, MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.core import MongoEventStore, MongoOutboxStorage, MongoRepository, MongoUnitOfWork
from cqrs_ddd_persistence_mongo.domain import AggregateRoot, BaseBackgroundJob, OutboxMessage, StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import DuplicateEntityError
from cqrs_ddd_persistence_mongo.observability import instrument, register_metrics, tracing, uninstrument
from cqrs_ddd_persistence_mongo.observability import metrics as m


class Order(AggregateRoot):
    id: str
    total: float = 0.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved_hook, saved_tracer = _gateway._TRACE, tracing._tracer
    instrument(provider)
    try:
        yield exporter
    finally:
        _gateway._TRACE, tracing._tracer = saved_hook, saved_tracer
        provider.shutdown()


def by_operation(exporter: InMemorySpanExporter, operation: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.attributes.get("db.operation.name") == operation]


async def test_store_calls_are_client_spans_with_database_conventions(
    pymongo_connection: MongoConnectionManager, spans: InMemorySpanExporter
) -> None:
    repo = MongoRepository(pymongo_connection, "orders", Order)
    await repo.add(Order(id="o1", total=3))
    assert (await repo.get("o1")) is not None
    database = pymongo_connection.database_name
    host = pymongo_connection.url.split("://", 1)[1].split("/", 1)[0].split(",")[0].rpartition("@")[2]
    for operation in ("add", "get"):
        (span,) = by_operation(spans, operation)
        assert span.name == f"{operation} orders"
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        attributes = dict(span.attributes)
        assert attributes["db.system.name"] == "mongodb" and attributes["db.system"] == "mongodb"
        assert attributes["db.namespace"] == database
        assert attributes["db.collection.name"] == "orders"
        address, _, port = host.partition(":")
        assert attributes["server.address"] == address
        assert attributes["server.port"] == int(port or 27017)
        assert attributes["code.function.name"] == f"MongoRepository.{operation}"


async def test_a_failed_call_records_the_library_error_and_the_server_code(
    pymongo_connection: MongoConnectionManager, spans: InMemorySpanExporter
) -> None:
    repo = MongoRepository(pymongo_connection, "orders", Order)
    await repo.add(Order(id="o1"))
    with pytest.raises(DuplicateEntityError):
        await repo.add(Order(id="o1"))
    failed = [s for s in by_operation(spans, "add") if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 1
    span = failed[0]
    assert span.attributes["error.type"] == "cqrs_ddd_persistence_mongo.exceptions.DuplicateEntityError"
    assert span.attributes["db.response.status_code"] == "11000"
    assert span.attributes[tracing.TRANSIENT_ATTRIBUTE] is False
    assert [event.name for event in span.events] == ["exception"]
    assert "DuplicateEntityError" in span.status.description


async def test_event_store_and_unit_of_work_spans_nest(
    pymongo_connection: MongoConnectionManager, spans: InMemorySpanExporter
) -> None:
    store = MongoEventStore(pymongo_connection)
    await store.ensure_indexes()
    spans.clear()
    async with MongoUnitOfWork(pymongo_connection) as uow:
        await store.append(StoredEvent(event_type="Happened", aggregate_id="s1", aggregate_type="T", version=1), uow)
    await store.get_events("s1")
    (append,) = by_operation(spans, "append")
    assert append.name == "append domain_events"
    (begin,) = by_operation(spans, "begin")  # a unit of work's call has a database, no collection
    assert begin.name == f"begin {pymongo_connection.database_name}"
    assert "db.collection.name" not in begin.attributes
    assert by_operation(spans, "get_events")[0].attributes["db.collection.name"] == "domain_events"
    finished = {span.context.span_id for span in spans.get_finished_spans()}
    assert all(span.parent is None or span.parent.span_id in finished for span in spans.get_finished_spans())


async def test_streamed_reads_are_named_after_the_public_method(
    pymongo_connection: MongoConnectionManager, spans: InMemorySpanExporter
) -> None:
    repo = MongoRepository(pymongo_connection, "orders", Order)
    await repo.add_many([Order(id=f"o{i}") for i in range(5)])
    spans.clear()
    assert len([order async for order in repo.list_all()]) == 5
    names = {span.attributes["db.operation.name"] for span in spans.get_finished_spans()}
    assert names == {"list_all"}


async def test_uninstrument_records_nothing(
    pymongo_connection: MongoConnectionManager, spans: InMemorySpanExporter
) -> None:
    uninstrument()
    assert _gateway._TRACE is None
    await MongoRepository(pymongo_connection, "orders", Order).add(Order(id="o1"))
    assert spans.get_finished_spans() == ()


# --- metrics ------------------------------------------------------------------------
def gauge_points(reader: InMemoryMetricReader) -> dict[str, dict[tuple[tuple[str, Any], ...], int]]:
    points: dict[str, dict[tuple[tuple[str, Any], ...], int]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points.setdefault(metric.name, {})[tuple(sorted(point.attributes.items()))] = point.value
    return points


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    metric_reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[metric_reader])
    metric_reader.meter = provider.get_meter("test")  # type: ignore[attr-defined]
    yield metric_reader
    provider.shutdown()


class Job(BaseBackgroundJob):
    pass


async def test_gauges_report_lag_backlog_dead_letters_and_jobs(
    pymongo_connection: MongoConnectionManager, reader: InMemoryMetricReader
) -> None:
    connection = pymongo_connection
    events, positions = MongoEventStore(connection), MongoProjectionPositionStore(connection)
    await events.append_batch(
        [StoredEvent(event_type="Happened", aggregate_id="s", aggregate_type="T", version=v) for v in range(1, 6)]
    )
    await positions.save_position("orders_view", 2)
    outbox = MongoOutboxStorage(connection, max_retries=1)
    await outbox.save_messages([OutboxMessage(message_id=f"m{i}", event_type="E") for i in range(4)])
    assert await outbox.mark_failed("m0", "boom") == "failed"
    await outbox.mark_failed("m1", "boom")
    assert await outbox.mark_failed("m1", "boom") == "dead"
    jobs = MongoBackgroundJobRepository(connection, Job)
    for i in range(3):
        await jobs.add(Job(id=f"j{i}"))
    claimed = await jobs.claim_next("w1")
    assert claimed is not None
    silent_since = datetime.now(timezone.utc) - timedelta(hours=1)
    await connection.db()[jobs.collection_name].update_one({"_id": claimed.id}, {"$set": {"heartbeat_at": silent_since}})
    await connection.db().projection_dead_letters.insert_many([{"projection": "orders_view"} for _ in range(2)])

    metrics = register_metrics(
        reader.meter,  # type: ignore[attr-defined]
        connection,
        event_store=events,
        positions=positions,
        projections=["orders_view", "never_ran"],
        outbox=outbox,
        jobs=jobs,
        stale_after=timedelta(minutes=5),
        dead_letters="projection_dead_letters",
    )
    assert gauge_points(reader) == {}  # nothing sampled yet: nothing reported
    await metrics.refresh()
    points = gauge_points(reader)
    assert points[m.PROJECTION_LAG] == {(("projection", "never_ran"),): 5, (("projection", "orders_view"),): 3}
    assert points[m.PROJECTION_DEAD_LETTERS] == {(("projection", "orders_view"),): 2}
    assert points[m.OUTBOX_BACKLOG] == {
        (("status", "pending"),): 2, (("status", "publishing"),): 0, (("status", "failed"),): 1
    }
    assert points[m.OUTBOX_DEAD_LETTERS] == {(): 1}
    depth = points[m.JOB_QUEUE_DEPTH]
    assert depth[(("status", "pending"),)] == 2 and depth[(("status", "running"),)] == 1
    assert depth[(("status", "completed"),)] == 0
    assert points[m.JOB_STALE] == {(): 1}

    await outbox.requeue_dead()
    await metrics.refresh()
    assert gauge_points(reader)[m.OUTBOX_DEAD_LETTERS] == {(): 0}


class HangingEventStore:
    async def get_latest_position(self) -> int:
        await asyncio.sleep(30)
        return 0


class BrokenPositions:
    async def get_all_positions(self) -> dict[str, int]:
        raise RuntimeError("positions unavailable")


async def test_a_failing_or_hanging_store_reports_nothing_and_never_raises(
    pymongo_connection: MongoConnectionManager, reader: InMemoryMetricReader, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = MongoOutboxStorage(pymongo_connection)
    await outbox.save_messages([OutboxMessage(message_id="m0", event_type="E")])
    hanging = register_metrics(
        reader.meter, event_store=HangingEventStore(), positions=BrokenPositions(), outbox=outbox, timeout=0.2  # type: ignore[attr-defined]
    )
    caplog.set_level(logging.WARNING, logger="cqrs_ddd_persistence_mongo.observability.metrics")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await hanging.refresh()
    assert loop.time() - started < 5
    points = gauge_points(reader)
    assert m.PROJECTION_LAG not in points
    assert points[m.OUTBOX_BACKLOG][(("status", "pending"),)] == 1
    assert any("projection.lag" in record.getMessage() for record in caplog.records)


async def test_start_samples_in_the_background(
    pymongo_connection: MongoConnectionManager, reader: InMemoryMetricReader
) -> None:
    outbox = MongoOutboxStorage(pymongo_connection)
    metrics = register_metrics(reader.meter, outbox=outbox)  # type: ignore[attr-defined]
    metrics.start(interval=0.05)
    try:
        for _ in range(100):
            if metrics.last_refresh is not None:
                break
            await asyncio.sleep(0.05)
        assert gauge_points(reader)[m.OUTBOX_DEAD_LETTERS] == {(): 0}
    finally:
        await metrics.stop()
