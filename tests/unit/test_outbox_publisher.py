"""OutboxPublisher's loop against an in-memory storage double: it survives storage
errors, sleeps only when nothing was due, and stops promptly."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from cqrs_ddd_persistence_mongo.core import OutboxPublisher
from cqrs_ddd_persistence_mongo.domain import OutboxMessage


class FlakyStorage:
    """Fails the first claim, then hands out its messages once."""

    def __init__(self, messages: list[OutboxMessage]) -> None:
        self.messages = messages
        self.claims = 0
        self.published: list[Any] = []

    async def claim_batch(self, worker_id: str, limit: int, lease: timedelta) -> list[OutboxMessage]:
        self.claims += 1
        if self.claims == 1:
            raise ConnectionError("server unreachable")
        batch, self.messages = self.messages[:limit], self.messages[limit:]
        return batch

    async def mark_published(self, ids: list[Any]) -> int:
        self.published.extend(ids)
        return len(ids)

    async def mark_failed(self, message_id: Any, error: str) -> str:
        raise AssertionError("nothing fails here")

    async def release(self, ids: list[Any], worker_id: str) -> int:
        return 0


async def test_publisher_survives_storage_errors_and_stops() -> None:
    storage = FlakyStorage([OutboxMessage(message_id=str(i), event_type="E") for i in range(5)])
    seen: list[str] = []

    async def publish(message: OutboxMessage) -> None:
        seen.append(message.message_id)

    publisher = OutboxPublisher(storage, publish, batch_size=2, poll_interval=0.01)
    async with publisher:
        for _ in range(200):
            if len(storage.published) == 5:
                break
            await asyncio.sleep(0.01)
    assert seen == ["0", "1", "2", "3", "4"] and storage.published == seen
    assert storage.claims >= 4  # failed once, then kept going
    await publisher.stop()  # stopping twice is harmless


async def test_stop_before_the_loop_ran() -> None:
    publisher = OutboxPublisher(FlakyStorage([]), lambda m: asyncio.sleep(0), poll_interval=10)
    task = publisher.start()
    await asyncio.wait_for(publisher.stop(), 1)
    assert task.done()
