"""Helpers of the event store's readers: the gap clock, the gap-safe cursor and the
awaitable event stream."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ContextManager, Generator

from .._gc import fewer_collections
from ..domain.events import StoredEvent
from ._event_codec import Page


class GapClock:
    """Remembers when each hole in the position sequence was first seen by a reader.

    A hole is the position range between the last event read and the next visible one.
    It is either in flight (an appender reserved the positions and has not written yet)
    or abandoned (the appender failed or died). Only time tells them apart: a hole seen
    for longer than ``timeout`` seconds is declared abandoned.
    """

    _MAX_TRACKED = 10_000

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.holds = 0  # how often a reader stopped at a hole (an observability counter)
        self._first_seen: dict[int, float] = {}

    def abandoned(self, start: int) -> bool:
        """True once the hole starting at ``start`` has been visible for ``timeout`` seconds."""
        now = time.monotonic()
        if len(self._first_seen) > self._MAX_TRACKED:
            self._first_seen.clear()  # bounded memory; worst case a reader waits once more
        seen = self._first_seen.setdefault(start, now)
        if now - seen >= self.timeout:
            del self._first_seen[start]
            return True
        self.holds += 1
        return False


async def gap_safe_batches(
    after: int,
    batch_size: int,
    *,
    open_cursor: Callable[[dict[str, Any]], Any],
    fetch: Callable[[Any], Awaitable[Page | None]],
    reserved_head: Callable[[], Awaitable[int]],
    resolve_hole: Callable[[int, int], Awaitable[bool]],
    guard: Callable[[], ContextManager[Any]],
) -> AsyncIterator[list[StoredEvent]]:
    """Lists of at most ``batch_size`` events after position ``after``, from one cursor
    sorted by position (``open_cursor(query)``; ``fetch(cursor)`` decodes the next page of
    it, None at its end).

    Positions are dense (each reserved one is an event, a hole marker or still in flight),
    so the first missing position is a hole: the stream ends there unless
    ``resolve_hole(first, last)`` declares it abandoned (and fences it), in which case the
    cursor is reopened after it. At the cursor's end, a head beyond the last position
    (``reserved_head()``) is a hole at the tail, treated the same way. Every round trip runs
    inside ``guard()`` (its time bound and error translation); the caller's code between
    batches never does.
    """
    while True:
        # positions start at 1: from the start, no filter (servers scan the index without
        # evaluating a predicate per document)
        cursor = open_cursor({"position": {"$gt": after}} if after > 0 else {})
        expected = after + 1
        hole: tuple[int, int] | None = None
        batch: list[StoredEvent] = []
        try:
            while hole is None:
                with guard(), fewer_collections():  # thousands of documents decoded at once
                    page = await fetch(cursor)
                if page is None:
                    break
                positions, events = page
                dense = dense_prefix(positions, expected)
                if dense < len(positions):
                    hole = (expected + dense, positions[dense] - 1)
                if dense:
                    after = expected + dense - 1
                    expected = after + 1
                    batch.extend([event for event in events[:dense] if event is not None])
                while len(batch) >= batch_size:
                    ready, batch = batch[:batch_size], batch[batch_size:]
                    yield ready
        finally:
            closing = cursor.close()
            if inspect.isawaitable(closing):
                await closing
        if batch:
            yield batch
        with guard():
            if hole is None:
                head = await reserved_head()
                if expected > head:
                    return  # caught up
                hole = (expected, head)
            if not await resolve_hole(*hole):
                return  # a hole that may still be filled: stop before it


def dense_prefix(positions: list[Any], expected: int) -> int:
    """How many of ``positions`` (sorted) continue the dense sequence from ``expected``."""
    if positions == list(range(expected, expected + len(positions))):  # the common case, at C speed
        return len(positions)
    for index, found in enumerate(positions):
        if found != expected + index:
            return index
    return len(positions)


class EventIterator:
    """The async iterator of an :class:`EventStream` (what awaiting the stream gives).

    Deliberately not awaitable itself, so code that awaits results until they stop being
    awaitable ends after one step.
    """

    def __init__(self, batches: AsyncIterator[list[StoredEvent]]) -> None:
        self._batches = batches
        self._pending: list[StoredEvent] = []
        self._next = 0

    def __aiter__(self) -> EventIterator:
        return self

    async def __anext__(self) -> StoredEvent:
        while self._next >= len(self._pending):
            self._pending = await self._batches.__anext__()
            self._next = 0
        event = self._pending[self._next]
        self._next += 1
        return event

    async def aclose(self) -> None:
        aclose = getattr(self._batches, "aclose", None)
        if aclose is not None:
            await aclose()


class EventStream:
    """Async iterable of stored events, streamed in batches.

    Both ``async for e in store.get_events_from_position(0)`` and the original library's
    ``async for e in await store.get_events_from_position(0)`` work: awaiting the stream
    gives its :class:`EventIterator`, which is not awaitable. ``aclose()`` (or
    ``contextlib.aclosing``) ends it early; ``batches()`` gives the events a list per
    round trip instead.
    """

    def __init__(self, batches: AsyncIterator[list[StoredEvent]]) -> None:
        self._batches = batches
        self._iterator = EventIterator(batches)

    def batches(self) -> AsyncIterator[list[StoredEvent]]:
        """The events as lists (one per round trip), for consumers that work per batch."""
        return self._batches

    def __await__(self) -> Generator[Any, None, EventIterator]:
        return self._ready().__await__()

    async def _ready(self) -> EventIterator:
        return self._iterator

    def __aiter__(self) -> EventIterator:
        return self._iterator

    async def __anext__(self) -> StoredEvent:
        return await self._iterator.__anext__()

    async def aclose(self) -> None:
        await self._iterator.aclose()
