"""``python -m cqrs_ddd_persistence_mongo demo``: a short end-to-end tour on a real server.

Each step prints what it did; any failure makes the command exit non-zero.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from cqrs_ddd_persistence_mongo import BACKEND, __version__
from cqrs_ddd_persistence_mongo._accel import validate_keys
from cqrs_ddd_persistence_mongo.connection import MongoConnectionManager
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument, MongoPersistenceError
from cqrs_ddd_persistence_mongo.projections.progress import human_duration

Step = Callable[[MongoConnectionManager], Awaitable[str]]


async def _step_server(connection: MongoConnectionManager) -> str:
    hello = await connection.server_hello()
    kind = "replica set " + hello["setName"] if hello.get("setName") else "standalone/mongos"
    return f"connected ({kind}, transactions: {await connection.supports_transactions()})"


async def _step_key_validation(connection: MongoConnectionManager) -> str:
    try:
        validate_keys({"items": [{"price": 1}, {"$where": "sleep(1)"}]})
    except InvalidDocument as exc:
        return f"rejected an unsafe document: {exc}"
    raise MongoPersistenceError("an unsafe document was accepted")


async def _step_transactions(connection: MongoConnectionManager) -> str:
    db, adapter = connection.db(), connection.driver()
    await db.create_collection("demo_orders")
    await db.create_collection("demo_outbox")
    for outcome in ("abort", "commit"):
        session = await adapter.start_session(connection.client)
        try:
            await adapter.start_transaction(session)
            await db.demo_orders.insert_one({"_id": outcome, "total": 10}, session=session)
            await db.demo_outbox.insert_one({"_id": outcome, "event": "OrderPlaced"}, session=session)
            if outcome == "commit":
                await adapter.commit_transaction(session)
            else:
                await adapter.abort_transaction(session)
        finally:
            await adapter.end_session(session)
    orders = sorted(d["_id"] for d in await adapter.to_list(db.demo_orders.find({}), None))
    outbox = sorted(d["_id"] for d in await adapter.to_list(db.demo_outbox.find({}), None))
    if orders != ["commit"] or outbox != ["commit"]:
        raise MongoPersistenceError(f"transaction outcome wrong: orders={orders} outbox={outbox}")
    return "two-collection transaction: the aborted one left nothing, the committed one both writes"


STEPS: list[tuple[str, Step]] = [
    ("server", _step_server),
    ("key validation", _step_key_validation),
    ("transactions", _step_transactions),
]


def _projection_step(orders: int, out: Callable[[str], Any]) -> Step:
    """The projection tour (cqrs_ddd_mongo_demo/projection_tour.py) as a demo step."""

    async def step(connection: MongoConnectionManager) -> str:
        from .projection_tour import run_tour

        numbers = await run_tour(connection, orders=orders, out=out)
        return f"projection tour passed ({numbers['events_per_second']:,.0f} events/s rebuild)"

    return step


async def run_demo(url: str, out: Callable[[str], Any] = print, *, orders: int | None = None) -> None:
    """Run every step against ``url`` on a throw-away database, printing as it goes."""
    out(f"cqrs-ddd-persistence-mongo {__version__}, backend: {BACKEND}")
    database = f"demo_{uuid.uuid4().hex[:8]}"
    async with MongoConnectionManager(url=url, database=database) as connection:
        try:
            from .projection_tour import DEFAULT_ORDERS

            steps = [*STEPS, ("projections", _projection_step(DEFAULT_ORDERS if orders is None else orders, out))]
            for name, step in steps:
                started = time.perf_counter()
                message = await step(connection)
                out(f"  [{name}] {message} ({human_duration(time.perf_counter() - started)})")
        finally:
            await connection.client.drop_database(database)
    out("demo finished: all steps passed")
