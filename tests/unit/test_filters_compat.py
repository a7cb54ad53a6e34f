"""Forms of the original library's API that the compiler accepts (through the bound
backend): single values for set operators, the GE / LE names, PostgreSQL jsonb meaning of the
json operators, the original geometry forms (and what stays refused in them), and comma
orderings given through QueryOptions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cqrs_ddd_persistence_mongo import InvalidSpecification
from cqrs_ddd_persistence_mongo._accel import compile_filter, compile_sort
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder, SpecificationOperator

P = {"type": "Point", "coordinates": [10, 20]}
POLY = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
NOT_ARRAY = {"$not": {"$type": "array"}}


def leaf(attr: str, op: str, val: Any) -> dict[str, Any]:
    return {"attr": attr, "op": op, "val": val}


# --- set operators and operator names --------------------------------------------------------
@pytest.mark.parametrize(("op", "mongo"), [("in", "$in"), ("not_in", "$nin"), ("all", "$all")])
def test_set_operators_take_a_single_value(op: str, mongo: str) -> None:
    assert compile_filter(leaf("tags", op, "red")) == {"tags": {mongo: ["red"]}}
    assert compile_filter(leaf("n", op, 3)) == {"n": {mongo: [3]}}
    spec = SpecificationBuilder().where("tags", op, "red").build()
    assert MongoQueryBuilder().build_match(spec) == {"tags": {mongo: ["red"]}}


def test_a_single_document_value_is_still_matched_as_data() -> None:
    doc = {"$ne": 1}
    assert compile_filter(leaf("a", "in", doc)) == {"a": {"$eq": doc}}
    assert compile_filter(leaf("a", "not_in", doc)) == {"$nor": [{"a": {"$eq": doc}}]}
    with pytest.raises(InvalidSpecification, match="regular expression object"):
        compile_filter(leaf("a", "in", re.compile("a")))


def test_ge_and_le_name_gte_and_lte() -> None:
    assert SpecificationOperator.GE is SpecificationOperator.GTE
    assert SpecificationOperator.LE is SpecificationOperator.LTE
    assert SpecificationOperator(">=") is SpecificationOperator.GTE
    spec = SpecificationBuilder().where("n", SpecificationOperator.GE, 2).and_where("n", SpecificationOperator.LE, 5).build()
    assert MongoQueryBuilder().build_match(spec) == {"$and": [{"n": {"$gte": 2}}, {"n": {"$lte": 5}}]}


# --- json operators: PostgreSQL jsonb meaning -------------------------------------------------
def test_json_has_any_and_all_match_keys_or_string_elements() -> None:
    assert compile_filter(leaf("tags", "json_has_any", ["red", "blue"])) == {
        "$or": [
            {"tags.red": {"$exists": True}, "tags": NOT_ARRAY},
            {"tags.blue": {"$exists": True}, "tags": NOT_ARRAY},
            {"tags": {"$in": ["red", "blue"]}},
        ]
    }
    assert compile_filter(leaf("tags", "json_has_all", ["red", "blue"])) == {
        "$or": [
            {"tags.red": {"$exists": True}, "tags.blue": {"$exists": True}, "tags": NOT_ARRAY},
            {"tags": {"$all": ["red", "blue"]}},
        ]
    }
    assert compile_filter(leaf("m", "json_has_any", "k")) == compile_filter(leaf("m", "json_has_key", "k"))


def test_json_contains_takes_lists() -> None:
    assert compile_filter(leaf("tags", "json_contains", ["red", "blue"])) == {
        "tags": {"$type": "array", "$all": ["red", "blue"]}
    }
    assert compile_filter(leaf("tags", "json_contains", [])) == {"tags": {"$type": "array"}}
    items = [{"sku": "a", "qty": 2}, "gift"]
    assert compile_filter(leaf("order.items", "json_contains", items)) == {
        "order.items": {
            "$all": [{"$elemMatch": {"$eq": "gift"}}, {"$elemMatch": {"sku": {"$eq": "a"}, "qty": {"$eq": 2}}}]
        }
    }
    nested = {"lines": [{"tags": ["x"]}]}
    assert compile_filter(leaf("m", "json_contains", nested)) == {
        "m.lines": {"$elemMatch": {"tags": {"$type": "array", "$all": ["x"]}}}
    }


@pytest.mark.parametrize(
    ("val", "problem"),
    [
        ([["x"]], "arrays nested in arrays (at 'm')"),
        ({"l": [1, [2]]}, "arrays nested in arrays (at 'm.l')"),
        ([{"$where": 1}], "may not start with '$'"),
        ([{}], "expects a non-empty dict"),
        ({"l": [re.compile("a")]}, "regular expression object"),
        ([{"a.b": 1}], "may not contain '.'"),
    ],
)
def test_json_contains_lists_are_checked(val: Any, problem: str) -> None:
    with pytest.raises(InvalidSpecification, match=re.escape(problem)):
        compile_filter(leaf("m", "json_contains", val))


def test_json_contains_list_depth_is_limited() -> None:
    value: Any = {"k": 1}
    for _ in range(100):
        value = [{"k": value}]
    with pytest.raises(InvalidSpecification, match="nests deeper than 100 levels"):
        compile_filter(leaf("m", "json_contains", value))


# --- geometry: the original forms --------------------------------------------------------------
def test_geometry_wrapped_in_dollar_geometry() -> None:
    wrapped = compile_filter(leaf("g", "within", {"$geometry": POLY}))
    assert wrapped == compile_filter(leaf("g", "within", POLY)) == {"g": {"$geoWithin": {"$geometry": POLY}}}
    assert compile_filter(leaf("g", "intersects", {"$geometry": P})) == {"g": {"$geoIntersects": {"$geometry": P}}}
    near = compile_filter(leaf("g", "near", {"geometry": {"$geometry": P}, "max_distance": 5}))
    assert near == {"g": {"$near": {"$geometry": P, "$maxDistance": 5.0}}}
    # near takes the wrapper like within / intersects do
    assert compile_filter(leaf("g", "near", {"$geometry": P})) == compile_filter(leaf("g", "near", P))
    assert compile_filter(leaf("g", "near", {"$geometry": P})) == {"g": {"$near": {"$geometry": P}}}


def test_circle_as_center_and_radians() -> None:
    assert compile_filter(leaf("g", "dwithin", [[10, 20], 0.25])) == {
        "g": {"$geoWithin": {"$centerSphere": [[10, 20], 0.25]}}
    }


def test_point_as_coordinates_and_max_distance() -> None:
    meters = {"coordinates": [10, 20], "maxDistance": 6378.1}
    expected = {"g": {"$geoWithin": {"$centerSphere": [[10, 20], 0.001]}}}
    assert compile_filter(leaf("g", "distance_lt", meters)) == expected
    assert compile_filter(leaf("g", "dwithin", {**meters, "type": "Point"})) == expected
    near = compile_filter(leaf("g", "near", {"coordinates": [10, 20], "maxDistance": 9, "minDistance": 1}))
    assert near == {"g": {"$near": {"$geometry": P, "$maxDistance": 9.0, "$minDistance": 1.0}}}


@pytest.mark.parametrize(
    ("op", "val", "problem"),
    [
        ("intersects", {"type": "Point", "coordinates": [1, "$where"]}, "'coordinates[1]' must be a number, got str"),
        ("intersects", {"type": "Point", "coordinates": [{"$gt": 1}, 2]}, "'coordinates[0]' must be a number, got dict"),
        ("intersects", {"type": "Point", "coordinates": [True, 2]}, "'coordinates[0]' must be a number, got bool"),
        ("within", {"type": "Polygon", "coordinates": [[[0, 0], [1, float("nan")]]]}, "'coordinates[0][1][1]' must be a finite number"),
        ("within", {"type": "Polygon", "coordinates": [[0, 0], [1, 1]]}, "'coordinates[0][0]' must be a list, got int"),
        ("intersects", {"type": "Point", "coordinates": [1]}, "'coordinates' must be a position [lng, lat]"),
        ("within", {"$geometry": POLY, "$maxDistance": 3}, "unexpected key '$geometry'"),
        ("within", {"$centerSphere": [[0, 0], 1]}, "unexpected key '$centerSphere'"),
        ("within", {"$geometry": {"$geometry": POLY}}, "unexpected key '$geometry'"),
        ("within", {**POLY, "crs": {"type": "name", "properties": {"$where": "x"}}}, "GeoJSON 'crs' must be"),
        ("dwithin", [[10, {"$gt": 0}], 1], "'[0][1]' must be a number, got dict"),
        ("dwithin", [[10, 20], -1], "'radius' to be a finite number >= 0"),
        ("dwithin", [[10, 20]], "got a list of 1 item(s)"),
        ("dwithin", {"coordinates": [10, 20]}, "needs a 'maxDistance' in meters"),
        ("dwithin", {"coordinates": [10, 20], "maxDistance": 1, "$where": 1}, "unexpected key '$where'"),
        ("near", {"coordinates": [10, 20], "type": "Polygon"}, "of type Point, got type 'Polygon'"),
        ("near", {"$geometry": P, "$maxDistance": 3}, "unexpected key '$geometry'"),
    ],
)
def test_geometry_values_are_checked(op: str, val: Any, problem: str) -> None:
    with pytest.raises(InvalidSpecification, match=r"at 'conditions\[0\]': .*" + re.escape(problem)):
        compile_filter({"op": "and", "conditions": [leaf("g", op, val), leaf("a", "eq", 1)]})


def test_mongodb_crs_is_kept() -> None:
    crs = {"type": "name", "properties": {"name": "urn:x-mongodb:crs:strictwinding:EPSG:4326"}}
    compiled = compile_filter(leaf("g", "within", {**POLY, "crs": crs}))
    assert compiled["g"]["$geoWithin"]["$geometry"]["crs"] == crs


# --- ordering ----------------------------------------------------------------------------------
def test_comma_ordering_through_query_options() -> None:
    _, sort, _ = MongoQueryBuilder().build_options(QueryOptions().with_ordering("-n,name"))
    assert sort == [("n", -1), ("name", 1)]
    assert compile_sort(["-a, b", ("c", 1)]) == [("a", -1), ("b", 1), ("c", 1)]
    with pytest.raises(InvalidSpecification, match="ordered twice"):
        compile_sort(["a,b", "b"])
