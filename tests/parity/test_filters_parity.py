"""compile_filter / compile_sort / compile_projection: native and pure agree on generated
trees (depth up to 6, every operator, valid and invalid values), errors and messages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from bson.regex import Regex
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_ddd_persistence_mongo.specifications import ALIASES, BUILTIN_OPERATORS

from integration._oracle import random_leaf
from .conftest import both, outcome

# nested one_of levels make a large strategy repr; harmless
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

OPS = sorted(BUILTIN_OPERATORS) + sorted(ALIASES) + [
    "custom_op", "bad_custom", "and_custom", "or_custom", "empty_custom", "bogus", "$where", "AND",
]
CUSTOM = {
    "custom_op": lambda field, val: {field: {"$exists": bool(val)}},
    "bad_custom": lambda field, val: 5,
    # custom results that look like groups must be flattened the same way by both backends
    "and_custom": lambda field, val: {"$and": [{field: {"$eq": 1}}, {field: {"$ne": 2}}]},
    "or_custom": lambda field, val: {"$or": [{field: {"$eq": 1}}]},
    "empty_custom": lambda field, val: {},
}

POINT = {"type": "Point", "coordinates": [10.5, 20]}
POLYGON = {"type": "Polygon", "coordinates": [[[0, 0], [30, 0], [30, 30], [0, 30], [0, 0]]]}
SPECIAL_VALUES = [
    POINT,
    POLYGON,
    {"type": "Polygon", "coordinates": "x"},
    {"type": "Circle", "coordinates": []},
    {"type": "Point", "coordinates": [1, 2], "$where": "x"},
    {"geometry": POINT, "distance": 1500},
    {"geometry": POINT, "distance": -1},
    {"geometry": POINT, "distance": True},
    {"geometry": POINT, "distance": 10**400},
    {"geometry": POINT, "max_distance": float("nan")},
    {"geometry": POINT},
    {"geometry": POINT, "max_distance": 10, "min_distance": 2.5},
    {"geometry": POLYGON, "max_distance": 10},
    {"distance": 3},
    {"$gt": 1},
    {"k": 1, "sub": {"x": [1, 2]}},
    {"a.b": 1},
    {"": 1},
    {"k": {}},
    {"k": [{"x": 1}]},
    [1, 2],
    [None, 1],
    ["k", "w"],
    ["k", "$bad"],
    [],
    "(unclosed",
    "^a.*[b-c]\\z",
    '  -neg "quoted phrase" words ',
    "a%b_c\\%",
    "$.sub.x",
    "sub..x",
    re.compile("a"),
    Regex("b"),
    [re.compile("a")],
    [Regex("b"), 1],
    float("inf"),
    10**400,
    # the original library's forms and what stays refused in them
    "single",
    {"$geometry": POINT},
    {"$geometry": POLYGON},
    {"$geometry": POINT, "x": 1},
    {"$geometry": {"$geometry": POINT}},
    {"$geometry": 5},
    [[10.5, 20], 0.1],
    [[10.5, "x"], 1],
    [[1], 2],
    [[1, 2], -1],
    [[1, 2], 3, 4],
    [(1, 2), 10**400],
    {"coordinates": [1, 2], "maxDistance": 100},
    {"coordinates": [1, 2], "maxDistance": 10, "minDistance": 1, "type": "Point"},
    {"coordinates": [1, 2]},
    {"coordinates": "x", "maxDistance": 1},
    {"coordinates": [1, 2], "type": "Polygon", "maxDistance": 1},
    {"coordinates": [1, 2], "maxDistance": 1, "$where": 1},
    {"geometry": {"$geometry": POINT}, "distance": 5},
    {"type": "Point", "coordinates": [1, {"$gt": 1}]},
    {"type": "Point", "coordinates": [True, 1]},
    {"type": "Point", "coordinates": [float("nan"), 1]},
    {"type": "Point", "coordinates": [10**400, 1]},
    {"type": "Point", "coordinates": (1.5, 2, 3)},
    {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]]},
    {"type": "LineString", "coordinates": [[0, 0], [1]]},
    {"type": "MultiPoint", "coordinates": [[0, 0], "x"]},
    {**POLYGON, "crs": {"type": "name", "properties": {"name": "urn:x-mongodb:crs:strictwinding:EPSG:4326"}}},
    {**POLYGON, "crs": {"type": "name", "properties": {"name": "x", "$where": 1}}},
    {**POLYGON, "crs": {"type": "link", "properties": {"name": "x"}}},
    {**POLYGON, "crs": "EPSG:4326"},
    [{"k": 1}, "a"],
    [{"k": 1, "tags": ["x", 2]}, {"sub": {"x": [1]}}],
    [[1]],
    [{}],
    [{"$where": 1}],
    {"l": [{"x": [1, "a"]}, 2]},
    {"l": [1, (2,)]},
    ("red", "blue"),
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False, width=32), st.text(max_size=6)
)
values = st.one_of(
    st.sampled_from(SPECIAL_VALUES),
    st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.lists(children, max_size=2).map(tuple),
            st.dictionaries(st.text(max_size=3), children, max_size=3),
        ),
        max_leaves=8,
    ),
)
attrs = st.one_of(
    st.sampled_from(["a", "a.b", "meta.sub.x", "a..b", "$x", "a.$b", "", "x\0", ".a", "a.", "a$"]),
    st.text(max_size=5),
    st.integers(0, 3),
)
ops = st.one_of(st.sampled_from(OPS), st.text(max_size=3), st.integers(0, 2))


@st.composite
def leaves(draw: Any) -> Any:
    node: dict[str, Any] = {}
    if draw(st.integers(0, 20)) > 0:
        node["attr"] = draw(attrs)
    if draw(st.integers(0, 30)) > 0:
        node["op"] = draw(ops)
    if draw(st.booleans()):
        node["val"] = draw(values)
    return node if draw(st.integers(0, 40)) > 0 else draw(st.sampled_from([None, [], "x"]))


def _groups(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda op, cs: {"op": op, "conditions": cs}, st.sampled_from(["and", "or"]), st.lists(children, max_size=3)),
        st.builds(lambda c: {"op": "not", "conditions": [c]}, children),
        st.builds(lambda cs: {"op": "not", "conditions": cs}, st.lists(children, max_size=2)),
        st.builds(lambda cs: {"op": "and", "conditions": tuple(cs)}, st.lists(children, max_size=2)),
        st.just({"op": "or"}),
        st.just({"op": "and", "conditions": "x"}),
    )


def _trees(depth: int) -> st.SearchStrategy[Any]:
    level: st.SearchStrategy[Any] = leaves()
    for _ in range(depth):
        level = st.one_of(leaves(), _groups(level))
    return level


GEO_TEXT_LEAVES = [
    {"attr": "loc", "op": "within", "val": {"$geometry": POLYGON}},
    {"attr": "loc", "op": "dwithin", "val": [[1, 2], 0.5]},
    {"attr": "loc", "op": "distance_lt", "val": {"coordinates": [1, 2], "maxDistance": 7}},
    {"attr": "meta", "op": "json_contains", "val": [{"k": 1}, "a"]},
    {"attr": "tags", "op": "json_has_any", "val": "red"},
    {"attr": "tags", "op": "all", "val": "red"},
    {"attr": "loc", "op": "within", "val": POLYGON},
    {"attr": "loc", "op": "intersects", "val": POINT},
    {"attr": "loc", "op": "disjoint", "val": POLYGON},
    {"attr": "loc", "op": "dwithin", "val": {"geometry": POINT, "distance": 1200.5}},
    {"attr": "loc", "op": "distance_lt", "val": {"geometry": POINT, "distance": 7}},
    {"attr": "body", "op": "fts_phrase", "val": "hello  world"},
    {"attr": "a", "op": "and_custom", "val": 1},
    {"attr": "a", "op": "or_custom"},
    {"attr": "a", "op": "empty_custom", "val": 0},
]


def _valid_trees(depth: int) -> st.SearchStrategy[Any]:
    leaf = st.one_of(st.builds(random_leaf, st.randoms(use_true_random=False)), st.sampled_from(GEO_TEXT_LEAVES))
    level: st.SearchStrategy[Any] = leaf
    for _ in range(depth):
        level = st.one_of(
            leaf,
            st.builds(lambda op, cs: {"op": op, "conditions": cs}, st.sampled_from(["and", "or"]), st.lists(level, max_size=3)),
            st.builds(lambda c: {"op": "not", "conditions": [c]}, level),
        )
    return level


trees = st.one_of(_trees(6), _valid_trees(6), _valid_trees(6))


def same(native: Any, pure: Any, *args: Any) -> None:
    got_native, got_pure = outcome(native, *args), outcome(pure, *args)
    # repr tells 1 from True from 1.0 and list from tuple
    assert repr(got_native) == repr(got_pure), args


@settings(max_examples=1500, deadline=None)
@given(trees)
def test_compile_filter_agrees(tree: Any) -> None:
    native, pure = both("compile_filter")
    same(native, pure, tree)
    same(native, pure, tree, CUSTOM)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(OPS), attrs, values)
def test_every_operator_agrees(op: str, attr: Any, val: Any) -> None:
    native, pure = both("compile_filter")
    same(native, pure, {"attr": attr, "op": op, "val": val}, CUSTOM)
    same(native, pure, {"op": "or", "conditions": [{"attr": attr, "op": op, "val": val}]})


GROUP_SHAPES = [
    # a group of one returns its child: the parent must still see what the child is
    {"op": "or", "conditions": [{"op": "and", "conditions": [{"attr": "a", "op": "json_has_any", "val": ["x", "y"]}]}, {"attr": "b", "op": "eq", "val": 1}]},
    {"op": "and", "conditions": [{"op": "or", "conditions": [{"attr": "a", "op": "json_has_all", "val": ["x", "y"]}]}, {"attr": "b", "op": "eq", "val": 1}]},
    {"op": "or", "conditions": [{"op": "and", "conditions": [{"attr": "a", "op": "in", "val": [{"x": 1}, 2]}]}, {"attr": "b", "op": "eq", "val": 1}]},
    {"op": "and", "conditions": [{"op": "or", "conditions": [{"attr": "a", "op": "all", "val": [{"x": 1}, 2]}]}, {"attr": "b", "op": "eq", "val": 1}]},
    {"op": "and", "conditions": [{"op": "or", "conditions": [{"attr": "a", "op": "json_contains", "val": {"x": 1, "y": 2}}]}]},
    {"op": "or", "conditions": [{"op": "and", "conditions": [{"attr": "a", "op": "and_custom"}]}, {"op": "and", "conditions": [{"attr": "a", "op": "or_custom"}]}]},
    {"op": "and", "conditions": [{"op": "or", "conditions": [{"attr": "a", "op": "empty_custom"}]}, {"op": "or", "conditions": [{"op": "and", "conditions": []}]}]},
    {"op": "or", "conditions": [{"op": "or", "conditions": [{"op": "and", "conditions": [{"attr": "a", "op": "json_has_any", "val": ["x", "y"]}]}]}]},
]


def test_group_shapes_agree() -> None:
    native, pure = both("compile_filter")
    for tree in GROUP_SHAPES:
        same(native, pure, tree, CUSTOM)


def test_every_operator_with_every_special_value() -> None:
    native, pure = both("compile_filter")
    for op in OPS:
        for val in SPECIAL_VALUES:
            for attr in ("meta", "a.$b"):
                same(native, pure, {"attr": attr, "op": op, "val": val}, CUSTOM)
        same(native, pure, {"attr": "meta", "op": op}, CUSTOM)


sort_items = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["-created_at", "+name", " -a.b ", "-", "a..b", "-$x", "a,b", "x\0", "-n,name", "a, -b", ",", "a,$b"]),
    st.tuples(st.sampled_from(["a", "b.c", "$d", ""]), st.sampled_from([1, -1, "asc", "desc", 0, True, 1.0, "up"])),
    st.lists(st.text(max_size=2), max_size=3),
    st.integers(),
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=12), st.lists(sort_items, max_size=4), st.lists(sort_items, max_size=3).map(tuple), st.integers()))
def test_compile_sort_agrees(order_by: Any) -> None:
    native, pure = both("compile_sort")
    same(native, pure, order_by)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), st.text(max_size=6), st.lists(st.one_of(attrs, st.none()), max_size=4), st.integers()))
def test_compile_projection_agrees(fields: Any) -> None:
    native, pure = both("compile_projection")
    same(native, pure, fields)
