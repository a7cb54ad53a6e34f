"""Every walk over user data stops at MongoDB's 100 levels, with the same library error in
both backends: specification trees (intake and compile), json_contains values, condition
values, documents both ways, keys and bulk statements. 50,000 levels (a stack overflow
before the limits existed) run in a child process, so a crash fails the test instead of
killing the run."""

from __future__ import annotations

import cqrs_ddd_persistence_mongo
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo.exceptions import InvalidSpecification
from cqrs_ddd_persistence_mongo.specifications import Specification

from .conftest import both, outcome

PACKAGE_PARENT = str(Path(cqrs_ddd_persistence_mongo.__file__).resolve().parents[1])  # where the tested package is imported from (site-packages in CI)

LEAF = {"attr": "a", "op": "eq", "val": 1}
TOO_DEEP = "nests deeper than 100 levels (MongoDB's limit)"


def not_chain(depth: int) -> dict[str, Any]:
    """A tree ``depth`` nodes deep: ``depth - 1`` nested ``not`` around one leaf."""
    tree: dict[str, Any] = dict(LEAF)
    for _ in range(depth - 1):
        tree = {"op": "not", "conditions": [tree]}
    return tree


def and_chain(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = dict(LEAF)
    for _ in range(depth - 1):
        tree = {"op": "and", "conditions": [{"attr": "b", "op": "gt", "val": 0}, tree]}
    return tree


def nested_value(depth: int) -> dict[str, Any]:
    """A dict ``depth`` levels deep."""
    value: dict[str, Any] = {"x": 1}
    for _ in range(depth - 1):
        value = {"k": value}
    return value


def nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def conditions_path(levels: int, index: int = 0) -> str:
    """The path of the first node ``levels`` below the root, each group's child ``index``
    leading down (the first child of the deepest group is the node past the limit)."""
    return ".".join([f"conditions[{index}]"] * (levels - 1) + ["conditions[0]"])


@pytest.mark.parametrize("name", ["compile_filter", "normalize_spec"])
@pytest.mark.parametrize("chain", [not_chain, and_chain])
def test_tree_depth_limit_agrees(name: str, chain: Any) -> None:
    native, pure = both(name)
    for depth in (99, 100):
        result = outcome(native, chain(depth))
        assert result[0] == "ok"
        assert result == outcome(pure, chain(depth))
    result = outcome(native, chain(101))
    assert result == outcome(pure, chain(101))
    kind, (cls, message) = result
    index = 1 if chain is and_chain else 0
    assert (kind, cls) == ("error", "InvalidSpecification")
    assert message == (
        f"invalid specification at '{conditions_path(100, index)}': the specification {TOO_DEEP}; flatten it"
    )


def test_json_contains_value_depth_limit_agrees() -> None:
    native, pure = both("compile_filter")
    for depth in (99, 100, 101):
        spec = {"attr": "meta", "op": "json_contains", "val": nested_value(depth)}
        result = outcome(native, spec)
        assert result == outcome(pure, spec)
        assert (result[0] == "ok") == (depth <= 100)
    spec = {"attr": "meta", "op": "json_contains", "val": nested_value(101)}
    message = outcome(native, spec)[1][1]
    assert message == (
        "invalid specification at '<root>': operator 'json_contains' value "
        f"{TOO_DEEP} at '{'meta' + '.k' * 100}'"
    )


@pytest.mark.parametrize("make", [nested_value, nested_list])
def test_condition_value_depth_limit_agrees(make: Any) -> None:
    native, pure = both("normalize_spec")
    for depth in (99, 100, 101):
        tree = {"op": "and", "conditions": [{"attr": "a", "op": "eq", "val": make(depth)}]}
        result = outcome(native, tree)
        assert result == outcome(pure, tree)
        assert (result[0] == "ok") == (depth <= 100), depth
    assert outcome(native, {"attr": "a", "op": "eq", "val": make(101)})[1] == (
        "InvalidSpecification",
        f"invalid specification at '<root>': the value {TOO_DEEP}; flatten it",
    )


def test_specification_composition_is_depth_limited() -> None:
    spec = Specification(not_chain(100))
    with pytest.raises(InvalidSpecification, match="nests deeper than 100 levels"):
        ~spec
    with pytest.raises(InvalidSpecification, match="nests deeper than 100 levels"):
        Specification.leaf("a", "eq", nested_list(101))


_CHILD = r"""
import json, sys
from cqrs_ddd_persistence_mongo import _accel
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder
from cqrs_ddd_persistence_mongo.specifications import Specification
import enum
sys.setrecursionlimit(1000)
N = 50_000
class Loop(enum.Enum):
    A = 1
Loop.A._value_ = Loop.A
def tree(op):
    t = {"attr": "a", "op": "eq", "val": 1}
    for _ in range(N):
        t = {"op": op, "conditions": [t]}
    return t
def doc():
    v = {"x": 1}
    for _ in range(N):
        v = {"k": v}
    return v
def deep_list():
    v = 1
    for _ in range(N):
        v = [v]
    return v
CASES = {
    "build_match(not)": lambda: MongoQueryBuilder().build_match(tree("not")),
    "build_match(and)": lambda: MongoQueryBuilder().build_match(tree("and")),
    "json_contains": lambda: _accel.compile_filter({"attr": "m", "op": "json_contains", "val": doc()}),
    "Specification.from_dict": lambda: Specification.from_dict(tree("or")),
    "Specification.leaf": lambda: Specification.leaf("a", "in", deep_list()),
    "validate_keys": lambda: _accel.validate_keys(doc()),
    "map_to_doc": lambda: _accel.map_to_doc({"a": doc()}, "id", None, False),
    "map_from_doc": lambda: _accel.map_from_doc({"a": deep_list()}, "id", None, False),
    "build_upserts": lambda: _accel.build_upserts([{"id": 1, "a": doc()}]),
    "canonical_id": lambda: _accel.canonical_id(doc()),
    "map_to_doc(enum member valued itself)": lambda: _accel.map_to_doc({"a": Loop.A}, "id", None, False),
    "build_match(size of a deep value)": lambda: MongoQueryBuilder().build_match({"attr": "a", "op": "size", "val": doc()}),
    "build_sort(deep field)": lambda: MongoQueryBuilder().build_sort([[deep_list()]]),
}
out = {}
for name, case in CASES.items():
    try:
        case()
        out[name] = "no error"
    except Exception as exc:
        limited = "deeper than 100 levels" in str(exc) or "<unrepresentable" in str(exc)
        out[name] = type(exc).__name__ + ("" if limited else ": " + str(exc)[:200])
print(json.dumps({"backend": _accel.BACKEND, "results": out}))
"""


@pytest.mark.parametrize("pure", ["0", "1"])
def test_fifty_thousand_levels_raise_library_errors_in_both_backends(pure: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT, "CQRS_DDD_MONGO_PURE": pure}
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, f"child died with {done.returncode}: {done.stderr[-2000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if pure == "0" and report["backend"] != "native":
        pytest.skip("native module not built")
    spec_cases = {
        "build_match(not)", "build_match(and)", "json_contains", "Specification.from_dict", "Specification.leaf",
        "build_match(size of a deep value)", "build_sort(deep field)",
    }
    for name, result in report["results"].items():
        expected = "InvalidSpecification" if name in spec_cases else "InvalidDocument"
        assert result == expected, f"{report['backend']} {name}: {result}"
