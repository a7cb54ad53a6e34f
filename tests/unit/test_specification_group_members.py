"""SpecificationOperator.AND / OR / NOT name the dict form's group nodes (the original
library's spelling) without becoming leaf operators."""

from __future__ import annotations

import pytest

from cqrs_ddd_persistence_mongo.exceptions import InvalidSpecification
from cqrs_ddd_persistence_mongo.query_builder import MongoQueryBuilder
from cqrs_ddd_persistence_mongo.specifications import BUILTIN_OPERATORS, OperatorRegistry, Specification
from cqrs_ddd_persistence_mongo.specifications import SpecificationOperator as Op


def test_group_members_build_the_same_filter_as_the_strings() -> None:
    tree = {
        "op": Op.OR,
        "conditions": [
            {"op": Op.AND, "conditions": [{"op": Op.EQ, "attr": "a", "val": 1}, {"op": Op.GT, "attr": "n", "val": 0}]},
            {"op": Op.NOT, "conditions": [{"op": Op.IN, "attr": "b", "val": [2]}]},
        ],
    }
    as_strings = {
        "op": "or",
        "conditions": [
            {"op": "and", "conditions": [{"op": "eq", "attr": "a", "val": 1}, {"op": "gt", "attr": "n", "val": 0}]},
            {"op": "not", "conditions": [{"op": "in", "attr": "b", "val": [2]}]},
        ],
    }
    builder = MongoQueryBuilder()
    assert builder.build_match(tree) == builder.build_match(as_strings)
    assert builder.build_match(Specification(tree)) == builder.build_match(as_strings)


def test_group_members_are_not_leaf_operators() -> None:
    assert {Op.AND.value, Op.OR.value, Op.NOT.value}.isdisjoint(BUILTIN_OPERATORS)
    assert not OperatorRegistry().is_known("and")
    with pytest.raises(InvalidSpecification, match="built in"):
        OperatorRegistry().register(Op.OR.value, lambda field, value: {field: value})
    with pytest.raises(InvalidSpecification):
        MongoQueryBuilder().build_match({"op": Op.AND, "attr": "a", "val": 1})
