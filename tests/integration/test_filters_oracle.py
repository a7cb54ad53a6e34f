"""Correctness oracle: compiled filters run on the real-wire server select exactly the
documents a pure-Python evaluation of the same specification selects (every operator
except geometry and text, which have their own example tests)."""

from __future__ import annotations

import random
from typing import Any, Callable

import pytest

from cqrs_ddd_persistence_mongo import _accel

from ._oracle import FIXED_LEAVES, LEAF_OPS, evaluate, random_doc, random_spec

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
        for leaf in FIXED_LEAVES:
            await _check(collection, docs, leaf)
            await _check(collection, docs, {"op": "not", "conditions": [leaf]})
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


def _point(lng: float, lat: float) -> dict[str, Any]:
    return {"type": "Point", "coordinates": [lng, lat]}


@pytest.mark.integration
async def test_original_geometry_forms_select_what_the_documented_forms_select(real_connection: Any) -> None:
    """``{'$geometry': g}``, ``[[lng, lat], radians]`` and ``{'coordinates', 'maxDistance'}``
    select on the server exactly what the bare GeoJSON / ``{'geometry', 'distance'}`` forms do."""
    collection = real_connection.db()["places"]
    await collection.create_index([("loc", "2dsphere")])
    spots = [(10.75, 59.91), (5.32, 60.39), (10.39, 63.43), (18.95, 69.65), (12.57, 55.68), (-0.13, 51.51)]
    await collection.insert_many([{"_id": i, "loc": _point(*p)} for i, p in enumerate(spots)])
    box = {"type": "Polygon", "coordinates": [[[4, 57], [13, 57], [13, 65], [4, 65], [4, 57]]]}
    oslo, meters = [10.75, 59.91], 450_000
    radians = meters / 6378100.0
    cases = [
        ({"attr": "loc", "op": "within", "val": box}, {"attr": "loc", "op": "within", "val": {"$geometry": box}}, [0, 1, 2]),
        (
            {"attr": "loc", "op": "intersects", "val": box},
            {"attr": "loc", "op": "intersects", "val": {"$geometry": box}},
            [0, 1, 2],
        ),
        (
            {"attr": "loc", "op": "dwithin", "val": {"geometry": _point(*oslo), "distance": meters}},
            {"attr": "loc", "op": "dwithin", "val": [oslo, radians]},
            [0, 1, 2],
        ),
        (
            {"attr": "loc", "op": "distance_lt", "val": {"geometry": _point(*oslo), "distance": meters}},
            {"attr": "loc", "op": "distance_lt", "val": {"type": "Point", "coordinates": oslo, "maxDistance": meters}},
            [0, 1, 2],
        ),
        (
            {"attr": "loc", "op": "near", "val": {"geometry": _point(*oslo), "max_distance": meters}},
            {"attr": "loc", "op": "near", "val": {"coordinates": oslo, "maxDistance": meters}},
            [0, 1, 2],
        ),
    ]
    for documented, original, expected in cases:
        for name, compile_filter in _compilers():
            got = [sorted([d["_id"] async for d in collection.find(compile_filter(spec))]) for spec in (documented, original)]
            assert got == [expected, expected], (name, original)
