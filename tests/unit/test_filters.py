"""The compiler through the bound backend: each operator's MongoDB form, group rules and
every safety rule (each test fails if its protection is removed)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from bson.regex import Regex

from cqrs_ddd_persistence_mongo import InvalidSpecification, UnsafeQueryError
from cqrs_ddd_persistence_mongo._accel import compile_filter, compile_projection, compile_sort
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder

P = {"type": "Point", "coordinates": [10, 20]}
POLY = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}
EMPTY = [None, "", [], {}]
NOT_ARRAY = {"$not": {"$type": "array"}}


def leaf(attr: str, op: str, *val: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"attr": attr, "op": op}
    if val:
        node["val"] = val[0]
    return node


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (leaf("a", "eq", 1), {"a": {"$eq": 1}}),
        (leaf("a", "=", 1), {"a": {"$eq": 1}}),
        (leaf("a", "ne", None), {"a": {"$ne": None}}),
        (leaf("a", "!=", 2), {"a": {"$ne": 2}}),
        (leaf("a", ">", 2), {"a": {"$gt": 2}}),
        (leaf("a", "gte", 2), {"a": {"$gte": 2}}),
        (leaf("a", "<", 2), {"a": {"$lt": 2}}),
        (leaf("a", "<=", 2), {"a": {"$lte": 2}}),
        (leaf("a", "in", (1, 2)), {"a": {"$in": [1, 2]}}),
        (leaf("a", "not_in", [1]), {"a": {"$nin": [1]}}),
        (leaf("a", "all", ["x", "y"]), {"a": {"$all": ["x", "y"]}}),
        (leaf("a", "between", [1, 5]), {"a": {"$gte": 1, "$lte": 5}}),
        (leaf("a", "not_between", [1, 5]), {"$nor": [{"a": {"$gte": 1, "$lte": 5}}]}),
        (leaf("a", "contains", "x.y"), {"a": {"$regex": "x\\.y"}}),
        (leaf("a", "icontains", "x"), {"a": {"$regex": "x", "$options": "i"}}),
        (leaf("a", "startswith", "(x"), {"a": {"$regex": "^\\(x"}}),
        (leaf("a", "istartswith", "x"), {"a": {"$regex": "^x", "$options": "i"}}),
        (leaf("a", "endswith", "x$"), {"a": {"$regex": "x\\$\\z"}}),
        (leaf("a", "iendswith", "x"), {"a": {"$regex": "x\\z", "$options": "i"}}),
        (leaf("a", "like", "a%b_c\\%"), {"a": {"$regex": "^a.*b.c%\\z", "$options": "s"}}),
        (leaf("a", "ilike", "a%"), {"a": {"$regex": "^a.*\\z", "$options": "is"}}),
        (leaf("a", "not_like", "a%"), {"$nor": [{"a": {"$regex": "^a.*\\z", "$options": "s"}}]}),
        (leaf("a", "regex", "^a+$"), {"a": {"$regex": "^a+$"}}),
        (leaf("a", "iregex", "^a"), {"a": {"$regex": "^a", "$options": "i"}}),
        (leaf("a", "is_null"), {"a": {"$eq": None}}),
        (leaf("a", "is_null", False), {"a": {"$ne": None}}),
        (leaf("a", "is_not_null"), {"a": {"$ne": None}}),
        (leaf("a", "is_empty"), {"a": {"$in": EMPTY}}),
        (leaf("a", "is_not_empty", True), {"a": {"$nin": EMPTY}}),
        (
            leaf("m", "json_contains", {"k": 1, "s": {"x": [1, 2]}}),
            {"$and": [{"m.k": {"$eq": 1}}, {"m.s.x": {"$type": "array", "$all": [1, 2]}}]},
        ),
        (leaf("m", "json_has_key", "k"), {"$or": [{"m.k": {"$exists": True}, "m": NOT_ARRAY}, {"m": {"$in": ["k"]}}]}),
        (
            leaf("m", "json_has_any", ["k", "w"]),
            {"$or": [{"m.k": {"$exists": True}, "m": NOT_ARRAY}, {"m.w": {"$exists": True}, "m": NOT_ARRAY}, {"m": {"$in": ["k", "w"]}}]},
        ),
        (
            leaf("m", "json_has_all", ["k", "w"]),
            {"$or": [{"m.k": {"$exists": True}, "m.w": {"$exists": True}, "m": NOT_ARRAY}, {"m": {"$all": ["k", "w"]}}]},
        ),
        (leaf("m", "json_path_exists", "$.a.b"), {"m.a.b": {"$exists": True}}),
        (leaf("t", "size", 2), {"t": {"$size": 2}}),
        (leaf("g", "within", POLY), {"g": {"$geoWithin": {"$geometry": POLY}}}),
        (leaf("g", "intersects", P), {"g": {"$geoIntersects": {"$geometry": P}}}),
        (leaf("g", "disjoint", POLY), {"$nor": [{"g": {"$geoIntersects": {"$geometry": POLY}}}]}),
        (
            leaf("g", "dwithin", {"geometry": P, "distance": 6378.1}),
            {"g": {"$geoWithin": {"$centerSphere": [[10, 20], 0.001]}}},
        ),
        (
            leaf("g", "near", {"geometry": P, "max_distance": 100, "min_distance": 1}),
            {"g": {"$near": {"$geometry": P, "$maxDistance": 100.0, "$minDistance": 1.0}}},
        ),
        (leaf("body", "fts", 'big -"red" dog'), {"$text": {"$search": "big red dog"}}),
        (leaf("body", "fts_phrase", 'big "red"  dog'), {"$text": {"$search": '"big red dog"'}}),
    ],
)
def test_operator_forms(node: dict[str, Any], expected: dict[str, Any]) -> None:
    assert compile_filter(node) == expected


@pytest.mark.parametrize(
    "op", ["json_contained_by", "contains_geom", "touches", "crosses", "overlaps", "geom_equals", "bbox_intersects"]
)
def test_operators_without_exact_equivalent_are_refused(op: str) -> None:
    with pytest.raises(InvalidSpecification, match="has no exact MongoDB equivalent"):
        compile_filter(leaf("g", op, P))


def test_groups() -> None:
    a, b, c = leaf("a", "eq", 1), leaf("b", "eq", 2), leaf("c", "eq", 3)
    assert compile_filter({"op": "and", "conditions": []}) == {}
    assert compile_filter({"op": "or", "conditions": []}) == {"$nor": [{}]}
    assert compile_filter({"op": "and", "conditions": [a]}) == {"a": {"$eq": 1}}
    nested = {"op": "and", "conditions": [a, {"op": "and", "conditions": [b, {"op": "and", "conditions": [c]}]}]}
    assert compile_filter(nested) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$eq": 2}}, {"c": {"$eq": 3}}]}
    ors = {"op": "or", "conditions": [a, {"op": "or", "conditions": [b, c]}]}
    assert compile_filter(ors) == {"$or": [{"a": {"$eq": 1}}, {"b": {"$eq": 2}}, {"c": {"$eq": 3}}]}
    assert compile_filter({"op": "not", "conditions": [a]}) == {"$nor": [{"a": {"$eq": 1}}]}
    assert compile_filter({"op": "and", "conditions": [{"op": "and", "conditions": []}, a]}) == {"a": {"$eq": 1}}


def test_error_names_the_path_in_the_tree() -> None:
    tree = {"op": "and", "conditions": [leaf("a", "eq", 1), {"op": "or", "conditions": [leaf("b", "nope", 1)]}]}
    with pytest.raises(InvalidSpecification, match=r"at 'conditions\[1\]\.conditions\[0\]': unknown operator 'nope'"):
        compile_filter(tree)
    with pytest.raises(InvalidSpecification, match=r"'not' takes exactly one condition, got 2"):
        compile_filter({"op": "not", "conditions": [leaf("a", "eq", 1), leaf("a", "eq", 2)]})
    with pytest.raises(InvalidSpecification, match=r"operator 'eq' needs a 'val'"):
        compile_filter(leaf("a", "eq"))
    with pytest.raises(InvalidSpecification, match=r"needs 'attr'"):
        compile_filter({"op": "eq", "val": 1})


# --- safety ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [{"$gt": ""}, {"$where": "sleep(1000)"}, "$where", "$gt"])
def test_values_that_look_like_operators_are_wrapped(value: Any) -> None:
    assert compile_filter(leaf("a", "eq", value)) == {"a": {"$eq": value}}
    assert compile_filter(leaf("a", "ne", value)) == {"a": {"$ne": value}}


def test_documents_in_set_operators_become_per_value_equality() -> None:
    doc = {"$ne": 1}
    assert compile_filter(leaf("a", "in", [doc, 2])) == {"$or": [{"a": {"$eq": doc}}, {"a": {"$eq": 2}}]}
    assert compile_filter(leaf("a", "not_in", [doc])) == {"$nor": [{"a": {"$eq": doc}}]}
    em = {"$elemMatch": {"$gt": 0}}
    assert compile_filter(leaf("a", "all", [em])) == {"a": {"$eq": em}}


@pytest.mark.parametrize("value", [re.compile("a"), Regex("a")])
@pytest.mark.parametrize("op", ["in", "not_in", "all"])
def test_regex_objects_in_lists_are_refused(op: str, value: Any) -> None:
    with pytest.raises(InvalidSpecification, match="regular expression object"):
        compile_filter(leaf("a", op, [value]))


@pytest.mark.parametrize(
    ("attr", "problem"),
    [
        ("$where", "may not start with '$'"),
        ("a.$gt", "may not start with '$'"),
        ("a..b", "empty segment"),
        ("", "empty segment"),
        (".a", "empty segment"),
        ("a\0b", "NUL"),
    ],
)
def test_field_paths_are_validated(attr: str, problem: str) -> None:
    with pytest.raises(InvalidSpecification, match=re.escape(problem)):
        compile_filter(leaf(attr, "eq", 1))
    with pytest.raises(InvalidSpecification, match=re.escape(problem)):
        compile_sort(["-" + attr])
    with pytest.raises(InvalidSpecification, match=re.escape(problem)):
        compile_projection([attr])


def test_json_keys_are_validated() -> None:
    with pytest.raises(InvalidSpecification, match="may not start with"):
        compile_filter(leaf("m", "json_contains", {"$where": 1}))
    with pytest.raises(InvalidSpecification, match="may not start with"):
        compile_filter(leaf("m", "json_has_key", "$where"))
    with pytest.raises(InvalidSpecification, match="may not start with"):
        compile_filter(leaf("m", "json_has_any", ["ok", "$bad"]))


def test_string_operators_escape_text() -> None:
    metachars = "\\.^$|?*+()[]{}"
    pattern = compile_filter(leaf("a", "contains", metachars))["a"]["$regex"]
    assert re.fullmatch(pattern, metachars)
    assert not re.search(pattern, "x")
    assert compile_filter(leaf("a", "contains", "a\0b"))["a"]["$regex"] == "a\\x00b"


def test_invalid_regex_is_refused_with_the_re_message() -> None:
    with pytest.raises(InvalidSpecification, match=r"invalid regular expression '\(a': missing \)"):
        compile_filter(leaf("a", "regex", "(a"))


def test_geojson_is_checked() -> None:
    with pytest.raises(InvalidSpecification, match="unexpected key '\\$where'"):
        compile_filter(leaf("g", "within", {**POLY, "$where": "1"}))
    with pytest.raises(InvalidSpecification, match="of type Polygon or MultiPolygon"):
        compile_filter(leaf("g", "within", P))
    for distance in (-1, float("nan"), float("inf"), 10**400):
        with pytest.raises(InvalidSpecification, match="finite number >= 0"):
            compile_filter(leaf("g", "dwithin", {"geometry": P, "distance": distance}))


@pytest.mark.parametrize("op,val", [("near", {"geometry": P}), ("fts", "word")])
@pytest.mark.parametrize("group", ["or", "not"])
def test_near_and_text_only_where_mongodb_accepts_them(op: str, val: Any, group: str) -> None:
    inner = leaf("g", op, val)
    assert compile_filter({"op": "and", "conditions": [inner, leaf("a", "eq", 1)]})
    with pytest.raises(InvalidSpecification, match="only allowed at the top level"):
        compile_filter({"op": group, "conditions": [inner]})


def test_fts_strips_text_search_syntax() -> None:
    assert compile_filter(leaf("b", "fts", '-secret "x y"'))["$text"]["$search"] == "secret x y"
    with pytest.raises(InvalidSpecification, match="at least one word"):
        compile_filter(leaf("b", "fts", ' " - '))


@pytest.mark.parametrize(
    "raw", [{"$where": "sleep(100)"}, {"$and": [{"a": 1}, {"$function": {"body": "x"}}]}, {"$expr": {"$accumulator": {}}}]
)
def test_build_match_refuses_raw_filters_with_server_code(raw: dict[str, Any]) -> None:
    with pytest.raises(UnsafeQueryError):
        MongoQueryBuilder().build_match(raw)


def test_build_match_refuses_other_raw_filters() -> None:
    with pytest.raises(InvalidSpecification, match="not a raw MongoDB filter"):
        MongoQueryBuilder().build_match({"status": "x"})


def test_custom_operator() -> None:
    custom = {"exists": lambda field, val: {field: {"$exists": bool(val)}}}
    assert compile_filter(leaf("a", "exists", 1), custom) == {"a": {"$exists": True}}
    with pytest.raises(InvalidSpecification, match="unknown operator 'exists'"):
        compile_filter(leaf("a", "exists", 1))
    with pytest.raises(InvalidSpecification, match="must return a filter dict, got int"):
        compile_filter(leaf("a", "bad", 1), {"bad": lambda f, v: 5})


def test_sort_and_projection() -> None:
    assert compile_sort("-created_at, name") == [("created_at", -1), ("name", 1)]
    assert compile_sort(["-a", ("b", "desc"), ("c", 1)]) == [("a", -1), ("b", -1), ("c", 1)]
    assert compile_sort(None) == []
    with pytest.raises(InvalidSpecification, match="ordered twice"):
        compile_sort(["a", "-a"])
    with pytest.raises(InvalidSpecification, match="direction must be"):
        compile_sort([("a", 2)])
    assert compile_projection(["a", "b.c"]) == {"a": 1, "b.c": 1}
    assert compile_projection([]) is None
