"""Aggregate roots: pydantic models with an id, a version the repository maintains,
and the domain events they record until someone pulls them.

``apply(event)`` folds one event into an aggregate: it calls the method marked
``@applies(EventClass)`` for the event's type, then advances ``version``. An
:class:`EventSourcedAggregate` changes state only that way: recording an event applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Generic

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from ..exceptions import EventOutOfOrder, EventSourcingError, UnhandledEvent
from .events import DomainEvent

F = TypeVar("F", bound=Callable[..., Any])
#: the id type; ``AggregateRoot`` without a parameter means ``AggregateRoot[str]``
ID = TypeVar("ID", default=str)

_APPLIES = "__applies_events__"


def applies(*event_types: type[DomainEvent] | str) -> Callable[[F], F]:
    """Mark an aggregate method as the handler of ``event_types`` (used by ``apply``).

    Give event classes: the handler then always receives an instance of the class, also
    when ``apply`` is given a :class:`StoredEvent` (decoded with ``from_stored``). A
    string names an event type without a class; that handler receives the event as given.
    """
    if not event_types:
        raise EventSourcingError("@applies needs at least one event class (or event type name)")
    for event_type in event_types:
        is_class = isinstance(event_type, type) and issubclass(event_type, DomainEvent)
        if not is_class and not (isinstance(event_type, str) and event_type):
            raise EventSourcingError(
                f"@applies takes DomainEvent subclasses or event type names, not {event_type!r}"
            )

    def mark(method: F) -> F:
        setattr(method, _APPLIES, getattr(method, _APPLIES, ()) + event_types)
        return method

    return mark


def _handler_table(cls: type) -> dict[str, tuple[str, type[DomainEvent] | None]]:
    """event type -> (method name, event class or None), subclasses overriding bases."""
    table: dict[str, tuple[str, type[DomainEvent] | None]] = {}
    for klass in reversed(cls.__mro__):
        own: set[str] = set()
        for name, member in vars(klass).items():
            for event_type in getattr(member, _APPLIES, ()):
                key = event_type if isinstance(event_type, str) else event_type.type_name()
                if key in own:
                    raise EventSourcingError(
                        f"{klass.__name__} has two handlers for event type {key!r}; keep one"
                    )
                own.add(key)
                table[key] = (name, None if isinstance(event_type, str) else event_type)
    return table


class AggregateRoot(BaseModel, Generic[ID]):
    """Base class of aggregates; ``AggregateRoot[int]`` names the id type for type checkers
    (without a parameter: ``str``).

    The id is validated as given (``Any``) whatever the parameter, so loading stays as fast
    as without it and a generated ObjectId fits any id type; declare ``id: str`` in the
    subclass to have pydantic check it.

    ``version`` is owned by the repository: 0 means never saved; each successful save
    makes it the stored ``_version``. Recorded events stay on the aggregate until
    ``pull_domain_events()`` hands them out (and forgets them).
    """

    model_config = ConfigDict(validate_assignment=False, arbitrary_types_allowed=True)

    #: True for aggregates whose state changes only through events (see EventSourcedAggregate)
    event_sourced: ClassVar[bool] = False
    #: False: ``apply`` raises UnhandledEvent for an event type without a handler;
    #: True: such an event only advances the version
    ignore_unhandled_events: ClassVar[bool] = False
    #: the version of this class's snapshot layout; bump it when fields change meaning, and
    #: snapshots taken with another value are ignored (the events are replayed instead)
    snapshot_schema: ClassVar[int] = 1
    __event_handlers__: ClassVar[dict[str, tuple[str, type[DomainEvent] | None]]] = {}

    if TYPE_CHECKING:  # type checkers see the parameter; pydantic validates any id as given
        id: ID | None = None
    id: Any = None  # type: ignore[no-redef]
    version: int = 0

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.__event_handlers__ = _handler_table(cls)

    def apply(self, event: Any) -> None:
        """Fold ``event`` into this aggregate: run its handler, then advance ``version``.

        ``event`` is a :class:`DomainEvent` or a :class:`StoredEvent` (decoded into the
        handler's event class). The version becomes the event's ``version`` when it has
        one, else ``version + 1``. An event-sourced aggregate refuses an event whose version
        is not ``version + 1`` (:class:`EventOutOfOrder`), before its handler runs.
        An event type without a handler raises :class:`UnhandledEvent` unless the class
        sets ``ignore_unhandled_events = True``. Errors raised by a handler propagate.
        """
        event_type = getattr(event, "event_type", None)
        version = getattr(event, "version", None)
        if not isinstance(event_type, str) or isinstance(version, bool) or not isinstance(version, int):
            raise EventSourcingError(
                f"apply() takes a DomainEvent or StoredEvent (an event_type str and an int version), "
                f"not {type(event).__name__}"
            )
        if version and self.event_sourced and version != self.version + 1:
            raise EventOutOfOrder(
                f"{type(self).__name__} {self.id!r} is at version {self.version} and was given "
                f"{event_type} version {version}; replay the stream in version order, each event once"
            )
        entry = self.__event_handlers__.get(event_type)
        if entry is not None:
            name, event_class = entry
            if event_class is not None and not isinstance(event, event_class):
                event = (
                    event_class.model_validate(event.model_dump())
                    if isinstance(event, DomainEvent)
                    else event_class.from_stored(event)
                )
            getattr(self, name)(event)
        elif not self.ignore_unhandled_events:
            raise UnhandledEvent(
                f"{type(self).__name__} has no handler for event type {event_type!r}: add a method "
                f"decorated with @applies({event_type}) or set ignore_unhandled_events = True"
            )
        self.version = version or self.version + 1

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
        """Record ``event`` as happened to this aggregate (fills id, type and version).

        An event-sourced aggregate also applies it (its version then counts the pending
        events); if applying fails, the event is not recorded.
        """
        if event.aggregate_id is None:
            event.aggregate_id = self.id
        if not event.aggregate_type:
            event.aggregate_type = type(self).__name__
        pending = self._pending_events()
        if self.event_sourced:
            if not event.version:
                event.version = self.version + 1
            self.apply(event)
        elif not event.version:
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


class EventSourcedAggregate(AggregateRoot[ID]):
    """An aggregate whose state is the fold of its events.

    Change state only by recording events (``self.record_event(ItemAdded(...))``); the
    handlers marked ``@applies(...)`` do the mutation, on record and on every load. Give
    every field a default: a load starts from ``cls(id=...)`` and applies the stream.
    ``version`` is the number of events applied, pending ones included.
    """

    event_sourced: ClassVar[bool] = True
