"""projection-patterns.md in Mongo form: a projection that writes through its own store and
resets as the seed writes it (``async def reset(self)``), rebuilt by the runner; an unknown
projection name is the ``ValueError`` the seed's runner raises."""

from __future__ import annotations

from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionPositionStore, MongoProjectionStore
from cqrs_ddd_persistence_mongo.core import MongoEventStore
from cqrs_ddd_persistence_mongo.domain import StoredEvent
from cqrs_ddd_persistence_mongo.projections import Projection, ProjectionRunner

pytestmark = pytest.mark.integration


class OrderSummaryProjection(Projection):
    """Maintains denormalized order summary for fast queries."""

    projection_name = "order_summary"

    def __init__(self, store: MongoProjectionStore) -> None:
        self.store = store

    async def on_OrderPlaced(self, event: Any) -> None:
        await self.store.upsert("order_summary", event.aggregate_id, {"status": "placed"}, event_id=event.event_id)

    async def reset(self) -> None:
        await self.store.drop_collection("order_summary")


def placed(i: int) -> StoredEvent:
    return StoredEvent(
        event_id=f"e{i}", event_type="OrderPlaced", aggregate_id=f"o{i}", aggregate_type="Order",
        version=1, payload={},
    )


async def test_seed_style_reset_is_called_by_rebuild(pymongo_connection: MongoConnectionManager) -> None:
    events = MongoEventStore(pymongo_connection)
    await events.append_batch([placed(i) for i in range(3)])
    store = MongoProjectionStore(pymongo_connection)
    projection = OrderSummaryProjection(store)
    runner = ProjectionRunner(events, MongoProjectionPositionStore(pymongo_connection), [projection],
                              connection=pymongo_connection)
    await runner.run_once()
    await store.upsert("order_summary", "junk", {"status": "left over"})
    report = await runner.rebuild("order_summary")
    assert report.events == 3
    assert sorted(d["id"] for d in await store.find("order_summary")) == ["o0", "o1", "o2"]
    await projection.reset()  # the seed's own call, without a database
    assert await store.count("order_summary") == 0


async def test_rebuild_of_an_unknown_projection_is_a_value_error(pymongo_connection: MongoConnectionManager) -> None:
    runner = ProjectionRunner(MongoEventStore(pymongo_connection), MongoProjectionPositionStore(pymongo_connection),
                              [], connection=pymongo_connection)
    with pytest.raises(ValueError, match="unknown projection 'order_summary'"):
        await runner.rebuild("order_summary")
