"""search_collection builds everything up front: filter, sort, projection, renames."""

from __future__ import annotations

import pytest

from cqrs_ddd_persistence_mongo import InvalidSpecification
from cqrs_ddd_persistence_mongo.core.search import search_collection
from cqrs_ddd_persistence_mongo.specifications import QueryOptions, SpecificationBuilder

b = SpecificationBuilder()


def test_model_fields_are_renamed_to_document_fields() -> None:
    result = search_collection(
        None,
        b.where("id", "eq", 1).or_where("address.city", "eq", "x").build(),
        QueryOptions().with_ordering("-id", ("version", 1)).with_fields("id", "total").with_pagination(limit=5, offset=2),
        field_names={"id": "_id", "version": "_version", "address": "addr"},
    )
    assert result.filter == {"$or": [{"_id": {"$eq": 1}}, {"addr.city": {"$eq": "x"}}]}
    assert result.sort == [("_id", -1), ("_version", 1)]
    assert result.projection == {"_id": 1, "total": 1}
    assert (result.skip, result.limit) == (2, 5)


def test_options_passed_twice_are_refused() -> None:
    with pytest.raises(InvalidSpecification, match="not both"):
        search_collection(None, QueryOptions(), QueryOptions())
