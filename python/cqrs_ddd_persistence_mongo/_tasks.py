"""Ending the helper tasks the library starts beside an operation (a prefetch, a shadow
preparation, a count, a change-stream doorbell, a publisher loop)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")

#: tasks the library started for a caller who may not keep them (an un-awaited close):
#: the event loop only holds weak references to tasks, so these are held here until done
_UNTIL_DONE: set[asyncio.Task[Any]] = set()


def keep_until_done(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """Hold a strong reference to ``task`` until it ends, so dropping the caller's reference
    cannot let it be garbage-collected halfway; returns ``task``."""
    _UNTIL_DONE.add(task)
    task.add_done_callback(_UNTIL_DONE.discard)
    return task


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` if it is still running and wait until it has ended, so nothing of
    it runs on after the caller returns. What it returned or raised is dropped: the caller
    is ending for its own reason. If the caller is cancelled while it waits, the task is
    cancelled again and the caller's cancellation propagates once the task has ended."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
