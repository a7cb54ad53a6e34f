"""compile_filter: native vs pure on a 10-leaf specification (and/or/not, 6 operator
families), same run; plus the effect of caching compiled filters by specification."""

from __future__ import annotations

import copy
from typing import Any

from cqrs_ddd_persistence_mongo import _accel

from .conftest import best_time, report

POINT = {"type": "Point", "coordinates": [10.75, 59.91]}
SPEC: dict[str, Any] = {
    "op": "and",
    "conditions": [
        {"attr": "status", "op": "eq", "val": "active"},
        {"attr": "total", "op": "gte", "val": 100},
        {
            "op": "or",
            "conditions": [
                {"attr": "customer.name", "op": "icontains", "val": "smith"},
                {"attr": "customer.email", "op": "endswith", "val": "@example.com"},
                {"attr": "tags", "op": "in", "val": ["vip", "gold", "silver"]},
            ],
        },
        {"op": "not", "conditions": [{"attr": "deleted_at", "op": "is_not_null"}]},
        {"attr": "total", "op": "between", "val": [100, 5000]},
        {"attr": "metadata", "op": "json_has_key", "val": "tier"},
        {"attr": "metadata", "op": "json_contains", "val": {"tier": "gold"}},
        {"attr": "shop.location", "op": "dwithin", "val": {"geometry": POINT, "distance": 5000}},
    ],
}


def _leaves(node: dict[str, Any]) -> int:
    return sum(_leaves(c) for c in node["conditions"]) if "conditions" in node else 1


def test_compile_filter_native_beats_pure(benchmark: Any, require_native: None) -> None:
    assert _leaves(SPEC) == 10
    native = _accel.native_function("compile_filter")
    pure = _accel.pure_twin("compile_filter")
    assert native(SPEC) == pure(SPEC)
    benchmark(native, SPEC)
    # interleaved rounds: both sides see the same machine load (2 shared cores)
    t_native = t_pure = float("inf")
    # short rounds (~1 ms) are rarely interrupted by the scheduler; keep the best of many
    for _ in range(200):
        t_native = min(t_native, best_time(lambda: native(SPEC), number=200, repeat=1))
        t_pure = min(t_pure, best_time(lambda: pure(SPEC), number=30, repeat=1))
    # a cache keyed by the specification would have to deep-copy its result (callers may
    # mutate filters); that copy is the cost of a cache hit.
    cached = native(SPEC)
    t_cache_hit = best_time(lambda: copy.deepcopy(cached), number=30, repeat=50)
    report(
        f"compile_filter (10 leaves, 6 families): native {t_native * 1e6:.2f} us, pure {t_pure * 1e6:.2f} us "
        f"-> speed-up {t_pure / t_native:.1f}x; a cache hit (deepcopy of the result) {t_cache_hit * 1e6:.2f} us"
    )
    assert t_pure / t_native >= 5, "native compilation should be >= 5x faster than pure"
