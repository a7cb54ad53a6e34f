"""Aggregate roots: pydantic models with an id, a version the repository maintains,
and the domain events they record until someone pulls them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from .events import DomainEvent


class AggregateRoot(BaseModel):
    """Base class of aggregates.

    ``version`` is owned by the repository: 0 means never saved; each successful save
    makes it the stored ``_version``. Recorded events stay on the aggregate until
    ``pull_domain_events()`` hands them out (and forgets them).
    """

    model_config = ConfigDict(validate_assignment=False, arbitrary_types_allowed=True)

    id: Any = None
    version: int = 0

    def _pending_events(self) -> list[DomainEvent]:
        """The recorded, not yet pulled events, created on first use.

        They live in pydantic's per-instance private storage, set up lazily instead of
        declared with ``PrivateAttr``: any declared private attribute makes pydantic run a
        Python-level initialiser on every instance, which tripled the cost of loading an
        aggregate (``model_validate``) for a list most loaded aggregates never use.
        """
        private = self.__pydantic_private__
        if private is None:
            private = {}
            object.__setattr__(self, "__pydantic_private__", private)
        events = private.get("_domain_events")
        if events is None:
            events = private["_domain_events"] = []
        return events

    def record_event(self, event: DomainEvent) -> DomainEvent:
        """Record ``event`` as happened to this aggregate (fills id, type and version)."""
        if event.aggregate_id is None:
            event.aggregate_id = self.id
        if not event.aggregate_type:
            event.aggregate_type = type(self).__name__
        pending = self._pending_events()
        if not event.version:
            event.version = self.version + len(pending) + 1
        pending.append(event)
        return event

    add_domain_event = record_event

    def pull_domain_events(self) -> list[DomainEvent]:
        """Return the recorded events and forget them."""
        pending = self._pending_events()
        events = list(pending)
        pending.clear()
        return events

    def collect_events(self) -> list[DomainEvent]:
        """Alias of :meth:`pull_domain_events`."""
        return self.pull_domain_events()

    @property
    def domain_events(self) -> tuple[DomainEvent, ...]:
        """The events recorded and not yet pulled (read-only view)."""
        return tuple(self._pending_events())

    def __eq__(self, other: Any) -> bool:  # pydantic's eq also compares private attrs
        return type(other) is type(self) and self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]
