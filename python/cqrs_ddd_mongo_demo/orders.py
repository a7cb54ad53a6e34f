"""An order-summary projection and a synthetic order history: the demo's, tests' and
benchmarks' shared example (and a template for real projections).

``fold_orders`` computes the expected read model directly from the events, independent of
the engine, so a rebuild can be verified document by document.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from cqrs_ddd_persistence_mongo.domain.events import StoredEvent
from cqrs_ddd_persistence_mongo.projections.base import Projection, handles

ORDER_SUMMARIES = "order_summaries"
PRODUCT_SALES = "product_sales"
ENGINE_FIELDS = ("_last_position",)


class OrderSummaryProjection(Projection):
    """One document per order: status, item count, total; one per product: units sold."""

    projection_name = "order_summary"
    collections = (ORDER_SUMMARIES, PRODUCT_SALES)

    def new_document(self, collection: str, doc_id: Any, event: Any) -> dict[str, Any]:
        if collection == PRODUCT_SALES:
            return {"units": 0, "revenue": 0.0}
        return {"status": "new", "items": 0, "total": 0.0, "lines": {}}

    def on_OrderPlaced(self, doc: dict[str, Any], event: Any) -> None:
        doc["customer_id"] = event.payload["customer_id"]
        doc["status"] = "placed"
        doc["placed_at"] = event.occurred_at

    def on_OrderItemAdded(self, doc: dict[str, Any], event: Any) -> None:
        payload = event.payload
        doc["items"] += payload["quantity"]
        doc["total"] = round(doc["total"] + payload["quantity"] * payload["unit_price"], 2)
        lines = doc["lines"]
        lines[payload["sku"]] = lines.get(payload["sku"], 0) + payload["quantity"]

    @handles("OrderItemAdded", collection=PRODUCT_SALES, key=lambda event: event.payload["sku"])
    def count_product_sale(self, doc: dict[str, Any], event: Any) -> None:
        doc["units"] += event.payload["quantity"]
        doc["revenue"] = round(doc["revenue"] + event.payload["quantity"] * event.payload["unit_price"], 2)

    def on_OrderShipped(self, doc: dict[str, Any], event: Any) -> None:
        doc["status"] = "shipped"

    def on_OrderCancelled(self, doc: dict[str, Any], event: Any) -> None:
        doc["status"] = "cancelled"
        doc.pop("placed_at", None)

    async def ensure_indexes(self, db: Any, collections: dict[str, str] | None = None) -> None:
        names = collections or {c: c for c in self.collections}
        await db[names[ORDER_SUMMARIES]].create_index([("customer_id", 1), ("status", 1)])


def order_history(
    orders: int, events_per_order: int = 10, *, concurrent: int = 200, seed: int = 7,
    start: datetime | None = None, prefix: str = "order",
) -> Iterator[StoredEvent]:
    """A realistic interleaving: ``concurrent`` orders open at a time, each placed, then
    ``events_per_order - 2`` items added, then shipped or cancelled. Events come in the
    order they happened (positions are assigned by the event store on append)."""
    rnd = random.Random(seed)
    clock = start or datetime(2026, 1, 1, tzinfo=timezone.utc)
    skus = [f"sku-{i:03d}" for i in range(50)]
    open_orders: list[list[Any]] = []  # [order_id, next_version]
    created = 0
    while created < orders or open_orders:
        while len(open_orders) < concurrent and created < orders:
            open_orders.append([f"{prefix}-{created:07d}", 1])
            created += 1
        slot = rnd.randrange(len(open_orders))
        order_id, version = open_orders[slot]
        clock += timedelta(milliseconds=rnd.randrange(1, 50))
        if version == 1:
            event_type = "OrderPlaced"
            payload: dict[str, Any] = {"customer_id": f"cust-{rnd.randrange(orders // 4 + 1):06d}"}
        elif version < events_per_order:
            event_type = "OrderItemAdded"
            payload = {"sku": rnd.choice(skus), "quantity": rnd.randrange(1, 5),
                       "unit_price": rnd.randrange(100, 10000) / 100}
        else:
            event_type = "OrderShipped" if rnd.random() < 0.9 else "OrderCancelled"
            payload = {}
        yield StoredEvent(
            event_id=str(uuid.UUID(int=rnd.getrandbits(128))), event_type=event_type,
            aggregate_id=order_id, aggregate_type="Order", version=version, payload=payload,
            occurred_at=clock,
        )
        if version == events_per_order:
            open_orders[slot] = open_orders[-1]
            open_orders.pop()
        else:
            open_orders[slot][1] = version + 1


def fold_orders(events: Iterable[Any]) -> dict[str, dict[Any, dict[str, Any]]]:
    """The expected read model, computed straight from the events (no engine involved)."""
    return fold_order_records(
        (e.position, e.event_type, e.aggregate_id, e.payload, e.occurred_at) for e in events
    )


def fold_order_records(
    records: Iterable[tuple[int, str, Any, dict[str, Any], Any]],
) -> dict[str, dict[Any, dict[str, Any]]]:
    """:func:`fold_orders` over ``(position, event_type, aggregate_id, payload, occurred_at)``
    tuples (what a raw cursor over the event documents gives without decoding events)."""
    orders: dict[Any, dict[str, Any]] = {}
    products: dict[Any, dict[str, Any]] = {}
    for _position, event_type, aggregate_id, payload, occurred_at in sorted(records, key=lambda r: r[0]):
        order = orders.setdefault(aggregate_id, {"status": "new", "items": 0, "total": 0.0, "lines": {}})
        if event_type == "OrderPlaced":
            order.update(customer_id=payload["customer_id"], status="placed", placed_at=occurred_at)
        elif event_type == "OrderItemAdded":
            order["items"] += payload["quantity"]
            order["total"] = round(order["total"] + payload["quantity"] * payload["unit_price"], 2)
            order["lines"][payload["sku"]] = order["lines"].get(payload["sku"], 0) + payload["quantity"]
            product = products.setdefault(payload["sku"], {"units": 0, "revenue": 0.0})
            product["units"] += payload["quantity"]
            product["revenue"] = round(product["revenue"] + payload["quantity"] * payload["unit_price"], 2)
        elif event_type == "OrderShipped":
            order["status"] = "shipped"
        elif event_type == "OrderCancelled":
            order["status"] = "cancelled"
            order.pop("placed_at", None)
    return {ORDER_SUMMARIES: orders, PRODUCT_SALES: products}


def strip_engine_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """A stored read-model document without ``_id`` and the engine's bookkeeping."""
    return {k: v for k, v in doc.items() if k != "_id" and k not in ENGINE_FIELDS}


async def read_model(db: Any, collections: Iterable[str] = (ORDER_SUMMARIES, PRODUCT_SALES)) -> dict[str, dict[Any, dict[str, Any]]]:
    """The stored read model as {collection: {_id: document without bookkeeping}}."""
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    for name in collections:
        docs = await db[name].find({}).to_list(None)
        out[name] = {doc["_id"]: strip_engine_fields(doc) for doc in docs}
    return out


def differences(expected: dict[str, dict[Any, dict[str, Any]]], actual: dict[str, dict[Any, dict[str, Any]]]) -> list[str]:
    """Human-readable differences between two read models (empty when identical)."""
    problems: list[str] = []
    for name in sorted(set(expected) | set(actual)):
        want, have = expected.get(name, {}), actual.get(name, {})
        for key in sorted(set(want) | set(have), key=repr):
            if _normalized(want.get(key)) != _normalized(have.get(key)):
                problems.append(f"{name}[{key!r}]: expected {want.get(key)!r}, stored {have.get(key)!r}")
    return problems


def _normalized(doc: dict[str, Any] | None) -> Any:
    if doc is None:
        return None
    out = {}
    for key, value in doc.items():
        if isinstance(value, datetime):  # the server keeps milliseconds
            value = value.replace(microsecond=value.microsecond // 1000 * 1000, tzinfo=value.tzinfo or timezone.utc)
        out[key] = value
    return out
