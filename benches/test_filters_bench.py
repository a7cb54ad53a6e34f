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


def test_specification_intake_is_native_speed(require_native: None) -> None:
    """Specification.from_dict (validate + copy, one native walk) + compile of the 10-leaf
    spec, against the same intake through the pure twin (what from_dict cost before: a
    Python walk) + the native compile, and a plain copy.deepcopy of the tree (the floor of
    any Python walk over it), measured side by side."""
    from cqrs_ddd_persistence_mongo.specifications import Specification

    compile_native = _accel.native_function("compile_filter")
    pure_intake = _accel.pure_twin("normalize_spec")
    assert _accel.BACKEND == "native", "benchmarks measure the native backend"

    def native_path() -> Any:
        return compile_native(Specification.from_dict(SPEC).tree)

    def pure_path() -> Any:
        return compile_native(pure_intake(SPEC, None, False, Specification))

    assert native_path() == pure_path() == compile_native(SPEC)
    t_native = t_pure = t_copy = float("inf")
    for _ in range(100):
        t_native = min(t_native, best_time(native_path, number=100, repeat=1))
        t_pure = min(t_pure, best_time(pure_path, number=20, repeat=1))
        t_copy = min(t_copy, best_time(lambda: copy.deepcopy(SPEC), number=20, repeat=1))
    t_from_dict = best_time(lambda: Specification.from_dict(SPEC), number=100, repeat=50)
    report(
        f"specification intake (from_dict + compile, 10 leaves): native {t_native * 1e6:.2f} us "
        f"(from_dict alone {t_from_dict * 1e6:.2f} us), pure intake + native compile {t_pure * 1e6:.2f} us "
        f"-> {t_pure / t_native:.1f}x; copy.deepcopy of the tree {t_copy * 1e6:.2f} us "
        f"({t_native / t_copy:.2f}x of it; goal <= 8 us absolute)"
    )
    assert t_pure / t_native >= 2.0, "native intake + compile should be >= 2x faster than the pure intake + compile"
    assert t_native <= 0.5 * t_copy, "native intake + compile should cost at most half a Python deepcopy of the tree"
