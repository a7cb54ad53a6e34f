"""OutboxPublisher: the original library's publishing loop, with leases, retries and a graceful stop."""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .._tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class OutboxPublisher:
    """Claims due messages, hands each to ``publish`` and records the outcome.

    Several publishers may run at once (any process): claiming leases each message to
    one of them. Delivery is exactly once while nothing fails and at least once when a
    publisher dies (its lease expires and another one publishes the message again), so
    consumers should be idempotent on ``message_id``. A message whose ``publish`` raises
    is retried with backoff and ends as a dead letter (see MongoOutboxStorage).

    ``storage`` needs ``claim_batch``, ``mark_published``, ``mark_failed`` and ``release``
    (MongoOutboxStorage has them).
    """

    def __init__(
        self,
        storage: Any,
        publish: Callable[[Any], Awaitable[Any]],
        batch_size: int = 100,
        poll_interval: float = 1.0,
        *,
        worker_id: str | None = None,
        lease: timedelta = timedelta(seconds=30),
    ) -> None:
        self.storage = storage
        self.publish = publish
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lease = lease
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Claim one batch and publish it; returns how many messages were claimed.

        Published messages are marked in one round trip at the end of the batch; a crash
        before that means they are published again after the lease (at least once).
        When ``stop()`` is requested mid-batch, the unpublished rest is released at once.
        """
        batch = await self.storage.claim_batch(self.worker_id, self.batch_size, lease=self.lease)
        published: list[Any] = []
        try:
            for index, message in enumerate(batch):
                if self._stopping.is_set():
                    await self.storage.release([m.message_id for m in batch[index:]], self.worker_id)
                    break
                try:
                    await self.publish(message)
                except Exception as exc:  # the broker's failure is the message's failure
                    logger.warning("publishing outbox message %r failed: %s", message.message_id, exc)
                    await self.storage.mark_failed(message.message_id, f"{type(exc).__name__}: {exc}")
                else:
                    published.append(message.message_id)
        finally:
            if published:
                await self.storage.mark_published(published)
        return len(batch)

    async def run(self) -> None:
        """Publish until :meth:`stop`; sleeps ``poll_interval`` when nothing is due."""
        while not self._stopping.is_set():
            try:
                claimed = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # storage trouble: wait and try again, do not die
                logger.error("outbox publisher %s: %s", self.worker_id, exc)
                claimed = 0
            if not claimed:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.poll_interval)
                except asyncio.TimeoutError:
                    pass

    def start(self) -> asyncio.Task[None]:
        """Run in a background task (returned)."""
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self.run())
        return self._task

    async def stop(self, timeout: float | None = None) -> None:
        """Finish the message in hand, release the rest of the batch and return.

        After ``timeout`` seconds the loop is cancelled instead (its leases then expire).
        """
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            await cancel_and_wait(task)

    async def __aenter__(self) -> OutboxPublisher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
