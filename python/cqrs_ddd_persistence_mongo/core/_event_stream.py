"""Helpers of the event store's readers: the gap clock and the awaitable event stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Generator

from ..domain.events import StoredEvent


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


class EventStream:
    """Async iterator of stored events, streamed in batches.

    Both ``async for e in store.get_events_from_position(0)`` and the seed's
    ``async for e in await store.get_events_from_position(0)`` work: awaiting the stream
    returns the stream itself. ``aclose()`` (or ``contextlib.aclosing``) ends it early.
    """

    def __init__(self, source: AsyncIterator[StoredEvent]) -> None:
        self._source = source

    def __await__(self) -> Generator[Any, None, EventStream]:
        return self._ready().__await__()

    async def _ready(self) -> EventStream:
        return self

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StoredEvent:
        return await self._source.__anext__()

    async def aclose(self) -> None:
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            await aclose()
