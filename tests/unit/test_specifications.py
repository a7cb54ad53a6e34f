"""Specification trees, the builder, the registry and QueryOptions (no server needed)."""

from __future__ import annotations

import json

import pytest

from cqrs_ddd_persistence_mongo import InvalidSpecification
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder
from cqrs_ddd_persistence_mongo.specifications import (
    QueryOptions,
    Specification,
    SpecificationBuilder,
    SpecificationOperator,
    build_default_registry,
)

b = SpecificationBuilder()


def test_builder_chains_left_to_right_and_is_reusable() -> None:
    spec = b.where("status", "eq", "active").and_where("total", "gte", 100).or_where("vip", "eq", True).build()
    assert spec.to_dict() == {
        "op": "or",
        "conditions": [
            {"op": "and", "conditions": [
                {"attr": "status", "op": "eq", "val": "active"},
                {"attr": "total", "op": "gte", "val": 100},
            ]},
            {"attr": "vip", "op": "eq", "val": True},
        ],
    }
    # the builder did not keep state
    assert b.build().to_dict() == {"op": "and", "conditions": []}


def test_groups_and_not() -> None:
    spec = (
        b.where("a", SpecificationOperator.EQ, 1)
        .and_group(lambda g: g.where("b", "=", 2).or_where("c", "is_null"))
        .not_where("d", "in", [1, 2])
        .build()
    )
    assert spec.to_dict() == {
        "op": "and",
        "conditions": [
            {"attr": "a", "op": "eq", "val": 1},
            {"op": "or", "conditions": [{"attr": "b", "op": "eq", "val": 2}, {"attr": "c", "op": "is_null"}]},
            {"op": "not", "conditions": [{"attr": "d", "op": "in", "val": [1, 2]}]},
        ],
    }


def test_operators_compose_and_flatten() -> None:
    x, y, z = (Specification.leaf(f, "eq", 1) for f in "xyz")
    assert [c["attr"] for c in ((x & y) & z).to_dict()["conditions"]] == ["x", "y", "z"]
    assert [c["attr"] for c in (x | (y | z)).to_dict()["conditions"]] == ["x", "y", "z"]
    assert (~x).to_dict() == {"op": "not", "conditions": [x.to_dict()]}
    assert MongoQueryBuilder().build_match(x & ~y) == {"$and": [{"x": {"$eq": 1}}, {"$nor": [{"y": {"$eq": 1}}]}]}


def test_round_trip_dict_and_json() -> None:
    spec = b.where("a.b", ">=", 3).or_where("tags", "all", ["x"]).build()
    assert Specification.from_dict(spec.to_dict()) == spec
    assert Specification.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["conditions"][0]["op"] == "gte"  # aliases are stored canonical


def test_immutable() -> None:
    spec = b.where("a", "eq", [1]).build()
    copy = spec.to_dict()
    copy["val"].append(2)
    assert spec.to_dict()["val"] == [1]
    with pytest.raises(AttributeError):
        spec.x = 1  # type: ignore[attr-defined]
    options = QueryOptions()
    assert options.with_pagination(limit=5) is not options and options.limit is None


@pytest.mark.parametrize(
    ("tree", "message"),
    [
        ({"op": "and", "conditions": [{"attr": "a", "op": "nope", "val": 1}]}, r"at 'conditions\[0\]': unknown operator 'nope'"),
        ({"op": "or", "conditions": [{"op": "and", "conditions": [{"op": "eq", "val": 1}]}]}, r"at 'conditions\[0\]\.conditions\[0\]': a condition needs 'attr'"),
        ({"op": "not", "conditions": []}, r"'not' takes exactly one condition, got 0"),
        ({"attr": "a", "op": "eq"}, r"operator 'eq' needs a 'val'"),
        ({"op": "and"}, r"'and' needs 'conditions'"),
        ({"attr": "a"}, r"needs 'op'"),
        ([1], r"must be a dict"),
    ],
)
def test_validation_on_load_names_the_path(tree: object, message: str) -> None:
    with pytest.raises(InvalidSpecification, match=message):
        Specification.from_dict(tree)  # type: ignore[arg-type]


def test_from_json_rejects_bad_json() -> None:
    with pytest.raises(InvalidSpecification, match="does not parse"):
        Specification.from_json("{nope")


def test_registry_custom_operator_end_to_end() -> None:
    registry = build_default_registry().register(
        "has_field", lambda field, val: {field: {"$exists": bool(val)}}
    )
    with pytest.raises(InvalidSpecification, match="unknown operator 'has_field'"):
        b.where("a", "has_field", True)
    spec = SpecificationBuilder(registry).where("a", "has_field", True).build()
    assert MongoQueryBuilder(registry).build_match(spec) == {"a": {"$exists": True}}
    options = QueryOptions().with_specification(spec.to_dict(), registry=registry)
    assert MongoQueryBuilder().build_options(options)[0] == {"a": {"$exists": True}}
    with pytest.raises(InvalidSpecification, match="built in"):
        registry.register("eq", lambda f, v: {})


def test_query_options() -> None:
    spec = b.where("status", "eq", "pending").build()
    options = (
        QueryOptions()
        .with_specification(spec, registry=build_default_registry())
        .with_ordering("-created_at")
        .with_pagination(limit=20, offset=0)
        .with_fields("status", "total")
    )
    assert options.order_by == ("-created_at",)
    assert (options.limit, options.offset, options.fields) == (20, 0, ("status", "total"))
    assert MongoQueryBuilder().build_options(options) == (
        {"status": {"$eq": "pending"}},
        [("created_at", -1)],
        {"status": 1, "total": 1},
    )
    assert QueryOptions().with_ordering(["-a", ("b", 1)]).order_by == ("-a", ("b", 1))
    for bad in ({"limit": 0}, {"limit": -1}, {"offset": -1}, {"limit": True}):
        with pytest.raises(InvalidSpecification):
            QueryOptions().with_pagination(**bad)


def test_specifications_import_nothing_of_ours_but_exceptions() -> None:
    """House rule: specifications depend on no other module of the package, except the
    backend switch (``_accel``, itself depending on nothing but ``_native`` / ``_pure``)
    that validates a tree in one native walk."""
    import ast
    from pathlib import Path

    import cqrs_ddd_persistence_mongo.specifications as package

    for source in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                imported = [node.module] if node.module else [a.name for a in node.names]
                assert set(imported) <= {"exceptions", "_accel"}, f"{source.name} imports ..{imported}"
            if isinstance(node, (ast.Import, ast.ImportFrom)) and not (isinstance(node, ast.ImportFrom) and node.level):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.startswith("cqrs_ddd_persistence_mongo") for n in names), source.name
