"""EntityStream: what ``MongoRepository.list_all()`` returns.

One object serves both ways of reading a result set:

* ``async for entity in repo.list_all():`` streams, reading ``batch_size`` documents per
  round trip and holding only one batch in memory;
* ``await repo.list_all(ids)`` / ``await stream.to_list(limit)`` returns a list.

Awaiting a stream that has no natural bound (no ids) is capped: it returns the whole
collection only when it holds at most ``max_items`` entities and otherwise raises
:class:`ResultTooLarge` telling the caller to stream or pass a limit, so a list that works
in development never turns into an out-of-memory in production, and nothing is silently cut.
"""

from __future__ import annotations

import inspect
from contextlib import aclosing
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator
from typing import Any, Generic, TypeVar

from ..exceptions import MongoQueryError, ResultTooLarge

T = TypeVar("T")

BatchSource = Callable[[int], AsyncGenerator[list[dict[str, Any]], None]]


async def iterate_cursor_batches(cursor: Any, batch_size: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Group an async cursor's documents into lists of at most ``batch_size``.

    ``async for`` over the cursor is the one iteration every supported driver implements
    identically (mongomock-motor's ``to_list(n)`` ignores ``n``). The cursor is closed when
    the consumer stops early.
    """
    batch: list[dict[str, Any]] = []
    try:
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        closing = cursor.close()
        if inspect.isawaitable(closing):
            await closing


class EntityStream(Generic[T]):
    """Entities read lazily in batches; async-iterable and awaitable (see module doc)."""

    def __init__(
        self,
        source: BatchSource,
        convert: Callable[[dict[str, Any]], T],
        *,
        batch_size: int,
        max_items: int | None,
        what: str = "entities",
        too_large: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise MongoQueryError(f"batch_size must be >= 1, not {batch_size!r}")
        self._source = source
        self._convert = convert
        self.batch_size = batch_size
        self.max_items = max_items
        self._what = what
        self._too_large = too_large

    async def batches(self) -> AsyncIterator[list[T]]:
        """Lists of at most ``batch_size`` entities, one per round trip."""
        async for docs in self._source(self.batch_size):
            yield [self._convert(doc) for doc in docs]

    async def _iterate(self) -> AsyncIterator[T]:
        async for docs in self._source(self.batch_size):
            for doc in docs:
                yield self._convert(doc)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    def stream(self, batch_size: int | None = None) -> AsyncIterator[T]:
        """Iterate with another batch size: ``async for e in repo.list_all().stream(100)``."""
        if batch_size is None:
            return self._iterate()
        return EntityStream(
            self._source, self._convert, batch_size=batch_size, max_items=self.max_items, what=self._what,
            too_large=self._too_large,
        )._iterate()

    async def to_list(self, limit: int | None = None) -> list[T]:
        """At most ``limit`` entities; without a limit, all of them up to ``max_items``.

        Raises :class:`ResultTooLarge` (before converting anything further) when there are
        more than ``max_items`` and no limit was given.
        """
        if limit is not None and limit < 0:
            raise MongoQueryError(f"limit must be >= 0, not {limit!r}")
        cap = limit if limit is not None else self.max_items
        out: list[T] = []
        if cap == 0:
            return out
        size = min(self.batch_size, cap) if cap is not None else self.batch_size
        async with aclosing(self._source(size)) as source:
            async for docs in source:
                for doc in docs:
                    if cap is not None and len(out) >= cap:
                        if limit is None:
                            raise ResultTooLarge(self._too_large or (
                                f"more than {self.max_items} {self._what}: iterate with "
                                "'async for entity in repo.list_all()' (streams in batches) or "
                                "pass a limit: 'await repo.list_all().to_list(limit=...)'"
                            ))
                        return out
                    out.append(self._convert(doc))
                if limit is not None and len(out) >= limit:
                    return out
        return out

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self.to_list().__await__()
