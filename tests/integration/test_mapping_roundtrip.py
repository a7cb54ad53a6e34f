"""to_doc -> insert -> find -> from_doc on the real-wire server gives back the original
entity: exact Decimals, UUIDs, aware datetimes, dates, Enums, sets, bytes, nested models;
with the library's clients (both drivers) and with a plain client that decodes neither
datetimes as aware nor UUIDs."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, Optional

import pytest
from bson.binary import Binary
from bson.decimal128 import Decimal128
from pydantic import BaseModel

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.core import MongoDBModelMapper
from cqrs_ddd_persistence_mongo.domain import AggregateRoot

pytestmark = pytest.mark.integration

UTC = dt.timezone.utc
PLUS3 = dt.timezone(dt.timedelta(hours=3))


class Status(enum.Enum):
    OPEN = "open"
    PAID = "paid"


class Money(BaseModel):
    amount: Decimal
    currency: str


class Line(BaseModel):
    sku: str
    qty: int
    unit: Money
    tags: frozenset[str] = frozenset()


class Invoice(AggregateRoot):
    id: uuid.UUID
    number: int
    status: Status
    total: Decimal
    issued_at: dt.datetime
    due: dt.date
    labels: set[str]
    pair: tuple[int, str]
    signature: bytes
    billing: Money
    lines: list[Line]
    memo: Optional[str] = None
    extra: dict[str, Any] = {}


def _invoice() -> Invoice:
    return Invoice(
        id=uuid.uuid4(),
        version=7,
        number=2**40,
        status=Status.PAID,
        total=Decimal("1234567890123456789012345678.901234"),  # 34 digits: exact
        issued_at=dt.datetime(2024, 3, 1, 15, 30, 45, 123000, tzinfo=PLUS3),
        due=dt.date(2024, 4, 1),
        labels={"b2b", "eu"},
        pair=(1, "x"),
        signature=b"\x00\xffsig",
        billing=Money(amount=Decimal("0.10"), currency="EUR"),
        lines=[Line(sku=f"s{i}", qty=i, unit=Money(amount=Decimal(f"{i}.05"), currency="EUR"), tags=frozenset({f"t{i}"})) for i in range(5)],
        extra={"nested": {"deep": [Decimal("-0.000"), uuid.UUID(int=5)]}},
    )


def _check(back: Invoice, original: Invoice) -> None:
    assert back == original
    assert back.version == 7
    assert str(back.total) == str(original.total)  # exact digits, not a float
    assert str(back.billing.amount) == "0.10"
    assert back.issued_at.tzinfo is not None and back.issued_at.utcoffset() == dt.timedelta(0)
    assert back.issued_at == original.issued_at
    assert back.extra["nested"]["deep"][1] == uuid.UUID(int=5)
    assert str(back.extra["nested"]["deep"][0]) == "-0.000"


async def test_round_trip_through_the_server(real_connection: MongoConnectionManager) -> None:
    mapper = MongoDBModelMapper(Invoice)
    original = _invoice()
    collection = real_connection.db().invoices
    await collection.insert_one(mapper.to_doc(original))
    stored = await collection.find_one({"_id": original.id})
    assert stored is not None
    assert isinstance(stored["total"], Decimal128) and stored["_version"] == 7 and "version" not in stored
    assert stored["due"] == dt.datetime(2024, 4, 1, tzinfo=UTC)
    assert stored["status"] == "paid" and sorted(stored["labels"]) == ["b2b", "eu"]
    _check(mapper.from_doc(stored), original)


async def test_round_trip_with_a_plain_client(mongo_url: str) -> None:
    """A client with default options returns naive datetimes and Binary subtype 4."""
    from pymongo import AsyncMongoClient

    client: Any = AsyncMongoClient(mongo_url)
    name = f"plain_{uuid.uuid4().hex[:8]}"
    try:
        mapper = MongoDBModelMapper(Invoice, field_map={"number": "no"})
        original = _invoice()
        collection = client[name].invoices
        await collection.insert_one(mapper.to_doc(original))
        stored = await collection.find_one({"_id": Binary(original.id.bytes, 4)})
        assert stored is not None
        assert isinstance(stored["_id"], Binary) and stored["issued_at"].tzinfo is None
        assert stored["no"] == 2**40
        _check(mapper.from_doc(stored), original)
    finally:
        await client.drop_database(name)
        await client.close()


async def test_many_round_trip(real_connection: MongoConnectionManager) -> None:
    mapper = MongoDBModelMapper(Invoice)
    originals = [_invoice() for _ in range(3)]
    collection = real_connection.db().invoices
    await collection.insert_many(mapper.to_docs(originals))
    docs = await collection.find({"_id": {"$in": [o.id for o in originals]}}).to_list(None)
    back = {entity.id: entity for entity in mapper.from_docs(docs)}
    for original in originals:
        _check(back[original.id], original)
