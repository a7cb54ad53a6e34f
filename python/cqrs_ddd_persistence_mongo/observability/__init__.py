"""Production visibility: OpenTelemetry spans for store calls and gauges for backlogs.

Install the extra (``pip install 'cqrs-ddd-persistence-mongo[otel]'``). With the
OpenTelemetry API importable, every public store call becomes a CLIENT span on the
globally configured tracer provider (nothing is recorded until the application installs
an SDK); :func:`instrument` picks another provider, :func:`uninstrument` turns spans off.
Without OpenTelemetry nothing here runs. :func:`register_metrics` adds the gauges
(projection lag, outbox backlog and dead letters, job queue depth and stale jobs).

This package imports no OpenTelemetry module by itself, so importing it is always safe.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import MongoPersistenceError

__all__ = ["OTEL_EXTRA_MISSING", "StoreMetrics", "instrument", "register_metrics", "uninstrument"]

OTEL_EXTRA_MISSING = (
    "OpenTelemetry is not installed: pip install 'cqrs-ddd-persistence-mongo[otel]' "
    "(opentelemetry-api, plus opentelemetry-sdk to record)"
)


def instrument(tracer_provider: Any = None) -> None:
    """Record a span for every store call on ``tracer_provider`` (default: the global one).

    Raises :class:`MongoPersistenceError` when OpenTelemetry is not installed.
    """
    try:
        from . import tracing
    except ImportError as exc:
        raise MongoPersistenceError(OTEL_EXTRA_MISSING) from exc
    tracing.enable(tracer_provider)


def uninstrument() -> None:
    """Stop recording spans for store calls (the gateway's hook becomes a no-op again)."""
    from .. import _gateway

    _gateway._TRACE = None


def __getattr__(name: str) -> Any:
    if name in ("StoreMetrics", "register_metrics"):
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
