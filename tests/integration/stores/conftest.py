"""Helpers for the issue-6 store tests: a duck-typed unit of work over a real transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cqrs_ddd_persistence_mongo import MongoConnectionManager


class TxnUow:
    """The smallest unit of work the stores accept: an object with a ``session``."""

    def __init__(self, session: Any) -> None:
        self.session = session


@asynccontextmanager
async def transaction(connection: MongoConnectionManager, *, commit: bool) -> AsyncIterator[TxnUow]:
    """A transaction on ``connection`` that commits or aborts at the end of the block."""
    driver = connection.driver()
    session = await driver.start_session(connection.client)
    try:
        await driver.start_transaction(session)
        yield TxnUow(session)
        if commit:
            await driver.commit_transaction(session)
        else:
            await driver.abort_transaction(session)
    finally:
        await driver.end_session(session)


def _index_names(stage: Any) -> list[str]:
    if isinstance(stage, dict):
        names = [stage["indexName"]] if "indexName" in stage else []
        for value in stage.values():
            names += _index_names(value)
        return names
    if isinstance(stage, list):
        return [name for item in stage for name in _index_names(item)]
    return []


async def assert_uses_index(collection: Any, cursor: Any, expected: str) -> None:
    """The query of ``cursor`` is served by an index (not a collection scan), and the
    index the store declared for it exists. Planners differ in which of several fitting
    indexes they pick, so the used one must start with the same field as ``expected``."""
    info = await collection.index_information()
    assert expected in info, f"index {expected!r} missing: {sorted(info)}"
    plan = (await cursor.explain())["queryPlanner"]["winningPlan"]
    used = _index_names(plan)
    assert used, f"collection scan instead of {expected!r}: {plan}"
    assert all(info[name]["key"][0][0] == info[expected]["key"][0][0] for name in used), (used, expected)
