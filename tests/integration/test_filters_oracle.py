"""Correctness oracle: compiled filters run on the real-wire server select exactly the
documents a pure-Python evaluation of the same specification selects (every operator
except geometry and text, which have their own example tests)."""

from __future__ import annotations

import random
from typing import Any, Callable

import pytest

from cqrs_ddd_persistence_mongo import _accel

from ._oracle import LEAF_OPS, evaluate, random_doc, random_spec

DATASETS = 3
SPECS_PER_DATASET = 100
DOCS = 40


def _compilers() -> list[tuple[str, Callable[..., Any]]]:
    out = [("pure", _accel.pure_twin("compile_filter"))]
    native = _accel.native_function("compile_filter")
    if native is not None:
        out.append(("native", native))
    return out


async def _check(collection: Any, docs: list[dict[str, Any]], spec: dict[str, Any]) -> None:
    expected = sorted(d["_id"] for d in docs if evaluate(spec, d))
    for name, compile_filter in _compilers():
        compiled = compile_filter(spec)
        got = sorted([d["_id"] async for d in collection.find(compiled, {"_id": 1})])
        assert got == expected, f"{name} backend: spec {spec!r} compiled to {compiled!r}"


@pytest.mark.integration
async def test_random_specifications_agree_with_oracle(pymongo_connection: Any) -> None:
    rng = random.Random(20261122)
    seen_ops: set[str] = set()
    for round_ in range(DATASETS):
        collection = pymongo_connection.db()[f"oracle_{round_}"]
        docs = [random_doc(rng, i) for i in range(DOCS)]
        await collection.insert_many(docs)
        for _ in range(SPECS_PER_DATASET):
            spec = random_spec(rng, rng.randint(0, 4))
            await _check(collection, docs, spec)
        # every leaf operator at least once per dataset, on its own and negated
        for op in LEAF_OPS:
            leaf = None
            while leaf is None or leaf["op"] != op:
                leaf = random_spec(rng, 0)
            seen_ops.add(op)
            await _check(collection, docs, leaf)
            await _check(collection, docs, {"op": "not", "conditions": [leaf]})
    assert seen_ops == set(LEAF_OPS)


@pytest.mark.integration
async def test_group_semantics_on_server(real_connection: Any) -> None:
    """Empty and = everything, empty or = nothing, nested ands flatten, not = complement."""
    collection = real_connection.db()["groups"]
    docs = [{"_id": i, "n": i} for i in range(5)] + [{"_id": 9}]
    await collection.insert_many(docs)
    leaf = {"attr": "n", "op": "gte", "val": 3}
    cases = [
        ({"op": "and", "conditions": []}, [0, 1, 2, 3, 4, 9]),
        ({"op": "or", "conditions": []}, []),
        ({"op": "not", "conditions": [{"op": "or", "conditions": []}]}, [0, 1, 2, 3, 4, 9]),
        ({"op": "not", "conditions": [leaf]}, [0, 1, 2, 9]),
        ({"op": "and", "conditions": [{"op": "and", "conditions": [leaf, {"attr": "n", "op": "lt", "val": 4}]}]}, [3]),
        ({"op": "or", "conditions": [{"op": "and", "conditions": []}, leaf]}, [0, 1, 2, 3, 4, 9]),
    ]
    for spec, expected in cases:
        compiled = _accel.compile_filter(spec)
        got = sorted([d["_id"] async for d in collection.find(compiled)])
        assert got == expected, (spec, compiled)
