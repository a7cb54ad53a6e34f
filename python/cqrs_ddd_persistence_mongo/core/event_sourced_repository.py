"""EventSourcedRepository: load an aggregate by folding its stream, save it by appending
its new events with optimistic concurrency on the stream, snapshot it now and then.

load:  latest snapshot (if usable) -> events after its version (upcast on read) -> apply
save:  pending events -> one append_batch (2 commands, 3 with its own transaction) -> snapshot
       when the policy says
"""

from __future__ import annotations

import logging
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from ..domain.aggregate import AggregateRoot
from ..exceptions import EventSourcingError, InvalidStoreArgument, MongoPersistenceError
from ..roles import ConnectionRole, UnitOfWorkRole
from ._session import session_of
from .event_store import MongoEventStore

logger = logging.getLogger(__name__)

A = TypeVar("A", bound="AggregateRoot[Any]")

#: key of the aggregate's ``snapshot_schema`` inside ``snapshot_data``
SNAPSHOT_SCHEMA_KEY = "_snapshot_schema"


class SnapshotPolicy(Protocol):
    """Decides, after a successful save, whether to snapshot the aggregate."""

    def should_snapshot(self, previous_version: int, new_version: int) -> bool: ...


class SnapshotEvery:
    """Snapshot whenever a save crosses a multiple of ``events`` (versions 100, 200, ...
    for ``SnapshotEvery(100)``, also when one save appends several events past it)."""

    def __init__(self, events: int) -> None:
        if isinstance(events, bool) or not isinstance(events, int) or events < 1:
            raise InvalidStoreArgument(f"SnapshotEvery needs a number of events >= 1, not {events!r}")
        self.events = events

    def should_snapshot(self, previous_version: int, new_version: int) -> bool:
        return new_version // self.events > previous_version // self.events

    def __repr__(self) -> str:
        return f"SnapshotEvery({self.events})"


class EventSourcedRepository(Generic[A]):
    """Stores an :class:`EventSourcedAggregate` class as its event stream.

    ``event_store`` defaults to a :class:`MongoEventStore` on ``connection``.
    ``snapshot_policy`` (an int N means :class:`SnapshotEvery` N) turns snapshots on; they
    go to ``snapshot_store`` (default: a ``MongoSnapshotStore`` on ``connection``). A
    snapshot is read whenever a snapshot store is given.

    Snapshots of another ``snapshot_schema`` than the class's current one, or that no
    longer validate as the class, are ignored: the stream is replayed from the start
    (events are the truth; upcasting snapshots would be a second migration path to keep
    right). The next save that crosses the policy writes a fresh one.
    """

    def __init__(
        self,
        connection: ConnectionRole,
        aggregate_class: type[A],
        *,
        event_store: Any = None,
        snapshot_store: Any = None,
        snapshot_policy: SnapshotPolicy | int | None = None,
        database: str | None = None,
    ) -> None:
        if not (isinstance(aggregate_class, type) and issubclass(aggregate_class, AggregateRoot)
                and aggregate_class.event_sourced):
            raise EventSourcingError(
                f"EventSourcedRepository needs an EventSourcedAggregate subclass, not {aggregate_class!r}: "
                "its state must change only through applied events"
            )
        policy: SnapshotPolicy | None = None
        if isinstance(snapshot_policy, int):
            policy = SnapshotEvery(snapshot_policy)  # refuses bools and ints < 1
        elif snapshot_policy is not None:
            if not callable(getattr(snapshot_policy, "should_snapshot", None)):
                raise InvalidStoreArgument(
                    f"snapshot_policy must be an int or have should_snapshot(previous, new), not {snapshot_policy!r}"
                )
            policy = snapshot_policy
        if policy is not None and snapshot_store is None:
            from ..advanced.snapshots import MongoSnapshotStore

            snapshot_store = MongoSnapshotStore(connection, database)
        self.aggregate_class = aggregate_class
        self.aggregate_type = aggregate_class.__name__
        self.event_store = event_store if event_store is not None else MongoEventStore(connection, database)
        self.snapshot_store = snapshot_store
        self.snapshot_policy = policy

    # --- loading ----------------------------------------------------------------------
    async def get(self, aggregate_id: Any, uow: UnitOfWorkRole | None = None) -> A | None:
        """The aggregate folded from its latest usable snapshot and the events after it,
        or None when the stream does not exist. Reads only (events arrive upcast)."""
        if aggregate_id is None:
            raise InvalidStoreArgument("get needs an aggregate_id (the stream to load)")
        aggregate = await self._from_snapshot(aggregate_id, uow)
        after = aggregate.version if aggregate is not None else 0
        events = await self.event_store.get_events(aggregate_id, after_version=after, uow=uow)
        if aggregate is None:
            if not events:
                return None
            aggregate = self._blank(aggregate_id)
        for event in events:
            aggregate.apply(event)
        return aggregate

    def _blank(self, aggregate_id: Any) -> A:
        try:
            return self.aggregate_class(id=aggregate_id)
        except ValidationError as exc:
            raise EventSourcingError(
                f"{self.aggregate_type}(id={aggregate_id!r}) does not validate ({exc.error_count()} errors): "
                "give every field of an event-sourced aggregate a default, its events set the state"
            ) from exc

    async def _from_snapshot(self, aggregate_id: Any, uow: UnitOfWorkRole | None) -> A | None:
        if self.snapshot_store is None:
            return None
        snapshot = await self.snapshot_store.get_latest_snapshot(self.aggregate_type, aggregate_id, uow=uow)
        if not snapshot:
            return None
        data = dict(snapshot.get("snapshot_data") or {})
        schema = data.pop(SNAPSHOT_SCHEMA_KEY, 1)
        if schema != self.aggregate_class.snapshot_schema:
            logger.debug("ignoring the snapshot of %s %r: schema %r, class is at %r",
                         self.aggregate_type, aggregate_id, schema, self.aggregate_class.snapshot_schema)
            return None
        try:
            aggregate = self.aggregate_class.model_validate(data)
        except ValidationError as exc:
            logger.warning("ignoring the snapshot of %s %r v%s, it no longer validates: %s",
                           self.aggregate_type, aggregate_id, snapshot.get("version"), exc)
            return None
        if aggregate.version != snapshot.get("version") or aggregate.id != aggregate_id:
            logger.warning("ignoring the snapshot of %s %r: its data says id %r v%s, the document v%s",
                           self.aggregate_type, aggregate_id, aggregate.id, aggregate.version,
                           snapshot.get("version"))
            return None
        return aggregate

    # --- saving -----------------------------------------------------------------------
    async def save(self, aggregate: A, uow: UnitOfWorkRole | None = None) -> list[int]:
        """Append the aggregate's pending events; returns their positions.

        Guarantee: one ``append_batch`` (findAndModify + insert; a commitTransaction too when
        several events are saved outside a ``uow`` on a server with transactions), the first
        event's version being
        the loaded version + 1, so the stream's unique ``(aggregate_id, version)`` index is
        the optimistic check: when another writer saved the stream since this aggregate
        was loaded, :class:`ConcurrencyConflict` is raised and none of these events is
        stored (the batch stops at its first event; outside a transaction the reserved
        positions become hole markers). Reload and retry. Inside a transactional ``uow``
        the events commit or vanish with everything else of the unit of work (outbox
        messages, other stores); on rollback the aggregate gets its pending events back.
        Not idempotent: saving the same events twice conflicts. A snapshot is taken after
        the events are durable (after commit inside a unit of work) when the policy says
        so; a failed snapshot is logged, never fails the save.
        """
        if not isinstance(aggregate, self.aggregate_class):
            raise EventSourcingError(
                f"this repository stores {self.aggregate_type}, not {type(aggregate).__name__}"
            )
        pending = aggregate._pending_events()
        if not pending:
            return []
        events = list(pending)
        loaded = aggregate.version - len(events)
        self._check_pending(aggregate, events, loaded)
        positions = list(await self.event_store.append_batch(events, uow=uow))
        del pending[: len(events)]
        transactional = session_of(uow) is not None
        on_rollback = getattr(uow, "on_rollback", None)
        if transactional and callable(on_rollback):
            on_rollback(lambda: pending.__setitem__(slice(0, 0), events))
        if self.snapshot_policy is not None and self.snapshot_policy.should_snapshot(loaded, aggregate.version):
            data = aggregate.model_dump()
            data[SNAPSHOT_SCHEMA_KEY] = self.aggregate_class.snapshot_schema
            version = aggregate.version
            on_commit = getattr(uow, "on_commit", None)
            if transactional and callable(on_commit):
                on_commit(lambda: self._snapshot(aggregate.id, data, version))
            else:
                await self._snapshot(aggregate.id, data, version)
        return positions

    def _check_pending(self, aggregate: A, events: list[Any], loaded: int) -> None:
        if aggregate.id is None:
            raise EventSourcingError(f"the {self.aggregate_type} has no id; set it before recording events")
        for expected_version, event in enumerate(events, start=loaded + 1):
            if event.version != expected_version or event.aggregate_id != aggregate.id:
                raise EventSourcingError(
                    f"pending event {event.event_type} of {self.aggregate_type} {aggregate.id!r} has stream "
                    f"{event.aggregate_id!r} v{event.version}, expected v{expected_version}: record events "
                    "only with record_event() and do not change version by hand"
                )

    async def _snapshot(self, aggregate_id: Any, data: dict[str, Any], version: int) -> None:
        """Best effort: the events are stored; a missing snapshot only makes loads longer."""
        try:
            await self.snapshot_store.save_snapshot(self.aggregate_type, aggregate_id, data, version)
        except MongoPersistenceError as exc:
            logger.warning("snapshot of %s %r v%s not saved (loads replay more events): %s",
                           self.aggregate_type, aggregate_id, version, exc)
