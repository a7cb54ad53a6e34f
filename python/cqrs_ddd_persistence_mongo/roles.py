"""The roles a store relies on, as structural types: what it needs from a connection and
from a unit of work.

Stores are typed against these protocols, not against :class:`MongoConnectionManager` or
:class:`MongoUnitOfWork`, so an application can hand them its own unit of work (or a
connection wrapper) and a type checker verifies it provides what the stores use. The
library's classes satisfy them as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pymongo.read_concern import ReadConcern
    from pymongo.write_concern import WriteConcern

    from .connection import DriverAdapter

__all__ = ["ConnectionRole", "TransactionalUnitOfWork", "UnitOfWorkRole"]


class ConnectionRole(Protocol):
    """What a store needs from a connection (:class:`MongoConnectionManager` is one).

    ``client`` and ``db()`` give the driver objects, ``driver()`` the adapter that hides
    the differences between drivers, ``operation_timeout`` the default time bound of
    each operation, and the two server facts decide whether transactions are used.
    """

    @property
    def url(self) -> str | None: ...

    @property
    def database_name(self) -> str | None: ...

    @property
    def operation_timeout(self) -> float | None: ...

    @property
    def is_connected(self) -> bool: ...

    @property
    def client(self) -> Any: ...

    def db(self, name: str | None = None) -> Any: ...

    def driver(self) -> DriverAdapter: ...

    def transaction_concerns(
        self, read_concern: str | None = None, write_concern: str | int | None = None
    ) -> tuple[ReadConcern | None, WriteConcern | None]: ...

    async def server_hello(self) -> dict[str, Any]: ...

    async def supports_transactions(self) -> bool: ...


class UnitOfWorkRole(Protocol):
    """What a store needs from a unit of work passed as ``uow=``: its driver session.

    ``session`` is passed to every driver call as ``session=`` (None: no transaction, each
    call is its own atomic operation). The stores also use, when present, the hooks of
    :class:`TransactionalUnitOfWork`; a unit of work without them still works, with the
    effects those hooks give (restored versions on rollback, snapshots after commit,
    refusing to commit a transaction the server aborted) left out.
    """

    @property
    def session(self) -> Any: ...


class TransactionalUnitOfWork(UnitOfWorkRole, Protocol):
    """The full unit-of-work role (:class:`MongoUnitOfWork` is one): a session, whether the
    block is still open, hooks run after commit or on rollback, and a way to make the
    block roll back instead of committing."""

    @property
    def is_active(self) -> bool: ...

    def on_commit(self, hook: Callable[[], Any]) -> None: ...

    def on_rollback(self, hook: Callable[[], Any]) -> None: ...

    def set_rollback_only(self, reason: str) -> None: ...

    def commit(self) -> Awaitable[None]: ...

    def rollback(self) -> Awaitable[None]: ...
