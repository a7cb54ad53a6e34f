"""Events stored at schema v1 and v2 reach every reader at v3 (the process-wide
registry, applied where the event store decodes), and the stored documents stay as
they were written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import (
    EventSourcedAggregate,
    EventSourcedRepository,
    MongoConnectionManager,
    MongoEventStore,
    applies,
    upcasters,
)
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore
from cqrs_ddd_persistence_mongo.domain import DomainEvent, StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import ProjectionError
from cqrs_ddd_persistence_mongo.projections import Projection, ProjectionRunner

pytestmark = pytest.mark.integration


class PricePaid(DomainEvent):
    """v3: the amount in cents with its currency (v1: float "amount"; v2: + "currency")."""

    schema_version: int = 3
    cents: int
    currency: str


class Till(EventSourcedAggregate):
    takings: dict[str, int] = {}

    @applies(PricePaid)
    def _paid(self, event: PricePaid) -> None:
        self.takings = {**self.takings, event.currency: self.takings.get(event.currency, 0) + event.cents}


class TakingsProjection(Projection):
    projection_name = "takings"
    collections = ("takings",)

    def new_document(self, collection: str, doc_id: Any, event: Any) -> dict[str, Any]:
        return {"cents": 0}

    def on_PricePaid(self, doc: dict[str, Any], event: Any) -> None:
        assert event.schema_version == 3
        doc["cents"] += event.payload["cents"]
        doc["currency"] = event.payload["currency"]


def add_currency(payload: dict[str, Any]) -> dict[str, Any]:
    return {**payload, "currency": "EUR"}


def amount_to_cents(payload: dict[str, Any]) -> dict[str, Any]:
    return {"cents": round(payload["amount"] * 100), "currency": payload["currency"]}


@pytest.fixture
def price_upcasters() -> Iterator[None]:
    """Registered at run time in this process only: rebuild workers get them from the spec."""
    upcasters.register_chain("PricePaid", {1: add_currency, 2: amount_to_cents})
    try:
        yield
    finally:
        upcasters.unregister("PricePaid")


V3 = [(1, {"amount": 1.5}), (2, {"amount": 2.25, "currency": "USD"}), (3, {"cents": 100, "currency": "EUR"})]
EXPECTED = [{"cents": 150, "currency": "EUR"}, {"cents": 225, "currency": "USD"}, {"cents": 100, "currency": "EUR"}]


async def store_old_events(connection: MongoConnectionManager) -> tuple[MongoEventStore, list[dict[str, Any]]]:
    store = MongoEventStore(connection)
    await store.append_batch(
        StoredEvent(event_id=f"e{v}", event_type="PricePaid", aggregate_id="till-1", aggregate_type="Till",
                    version=v, schema_version=schema, payload=payload)
        for v, (schema, payload) in enumerate(V3, start=1)
    )
    return store, await _raw(connection, store)


async def _raw(connection: MongoConnectionManager, store: MongoEventStore) -> list[dict[str, Any]]:
    cursor = connection.db()[store.collection_name].find({}, {"schema_version": 1, "payload": 1}).sort("position")
    return await connection.driver().to_list(cursor, None)


def payloads(events: list[StoredEvent]) -> list[dict[str, Any]]:
    assert all(e.schema_version == 3 for e in events)
    return [e.payload for e in events]


async def test_every_store_read_path_sees_v3_and_nothing_is_rewritten(
    real_connection: MongoConnectionManager, price_upcasters: None,
) -> None:
    store, raw_before = await store_old_events(real_connection)
    assert payloads(await store.get_events("till-1")) == EXPECTED
    assert payloads(await store.get_events("till-1", after_version=1)) == EXPECTED[1:]
    assert payloads(await store.get_events_after(0)) == EXPECTED
    assert payloads([e async for e in store.get_events_from_position(0, batch_size=2)]) == EXPECTED
    assert payloads([e async for e in await store.stream_all()]) == EXPECTED
    assert await _raw(real_connection, store) == raw_before
    assert [d["schema_version"] for d in raw_before] == [1, 2, 3]


async def test_the_repository_applies_upcast_events(
    real_connection: MongoConnectionManager, price_upcasters: None,
) -> None:
    store, raw_before = await store_old_events(real_connection)
    repo = EventSourcedRepository(real_connection, Till, event_store=store)
    till = await repo.get("till-1")
    assert till.takings == {"EUR": 250, "USD": 225} and till.version == 3
    till.record_event(PricePaid(cents=5, currency="USD"))
    await repo.save(till)
    assert (await repo.get("till-1")).takings == {"EUR": 250, "USD": 230}
    assert (await _raw(real_connection, store))[:3] == raw_before


async def test_the_projection_engine_follows_and_rebuilds_on_v3(
    real_connection: MongoConnectionManager, price_upcasters: None,
) -> None:
    store, raw_before = await store_old_events(real_connection)
    runner = ProjectionRunner(store, MongoProjectionPositionStore(real_connection), [TakingsProjection()],
                              connection=real_connection)
    while await runner.run_once(batch_size=2):  # the follower path
        pass
    expected = {"_id": "till-1", "cents": 475, "currency": "EUR"}
    followed = await real_connection.db().takings.find_one({"_id": "till-1"}, {"_last_position": 0})
    assert followed == expected
    await runner.rebuild("takings", batch_size=2)
    rebuilt = await real_connection.db().takings.find_one({"_id": "till-1"}, {"_last_position": 0})
    assert rebuilt == expected
    assert await _raw(real_connection, store) == raw_before


async def test_a_two_worker_rebuild_sees_the_parents_upcasters(
    real_connection: MongoConnectionManager, price_upcasters: None,
) -> None:
    store = MongoEventStore(real_connection)
    history = [(schema, payload) for _ in range(20) for schema, payload in V3]
    await store.append_batch(
        StoredEvent(event_type="PricePaid", aggregate_id=f"till-{i % 7}", aggregate_type="Till",
                    version=i // 7 + 1, schema_version=schema, payload=payload)
        for i, (schema, payload) in enumerate(history)
    )
    direct: dict[str, int] = {}
    for i, (_, payload) in enumerate(history):
        cents = payload["cents"] if "cents" in payload else round(payload["amount"] * 100)
        direct[f"till-{i % 7}"] = direct.get(f"till-{i % 7}", 0) + cents
    runner = ProjectionRunner(store, MongoProjectionPositionStore(real_connection), [TakingsProjection()],
                              connection=real_connection)
    report = await runner.rebuild("takings", batch_size=10, workers=2)
    assert report.workers == 2 and report.position == len(history)
    rebuilt = await real_connection.driver().to_list(real_connection.db().takings.find({}, {"cents": 1}), None)
    assert {d["_id"]: d["cents"] for d in rebuilt} == direct
    assert await runner.dead_letters.list_parked("takings") == []


async def test_a_worker_rebuild_refuses_upcasters_it_cannot_ship(real_connection: MongoConnectionManager) -> None:
    store, _ = await store_old_events(real_connection)
    upcasters.register_chain("PricePaid", {1: add_currency, 2: lambda p: {"cents": 0, "currency": "EUR"}})
    try:
        runner = ProjectionRunner(store, MongoProjectionPositionStore(real_connection), [TakingsProjection()],
                                  connection=real_connection)
        before = sorted(await real_connection.db().list_collection_names())
        with pytest.raises(ProjectionError, match="module level in an importable module"):
            await runner.rebuild("takings", batch_size=2, workers=2)
        assert sorted(await real_connection.db().list_collection_names()) == before
    finally:
        upcasters.unregister("PricePaid")


async def test_a_worker_whose_upcasters_differ_refuses_instead_of_parking(
    real_connection: MongoConnectionManager, price_upcasters: None,
) -> None:
    from ._worker_upcasters import RogueTakings

    store, _ = await store_old_events(real_connection)
    runner = ProjectionRunner(store, MongoProjectionPositionStore(real_connection), [RogueTakings()],
                              connection=real_connection)
    with pytest.raises(ProjectionError, match="upcasters that differ from the parent"):
        await runner.rebuild("takings", batch_size=2, workers=2)
    assert await runner.dead_letters.list_parked("takings") == []


async def test_without_the_upcasters_readers_get_the_stored_schema(real_connection: MongoConnectionManager) -> None:
    store, _ = await store_old_events(real_connection)
    events = await store.get_events("till-1")
    assert [(e.schema_version, e.payload) for e in events] == V3
