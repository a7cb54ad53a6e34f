"""The one way a store reaches a collection.

Every store, the repository, the unit of work and the projection engine's store access go
through here, so each of these holds everywhere at once:

* **keys**: ids, names and key arguments are plain values (:func:`check_key`); an
  operator dict, a regex or code would select other documents than the one named;
* **queries**: caller-supplied filters and pipelines are walked over every mapping and
  sequence type the driver can encode (:func:`check_query`), so no server-side code and
  no write stage reaches the server from a read API;
* **time**: every public operation runs under one deadline (:func:`bounded`): the
  connection's ``operation_timeout`` unless the caller set a :func:`time_limit`;
* **errors**: every driver, BSON or encoding error becomes a library error
  (:func:`translate`), with the driver's labels and ``.transient``;
* **concerns**: transactions start with the connection's read/write concerns and event
  reads that feed checkpoints read majority-committed data (:meth:`Gateway.majority`).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import sys
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from decimal import Decimal
from types import TracebackType
from typing import Any

import pymongo
from bson import Code, Decimal128, Int64, ObjectId, Regex
from bson.binary import Binary
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.read_concern import ReadConcern

from ._pure.keys import MAX_DEPTH
from .connection import _CALLER_LIMIT, DriverAdapter, time_limit
from .exceptions import (
    ConcurrencyConflict,
    InvalidDocument,
    InvalidSpecification,
    InvalidStoreArgument,
    MongoConnectionError,
    MongoPersistenceError,
    OperationTimedOut,
    UnsafeKeyError,
    UnsafeQueryError,
)
from .roles import ConnectionRole, UnitOfWorkRole

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DUPLICATE_KEY = 11000
WRITE_CONFLICT = 112
MAX_TIME_EXPIRED = 50
TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"
_LABELS = (TRANSIENT, UNKNOWN_COMMIT, "RetryableWriteError", "NoWritesPerformed")


def _span_hook() -> Any:
    """The span hook (``observability.tracing``) when OpenTelemetry is installed and not
    switched off with ``CQRS_DDD_MONGO_OTEL=0``; None otherwise, so a call pays one lookup."""
    if os.environ.get("CQRS_DDD_MONGO_OTEL", "1") == "0":
        return None
    try:
        from .observability import tracing
    except ImportError:
        return None
    return tracing


#: bound once here; observability.instrument() / uninstrument() rebind it
_TRACE: Any = _span_hook()

#: values an id / key argument may be: compared by equality on the server, never as a pattern
PLAIN_KEY_TYPES: tuple[type, ...] = (
    str, int, float, uuid.UUID, ObjectId, bytes, Binary, Decimal, Decimal128, _dt.datetime, Int64,
)
CODE_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
WRITE_STAGES = frozenset({"$out", "$merge"})


# --- keys -------------------------------------------------------------------------------
def check_key(value: Any, what: str, *, composite: bool = False) -> Any:
    """``value`` if it is a plain key, else :class:`UnsafeKeyError` naming ``what``.

    Plain: str, int (64-bit), float, UUID, ObjectId, bytes, Decimal, datetime. With
    ``composite=True`` (stores whose keys may be documents) a mapping of plain values (or
    nested mappings / lists of them) is accepted too, as long as no key starts with ``$``.
    Refused everywhere: operator dicts, ``re.Pattern``, ``bson.Regex``, ``Code``, ``bool``
    and ``None``.
    """
    kind = type(value)
    if kind is str:
        return value
    if kind is int:
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise UnsafeKeyError(f"{what} {value} does not fit in a 64-bit integer; store such keys as strings")
    if value is None or isinstance(value, bool):
        raise UnsafeKeyError(f"{what} must be a plain value (str, int, UUID, ObjectId, ...), got {value!r}")
    if isinstance(value, (re.Pattern, Regex, Code)):
        raise UnsafeKeyError(
            f"{what} is a {type(value).__name__}: it would match by pattern or run code; pass the exact id"
        )
    if isinstance(value, PLAIN_KEY_TYPES):
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise UnsafeKeyError(f"{what} {value} does not fit in a 64-bit integer; store such keys as strings")
        return value
    if composite and isinstance(value, (Mapping, list, tuple)):
        _check_composite(value, what)
        return value
    if isinstance(value, Mapping):
        raise UnsafeKeyError(
            f"{what} must be a plain value, not a {type(value).__name__} such as {{'$ne': None}}: "
            "operator dicts select other documents than the one named"
        )
    raise UnsafeKeyError(
        f"{what} must be a str, int, UUID, ObjectId, bytes, Decimal or datetime, not {type(value).__name__}"
    )


def _check_composite(value: Any, what: str) -> None:
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnsafeKeyError(f"{what} nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, Mapping):
            for key, child in node.items():
                if not isinstance(key, str) or key.startswith("$"):
                    raise UnsafeKeyError(
                        f"{path} has the key {key!r}: a composite key's fields are plain names, "
                        "operators ('$...') are refused"
                    )
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))
        elif node is not None and not isinstance(node, (bool, float)):
            check_key(node, path)


def check_name(value: Any, what: str) -> str:
    """A non-empty string (names of projections, workers, aggregate types, collections)."""
    if not isinstance(value, str) or isinstance(value, Code) or not value:
        raise InvalidStoreArgument(f"{what} must be a non-empty string, got {value!r}")
    return value


def check_position(value: Any, what: str = "position") -> int:
    """A stream position or count: an int in 0 .. 2**63-1 (not a bool, not a string)."""
    if type(value) is not int or value < 0 or value > INT64_MAX:
        raise InvalidStoreArgument(f"{what} must be an int between 0 and 2**63-1, got {value!r}")
    return value


# --- queries ----------------------------------------------------------------------------
def check_query(value: Any, what: str = "filter", *, allow_write_stages: bool = False) -> None:
    """Raise :class:`UnsafeQueryError` if ``value`` uses server-side code or a write stage.

    Walks every ``Mapping`` (dict, ``MappingProxyType``, ``SON``, ``RawBSONDocument``) and
    every list or tuple, iteratively and at most ``MAX_DEPTH`` levels deep.
    """
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, (Mapping, RawBSONDocument)):
            if depth >= MAX_DEPTH:
                raise InvalidSpecification(f"{what} nests deeper than {MAX_DEPTH} levels at '{path}'")
            for key, child in node.items():
                if key in CODE_OPERATORS:
                    raise UnsafeQueryError(
                        f"{key} at '{path}' runs JavaScript on the server and is not accepted in a "
                        f"caller-supplied {what}; express the condition with query operators"
                    )
                if key in WRITE_STAGES and not allow_write_stages:
                    raise UnsafeQueryError(
                        f"{key} at '{path}' writes to another collection; construct the store with "
                        "allow_write_stages=True if this pipeline is meant to write"
                    )
                stack.append((child, f"{path}.{key}", depth + 1))
        elif isinstance(node, (list, tuple)):
            if depth >= MAX_DEPTH:
                raise InvalidSpecification(f"{what} nests deeper than {MAX_DEPTH} levels at '{path}'")
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node))
        elif isinstance(node, Code):
            raise UnsafeQueryError(f"code at '{path}' is not accepted in a caller-supplied {what}")


def check_pipeline(pipeline: Any, *, allow_write_stages: bool = False) -> list[Any]:
    """A pipeline is a list of stage mappings passing :func:`check_query`; returns it as a list."""
    if not isinstance(pipeline, (list, tuple)) or not all(isinstance(stage, Mapping) for stage in pipeline):
        raise InvalidSpecification("pipeline must be a list of stage dicts, e.g. [{'$match': {...}}]")
    check_query(pipeline, "pipeline", allow_write_stages=allow_write_stages)
    return list(pipeline)


# --- errors -----------------------------------------------------------------------------
def error_labels(exc: BaseException) -> frozenset[str]:
    """The driver labels ``exc`` carries (of those the library acts on)."""
    check = getattr(exc, "has_error_label", None)
    if check is None:
        return frozenset()
    return frozenset(label for label in _LABELS if check(label))


def duplicate_key_index(error: Any) -> str | None:
    """For a duplicate-key error (an exception or a bulk write error entry), the fields of
    the unique index it hit joined by ',' (``'_id'``, ``'aggregate_id,version'``), else None."""
    details: Any = getattr(error, "details", None) if isinstance(error, PyMongoError) else error
    if isinstance(error, DuplicateKeyError):
        details = details if isinstance(details, Mapping) else {}
    elif not isinstance(details, Mapping) or details.get("code") != DUPLICATE_KEY:
        return None
    pattern = details.get("keyPattern")
    if pattern:
        return ",".join(pattern)
    message = str(details.get("errmsg", ""))
    quoted = re.search(r"'keyPattern': \{([^}]*)\}", message)  # mongomock: only in the message
    if quoted is not None:
        return ",".join(re.findall(r"'([^']+)':", quoted.group(1)))
    match = re.search(r"index: (\S+)", message)
    if match is None:
        return "_id"
    name = match.group(1)
    if name == "_id_":
        return "_id"
    return ",".join(part for part in name.split("_") if part and not part.lstrip("-").isdigit())


def is_timeout(exc: BaseException) -> bool:
    if isinstance(exc, (NetworkTimeout, ExecutionTimeout, WTimeoutError)):
        return True
    if isinstance(exc, OperationFailure) and exc.code == MAX_TIME_EXPIRED:
        return True
    return bool(isinstance(exc, PyMongoError) and not isinstance(exc, ServerSelectionTimeoutError) and exc.timeout)


def translate(
    exc: BaseException, what: str, error_cls: type[MongoPersistenceError] = MongoPersistenceError
) -> MongoPersistenceError | None:
    """The library error for ``exc`` raised while doing ``what``, or None to let it pass
    (library errors, cancellation, interpreter exits)."""
    if isinstance(exc, MongoPersistenceError) or not isinstance(exc, Exception):
        return None
    error: MongoPersistenceError
    if isinstance(exc, DocumentTooLarge):
        error = InvalidDocument(f"{what}: the document is larger than the server's 16 MiB limit ({exc}); split it")
    elif isinstance(exc, ServerSelectionTimeoutError):
        error = MongoConnectionError(
            f"{what}: no MongoDB server answered within the time bound ({_first_line(exc)}); "
            "check that the server runs and is reachable"
        )
    elif is_timeout(exc):
        error = OperationTimedOut(
            f"{what}: the server did not answer within the time bound ({_first_line(exc)}); the "
            "operation may or may not have been applied. Retry when the server is healthy, or raise "
            "operation_timeout= on the connection / wrap the call in time_limit(seconds)"
        )
    elif isinstance(exc, (AutoReconnect, ConnectionFailure)):
        error = MongoConnectionError(
            f"{what}: the connection to MongoDB failed ({_first_line(exc)}); retry once the server is reachable"
        )
    elif isinstance(exc, InvalidOperation):
        error = MongoConnectionError(f"{what}: {exc}; connect the MongoConnectionManager (again) first")
    elif isinstance(exc, (DuplicateKeyError, BulkWriteError)) and duplicate_key_index(_first_write_error(exc)):
        index = duplicate_key_index(_first_write_error(exc))
        error = error_cls(f"{what}: a document with the same key already exists (unique index on {index})")
    elif isinstance(exc, OperationFailure) and (exc.code == WRITE_CONFLICT or exc.has_error_label(TRANSIENT)):
        error = ConcurrencyConflict(
            f"{what}: a concurrent transaction wrote the same documents (write conflict); "
            "retry the unit of work (uow.run retries automatically)"
        )
    elif isinstance(exc, PyMongoError):
        error = error_cls(f"{what} failed: {exc}")
    elif isinstance(exc, (BSONError, OverflowError)):
        hint = " (an int over 2**63-1: store it as a string or Decimal)" if isinstance(exc, OverflowError) else ""
        error = InvalidDocument(
            f"{what}: a value cannot be stored as BSON{hint} ({exc}); convert it first, e.g. "
            "with model_dump(mode='json') or the model mapper"
        )
    elif isinstance(exc, (TypeError, ValueError)):
        error = InvalidStoreArgument(f"{what}: an argument has the wrong type or value ({exc})")
    else:
        return None
    labels = error_labels(exc)
    if isinstance(error, ConcurrencyConflict):
        labels = labels | {TRANSIENT}
    if labels:
        error._add_error_labels(labels)
    error.__cause__ = exc  # what `raise ... from exc` sets: the labels and .transient read it
    return error


def _first_write_error(exc: BaseException) -> Any:
    if isinstance(exc, BulkWriteError):
        return (exc.details.get("writeErrors") or [{}])[0]
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.split(", Timeout:", 1)[0].split("\n", 1)[0][:300]


# --- time -------------------------------------------------------------------------------
class _Call:
    """``with gateway.call(what):`` one deadline and error translation for one public call
    (and, with OpenTelemetry installed, its span)."""

    __slots__ = ("what", "error_cls", "timeout", "target", "operation", "_bound", "_span")

    def __init__(
        self,
        what: str | Callable[[], str],
        error_cls: type[MongoPersistenceError],
        timeout: float | None,
        target: Any = None,
        operation: tuple[str, str] | None = None,
    ) -> None:
        self.what = what
        self.error_cls = error_cls
        self.timeout = timeout
        self.target = target
        self.operation = operation
        self._bound: Any = None
        self._span: Any = None

    def __enter__(self) -> None:
        trace = _TRACE
        if trace is not None:
            self._span = _start_span(trace, self, sys._getframe(1))
        if self.timeout is not None and _CALLER_LIMIT.get() is None:
            self._bound = pymongo.timeout(self.timeout)
            self._bound.__enter__()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bound is not None:
            self._bound.__exit__(None, None, None)
            self._bound = None
        span, self._span = self._span, None
        if exc is None:
            if span is not None:
                _end_span(span, None)
            return
        what = self.what if isinstance(self.what, str) else self.what()
        error = translate(exc, what, self.error_cls)
        if span is not None:
            _end_span(span, exc if error is None else error)
        if error is not None:
            raise error from exc


def _start_span(trace: Any, call: _Call, frame: Any) -> Any:
    """(the hook, its span state) for ``call``, or None when nothing is recorded."""
    target = call.target
    operation = call.operation or trace.operation_of(frame)
    if isinstance(target, Gateway):
        state = trace.start(target, target.database, target.name, operation)
    else:
        state = trace.start(target, None, None, operation)
    return None if state is None else (trace, state)


def _end_span(span: tuple[Any, Any], error: BaseException | None) -> None:
    trace, state = span
    trace.end(state, error)


def deadline(connection: ConnectionRole) -> Any:
    """The connection's bound around a block whose errors are the caller's own (the body of
    ``uow.run``): a deadline without error translation."""
    timeout = operation_timeout_of(connection)
    if timeout is None or _CALLER_LIMIT.get() is not None:
        return nullcontext()
    return pymongo.timeout(timeout)


def operation_timeout_of(connection: ConnectionRole | None) -> float | None:
    """The connection's per-operation bound in seconds (None: unbounded / not configured)."""
    return getattr(connection, "operation_timeout", None)


def call(
    connection: ConnectionRole | None,
    what: str | Callable[[], str],
    error_cls: type[MongoPersistenceError] = MongoPersistenceError,
    timeout: float | None = None,
) -> _Call:
    """Bound and translate one public operation of a store that has no :class:`Gateway`:
    ``timeout`` if given, else the connection's bound (``connection=None``: no bound of its
    own, the caller's and the client's apply)."""
    return _Call(what, error_cls, timeout if timeout is not None else operation_timeout_of(connection), connection)


def client_timeout(collection: Any) -> float | None:
    """The client-wide ``timeoutMS`` (in seconds) of the client ``collection`` belongs to,
    for calls made without a connection; None when it has none."""
    options = getattr(getattr(getattr(collection, "database", None), "client", None), "options", None)
    timeout = getattr(options, "timeout", None)
    return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None


async def guarded_steps(source: AsyncIterator[Any], step: Callable[[], _Call]) -> AsyncGenerator[Any, None]:
    """Iterate ``source`` (a cursor or a generator of batches) with each step, and its
    closing, inside a fresh ``step()`` (a bound and error translation); the bound never spans
    the consumer's code between steps."""
    iterator = source.__aiter__()
    try:
        while True:
            with step():
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield item
    finally:
        close = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
        if close is not None:
            with step():
                result = close()
                if hasattr(result, "__await__"):
                    await result


NAMESPACE_EXISTS = 48


async def create_missing_collections(
    connection: ConnectionRole | None, db: Any, names: Iterable[str], error_cls: type[MongoPersistenceError] = MongoPersistenceError
) -> None:
    """Create those of ``names`` that do not exist yet, now, outside any transaction.

    A transaction that writes to a missing collection creates it inside the transaction: a
    catalog change that conflicts with concurrent DDL (an index build, a rename) and that a
    strict server can stall on until the transaction dies. Stores that write in
    transactions create their collections first, so their transactions only write data.
    Idempotent; a collection that another client creates meanwhile is fine.
    """
    wanted = list(dict.fromkeys(names))
    with call(connection, f"creating the collections {', '.join(wanted)}", error_cls):
        existing = set(await db.list_collection_names(filter={"name": {"$in": wanted}}))
        for name in wanted:
            if name in existing:
                continue
            try:
                await db.create_collection(name)
            except CollectionInvalid:  # the driver saw it exist
                pass
            except OperationFailure as exc:
                if exc.code != NAMESPACE_EXISTS:  # created by someone else since the listing
                    raise


# --- sessions ---------------------------------------------------------------------------
def session_of(uow: UnitOfWorkRole | None) -> Any:
    """The driver session to pass as ``session=`` for ``uow``, or None outside a unit of work.

    Any object with a ``session`` attribute works (duck typing); a unit of work running
    without transactions has ``session = None``. A unit of work that is not active (its
    block has ended) is refused: its work would silently run outside any transaction.
    """
    if uow is None:
        return None
    if getattr(uow, "is_active", True) is False:
        from .exceptions import MongoUnitOfWorkError

        raise MongoUnitOfWorkError(
            "this unit of work is not active (its 'async with' block has ended or not begun); "
            "use the store inside 'async with MongoUnitOfWork(...) as uow:'"
        )
    return getattr(uow, "session", None)


# --- the gateway ------------------------------------------------------------------------
class Gateway:
    """One collection of one store: its handle, sessions, bounds, concerns and errors."""

    __slots__ = ("connection", "database", "name", "error_cls", "_cached", "_majority", "__weakref__")

    def __init__(
        self,
        connection: ConnectionRole,
        database: str | None,
        name: str,
        error_cls: type[MongoPersistenceError] = MongoPersistenceError,
    ) -> None:
        if type(name) is not str or not name or "$" in name or "\0" in name:
            raise InvalidStoreArgument(f"invalid collection name {name!r}: use a non-empty name without '$' or NUL")
        self.connection = connection
        self.database = database
        self.name = name
        self.error_cls = error_cls
        self._cached: tuple[Any, Any] | None = None
        self._majority: tuple[Any, Any] | None = None

    @property
    def collection(self) -> Any:
        """The driver collection, re-resolved when the connection's client changes."""
        client = self.connection.client
        cached = self._cached
        if cached is None or cached[0] is not client:
            cached = self._cached = (client, self.connection.db(self.database)[self.name])
        return cached[1]

    def majority(self, session: Any = None) -> Any:
        """The collection reading with read concern "majority" (what followers and checkpoints
        need: a position read this way cannot be rolled back by a failover). Inside a
        transaction the transaction's own read concern applies instead."""
        collection = self.collection
        if session is not None or not self.connection.driver().supports_sessions:
            return collection
        cached = self._majority
        if cached is None or cached[0] is not collection:
            cached = self._majority = (collection, collection.with_options(read_concern=ReadConcern("majority")))
        return cached[1]

    def call(self, what: str | Callable[[], str], timeout: float | None = None) -> _Call:
        """``with gateway.call("reading ..."):``: the connection's bound (or ``timeout``) and
        error translation to this store's error class."""
        return _Call(
            what, self.error_cls, timeout if timeout is not None else operation_timeout_of(self.connection), self
        )

    def in_transaction(self, session: Any) -> bool:
        return DriverAdapter.in_transaction(session)

    async def to_list(self, cursor: Any, length: int | None = None) -> list[Any]:
        return await DriverAdapter.to_list(cursor, length)

    def guarded(
        self, source: AsyncIterator[Any], what: str | Callable[[], str], timeout: float | None = None
    ) -> AsyncGenerator[Any, None]:
        """Iterate ``source`` (a cursor or a generator of batches) with each step bounded and
        its errors translated; the bound never spans the consumer's code between steps."""
        trace = _TRACE
        operation = None if trace is None else trace.operation_of(sys._getframe(1))
        return guarded_steps(source, lambda: self._step(what, timeout, operation))

    def _step(self, what: str | Callable[[], str], timeout: float | None, operation: tuple[str, str] | None) -> _Call:
        call = self.call(what, timeout)
        call.operation = operation
        return call

    # --- indexes ---------------------------------------------------------------------
    async def create_indexes(self, specs: Any) -> list[str]:
        """Create ``specs`` now (outside any transaction); idempotent."""
        from .indexes import ensure_indexes

        with self.call(f"creating the indexes of '{self.name}'"):
            return await ensure_indexes(self.collection, specs)

    async def prepare_indexes(self, specs: Any, session: Any, created_in: set[Any]) -> bool:
        """Create a store's indexes lazily without ever meeting an open transaction.

        Outside a transaction: create them (idempotent). Inside one: if the collection does
        not exist yet, create the collection and its indexes *in* the transaction (they commit
        or vanish with it; remembered per session so a second write of the same transaction
        does not repeat it); if it exists without the indexes, refuse: building an index
        beside an open transaction waits for the transaction's lock on mongod. Returns True
        once the indexes are durable.
        """
        if not self.in_transaction(session):
            await self.create_indexes(specs)
            return True
        if _transaction_marker(session) in created_in:
            return False
        from .indexes import equivalent_index, to_index_model

        collection = self.collection
        with self.call(f"checking the indexes of '{self.name}'"):
            names = await collection.database.list_collection_names(filter={"name": self.name})
            if not names:
                await collection.create_indexes([to_index_model(spec) for spec in specs], session=session)
                if len(created_in) > 10_000:
                    created_in.clear()
                created_in.add(_transaction_marker(session))  # known once the session has run a command
                return False
            existing = [index async for index in await _maybe_awaitable(collection.list_indexes())]
        missing = [model for model in map(to_index_model, specs) if equivalent_index(model, existing) is None]
        if not missing:
            return True
        names = ", ".join(sorted(model.document["name"] for model in missing))
        raise self.error_cls(
            f"the indexes of '{self.name}' ({names}) do not exist yet and "
            "cannot be built beside an open transaction; call 'await store.ensure_indexes()' "
            "(or ensure_all_indexes(...)) at startup"
        )


def _transaction_marker(session: Any) -> Any:
    """What names one transaction of one server session: its logical session id and
    transaction number (Motor wraps the PyMongo session as ``delegate``)."""
    inner = getattr(session, "delegate", session)
    server_session = getattr(inner, "_server_session", None)
    return (repr(getattr(server_session, "session_id", None)), getattr(server_session, "transaction_id", None))


async def _maybe_awaitable(value: Any) -> Any:
    if hasattr(value, "__await__"):
        return await value
    return value
