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
