"""Ending the helper tasks the library starts beside an operation (a prefetch, a shadow
preparation, a count, a change-stream doorbell, a publisher loop)."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Future[Any] | None) -> None:
    """Cancel ``task`` if it is still running and wait until it has ended, so nothing of
    it runs on after the caller returns. What it returned or raised is dropped: the caller
    is ending for its own reason. If the caller is cancelled while it waits, the task is
    cancelled again and the caller's cancellation propagates once the task has ended."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
