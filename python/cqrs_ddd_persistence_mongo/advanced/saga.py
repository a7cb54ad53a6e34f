"""MongoSagaRepository: saga state between the messages that drive it.

A :class:`MongoRepository` of ``SagaState`` subclasses (versioned saves, optimistic
concurrency, the model mapper), plus the lookups a saga manager needs: by correlation id,
stalled, suspended and timed-out sagas. Each lookup is one indexed query (or one per
status, merged) returning the oldest first.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from typing_extensions import TypeVar

from ..core._session import session_of
from ..core.repository import MongoRepository
from ..domain import SagaState, SagaStatus, utc_now
from ..exceptions import InvalidStoreArgument, SagaStoreError
from ..roles import ConnectionRole, UnitOfWorkRole
from ._store import require_limit, require_name

#: the saga class; ``MongoSagaRepository`` without a parameter stores ``SagaState``
S = TypeVar("S", bound=SagaState, default=SagaState)

#: Statuses of sagas that should be making progress (suspended ones wait on purpose).
ACTIVE_STATUSES = (SagaStatus.PENDING, SagaStatus.RUNNING, SagaStatus.COMPENSATING)
DEFAULT_STALLED_FOR = timedelta(minutes=5)

SAGA_INDEXES = (
    {"keys": ("correlation_id", 1, "saga_type", 1, "created_at", -1), "name": "saga_correlation"},
    {"keys": ("status", 1, "updated_at", 1), "name": "saga_status_updated"},
    {"keys": ("status", 1, "suspended_at", 1), "name": "saga_status_suspended"},
    {"keys": ("status", 1, "timeout_at", 1), "name": "saga_status_timeout"},
)


def _as_timedelta(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        delta = timedelta(seconds=value)
    else:
        raise InvalidStoreArgument(f"stalled_for must be a timedelta or seconds, got {value!r}")
    if delta <= timedelta(0):
        raise InvalidStoreArgument(f"stalled_for must be positive, got {value!r}")
    return delta


class MongoSagaRepository(MongoRepository[S, Any]):
    """Persist sagas of ``saga_cls`` in ``collection`` (default ``"sagas"``).

    ``add(saga, uow=)`` / ``get(id)`` are the repository's: a saga loaded, advanced and
    saved by two handlers at once makes the second save raise ``VersionMismatchError``.
    The finder indexes are created on first use of a finder (or by :meth:`ensure_indexes`).

    ``services={"payment_service": p, ...}`` are given to every saga this repository loads
    (:meth:`SagaState.provide_services`), so ``await saga.compensate_all()`` on a loaded
    saga finds the services its compensations take by keyword. They are never persisted.
    """

    def __init__(
        self,
        connection: ConnectionRole,
        saga_cls: type[S] = SagaState,  # type: ignore[assignment]
        collection: str = "sagas",
        *,
        database: str | None = None,
        auto_index: bool = True,
        services: Mapping[str, Any] | None = None,
    ) -> None:
        if not (isinstance(saga_cls, type) and issubclass(saga_cls, SagaState)):
            raise InvalidStoreArgument(f"saga_cls must be a SagaState subclass, got {saga_cls!r}")
        if services is not None and not (
            isinstance(services, Mapping) and all(isinstance(k, str) and k.isidentifier() for k in services)
        ):
            raise InvalidStoreArgument(
                f"services must map keyword names to services, e.g. {{'payment_service': p}}; got {services!r}"
            )
        require_name(collection, "collection")
        super().__init__(connection, collection, saga_cls, database=database, error_cls=SagaStoreError)
        self.saga_cls = saga_cls
        self._auto_index = auto_index
        self._indexed = False
        self._created_in: set[Any] = set()
        self.services: dict[str, Any] = dict(services or {})

    def _mapper_from_doc(self, doc: dict[str, Any]) -> S:
        saga = super()._mapper_from_doc(doc)
        if self.services:
            saga.provide_services(**self.services)
        return saga

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes the finders use; idempotent."""
        names = await self._gateway.create_indexes(SAGA_INDEXES)
        self._indexed = True
        return names

    async def add(self, entity: S, uow: UnitOfWorkRole | None = None) -> Any:
        """Save a saga (:meth:`MongoRepository.add`; returns its id); the finder indexes are
        created on the first save where that cannot meet an open transaction."""
        if self._auto_index and not self._indexed:
            with self._gateway.call(f"creating the indexes of '{self.collection_name}'"):
                self._indexed = await self._gateway.prepare_indexes(SAGA_INDEXES, session_of(uow), self._created_in)
        return await super().add(entity, uow)

    async def _find(self, query: dict[str, Any], sort: list[tuple[str, int]], limit: int, uow: UnitOfWorkRole | None) -> list[dict[str, Any]]:
        require_limit(limit)
        with self._gateway.call(f"finding sagas in '{self.collection_name}'"):
            cursor = self.collection().find(query, session=session_of(uow)).sort(sort).limit(limit)
            return await self._gateway.to_list(cursor, limit)

    async def find_by_correlation_id(
        self, correlation_id: str, saga_type: str | None = None, *, uow: UnitOfWorkRole | None = None
    ) -> S | None:
        """The saga handling ``correlation_id`` (of ``saga_type``, if given); the most
        recently created one when several match, None when none does."""
        require_name(correlation_id, "correlation_id")
        query: dict[str, Any] = {"correlation_id": correlation_id}
        if saga_type is not None:
            query["saga_type"] = require_name(saga_type, "saga_type")
        docs = await self._find(query, [("created_at", -1), ("_id", -1)], 1, uow)
        return self._mapper_from_doc(docs[0]) if docs else None

    async def find_stalled_sagas(
        self, stalled_for: timedelta | float = DEFAULT_STALLED_FOR, limit: int = 100, *, uow: UnitOfWorkRole | None = None
    ) -> list[S]:
        """Active sagas (pending, running, compensating) not updated for ``stalled_for``
        (a timedelta or seconds; default 5 minutes), least recently updated first.

        One indexed query per active status on ``(status, updated_at)``, merged: every
        server can serve each from the index, where a multi-status ``$in`` may not.
        """
        cutoff = utc_now() - _as_timedelta(stalled_for)
        per_status = [
            await self._find({"status": status.value, "updated_at": {"$lt": cutoff}}, [("updated_at", 1)], limit, uow)
            for status in ACTIVE_STATUSES
        ]
        oldest = heapq.merge(*per_status, key=lambda doc: doc["updated_at"])
        return [self._mapper_from_doc(doc) for _, doc in zip(range(limit), oldest)]

    async def find_suspended_sagas(self, limit: int = 100, *, uow: UnitOfWorkRole | None = None) -> list[S]:
        """Suspended sagas, longest suspended first."""
        query = {"status": SagaStatus.SUSPENDED.value}
        docs = await self._find(query, [("suspended_at", 1), ("_id", 1)], limit, uow)
        return [self._mapper_from_doc(doc) for doc in docs]

    async def find_expired_suspended_sagas(
        self, limit: int = 100, *, now: datetime | None = None, uow: UnitOfWorkRole | None = None
    ) -> list[S]:
        """Suspended sagas whose ``timeout_at`` has passed (as of ``now``, default the
        current time), earliest deadline first. Sagas suspended without a timeout never expire."""
        if now is not None and not isinstance(now, datetime):
            raise InvalidStoreArgument(f"now must be a datetime, got {now!r}")
        query = {"status": SagaStatus.SUSPENDED.value, "timeout_at": {"$lte": now or utc_now()}}
        docs = await self._find(query, [("timeout_at", 1), ("_id", 1)], limit, uow)
        return [self._mapper_from_doc(doc) for doc in docs]
