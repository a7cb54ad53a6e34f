"""cancel_and_wait: the helper tasks of an operation never outlive it."""

from __future__ import annotations

import asyncio
import gc

import pytest

from cqrs_ddd_persistence_mongo._tasks import cancel_and_wait


def test_a_running_task_has_ended_when_it_returns() -> None:
    async def main() -> None:
        steps: list[str] = []

        async def helper() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                await asyncio.sleep(0)  # cleanup that itself awaits
                steps.append("cleaned up")

        task = asyncio.ensure_future(helper())
        await asyncio.sleep(0)
        await cancel_and_wait(task)
        assert task.cancelled() and steps == ["cleaned up"]

    asyncio.run(main())


def test_the_error_of_a_failed_task_is_dropped_without_a_report() -> None:
    reports: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: reports.append(context))

        async def helper() -> None:
            raise ValueError("lost server")

        task: asyncio.Future[None] | None = asyncio.ensure_future(helper())
        while not task.done():
            await asyncio.sleep(0)
        await cancel_and_wait(task)  # does not raise: the caller ends for its own reason
        await cancel_and_wait(None)
        del task
        gc.collect()  # an unseen error would be reported now: "Task exception was never retrieved"

    asyncio.run(main())
    assert reports == []


def test_the_callers_cancellation_propagates_once_the_task_has_ended() -> None:
    async def main() -> None:
        async def stubborn() -> None:
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                await asyncio.sleep(60)  # slow to end: only a second cancellation stops it

        task = asyncio.ensure_future(stubborn())
        await asyncio.sleep(0)
        caller = asyncio.ensure_future(cancel_and_wait(task))
        for _ in range(3):
            await asyncio.sleep(0)  # the first cancellation reaches the task
        assert not caller.done()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller  # not swallowed
        assert task.done()

    asyncio.run(asyncio.wait_for(main(), 10))
