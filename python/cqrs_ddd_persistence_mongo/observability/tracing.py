"""The span hook of the gateway: one CLIENT span per public store call.

Imported by ``_gateway`` only when ``opentelemetry`` is importable (and
``CQRS_DDD_MONGO_OTEL`` is not ``0``); without it the gateway's hook is ``None`` and a
call pays one global lookup. Attributes follow the OpenTelemetry database semantic
conventions: ``db.system.name`` (and the older ``db.system``) = ``"mongodb"``,
``db.namespace`` (the database), ``db.collection.name``, ``db.operation.name`` (the
library operation: ``append``, ``save``, ``get_events``...), ``server.address`` /
``server.port`` (the first host of the connection URL), and on failure ``error.type``
(the library error class), ``db.response.status_code`` (the server's error code) and the
error's labels. Nothing here raises into a store call.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import weakref
from collections.abc import Mapping
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..roles import ConnectionRole

SCOPE = "cqrs_ddd_persistence_mongo"
SYSTEM = "mongodb"
#: attribute holding the error labels of a failed call (TransientTransactionError, ...)
LABELS_ATTRIBUTE = "cqrs_ddd_mongo.error.labels"
TRANSIENT_ATTRIBUTE = "cqrs_ddd_mongo.error.transient"
_MAX_FRAMES = 8
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_GATEWAY_FILE = os.path.join(_PACKAGE_DIR, "_gateway.py")



def _version() -> str | None:
    try:
        return importlib.metadata.version("cqrs-ddd-persistence-mongo")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return None


VERSION = _version()
_tracer: Any = trace.get_tracer(SCOPE, VERSION)
_connection_attributes: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def enable(tracer_provider: Any = None) -> None:
    """Bind the gateway's hook to this module, spans going to ``tracer_provider``
    (None: the global provider, followed as it changes)."""
    global _tracer
    _tracer = trace.get_tracer(SCOPE, VERSION, tracer_provider=tracer_provider)
    from .. import _gateway

    _gateway._TRACE = sys.modules[__name__]


def operation_of(frame: FrameType | None) -> tuple[str, str]:
    """The library operation a call belongs to and its qualified name, from the frame that
    opened the call: the nearest public function of the package, skipping the gateway and
    private helpers (``_find``); a lambda or closure counts as the function that made it.
    Stops at the application's code."""
    try:
        return _operation_of(frame)
    except Exception:  # telemetry must never break a store call
        return "call", "call"


def _operation_of(frame: FrameType | None) -> tuple[str, str]:
    name, qualname = "call", "call"
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        code = frame.f_code
        filename = code.co_filename
        if not filename.startswith(_PACKAGE_DIR):
            break
        if filename != _GATEWAY_FILE:
            qualname = code.co_qualname
            if ".<locals>." in qualname:  # a lambda or closure: the function that made it
                qualname = qualname.split(".<locals>.", 1)[0]
            name = qualname.rpartition(".")[2]
            if not name.startswith(("_", "<")):
                return name, qualname
        frame = frame.f_back
    return name.strip("_<>") or "call", qualname


def start(target: Any, database: str | None, collection: str | None, operation: tuple[str, str]) -> Any:
    """Start the span of one call (``target``: a gateway or a connection manager) and make
    it current; returns what :func:`end` needs, or None if nothing is recorded."""
    try:
        connection = getattr(target, "connection", target)
        base = _base_attributes(connection)
        attributes = dict(base)
        namespace = database or base.get("db.namespace")
        if namespace:
            attributes["db.namespace"] = namespace
        if collection:
            attributes["db.collection.name"] = collection
        name, qualname = operation
        attributes["db.operation.name"] = name
        attributes["code.function.name"] = qualname
        span = _tracer.start_span(
            f"{name} {collection or namespace or SYSTEM}", kind=SpanKind.CLIENT, attributes=attributes
        )
        if not span.is_recording():
            return None
        token = otel_context.attach(trace.set_span_in_context(span))
        return span, token
    except Exception:  # telemetry must never break a store call
        return None


def end(state: Any, error: BaseException | None) -> None:
    """End the span ``state`` of :func:`start`; ``error``: what the call raised (the
    library error it was translated to), None on success."""
    span: Span
    span, token = state
    try:
        otel_context.detach(token)
        if error is not None:
            _record_error(span, error)
    except Exception:
        pass
    finally:
        span.end()


def _record_error(span: Span, error: BaseException) -> None:
    kind = type(error)
    span.set_attribute("error.type", f"{kind.__module__}.{kind.__qualname__}")
    code = _server_code(error)
    if code is not None:
        span.set_attribute("db.response.status_code", str(code))
    labels = getattr(error, "error_labels", None)
    if labels:
        span.set_attribute(LABELS_ATTRIBUTE, sorted(labels))
    transient = getattr(error, "transient", None)
    if isinstance(transient, bool):
        span.set_attribute(TRANSIENT_ATTRIBUTE, transient)
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{kind.__name__}: {str(error)[:200]}"))


def _server_code(error: BaseException) -> Any:
    """The server's error code of the driver error behind ``error`` (a few causes deep)."""
    seen: BaseException | None = error
    for _ in range(4):
        if seen is None:
            return None
        code = getattr(seen, "code", None)
        if isinstance(code, int) and not isinstance(code, bool):
            return code
        seen = seen.__cause__
    return None


def _base_attributes(connection: ConnectionRole) -> dict[str, Any]:
    """System, default database and first host of a connection, computed once per
    connection manager (they do not change while it lives)."""
    try:
        cached = _connection_attributes.get(connection)
    except TypeError:
        cached = None
    if cached is not None:
        return cached
    attributes: dict[str, Any] = {"db.system.name": SYSTEM, "db.system": SYSTEM}
    url = getattr(connection, "url", None)
    host, port, path_database = _parse_url(url) if isinstance(url, str) else (None, None, None)
    database = getattr(connection, "database_name", None) or path_database
    if isinstance(database, str) and database:
        attributes["db.namespace"] = database
    if host:
        attributes["server.address"] = host
    if port is not None:
        attributes["server.port"] = port
    try:
        _connection_attributes[connection] = attributes
    except TypeError:
        pass
    return attributes


def _parse_url(url: str) -> tuple[str | None, int | None, str | None]:
    """First host, its port and the default database of a ``mongodb://`` URL, by string
    splitting only (no DNS lookup for ``mongodb+srv://``)."""
    rest = url.split("://", 1)[-1]
    hosts, _, path = rest.partition("/")
    hosts = hosts.rpartition("@")[2]
    first = hosts.split(",", 1)[0]
    port: int | None = None
    if first.startswith("["):
        host, _, tail = first[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = first.partition(":")
    if port_text.isdigit():
        port = int(port_text)
    elif host and not url.startswith("mongodb+srv"):
        port = 27017
    database = path.split("?", 1)[0] or None
    return host or None, port, database

