"""validate_keys: native vs pure vs a naive recursive walker, same run."""

from __future__ import annotations

from typing import Any

from cqrs_ddd_persistence_mongo import _accel

from .conftest import best_time, report

DOC = {
    "customer": {"id": "c1", "name": "Ann", "address": {"city": "Oslo", "zip": "0150"}},
    "items": [{"sku": f"s{i}", "qty": i, "price": {"amount": "9.90", "ccy": "EUR"}} for i in range(20)],
    "tags": ["a", "b", "c"],
    "meta": {f"k{i}": i for i in range(20)},
}


def naive(value: Any) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or k.startswith("$") or "." in k or "\0" in k:
                raise ValueError(k)
            naive(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            naive(v)


def test_validate_keys_native_beats_pure(benchmark: Any, require_native: None) -> None:
    native = _accel.native_function("validate_keys")
    pure = _accel.pure_twin("validate_keys")
    benchmark(native, DOC)
    t_native = best_time(lambda: native(DOC), number=2000)
    t_pure = best_time(lambda: pure(DOC), number=300)
    t_naive = best_time(lambda: naive(DOC), number=300)
    report(
        f"validate_keys: native {t_native * 1e6:.1f} us, pure {t_pure * 1e6:.1f} us, "
        f"naive {t_naive * 1e6:.1f} us -> native/pure speed-up {t_pure / t_native:.1f}x"
    )
    assert t_pure / t_native >= 3, "native key validation should be >= 3x faster than pure"
