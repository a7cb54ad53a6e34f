"""A minimal transactional unit of work for tests that need ``uow.session`` in a transaction.

It only drives the connection's DriverAdapter (the library's real session code); it exists so
these tests do not depend on core/uow.py, which is built on another branch.
"""

from __future__ import annotations

from typing import Any

from cqrs_ddd_persistence_mongo import MongoConnectionManager


class TransactionScope:
    def __init__(self, connection: MongoConnectionManager) -> None:
        self.connection = connection
        self.session: Any = None

    async def __aenter__(self) -> "TransactionScope":
        adapter = self.connection.driver()
        self.session = await adapter.start_session(self.connection.client)
        await adapter.start_transaction(self.session)
        return self

    async def commit(self) -> None:
        await self.connection.driver().commit_transaction(self.session)

    async def __aexit__(self, *exc: object) -> None:
        adapter = self.connection.driver()
        if adapter.in_transaction(self.session):
            await adapter.abort_transaction(self.session)
        await adapter.end_session(self.session)
