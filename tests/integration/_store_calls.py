"""Every public method that reaches the server, callable with ordinary arguments or with
one hostile value.

Shared by the hostile-argument, dead-server and stalled-server tests. ``every_call`` lists
one call per public method of every class that talks to the server: the stores, the unit
of work, the persistence roles, searches, event-sourced repositories and the projection
engine (``public_methods`` and ``server_classes`` prove the list is complete);
``keyed_calls`` are the methods that take an id, key, name, filter or pipeline.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import cqrs_ddd_persistence_mongo as package
from cqrs_ddd_persistence_mongo import (
    EventSourcedAggregate,
    EventSourcedRepository,
    MongoBackgroundJobRepository,
    MongoConnectionManager,
    MongoEventStore,
    MongoOutboxStorage,
    MongoProjectionPositionStore,
    MongoProjectionStore,
    MongoRepository,
    MongoSagaRepository,
    MongoSnapshotStore,
    OutboxMessage,
    OutboxPublisher,
    StoredEvent,
    applies,
)
from cqrs_ddd_persistence_mongo.advanced import (
    MongoOperationPersistence,
    MongoProjectionDualPersistence,
    MongoProjectionQueryPersistence,
    MongoProjectionSpecPersistence,
    MongoQueryPersistence,
    MongoQuerySpecificationPersistence,
    MongoRetrievalPersistence,
)
from cqrs_ddd_persistence_mongo.core import MongoUnitOfWork, SearchResult, search_collection
from cqrs_ddd_persistence_mongo.domain import AggregateRoot, BaseBackgroundJob, DomainEvent, SagaState
from cqrs_ddd_persistence_mongo.projections import DeadLetters, Parked, Projection, ProjectionRunner, handles
from cqrs_ddd_persistence_mongo.specifications import SpecificationBuilder

Call = Callable[[], Awaitable[Any]]


class Order(AggregateRoot):
    id: str
    customer_id: str = "c1"
    total: float = 0.0


class Deposited(DomainEvent):
    amount: int = 1


class Account(EventSourcedAggregate):
    balance: int = 0

    @applies(Deposited)
    def _deposited(self, event: Deposited) -> None:
        self.balance += event.amount


class Counting(Projection):
    collections = ("counts",)

    def new_document(self, collection: str, doc_id: Any, event: Any) -> dict[str, Any]:
        return {"n": 0}

    @handles("Placed", collection="counts", key=lambda event: event.aggregate_id)
    def count(self, doc: dict[str, Any], event: Any) -> None:
        doc["n"] += 1


@dataclass
class Stores:
    repo: MongoRepository[Order, str]
    events: MongoEventStore
    outbox: MongoOutboxStorage
    projections: MongoProjectionStore
    snapshots: MongoSnapshotStore
    positions: MongoProjectionPositionStore
    sagas: MongoSagaRepository[SagaState]
    jobs: MongoBackgroundJobRepository[BaseBackgroundJob]
    connection: MongoConnectionManager


def make_stores(connection: MongoConnectionManager) -> Stores:
    return Stores(
        repo=MongoRepository(connection, "orders", Order),
        events=MongoEventStore(connection),
        outbox=MongoOutboxStorage(connection),
        projections=MongoProjectionStore(connection),
        snapshots=MongoSnapshotStore(connection),
        positions=MongoProjectionPositionStore(connection),
        sagas=MongoSagaRepository(connection),
        jobs=MongoBackgroundJobRepository(connection),
        connection=connection,
    )


async def seed(stores: Stores) -> None:
    """Two of everything, so a call that matches "anything" has something to find."""
    for store in (stores.events, stores.outbox, stores.snapshots, stores.positions, stores.sagas, stores.jobs):
        await store.ensure_indexes()
    for i in (1, 2):
        await stores.repo.add(Order(id=f"o{i}"))
        await stores.events.append(StoredEvent(event_type="Placed", aggregate_id=f"o{i}", version=1))
        await stores.outbox.save_messages([OutboxMessage(message_id=f"m{i}", event_type="Placed")])
        await stores.projections.upsert("summaries", f"s{i}", {"n": i})
        await stores.snapshots.save_snapshot("Order", f"o{i}", {"n": i}, 1)
        await stores.positions.save_position(f"p{i}", i)
        await stores.sagas.add(SagaState(id=f"saga{i}", correlation_id=f"c{i}"))
        await stores.jobs.add(BaseBackgroundJob(id=f"j{i}", job_type="t"))


async def snapshot_of_data(connection: MongoConnectionManager) -> dict[str, list[Any]]:
    """Every document of the database, to prove that nothing changed."""
    db = connection.db()
    out: dict[str, list[Any]] = {}
    for name in sorted(await db.list_collection_names()):
        docs = await db[name].find({}).sort("_id", 1).to_list(None)
        out[name] = [{k: v for k, v in d.items() if k not in ("updated_at", "heartbeat_at")} for d in docs]
    return out


def keyed_calls(s: Stores, bad: Any) -> dict[str, Call]:
    """One call per public method that takes an id / key / name, with ``bad`` in that place."""
    spec = SpecificationBuilder().where("customer_id", "eq", "c1").build()
    return {
        "repo.get": lambda: s.repo.get(bad),
        "repo.exists": lambda: s.repo.exists(bad),
        "repo.delete": lambda: s.repo.delete(bad),
        "repo.list_all": lambda: s.repo.list_all([bad]).to_list(),
        "repo.search+get": lambda: _search_then_get(s, spec, bad),
        "sagas.get": lambda: s.sagas.get(bad),
        "sagas.delete": lambda: s.sagas.delete(bad),
        "sagas.find_by_correlation_id": lambda: s.sagas.find_by_correlation_id(bad),
        "events.get_events": lambda: s.events.get_events(bad),
        "events.get_by_aggregate": lambda: s.events.get_by_aggregate(bad),
        "events.append(aggregate_id)": lambda: s.events.append(StoredEvent(event_type="X", aggregate_id=bad, version=1)),
        "events.append(correlation_id)": lambda: s.events.append(
            StoredEvent(event_type="X", aggregate_id="z", version=1, correlation_id=bad)
        ),
        "events.append(event_id)": lambda: s.events.append(StoredEvent(event_id=bad, event_type="X", aggregate_id="y", version=1)),
        "outbox.get_message": lambda: s.outbox.get_message(bad),
        "outbox.mark_failed": lambda: s.outbox.mark_failed(bad, "boom"),
        "outbox.mark_published": lambda: s.outbox.mark_published([bad]),
        "outbox.release": lambda: s.outbox.release([bad], "w"),
        "outbox.requeue_dead": lambda: s.outbox.requeue_dead([bad]),
        "outbox.save_messages": lambda: s.outbox.save_messages([OutboxMessage(message_id=bad, event_type="X")]),
        "outbox.save_messages(correlation_id)": lambda: s.outbox.save_messages(
            [OutboxMessage(message_id="mx", event_type="X", correlation_id=bad)]
        ),
        "projections.find_one": lambda: s.projections.find_one("summaries", bad),
        "projections.get_batch": lambda: s.projections.get_batch("summaries", ["s1", bad]),
        "projections.delete": lambda: s.projections.delete("summaries", bad),
        "projections.upsert": lambda: s.projections.upsert("summaries", bad, {"n": 0}),
        "projections.upsert(event_id)": lambda: s.projections.upsert("summaries", "s1", {"n": 0}, event_id=bad),
        "snapshots.get_latest_snapshot": lambda: s.snapshots.get_latest_snapshot("Order", bad),
        "snapshots.get_snapshot": lambda: s.snapshots.get_snapshot("Order", bad, 1),
        "snapshots.delete_snapshot": lambda: s.snapshots.delete_snapshot("Order", bad),
        "snapshots.save_snapshot": lambda: s.snapshots.save_snapshot("Order", bad, {"n": 0}, 5),
        "positions.get_position": lambda: s.positions.get_position(bad),
        "positions.save_position": lambda: s.positions.save_position(bad, 9),
        "positions.reset_position": lambda: s.positions.reset_position(bad),
        "jobs.get": lambda: s.jobs.get(bad),
        "jobs.mark_completed": lambda: s.jobs.mark_completed(bad),
        "jobs.mark_failed": lambda: s.jobs.mark_failed(bad, "boom"),
        "jobs.mark_for_retry": lambda: s.jobs.mark_for_retry(bad),
        "jobs.request_cancellation": lambda: s.jobs.request_cancellation(bad),
        "jobs.is_cancellation_requested": lambda: s.jobs.is_cancellation_requested(bad),
        "jobs.heartbeat": lambda: s.jobs.heartbeat(bad),
        "jobs.update_progress": lambda: s.jobs.update_progress(bad, 1),
    }


async def _search_then_get(s: Stores, spec: Any, bad: Any) -> Any:
    await (await s.repo.search(spec))
    return await s.repo.get(bad)


def number_calls(s: Stores, bad: Any) -> dict[str, Call]:
    """Methods taking a position, version or count, with ``bad`` there (a str, an int > 2**63)."""
    return {
        "events.get_events_after": lambda: s.events.get_events_after(bad),
        "events.get_events(after_version)": lambda: s.events.get_events("o1", after_version=bad),
        "events.get_events_from_position": lambda: _drain(s.events.get_events_from_position(bad)),
        "events.append(expected_version)": lambda: s.events.append(
            StoredEvent(event_type="X", aggregate_id="o1", version=2), expected_version=bad
        ),
        "projections.upsert(event_position)": lambda: s.projections.upsert("summaries", "s1", {"n": 0}, event_position=bad),
        "positions.save_position": lambda: s.positions.save_position("p1", bad),
        "jobs.update_progress": lambda: s.jobs.update_progress("j1", bad),
        "snapshots.save_snapshot": lambda: s.snapshots.save_snapshot("Order", "o1", {"n": 0}, bad),
        "repo.delete(expected_version)": lambda: s.repo.delete("o1", expected_version=bad),
    }


async def _drain(stream: Any) -> list[Any]:
    return [item async for item in stream]


def query_calls(s: Stores, bad_filter: Any, bad_pipeline: Any) -> dict[str, Call]:
    """Methods that take a raw filter or pipeline."""
    return {
        "projections.find": lambda: s.projections.find("summaries", bad_filter),
        "projections.find(projection)": lambda: s.projections.find("summaries", {}, projection=bad_filter),
        "projections.find(sort)": lambda: s.projections.find("summaries", {}, sort=bad_filter),
        "projections.count": lambda: s.projections.count("summaries", bad_filter),
        "projections.aggregate": lambda: s.projections.aggregate("summaries", bad_pipeline),
        "events.aggregate": lambda: s.events.aggregate(bad_pipeline),
    }


def every_call(s: Stores) -> dict[str, Call]:
    """One call per public method of every store and of the unit of work, valid arguments."""
    now = datetime.now(timezone.utc)
    spec = SpecificationBuilder().where("customer_id", "eq", "c1").build()

    async def in_uow() -> None:
        async with MongoUnitOfWork(connection=s.connection) as uow:
            await s.repo.add(Order(id="uow-1"), uow=uow)
            await uow.commit()

    async def run_uow() -> None:
        async def work(uow: MongoUnitOfWork) -> None:
            await s.repo.add(Order(id="uow-2"), uow=uow)

        await MongoUnitOfWork(connection=s.connection).run(work)

    return {
        "MongoRepository.add": lambda: s.repo.add(Order(id="n1")),
        "MongoRepository.add_many": lambda: s.repo.add_many([Order(id="n2"), Order(id="n3")]),
        "MongoRepository.delete": lambda: s.repo.delete("o1"),
        "MongoRepository.exists": lambda: s.repo.exists("o1"),
        "MongoRepository.get": lambda: s.repo.get("o1"),
        "MongoRepository.list_all": lambda: s.repo.list_all().to_list(),
        "MongoRepository.list_all(stream)": lambda: _drain(s.repo.list_all()),
        "MongoRepository.search": lambda: _search(s, spec),
        "MongoRepository.search(count)": lambda: _search(s, spec, "count"),
        "MongoRepository.search(first)": lambda: _search(s, spec, "first"),
        "MongoRepository.search(stream)": lambda: _search(s, spec, "stream"),
        "MongoEventStore.append": lambda: s.events.append(StoredEvent(event_type="X", aggregate_id="a", version=1)),
        "MongoEventStore.append_batch": lambda: s.events.append_batch(
            [StoredEvent(event_type="X", aggregate_id="b", version=1)]
        ),
        "MongoEventStore.ensure_indexes": lambda: s.events.ensure_indexes(),
        "MongoEventStore.aggregate": lambda: s.events.aggregate([{"$match": {}}]),
        "MongoEventStore.aggregate(stream)": lambda: _drain(s.events.aggregate([{"$match": {}}])),
        "MongoEventStore.get_all": lambda: s.events.get_all(),
        "MongoEventStore.get_by_aggregate": lambda: s.events.get_by_aggregate("o1"),
        "MongoEventStore.get_events": lambda: s.events.get_events("o1"),
        "MongoEventStore.get_events_after": lambda: s.events.get_events_after(0),
        "MongoEventStore.get_events_from_position": lambda: _drain(s.events.get_events_from_position(0)),
        "MongoEventStore.get_latest_position": lambda: s.events.get_latest_position(),
        "MongoEventStore.stream_all": lambda: _drain(s.events.stream_all()),
        "MongoOutboxStorage.claim_batch": lambda: s.outbox.claim_batch("w1"),
        "MongoOutboxStorage.ensure_indexes": lambda: s.outbox.ensure_indexes(),
        "MongoOutboxStorage.get_dead": lambda: s.outbox.get_dead(),
        "MongoOutboxStorage.get_message": lambda: s.outbox.get_message("m1"),
        "MongoOutboxStorage.get_pending": lambda: s.outbox.get_pending(),
        "MongoOutboxStorage.mark_failed": lambda: s.outbox.mark_failed("m1", "boom"),
        "MongoOutboxStorage.mark_published": lambda: s.outbox.mark_published(["m2"]),
        "MongoOutboxStorage.release": lambda: s.outbox.release(["m1"], "w1"),
        "MongoOutboxStorage.requeue_dead": lambda: s.outbox.requeue_dead(),
        "MongoOutboxStorage.save_messages": lambda: s.outbox.save_messages([OutboxMessage(message_id="m9", event_type="X")]),
        "MongoProjectionStore.aggregate": lambda: s.projections.aggregate("summaries", [{"$match": {}}]),
        "MongoProjectionStore.bulk_upsert": lambda: s.projections.bulk_upsert("summaries", [{"id": "s7", "n": 7}]),
        "MongoProjectionStore.count": lambda: s.projections.count("summaries"),
        "MongoProjectionStore.delete": lambda: s.projections.delete("summaries", "s1"),
        "MongoProjectionStore.drop_collection": lambda: s.projections.drop_collection("other"),
        "MongoProjectionStore.find": lambda: s.projections.find("summaries"),
        "MongoProjectionStore.find_one": lambda: s.projections.find_one("summaries", "s2"),
        "MongoProjectionStore.get_batch": lambda: s.projections.get_batch("summaries", ["s1", "s2"]),
        "MongoProjectionStore.upsert": lambda: s.projections.upsert("summaries", "s3", {"n": 3}),
        "MongoSnapshotStore.delete_snapshot": lambda: s.snapshots.delete_snapshot("Order", "o1"),
        "MongoSnapshotStore.ensure_indexes": lambda: s.snapshots.ensure_indexes(),
        "MongoSnapshotStore.get_latest_snapshot": lambda: s.snapshots.get_latest_snapshot("Order", "o2"),
        "MongoSnapshotStore.get_snapshot": lambda: s.snapshots.get_snapshot("Order", "o2", 1),
        "MongoSnapshotStore.save_snapshot": lambda: s.snapshots.save_snapshot("Order", "o3", {"n": 3}, 1),
        "MongoProjectionPositionStore.ensure_indexes": lambda: s.positions.ensure_indexes(),
        "MongoProjectionPositionStore.get_all_positions": lambda: s.positions.get_all_positions(),
        "MongoProjectionPositionStore.get_position": lambda: s.positions.get_position("p1"),
        "MongoProjectionPositionStore.reset_position": lambda: s.positions.reset_position("p2"),
        "MongoProjectionPositionStore.save_position": lambda: s.positions.save_position("p3", 3),
        "MongoSagaRepository.add": lambda: s.sagas.add(SagaState(id="saga9", correlation_id="c9")),
        "MongoSagaRepository.ensure_indexes": lambda: s.sagas.ensure_indexes(),
        "MongoSagaRepository.find_by_correlation_id": lambda: s.sagas.find_by_correlation_id("c1"),
        "MongoSagaRepository.find_expired_suspended_sagas": lambda: s.sagas.find_expired_suspended_sagas(),
        "MongoSagaRepository.find_stalled_sagas": lambda: s.sagas.find_stalled_sagas(),
        "MongoSagaRepository.find_suspended_sagas": lambda: s.sagas.find_suspended_sagas(),
        "MongoBackgroundJobRepository.add": lambda: s.jobs.add(BaseBackgroundJob(id="j9", job_type="t")),
        "MongoBackgroundJobRepository.claim_next": lambda: s.jobs.claim_next("w1"),
        "MongoBackgroundJobRepository.count_by_status": lambda: s.jobs.count_by_status(),
        "MongoBackgroundJobRepository.ensure_indexes": lambda: s.jobs.ensure_indexes(),
        "MongoBackgroundJobRepository.find_by_status": lambda: s.jobs.find_by_status("pending"),
        "MongoBackgroundJobRepository.get": lambda: s.jobs.get("j1"),
        "MongoBackgroundJobRepository.get_stale_jobs": lambda: s.jobs.get_stale_jobs(),
        "MongoBackgroundJobRepository.heartbeat": lambda: s.jobs.heartbeat("j1"),
        "MongoBackgroundJobRepository.is_cancellation_requested": lambda: s.jobs.is_cancellation_requested("j1"),
        "MongoBackgroundJobRepository.mark_completed": lambda: s.jobs.mark_completed("j1"),
        "MongoBackgroundJobRepository.mark_failed": lambda: s.jobs.mark_failed("j2", "boom"),
        "MongoBackgroundJobRepository.mark_for_retry": lambda: s.jobs.mark_for_retry("j2"),
        "MongoBackgroundJobRepository.purge_completed": lambda: s.jobs.purge_completed(now + timedelta(days=1)),
        "MongoBackgroundJobRepository.request_cancellation": lambda: s.jobs.request_cancellation("j2"),
        "MongoBackgroundJobRepository.update_progress": lambda: s.jobs.update_progress("j1", 5),
        "MongoUnitOfWork.commit": in_uow,
        "MongoUnitOfWork.run": run_uow,
        **role_calls(s, spec),
        **engine_calls(s),
    }


def role_calls(s: Stores, spec: Any) -> dict[str, Call]:
    """The persistence roles and a search built without a store (``search_collection``)."""

    def role(base: type[Any]) -> Any:
        attributes = {"connection": s.connection, "collection_name": "orders", "model_cls": Order,
                      "to_dto": lambda self, doc: doc}
        return type(f"Orders{base.__name__}", (base,), attributes)()

    def projection_role(base: type[Any]) -> Any:
        cls = type(f"Summaries{base.__name__}", (base,), {"collection": "summaries", "to_dto": lambda self, doc: doc})
        return cls(s.projections)

    def searched(how: str) -> Call:
        return lambda: _run_search(search_collection(s.connection.db()["orders"], spec), how)

    return {
        "MongoOperationPersistence.persist": lambda: role(MongoOperationPersistence).persist(Order(id="r1")),
        "MongoRetrievalPersistence.retrieve": lambda: role(MongoRetrievalPersistence).retrieve(["o1", "o2"]),
        "MongoQueryPersistence.fetch": lambda: role(MongoQueryPersistence).fetch(["o1"]),
        "MongoQuerySpecificationPersistence.fetch": lambda: role(MongoQuerySpecificationPersistence).fetch(spec).to_list(),
        "MongoQuerySpecificationPersistence.fetch(count)": lambda: role(MongoQuerySpecificationPersistence).fetch(spec).count(),
        "MongoQuerySpecificationPersistence.fetch(stream)": lambda: _drain(role(MongoQuerySpecificationPersistence).fetch(spec).stream()),
        "MongoProjectionQueryPersistence.fetch": lambda: projection_role(MongoProjectionQueryPersistence).fetch(["s1"]),
        "MongoProjectionSpecPersistence.fetch": lambda: projection_role(MongoProjectionSpecPersistence).fetch({"n": 1}),
        "MongoProjectionDualPersistence.fetch": lambda: projection_role(MongoProjectionDualPersistence).fetch(["s1"]),
        "MongoProjectionDualPersistence.refresh": lambda: projection_role(MongoProjectionDualPersistence).refresh("s4", {"n": 4}),
        "MongoProjectionDualPersistence.refresh_batch": lambda: projection_role(
            MongoProjectionDualPersistence).refresh_batch([{"id": "s5", "n": 5}]),
        "SearchResult.to_list": searched("list"),
        "SearchResult.count": searched("count"),
        "SearchResult.first": searched("first"),
        "SearchResult.stream": searched("stream"),
    }


def engine_calls(s: Stores) -> dict[str, Call]:
    """Event-sourced repositories, the outbox publisher and the projection engine."""

    async def save_account() -> Any:
        account = Account(id="acc1")
        account.record_event(Deposited(amount=5))
        return await EventSourcedRepository(s.connection, Account, snapshot_policy=1).save(account)

    async def publish(message: Any) -> None:
        return None

    def runner() -> ProjectionRunner:
        return ProjectionRunner(s.events, s.positions, [Counting()], connection=s.connection)

    def dead_letters() -> DeadLetters:
        return DeadLetters(s.connection.db(), connection=s.connection)

    parked = Parked(StoredEvent(event_type="Placed", aggregate_id="o1", version=1), RuntimeError("boom"), 3)
    return {
        "EventSourcedRepository.get": lambda: EventSourcedRepository(s.connection, Account, snapshot_policy=1).get("acc1"),
        "EventSourcedRepository.save": save_account,
        "OutboxPublisher.run_once": lambda: OutboxPublisher(s.outbox, publish=publish).run_once(),
        "ProjectionRunner.run_once": lambda: runner().run_once(batch_size=100),
        "ProjectionRunner.rebuild": lambda: runner().rebuild(Counting.projection_name),
        "DeadLetters.ensure_indexes": lambda: dead_letters().ensure_indexes(),
        "DeadLetters.list_parked": lambda: dead_letters().list_parked(Counting.projection_name),
        "DeadLetters.park": lambda: dead_letters().park(Counting.projection_name, [parked]),
    }


async def _run_search(result: SearchResult[Any], how: str) -> Any:
    if how == "count":
        return await result.count()
    if how == "first":
        return await result.first()
    if how == "stream":
        return [item async for item in result.stream()]
    return await result


async def _search(s: Stores, spec: Any, how: str = "list") -> Any:
    return await _run_search(await s.repo.search(spec), how)


#: public methods that take no server round trip, are aliases of a listed one, hooks the
#: user implements, or run the walked ones in a loop until stopped
LOCAL_ONLY = {
    "MongoRepository.collection", "MongoSagaRepository.collection", "MongoOutboxStorage.backoff",
    "MongoProjectionStore.upsert_batch", "MongoProjectionStore.get", "MongoSnapshotStore.delete_snapshots", "MongoBackgroundJobRepository.save",
    "MongoSnapshotStore.error_cls", "MongoProjectionPositionStore.error_cls", "MongoBackgroundJobRepository.error_cls",
    "MongoUnitOfWork.begin", "MongoUnitOfWork.close", "MongoUnitOfWork.rollback",  # inside commit / run
    "MongoUnitOfWork.set_rollback_only", "MongoUnitOfWork.on_rollback", "MongoUnitOfWork.on_commit",
    "MongoUnitOfWork.add_commit_hook",  # register hooks: no round trip
    "OutboxPublisher.run", "OutboxPublisher.start", "OutboxPublisher.stop",  # run_once in a loop
    "ProjectionRunner.run_forever", "ProjectionRunner.stop", "ProjectionRunner.projection",  # run_once in a loop
    "ProjectionRunner.step", "ProjectionRunner.drain",  # take a Target only run_once / rebuild make
    "MongoProjectionSpecPersistence.build_filter", "MongoProjectionDualPersistence.build_filter",
    *(f"{role.__name__}.to_dto" for role in (
        MongoQueryPersistence, MongoQuerySpecificationPersistence, MongoProjectionQueryPersistence,
        MongoProjectionSpecPersistence, MongoProjectionDualPersistence)),
}
#: inherited from a walked class and walked there
INHERITED = {
    f"MongoSagaRepository.{name}" for name in ("add_many", "delete", "exists", "get", "list_all", "search")
}
STORE_CLASSES = (
    MongoRepository, MongoEventStore, MongoOutboxStorage, MongoProjectionStore, MongoSnapshotStore,
    MongoProjectionPositionStore, MongoSagaRepository, MongoBackgroundJobRepository,
)
#: every class whose public methods are walked: the stores and everything else that calls the server
WALKED_CLASSES = (
    *STORE_CLASSES, MongoUnitOfWork, SearchResult, EventSourcedRepository, OutboxPublisher, ProjectionRunner,
    DeadLetters, MongoOperationPersistence, MongoRetrievalPersistence, MongoQueryPersistence,
    MongoQuerySpecificationPersistence, MongoProjectionQueryPersistence, MongoProjectionSpecPersistence,
    MongoProjectionDualPersistence,
)
#: public classes with async methods that are not walked, and why
NOT_WALKED = {
    "cqrs_ddd_persistence_mongo.connection.MongoConnectionManager":
        "connect() raises ConnectionFailed itself, health_check() answers False by contract; "
        "server_hello / supports_transactions are read once at connect",
    "cqrs_ddd_persistence_mongo.connection.DriverAdapter": "the driver shim under every walked call",
    "cqrs_ddd_persistence_mongo.roles.ConnectionRole": "a protocol",
    "cqrs_ddd_persistence_mongo.advanced.checkpoint_store.MongoCheckpointStore":
        "MongoProjectionPositionStore under the seeds' name (no method of its own)",
    "cqrs_ddd_persistence_mongo.core.entity_stream.EntityStream": "what list_all returns (walked)",
    "cqrs_ddd_persistence_mongo.domain.sagas.SagaState": "runs the saga's own compensations, no server call",
    "cqrs_ddd_persistence_mongo.projections.base.Projection": "the user's handlers; the engine calls them (walked)",
    "cqrs_ddd_persistence_mongo.projections.builder.ShadowBuilder": "a step of ProjectionRunner.rebuild (walked)",
    "cqrs_ddd_persistence_mongo.projections.rebuild.Rebuild": "a step of ProjectionRunner.rebuild (walked)",
    "cqrs_ddd_persistence_mongo.observability.metrics.StoreMetrics":
        "refresh() never raises by contract: each read runs under its own timeout and a failure is logged",
}


def public_methods() -> set[str]:
    """``Class.method`` for every public method of the walked classes that calls the server."""
    names = set()
    for cls in WALKED_CLASSES:
        for name, value in inspect.getmembers(cls):
            if not name.startswith("_") and callable(value):
                names.add(f"{cls.__name__}.{name}")
    return names - LOCAL_ONLY - INHERITED


def server_classes() -> set[str]:
    """Every public class of the package that has a public ``async`` method (a coroutine or an
    async generator): the classes that may call the server."""
    found = set()
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if any(part.startswith("_") for part in info.name.split(".")[1:]) or info.name.endswith(".cli"):
            continue  # private modules: reached only through the public classes
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.startswith("_") or cls.__module__ != module.__name__:
                continue
            for method, value in inspect.getmembers(cls):
                function = inspect.unwrap(value) if callable(value) else None
                if not method.startswith("_") and (
                    inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
                ):
                    found.add(f"{cls.__module__}.{cls.__qualname__}")
                    break
    return found
