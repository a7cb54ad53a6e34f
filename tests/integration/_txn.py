"""A minimal unit of work for the event store and outbox tests: a driver session with a
transaction, started through the connection's driver adapter (``.session`` is all stores use)."""

from __future__ import annotations

from typing import Any


class TxnUnitOfWork:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.session: Any = None
        self._finished = False

    async def __aenter__(self) -> "TxnUnitOfWork":
        adapter = self.connection.driver()
        self.session = await adapter.start_session(self.connection.client)
        await adapter.start_transaction(self.session)
        return self

    async def commit(self) -> None:
        await self.connection.driver().commit_transaction(self.session)
        self._finished = True

    async def __aexit__(self, *exc: object) -> None:
        adapter = self.connection.driver()
        try:
            if not self._finished and adapter.in_transaction(self.session):
                await adapter.abort_transaction(self.session)
        finally:
            await adapter.end_session(self.session)
