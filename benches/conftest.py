"""Shared benchmark helpers. Gates compare implementations measured in the same run
(ratios), never absolute times: these machines are noisy."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest

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
