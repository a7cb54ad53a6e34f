"""Gauges of what is waiting: projection lag, outbox backlog and dead letters, job queue.

OpenTelemetry calls gauge callbacks synchronously (from its export thread, or from the
caller of ``collect``), while the stores are asynchronous. So the stores are read by
:meth:`StoreMetrics.refresh` on the application's event loop (``start()`` repeats it in a
background task) and the callbacks only hand over the last sample: they never touch the
server, never block and never raise into the SDK. Each group of readings runs under its own
time bound; a group that fails or times out is logged and reports nothing until it
succeeds again (no stale value is presented as current). Reads never write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any

from .._gateway import Gateway
from ..connection import time_limit
from ..domain import utc_now
from ..domain.jobs import JobStatus
from ..domain.outbox import OutboxStatus
from ..exceptions import InvalidStoreArgument, MongoPersistenceError
from ..roles import ConnectionRole

logger = logging.getLogger(__name__)

PREFIX = "cqrs_ddd_mongo"
PROJECTION_LAG = f"{PREFIX}.projection.lag"
PROJECTION_DEAD_LETTERS = f"{PREFIX}.projection.dead_letters"
OUTBOX_BACKLOG = f"{PREFIX}.outbox.backlog"
OUTBOX_DEAD_LETTERS = f"{PREFIX}.outbox.dead_letters"
JOB_QUEUE_DEPTH = f"{PREFIX}.job.queue_depth"
JOB_STALE = f"{PREFIX}.job.stale"

_BACKLOG_STATUSES = (OutboxStatus.PENDING, OutboxStatus.PUBLISHING, OutboxStatus.FAILED)
_Sample = list[tuple[int, dict[str, str]]]


class StoreMetrics:
    """The gauges of :func:`register_metrics` and the sampler that feeds them."""

    def __init__(
        self,
        meter: Any,
        connection: ConnectionRole | None = None,
        *,
        event_store: Any = None,
        positions: Any = None,
        projections: Iterable[str] | None = None,
        outbox: Any = None,
        jobs: Any = None,
        stale_after: timedelta | None = None,
        dead_letters: str | None = None,
        timeout: float = 5.0,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidStoreArgument(f"timeout must be a positive number of seconds, got {timeout!r}")
        if (event_store is None) != (positions is None):
            raise InvalidStoreArgument("projection lag needs both event_store= and positions=")
        if dead_letters is not None and connection is None:
            raise InvalidStoreArgument("dead_letters= needs the connection (register_metrics(meter, connection, ...))")
        self.timeout = float(timeout)
        self._event_store = event_store
        self._positions = positions
        self._projections = None if projections is None else sorted(set(projections))
        self._outbox = outbox
        self._jobs = jobs
        self._stale_after = stale_after
        self._dead_letters = (
            None if dead_letters is None or connection is None else Gateway(connection, None, dead_letters)
        )
        self._values: dict[str, _Sample] = {}
        self._task: asyncio.Task[None] | None = None
        self.last_refresh: float | None = None
        self._readers: list[tuple[tuple[str, ...], Callable[[], Awaitable[dict[str, _Sample]]]]] = []
        if event_store is not None:
            self._gauge(meter, PROJECTION_LAG, "{event}", "events appended after a projection's checkpoint")
            self._readers.append(((PROJECTION_LAG,), self._read_lag))
        if self._dead_letters is not None:
            self._gauge(meter, PROJECTION_DEAD_LETTERS, "{event}", "events parked by a projection")
            self._readers.append(((PROJECTION_DEAD_LETTERS,), self._read_projection_dead_letters))
        if outbox is not None:
            self._gauge(meter, OUTBOX_BACKLOG, "{message}", "outbox messages not yet published, by status")
            self._gauge(meter, OUTBOX_DEAD_LETTERS, "{message}", "outbox messages out of retries")
            self._readers.append(((OUTBOX_BACKLOG, OUTBOX_DEAD_LETTERS), self._read_outbox))
        if jobs is not None:
            self._gauge(meter, JOB_QUEUE_DEPTH, "{job}", "background jobs by status")
            self._gauge(meter, JOB_STALE, "{job}", "running jobs without a recent heartbeat")
            self._readers.append(((JOB_QUEUE_DEPTH, JOB_STALE), self._read_jobs))

    # --- the gauges ------------------------------------------------------------------
    def _gauge(self, meter: Any, name: str, unit: str, description: str) -> None:
        meter.create_observable_gauge(name, callbacks=[self._callback(name)], unit=unit, description=description)

    def _callback(self, name: str) -> Callable[[Any], list[Any]]:
        from opentelemetry.metrics import Observation

        def observe(options: Any) -> list[Any]:
            try:
                return [Observation(value, attributes) for value, attributes in self._values.get(name, ())]
            except Exception:  # never raise into the SDK
                return []

        return observe

    def values(self, name: str) -> _Sample:
        """The last sample of gauge ``name``: ``[(value, attributes), ...]``."""
        return list(self._values.get(name, ()))

    # --- sampling --------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read every store once, each group within ``timeout`` seconds. Never raises (but
        cancellation): a failed group is logged at WARNING and reports nothing."""
        for names, read in self._readers:
            try:
                async with asyncio.timeout(self.timeout + 1.0):
                    with time_limit(self.timeout):
                        sample = await read()
            except Exception as exc:  # a time-out, a library error or a bug in a store
                logger.warning("sampling %s failed: %s", ", ".join(names), exc)
                for name in names:
                    self._values.pop(name, None)
                continue
            self._values.update(sample)
        self.last_refresh = time.monotonic()

    async def run(self, interval: float = 15.0) -> None:
        """Refresh every ``interval`` seconds until cancelled."""
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise InvalidStoreArgument(f"interval must be a positive number of seconds, got {interval!r}")
        while True:
            await self.refresh()
            await asyncio.sleep(interval)

    def start(self, interval: float = 15.0) -> asyncio.Task[None]:
        """Run :meth:`run` in a background task of the running loop (once)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(interval), name="cqrs-ddd-mongo-metrics")
        return self._task

    async def stop(self) -> None:
        """Cancel the background task of :meth:`start` and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- readers ---------------------------------------------------------------------
    async def _read_lag(self) -> dict[str, _Sample]:
        head = await self._event_store.get_latest_position()
        saved = await self._positions.get_all_positions()
        names = self._projections if self._projections is not None else sorted(saved)
        return {PROJECTION_LAG: [(max(0, head - saved.get(name, 0)), {"projection": name}) for name in names]}

    async def _read_projection_dead_letters(self) -> dict[str, _Sample]:
        gateway = self._dead_letters
        assert gateway is not None
        pipeline = [{"$group": {"_id": "$projection", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}]
        with gateway.call(f"counting the dead letters in '{gateway.name}'"):
            cursor = gateway.collection.aggregate(pipeline)
            if hasattr(cursor, "__await__"):
                cursor = await cursor
            rows = await gateway.to_list(cursor, None)
        return {PROJECTION_DEAD_LETTERS: [(int(row["n"]), {"projection": str(row["_id"])}) for row in rows]}

    async def _read_outbox(self) -> dict[str, _Sample]:
        gateway: Gateway = self._outbox._gateway
        counts: dict[str, int] = {}
        with gateway.call(f"counting the outbox messages in '{gateway.name}'"):
            for status in (*_BACKLOG_STATUSES, OutboxStatus.DEAD):
                counts[status.value] = await gateway.collection.count_documents({"status": status.value})
        backlog = [(counts[status.value], {"status": status.value}) for status in _BACKLOG_STATUSES]
        return {OUTBOX_BACKLOG: backlog, OUTBOX_DEAD_LETTERS: [(counts[OutboxStatus.DEAD.value], {})]}

    async def _read_jobs(self) -> dict[str, _Sample]:
        jobs = self._jobs
        by_status = await jobs.count_by_status()
        depth = [(count, {"status": JobStatus(status).value}) for status, count in by_status.items()]
        stale_after = self._stale_after or timedelta(seconds=jobs.stale_job_timeout_seconds)
        query = {"status": JobStatus.RUNNING.value, "heartbeat_at": {"$lt": utc_now() - stale_after}}
        gateway: Gateway = jobs._gateway
        with gateway.call(f"counting the stale jobs in '{gateway.name}'"):
            stale = await gateway.collection.count_documents(query)
        return {JOB_QUEUE_DEPTH: depth, JOB_STALE: [(stale, {})]}


def register_metrics(meter: Any = None, connection: ConnectionRole | None = None, **stores: Any) -> StoreMetrics:
    """Create the gauges on ``meter`` (default: the global meter provider's) for the stores
    given: ``event_store=`` with ``positions=`` (and optionally ``projections=[names]``) for
    projection lag, ``outbox=``, ``jobs=`` (``stale_after=``), ``dead_letters=`` (the
    projection engine's dead-letter collection; needs ``connection``), ``timeout=`` per
    sample. Call ``await metrics.refresh()`` or ``metrics.start(interval)`` to feed them.

    Raises :class:`MongoPersistenceError` when OpenTelemetry is not installed.
    """
    try:
        from opentelemetry import metrics as otel_metrics
    except ImportError as exc:
        from . import OTEL_EXTRA_MISSING

        raise MongoPersistenceError(OTEL_EXTRA_MISSING) from exc
    if meter is None:
        from .tracing import SCOPE, VERSION

        meter = otel_metrics.get_meter(SCOPE, VERSION or "")
    return StoreMetrics(meter, connection, **stores)
