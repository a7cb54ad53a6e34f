"""The gap-safe reader's pure parts: where the dense run of positions in a fetched page ends."""

from __future__ import annotations

from hypothesis import given, strategies as st

from cqrs_ddd_persistence_mongo.core._event_stream import dense_prefix


def page(*positions: int) -> list[int]:
    return list(positions)


def test_a_dense_page_is_taken_whole() -> None:
    assert dense_prefix(page(5, 6, 7), 5) == 3


def test_the_dense_run_ends_at_the_first_missing_position() -> None:
    assert dense_prefix(page(5, 6, 8, 9), 5) == 2
    assert dense_prefix(page(6, 7), 5) == 0  # position 5 itself is missing


def test_a_repeated_position_ends_the_run() -> None:
    assert dense_prefix(page(5, 6, 6, 7), 5) == 2


@given(st.integers(0, 1000), st.lists(st.integers(0, 3), max_size=40))
def test_matches_a_position_by_position_walk(expected: int, steps: list[int]) -> None:
    positions, current = [], expected
    for step in steps:
        current += step
        positions.append(current)
    walked = 0
    while walked < len(positions) and positions[walked] == expected + walked:
        walked += 1
    assert dense_prefix(page(*positions), expected) == walked
