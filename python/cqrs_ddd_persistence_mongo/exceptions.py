"""One exception hierarchy for the whole library, rooted at ``MongoPersistenceError``.

Every error says what went wrong and what to do about it. The original library's names are kept,
as classes or aliases, so code written against them keeps working.
"""

from __future__ import annotations

from typing import Any

from pymongo.errors import ConnectionFailure as _DriverConnectionFailure


class MongoPersistenceError(Exception):
    """Base class of every error this library raises.

    Like pymongo's errors it carries labels: ``TransientTransactionError`` (retrying the
    whole unit of work may succeed), ``UnknownTransactionCommitResult`` (the commit may or
    may not have happened). ``transient`` is True when retrying the operation or its unit
    of work may succeed (write conflicts, timeouts, lost connections).
    """

    _labels: frozenset[str] = frozenset()

    def has_error_label(self, label: str) -> bool:
        """True when this error, or the driver error it was translated from, has ``label``."""
        if label in self._labels:
            return True
        cause = self.__cause__
        check = getattr(cause, "has_error_label", None)
        return bool(check is not None and check(label))

    def _add_error_labels(self, labels: frozenset[str] | set[str]) -> None:
        self._labels = self._labels | frozenset(labels)

    @property
    def error_labels(self) -> frozenset[str]:
        return self._labels

    @property
    def transient(self) -> bool:
        """True when the same call (or its unit of work) may succeed if retried."""
        return self.has_error_label("TransientTransactionError")


# --- connection -------------------------------------------------------------------
class MongoConnectionError(MongoPersistenceError):
    """The server cannot be reached, the URL is invalid, or the manager is not connected.

    ``transient`` is True when a call found no server or lost its connection (retrying
    once the server is reachable may succeed; a write may or may not have been applied),
    False for what a retry cannot fix (not connected, closed, invalid URL or option)."""

    @property
    def transient(self) -> bool:
        return isinstance(self.__cause__, _DriverConnectionFailure) or super().transient


ConnectionFailed = MongoConnectionError


class OperationTimedOut(MongoPersistenceError, TimeoutError):
    """The server did not answer within the operation's time bound (a stalled or
    overloaded server, a blocked lock, or an expensive query). The operation may or may
    not have been applied; retry it once the server is healthy, or raise the bound
    (``operation_timeout=`` on the connection, ``time_limit()`` around one call)."""

    @property
    def transient(self) -> bool:
        return True


# --- documents and queries ----------------------------------------------------------
class InvalidDocument(MongoPersistenceError, ValueError):
    """A value cannot be stored as a MongoDB document; the message names the path."""


class MongoQueryError(MongoPersistenceError):
    """A query failed on the server or was rejected before it was sent."""


class InvalidSpecification(MongoQueryError, ValueError):
    """A specification is malformed, unsafe, or uses an operator MongoDB cannot express exactly."""


class UnsafeQueryError(InvalidSpecification):
    """A caller-supplied filter or pipeline uses a server-side code operator ($where, $function, ...)."""


# --- concurrency --------------------------------------------------------------------
class VersionMismatchError(MongoPersistenceError):
    """An optimistic-concurrency check failed: someone else wrote first. Reload and retry."""

    def __init__(
        self,
        message: str | None = None,
        *,
        entity_id: Any = None,
        expected: Any = None,
        actual: Any = None,
        collection: str | None = None,
    ) -> None:
        self.entity_id = entity_id
        self.expected = expected
        self.actual = actual
        self.collection = collection
        if message is None:
            where = f" in '{collection}'" if collection else ""
            message = (
                f"version conflict for {entity_id!r}{where}: expected version {expected!r}, "
                f"found {actual!r}; reload the entity and retry"
            )
        super().__init__(message)


OptimisticConcurrencyError = VersionMismatchError
ConcurrencyConflict = VersionMismatchError


class DuplicateEntityError(VersionMismatchError):
    """A new entity was inserted with an id that already exists (a concurrent insert won)."""


# --- units of work ------------------------------------------------------------------
class MongoUnitOfWorkError(MongoPersistenceError):
    """A unit of work was used wrongly or its transaction failed."""


class TransactionsNotSupported(MongoUnitOfWorkError, RuntimeError):
    """The deployment is a standalone server: transactions need a replica set or mongos.

    Also a ``RuntimeError``, which is what code written for the original library catches for this case."""


# --- stores -------------------------------------------------------------------------
class EventStoreError(MongoPersistenceError):
    """The event store could not read or append events."""


class OutboxError(MongoPersistenceError):
    """The outbox could not save, claim or update messages."""


class ProjectionError(MongoPersistenceError):
    """A projection store or projection run failed."""


class EntityNotFound(MongoPersistenceError, LookupError):
    """An entity that must exist does not."""


# --- snapshots, positions, sagas, jobs (issue 6) ---------------------------------------
class InvalidStoreArgument(MongoPersistenceError, ValueError):
    """A store was called with an argument of the wrong type or out of range; the message
    says what is expected. Nothing was written."""


class UnsafeKeyError(InvalidStoreArgument, MongoQueryError):
    """An id, name or key argument is not a plain value (an operator dict, a regex, code or
    a ``$`` key): it would select other documents than the one named. Pass the plain value."""


class SnapshotStoreError(MongoPersistenceError):
    """The snapshot store could not read, save or prune snapshots."""


class PositionStoreError(ProjectionError):
    """The projection position store could not read or save a checkpoint."""


class SagaStoreError(MongoPersistenceError):
    """The saga repository could not read or save saga state."""


class SagaCompensationError(MongoPersistenceError, TypeError):
    """A saga's compensation cannot be called: the method its step names does not exist,
    or the arguments it needs are not available (pass them to ``compensate_all(...)`` or
    give the saga repository ``services={...}``). Also a ``TypeError``, which calling it
    would have raised."""


class BackgroundJobError(MongoPersistenceError):
    """The background job repository could not read, claim or update jobs."""


class JobNotFound(BackgroundJobError, EntityNotFound):
    """No background job has the given id (or it is not in the state the call needs)."""


# --- repository reads (issue 3) ------------------------------------------------------
class ResultTooLarge(MongoQueryError):
    """Awaiting an unbounded ``list_all()`` would load more than its cap into memory:
    stream it with ``async for`` or pass a limit."""


# --- event store and outbox (issue 5) -------------------------------------------------
class InvalidEvent(EventStoreError, ValueError):
    """An event cannot be appended as given (missing id, stream, type or a bad version)."""


class InvalidOutboxMessage(OutboxError, ValueError):
    """An outbox message cannot be saved as given (missing id or type, bad payload)."""


# --- projection engine (issue 7) ------------------------------------------------------
class UnknownProjection(ProjectionError, ValueError):
    """No projection of that name is registered with the runner (also a ``ValueError``,
    which is what the original library's runner raises for it): check the name or register it."""


class ProjectionHandlerFailed(ProjectionError):
    """A handler kept failing on an event of a projection configured with ``on_error="stop"``.

    The event is parked in the dead-letter collection, everything before it is applied and
    checkpointed, and the checkpoint stays before it: fix the handler and run again.
    """

    def __init__(self, message: str, *, projection: str, event_id: Any, position: int | None) -> None:
        self.projection = projection
        self.event_id = event_id
        self.position = position
        super().__init__(message)


__all__ = [
    "SagaCompensationError",
    "BackgroundJobError",
    "ConcurrencyConflict",
    "ConnectionFailed",
    "DuplicateEntityError",
    "EntityNotFound",
    "EventStoreError",
    "InvalidDocument",
    "InvalidEvent",
    "InvalidOutboxMessage",
    "InvalidSpecification",
    "InvalidStoreArgument",
    "JobNotFound",
    "MongoConnectionError",
    "MongoPersistenceError",
    "MongoQueryError",
    "MongoUnitOfWorkError",
    "OperationTimedOut",
    "OptimisticConcurrencyError",
    "OutboxError",
    "PositionStoreError",
    "ProjectionError",
    "ProjectionHandlerFailed",
    "ResultTooLarge",
    "SagaStoreError",
    "SnapshotStoreError",
    "TransactionsNotSupported",
    "UnsafeKeyError",
    "UnsafeQueryError",
    "VersionMismatchError",
]


# --- event-sourced aggregates and upcasting -------------------------------------------
class EventSourcingError(MongoPersistenceError):
    """An event-sourced aggregate, its repository or an upcaster was used wrongly."""


class UnhandledEvent(EventSourcingError, LookupError):
    """An aggregate has no handler for an event type: add one with ``@applies(EventClass)``,
    or set ``ignore_unhandled_events = True`` on the aggregate class."""


class EventOutOfOrder(EventSourcingError, ValueError):
    """An event-sourced aggregate was given an event whose version does not follow its own:
    the stream is replayed out of order, twice, or with an event missing."""


class UndecodableEvent(EventSourcingError, ValueError):
    """A stored event does not validate as the event class its handler declares (its
    payload has another schema: register an upcaster for it)."""


class InvalidUpcaster(EventSourcingError, ValueError):
    """An upcaster registration was refused (duplicate, gap, backwards step); nothing of it
    was registered."""


class UpcastFailed(EventSourcingError):
    """An upcaster raised or returned something other than a dict while reading an event.
    The stored event is unchanged: fix the upcaster and read again."""


__all__ += [
    "EventOutOfOrder",
    "EventSourcingError",
    "InvalidUpcaster",
    "UndecodableEvent",
    "UnhandledEvent",
    "UpcastFailed",
]


# --- projection store version conflicts -------------------------------------------------
from pymongo.errors import DuplicateKeyError as _DriverDuplicateKeyError  # noqa: E402


class ProjectionVersionConflict(VersionMismatchError, _DriverDuplicateKeyError):
    """A projection document changed since it was read (``expected_version`` no longer
    matches, or a concurrent transaction wrote it first). Reload the document and retry.

    Also a pymongo ``DuplicateKeyError`` (code 11000), which is what code written for the
    original library's projection store catches in its retry loops."""

    def __init__(self, message: str | None = None, **details: Any) -> None:
        VersionMismatchError.__init__(self, message, **details)
        text = str(self.args[0])
        _DriverDuplicateKeyError.__init__(self, text, 11000)
        self._text = text

    @property
    def details(self) -> dict[str, Any]:
        return {"code": 11000, "codeName": "DuplicateKey", "errmsg": self._text}

    def __str__(self) -> str:
        return self._text


__all__ += ["ProjectionVersionConflict", "UnknownProjection"]
