"""The deprecated one-call helpers: same documents as the mapper, a warning, library errors."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest
from bson import Binary, Decimal128
from pydantic import BaseModel

from cqrs_ddd_persistence_mongo import MongoDBModelMapper
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument
from cqrs_ddd_persistence_mongo.serialization import model_from_doc, model_to_doc


class Item(BaseModel):
    sku: UUID
    price: Decimal
    name: str = ""


def test_round_trip_matches_the_mapper_and_warns() -> None:
    item = Item(sku=uuid4(), price=Decimal("9.99"), name="pen")
    with pytest.warns(DeprecationWarning, match="MongoDBModelMapper"):
        doc = model_to_doc(item, use_id_field="sku")
    assert doc == MongoDBModelMapper(Item, id_field="sku").to_doc(item)
    assert doc["_id"] == Binary.from_uuid(item.sku) and doc["price"] == Decimal128("9.99")
    with pytest.warns(DeprecationWarning):
        assert model_from_doc(Item, doc, id_field="sku") == item


def test_bad_arguments_raise_library_errors() -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidDocument, match="pydantic model"):
        model_to_doc({"id": 1})  # type: ignore[arg-type]
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidDocument, match="no field 'id'"):
        model_from_doc(Item, {"_id": 1})
    with pytest.warns(DeprecationWarning), pytest.raises(InvalidDocument, match="mapping"):
        model_from_doc(Item, [("_id", 1)])  # type: ignore[arg-type]
