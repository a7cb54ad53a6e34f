"""Shared benchmark helpers. Gates compare implementations measured in the same run
(ratios), never absolute times: these machines are noisy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from tests._servers import server_under_test

_REPORT: list[str] = []


def best_time(fn: Callable[[], Any], *, number: int = 1, repeat: int = 5) -> float:
    """Best (minimum) seconds per call of ``fn`` over ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def best_times(*fns: Callable[[], Any], number: int = 1, repeat: int = 5) -> list[float]:
    """Best seconds per call of each of ``fns``, their rounds of ``number`` calls taken in
    turn (a slow moment of a shared machine hits every function alike, not one of them)."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for index, fn in enumerate(fns):
            started = time.perf_counter()
            for _ in range(number):
                fn()
            best[index] = min(best[index], (time.perf_counter() - started) / number)
    return best


async def best_time_async(fn: Callable[[], Any], *, number: int = 1, repeat: int = 3) -> float:
    """Like :func:`best_time` for a coroutine function."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(number):
            await fn()
        best = min(best, (time.perf_counter() - started) / number)
    return best


def report(line: str) -> None:
    """Record a line for the summary printed at the end of the benchmark run."""
    _REPORT.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _REPORT:
        terminalreporter.section("benchmark gates")
        for line in _REPORT:
            terminalreporter.write_line(line)


@pytest.fixture
def require_native() -> None:
    from cqrs_ddd_persistence_mongo import _accel

    if _accel.native_function("validate_keys") is None:
        pytest.fail("benchmarks compare native with pure: build the native module first")


async def best_pair(a: Callable[[], Any], b: Callable[[], Any], number: int, repeat: int = 5) -> tuple[float, float]:
    """Seconds per call of coroutine functions ``a`` and ``b``: calls alternate (a, b, a, b, ...)
    so load from other processes hits both alike, and the lower quartile of
    ``number * repeat`` timed calls of each is kept (robust against a shared machine's spikes)."""
    loop = asyncio.get_running_loop()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(number * repeat):
        for k, fn in enumerate((a, b)):
            started = loop.time()
            await fn()
            times[k].append(loop.time() - started)
    quartile = [sorted(t)[len(t) // 4] for t in times]
    return quartile[0], quartile[1]


@pytest.fixture(scope="module")
def mongo_url() -> Iterator[str]:
    """MONGODB_URL, else a fresh server per bench module, chosen like the tests' (the
    embedded one by default, ``CQRS_DDD_MONGO_TEST_SERVER=secantus-rs`` for the Rust one):
    the embedded server slows as it fills, so modules do not share one, and it runs in its
    own process so that client and server do not compete for one interpreter."""
    with server_under_test(separate_process=True) as url:
        yield url


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop per module for synchronous benchmark bodies."""
    event_loop = asyncio.new_event_loop()
    yield event_loop
    event_loop.close()
