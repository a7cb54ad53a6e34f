"""Upcasters: read old events with new code.

An upcaster turns the payload of one event type at one schema version into the payload
of a later version. The registry chains them, so an event stored at v1 reaches the
current version (the highest one any chain leads to) through v2, v3, ... The event
store's decoder (``_event_codec.from_document``) consults :data:`upcasters` for every
event it reads, so repository loads, ``get_events*``, followers and the projection
engine all see the current schema only. Reading never writes: the stored document
keeps its old payload and ``schema_version``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..exceptions import InvalidUpcaster, UpcastFailed

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
#: event type -> {from version: (to version, upcaster)}: every registered step
UpcasterSteps = dict[str, dict[int, tuple[int, Upcaster]]]


class UpcasterRegistry:
    """Upcasters keyed by ``(event_type, schema_version)``.

    Registration is validated as a whole: a second upcaster for the same key, a step that
    does not move forward (which is what a cycle needs), or a chain that stops before the
    current version (a gap) is refused with :class:`InvalidUpcaster`, and the registry
    is left as it was. Register at import time; reads never lock (the tables are replaced,
    never mutated).
    """

    def __init__(self) -> None:
        self._steps: UpcasterSteps = {}
        #: event type -> its current schema version (only types with upcasters)
        self.current: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self.current)

    def register(self, event_type: str, from_version: int, upcaster: Upcaster, *,
                 to_version: int | None = None) -> None:
        """Register ``upcaster`` turning ``event_type`` payloads at ``from_version`` into
        ``to_version`` (default ``from_version + 1``)."""
        self.register_chain(event_type, {from_version: (upcaster, to_version)})

    def upcaster(self, event_type: str, from_version: int, *,
                 to_version: int | None = None) -> Callable[[Upcaster], Upcaster]:
        """Decorator form of :meth:`register`."""

        def decorate(function: Upcaster) -> Upcaster:
            self.register(event_type, from_version, function, to_version=to_version)
            return function

        return decorate

    def register_chain(self, event_type: str,
                       steps: Mapping[int, Upcaster | tuple[Upcaster, int | None]]) -> None:
        """Register several steps of one event type at once (validated together), e.g.
        ``{1: v1_to_v2, 2: v2_to_v3}``; a value may be ``(upcaster, to_version)``."""
        if not isinstance(event_type, str) or not event_type:
            raise InvalidUpcaster(f"event_type must be a non-empty string, not {event_type!r}")
        if not isinstance(steps, Mapping):
            raise InvalidUpcaster(f"{event_type}: steps must be a dict {{from_version: upcaster}}, not {steps!r}")
        table = dict(self._steps.get(event_type, {}))
        for from_version, step in steps.items():
            function, to_version = step if isinstance(step, tuple) else (step, None)
            if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
                raise InvalidUpcaster(
                    f"{event_type}: schema versions are ints >= 1, not {from_version!r}"
                )
            to_version = from_version + 1 if to_version is None else to_version
            if isinstance(to_version, bool) or not isinstance(to_version, int) or to_version <= from_version:
                raise InvalidUpcaster(
                    f"{event_type}: an upcaster from v{from_version} must lead to a later version, "
                    f"not {to_version!r} (a step backwards could make a cycle)"
                )
            if not callable(function):
                raise InvalidUpcaster(f"{event_type} v{from_version}: the upcaster must be callable")
            if from_version in table:
                raise InvalidUpcaster(
                    f"{event_type} v{from_version} already has an upcaster; one per (event type, version)"
                )
            table[from_version] = (to_version, function)
        current = self._check_chain(event_type, table)
        steps_copy = dict(self._steps)
        steps_copy[event_type] = table
        current_copy = dict(self.current)
        current_copy[event_type] = current
        self._steps, self.current = steps_copy, current_copy

    @staticmethod
    def _check_chain(event_type: str, table: dict[int, tuple[int, Upcaster]]) -> int:
        """The current version, once every chain in ``table`` is shown to reach it."""
        current = max(to for to, _ in table.values())
        for start in table:
            version = start
            while version != current:
                if version not in table:
                    raise InvalidUpcaster(
                        f"{event_type}: the chain from v{start} stops at v{version}, but the current "
                        f"version is v{current}; register an upcaster from v{version}"
                    )
                version = table[version][0]
        return current

    def steps(self) -> UpcasterSteps:
        """A copy of every registered step (to give another process the same registry)."""
        return {event_type: dict(table) for event_type, table in self._steps.items()}

    def adopt(self, steps: Mapping[str, Mapping[int, tuple[int, Upcaster]]]) -> None:
        """Make this registry hold exactly ``steps`` (another registry's :meth:`steps`).

        Event types registered here already (e.g. at import time) must have the very same
        steps; a registry that differs (other steps, or types ``steps`` lacks) raises
        :class:`InvalidUpcaster` and is left as it was, so no event is read with a
        different schema than the one the steps describe.
        """
        before = self._steps, self.current
        try:
            for event_type, table in steps.items():
                if event_type not in before[0]:
                    self.register_chain(event_type, {start: (f, to) for start, (to, f) in table.items()})
            mine = {event_type: dict(table) for event_type, table in self._steps.items()}
            wanted = {event_type: dict(table) for event_type, table in steps.items()}
            if mine != wanted:
                differing = sorted(t for t in mine.keys() | wanted.keys() if mine.get(t) != wanted.get(t))
                raise InvalidUpcaster(
                    f"the upcasters of {', '.join(differing)} differ from the ones given (registered here: "
                    f"{_describe(mine, differing)}; given: {_describe(wanted, differing)}); register each "
                    "upcaster once, in one module that every process imports"
                )
        except BaseException:
            self._steps, self.current = before
            raise

    def unregister(self, event_type: str) -> None:
        """Forget every upcaster of ``event_type`` (tests, hot reloading)."""
        steps, current = dict(self._steps), dict(self.current)
        steps.pop(event_type, None)
        current.pop(event_type, None)
        self._steps, self.current = steps, current

    def clear(self) -> None:
        """Forget every upcaster."""
        self._steps, self.current = {}, {}

    def upcast(self, event_type: str, schema_version: int, payload: Mapping[str, Any],
               event_id: Any = None) -> tuple[int, dict[str, Any]]:
        """``(current version, payload at that version)`` for a payload at ``schema_version``.

        The given payload is never modified: the first upcaster receives a shallow copy
        (upcasters must return a new dict rather than mutate nested values). A version
        without an upcaster (newer than the chain, or older than its start) is returned
        as is. An upcaster that raises or returns a non-dict raises :class:`UpcastFailed`.
        """
        table = self._steps.get(event_type)
        if not isinstance(payload, Mapping):
            raise UpcastFailed(f"event {event_id!r} ({event_type}) has a payload that is not a document: {payload!r}")
        data = dict(payload)
        if not table:
            return schema_version, data
        while schema_version in table:
            to_version, function = table[schema_version]
            try:
                result = function(data)
            except Exception as exc:
                raise UpcastFailed(
                    f"upcasting event {event_id!r} ({event_type}) from v{schema_version} to "
                    f"v{to_version} raised {type(exc).__name__}: {exc}"
                ) from exc
            if not isinstance(result, dict):
                raise UpcastFailed(
                    f"the upcaster of {event_type} v{schema_version} returned "
                    f"{type(result).__name__}; it must return the payload dict of v{to_version}"
                )
            schema_version, data = to_version, result
        return schema_version, data


def _describe(steps: UpcasterSteps, event_types: list[str]) -> str:
    return "; ".join(
        f"{t} " + (", ".join(f"v{start}->v{to} {getattr(f, '__qualname__', f)!s}"
                             for start, (to, f) in sorted(steps[t].items())) if t in steps else "none")
        for t in event_types
    )


#: The process-wide registry every read path of the event store uses.
upcasters = UpcasterRegistry()
