"""MongoDBModelMapper and the mapping pass: every type rule and every bad input,
on whichever backend ``_accel`` bound (the suite also runs with CQRS_DDD_MONGO_PURE=1)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any, Optional

import pytest
from bson import encode
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from pydantic import BaseModel, ConfigDict, PlainSerializer, field_serializer

from cqrs_ddd_persistence_mongo import _accel
from cqrs_ddd_persistence_mongo.core import MongoDBModelMapper
from cqrs_ddd_persistence_mongo.core.model_mapper import serializer_builds_fresh
from cqrs_ddd_persistence_mongo.domain import AggregateRoot
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument

UTC = dt.timezone.utc


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Line(BaseModel):
    sku: str
    qty: int
    price: Decimal


class Address(BaseModel):
    city: str
    zip: Optional[str] = None


class Order(AggregateRoot):
    id: str = ""
    customer: str = "ann"
    total: Decimal = Decimal("0")
    placed_at: dt.datetime = dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    due: dt.date = dt.date(2024, 2, 3)
    token: uuid.UUID = uuid.UUID(int=7)
    color: Color = Color.RED
    level: Level = Level.HIGH
    tags: set[str] = set()
    dims: tuple[int, int] = (1, 2)
    blob: bytes = b"\x00\x01"
    address: Address = Address(city="Oslo")
    lines: list[Line] = []
    note: Optional[str] = None


def _order(**kw: Any) -> Order:
    base: dict[str, Any] = dict(
        id="o1",
        total=Decimal("12.50"),
        tags={"a"},
        lines=[Line(sku=f"s{i}", qty=i, price=Decimal(f"{i}.99")) for i in range(3)],
    )
    base.update(kw)
    return Order(**base)


def to_doc(data: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return _accel.map_to_doc(data, kw.get("id_field", "id"), kw.get("field_map"), kw.get("versioned", False))


def from_doc(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return _accel.map_from_doc(doc, kw.get("id_field", "id"), kw.get("reverse_map"), kw.get("versioned", False))


# --- the mapper's contract ------------------------------------------------------------
def test_to_doc_shape_and_round_trip() -> None:
    mapper = MongoDBModelMapper(Order)
    order = _order(version=3)
    doc = mapper.to_doc(order)
    assert doc["_id"] == "o1" and "id" not in doc
    assert doc["_version"] == 3 and "version" not in doc
    assert list(doc)[-2:] == ["_id", "_version"]  # renamed fields go last (the driver writes _id first)
    assert doc["total"] == Decimal128("12.50")
    assert doc["lines"][2] == {"sku": "s2", "qty": 2, "price": Decimal128("2.99")}
    assert doc["token"] == Binary(uuid.UUID(int=7).bytes, 4)
    assert doc["due"] == dt.datetime(2024, 2, 3, tzinfo=UTC)
    assert doc["color"] == "red" and doc["level"] == 2 and type(doc["level"]) is int
    assert doc["tags"] == ["a"] and doc["dims"] == [1, 2] and doc["blob"] == b"\x00\x01"
    assert doc["address"] == {"city": "Oslo", "zip": None}
    encode(doc)  # the driver can encode it
    back = mapper.from_doc(doc)
    assert back == order
    assert back.version == 3


def test_public_attributes() -> None:
    mapper = MongoDBModelMapper(Order, id_field="id")
    assert mapper.id_field == "id" and mapper.versioned is True
    assert MongoDBModelMapper(Address, id_field="city").versioned is False


def test_field_map_and_exclude() -> None:
    mapper = MongoDBModelMapper(Order, field_map={"customer": "cust", "note": "n"}, exclude_fields={"blob"})
    doc = mapper.to_doc(_order(note="hi"))
    assert doc["cust"] == "ann" and doc["n"] == "hi"
    assert "customer" not in doc and "note" not in doc and "blob" not in doc
    back = mapper.from_doc(doc)
    assert back.customer == "ann" and back.note == "hi" and back.blob == b"\x00\x01"


def test_missing_version_reads_as_zero_and_non_versioned_models() -> None:
    mapper = MongoDBModelMapper(Order)
    doc = mapper.to_doc(_order(version=5))
    del doc["_version"]
    assert mapper.from_doc(doc).version == 0

    class NoVersion(BaseModel):
        key: int
        name: str

    plain = MongoDBModelMapper(NoVersion, id_field="key")
    assert plain.to_doc(NoVersion(key=5, name="x")) == {"_id": 5, "name": "x"}
    assert plain.from_doc({"_id": 5, "name": "x"}) == NoVersion(key=5, name="x")


@pytest.mark.parametrize(
    "ident",
    ["abc", 42, uuid.UUID(int=99), ObjectId("65a000000000000000000001"), {"tenant": "t", "n": 3}],
)
def test_any_id_type_round_trips(ident: Any) -> None:
    class Thing(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        id: Any
        name: str = "x"

    mapper = MongoDBModelMapper(Thing)
    doc = mapper.to_doc(Thing(id=ident))
    if isinstance(ident, uuid.UUID):
        assert doc["_id"] == Binary(ident.bytes, 4)
    else:
        assert doc["_id"] == ident
    assert mapper.from_doc(doc).id == ident


def test_none_id_is_left_for_the_driver() -> None:
    class Fresh(AggregateRoot):
        name: str = "x"

    doc = MongoDBModelMapper(Fresh).to_doc(Fresh())
    assert "_id" not in doc and doc == {"_version": 0, "name": "x"}


def test_to_docs_and_from_docs() -> None:
    mapper = MongoDBModelMapper(Order)
    orders = [_order(id=f"o{i}") for i in range(3)]
    docs = mapper.to_docs(orders)
    assert [d["_id"] for d in docs] == ["o0", "o1", "o2"]
    assert mapper.from_docs(docs) == orders


def test_extra_fields_follow_the_model_config() -> None:
    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        id: str

    class Lenient(BaseModel):
        id: str

    with pytest.raises(Exception, match="extra"):
        MongoDBModelMapper(Strict).from_doc({"_id": "a", "other": 1})
    assert MongoDBModelMapper(Lenient).from_doc({"_id": "a", "other": 1}) == Lenient(id="a")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(id_field="nope"), "no field 'nope'"),
        (dict(field_map={"ghost": "g"}), "does not have"),
        (dict(field_map={"id": "x"}), "cannot rename"),
        (dict(field_map={"customer": "c", "note": "c"}), "same document field"),
        (dict(exclude_fields={"id"}), "cannot be excluded"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MongoDBModelMapper(Order, **kwargs)


def test_field_map_to_invalid_name_is_rejected() -> None:
    mapper = MongoDBModelMapper(Order, field_map={"customer": "a.b"})
    with pytest.raises(InvalidDocument, match=r"'a\.b'.*may not contain '\.'"):
        mapper.to_doc(_order())


def test_field_map_colliding_with_id() -> None:
    mapper = MongoDBModelMapper(Order, field_map={"customer": "_id"})
    with pytest.raises(InvalidDocument, match="written twice"):
        mapper.to_doc(_order())


# --- type rules, to the document ------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        (Decimal("0.1"), Decimal128("0.1")),
        (Decimal("-0"), Decimal128("-0")),
        (Decimal("1.50"), Decimal128("1.50")),
        (Decimal("1234567890123456789012345678901234"), Decimal128("1234567890123456789012345678901234")),
        (Decimal("1.000000000000000000000000000000000000000"), Decimal128("1.000000000000000000000000000000000")),
        (Decimal("1E+6144"), Decimal128("1E+6144")),
        (Decimal("1E-6176"), Decimal128("1E-6176")),
        (Decimal("0E-9000"), Decimal128("0E-6176")),
        (Decimal("0E+9000"), Decimal128("0E+6111")),
        (Decimal("NaN"), Decimal128("NaN")),
        (Decimal("-sNaN"), Decimal128("-sNaN")),
        (Decimal("-Infinity"), Decimal128("-Infinity")),
    ],
)
def test_decimal_is_decimal128_exactly(value: Decimal, expected: Decimal128) -> None:
    got = to_doc({"v": value})["v"]
    assert type(got) is Decimal128
    assert got.bid == expected.bid


@pytest.mark.parametrize(
    "value",
    [
        Decimal("12345678901234567890123456789012345"),  # 35 significant digits
        Decimal("1E-6177"),  # below the smallest exponent
        Decimal("1E+6145"),  # too large
        Decimal("NaN123"),  # NaN payload
    ],
)
def test_decimal_that_decimal128_cannot_hold_is_an_error(value: Decimal) -> None:
    with pytest.raises(InvalidDocument, match=r"at 'items\[1\]\.price'") as err:
        to_doc({"items": [{"price": Decimal(1)}, {"price": value}]})
    assert "Decimal128" in str(err.value)


def test_datetimes_are_aware_utc() -> None:
    naive = dt.datetime(2024, 5, 6, 7, 8, 9)
    plus2 = dt.datetime(2024, 5, 6, 9, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    doc = to_doc({"a": naive, "b": plus2, "c": dt.date(2020, 1, 31)})
    for key in "ab":
        assert doc[key] == dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        assert doc[key].tzinfo is UTC
    assert doc["c"] == dt.datetime(2020, 1, 31, tzinfo=UTC) and type(doc["c"]) is dt.datetime


def test_enum_uuid_collections_bytes() -> None:
    u = uuid.uuid4()
    doc = to_doc(
        {
            "e": Color.BLUE,
            "i": Level.LOW,
            "u": u,
            "s": frozenset([1]),
            "t": (1, (2, 3)),
            "b": bytearray(b"x"),
            "nested": {"deep": [{"u": u}]},
        }
    )
    assert doc["e"] == "blue" and doc["i"] == 1 and type(doc["i"]) is int
    assert doc["u"] == Binary(u.bytes, 4) and doc["u"].subtype == 4
    assert doc["s"] == [1] and doc["t"] == [1, [2, 3]]
    assert doc["b"] == b"x" and type(doc["b"]) is bytes
    assert doc["nested"]["deep"][0]["u"].subtype == 4


def test_nested_model_instance_in_data_is_dumped() -> None:
    doc = to_doc({"a": Address(city="x")})
    assert doc == {"a": {"city": "x", "zip": None}}


def test_bson_values_pass_through() -> None:
    oid = ObjectId()
    d128 = Decimal128("1.1")
    assert to_doc({"o": oid, "d": d128, "b": Binary(b"z", 5)}) == {"o": oid, "d": d128, "b": Binary(b"z", 5)}


def test_input_is_not_modified() -> None:
    data = {"id": "x", "version": 2, "v": [Decimal(1)], "k": {"s": {1}}}
    snapshot = repr(data)
    to_doc(data, versioned=True)
    assert repr(data) == snapshot


# --- bad input ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, path, words",
    [
        ({"items": [{}, {}, {}, {"$price": 1}]}, r"items\[3\]\.\$price", "may not start with '\\$'"),
        ({"a": {"b.c": 1}}, r"a\.b\.c", "may not contain '\\.'"),
        ({"a": {"x\0": 1}}, r"a\.x.", "NUL"),
        ({"n": {1: 2}}, "n", "not a string"),
        ({"items": [0, 2**63]}, r"items\[1\]", "64 bits"),
        ({"items": [0, -(2**63) - 1]}, r"items\[1\]", "64 bits"),
        ({"when": {"t": dt.time(1, 2)}}, r"when\.t", "type time"),
        ({"d": dt.timedelta(1)}, "d", "type timedelta"),
        ({"o": object()}, "o", "type object"),
        ({"c": complex(1, 2)}, "c", "type complex"),
    ],
)
def test_bad_input_names_the_path(data: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(InvalidDocument, match=f"'{path}'.*{words}|{words}.*'{path}'"):
        to_doc(data)


def test_big_int_ok_at_limits() -> None:
    assert to_doc({"a": 2**63 - 1, "b": -(2**63)}) == {"a": 2**63 - 1, "b": -(2**63)}


def test_cycle_and_depth() -> None:
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(InvalidDocument, match="deeper than 100 levels.*cycle"):
        to_doc({"c": cyclic})
    deep: Any = 1
    for _ in range(100):
        deep = {"n": deep}
    to_doc(deep)  # 100 levels of containers including the root document is fine
    with pytest.raises(InvalidDocument, match="deeper than 100"):
        to_doc({"n": deep})


def test_bad_model_value_raises_before_anything_is_returned() -> None:
    mapper = MongoDBModelMapper(Order)
    good = _order(id="a")
    bad = _order(id="b", lines=[Line(sku="x", qty=2**70, price=Decimal(1))])
    with pytest.raises(InvalidDocument, match=r"lines\[0\]\.qty"):
        mapper.to_docs([good, bad])


# --- type rules, from the document ----------------------------------------------------
def test_from_doc_conversions() -> None:
    u = uuid.uuid4()
    naive = dt.datetime(2024, 1, 1, 12, 0)
    doc = {
        "_id": Binary(u.bytes, 4),
        "_version": 4,
        "d": Decimal128("1.230"),
        "u_decoded": u,
        "naive": naive,
        "other_tz": dt.datetime(2024, 1, 1, 14, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "b0": Binary(b"raw", 0),
        "b5": Binary(b"raw", 5),
        "nested": [{"x": Decimal128("-0.5"), "y": [Binary(u.bytes, 4)]}],
    }
    data = from_doc(doc, versioned=True)
    assert data["id"] == u and data["version"] == 4 and "_id" not in data and "_version" not in data
    assert data["d"] == Decimal("1.230") and str(data["d"]) == "1.230"
    assert data["u_decoded"] == u
    assert data["naive"] == naive.replace(tzinfo=UTC) and data["naive"].tzinfo is UTC
    assert data["other_tz"] == dt.datetime(2024, 1, 1, 12, tzinfo=UTC) and data["other_tz"].tzinfo is UTC
    assert data["b0"] == b"raw" and type(data["b0"]) is bytes
    assert data["b5"] == Binary(b"raw", 5)
    assert data["nested"] == [{"x": Decimal("-0.5"), "y": [u]}]


def test_from_doc_renames_and_version_default() -> None:
    data = from_doc({"_id": 1, "c": "x"}, reverse_map={"c": "customer"}, versioned=True)
    assert data == {"id": 1, "customer": "x", "version": 0}
    assert from_doc({"_id": 1, "_version": 3}) == {"id": 1, "_version": 3}


@pytest.mark.parametrize(
    "d128",
    ["0", "-0", "1E+6144", "1E-6176", "9999999999999999999999999999999999", "NaN", "-NaN", "sNaN", "-Infinity", "Infinity", "0.000100"],
)
def test_decimal128_reads_as_bson_does(d128: str) -> None:
    got = from_doc({"v": Decimal128(d128)})["v"]
    want = Decimal128(d128).to_decimal()
    assert str(got) == str(want)


def test_non_canonical_decimal128_reads_as_zero() -> None:
    high = 0x6000_0000_0000_0000 | (6176 << 47)
    value = Decimal128((high, 5))
    assert from_doc({"v": value})["v"] == value.to_decimal() == Decimal(0)
    too_big = Decimal128(((0x3040 << 48) | 0x1_FFFF_FFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF))
    assert str(from_doc({"v": too_big})["v"]) == str(too_big.to_decimal())


def test_from_doc_keeps_bson_utc_and_does_not_modify_the_document() -> None:
    from bson.tz_util import utc as bson_utc

    when = dt.datetime(2024, 1, 1, tzinfo=bson_utc)
    doc = {"_id": "a", "when": when, "items": [{"p": Decimal128("1.5")}], "plain": {"x": 1}}
    snapshot = repr(doc)
    data = from_doc(doc)
    assert data["when"] is when  # a tz-aware client's UTC is already UTC
    assert data["items"] == [{"p": Decimal("1.5")}]
    assert repr(doc) == snapshot  # copies are made where something changes
    assert data["plain"] is doc["plain"]  # and only there


def test_overridden_model_dump_and_model_validate_are_used() -> None:
    calls: list[str] = []

    class Custom(BaseModel):
        id: str
        name: str = "x"

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
            calls.append("dump")
            return super().model_dump(**kwargs)

        @classmethod
        def model_validate(cls, obj: Any, **kwargs: Any) -> "Custom":  # type: ignore[override]
            calls.append("validate")
            return super().model_validate(obj, **kwargs)

    mapper = MongoDBModelMapper(Custom)
    assert mapper.from_doc(mapper.to_doc(Custom(id="a"))) == Custom(id="a")
    assert calls == ["dump", "validate"]


def test_subclass_entities_are_dumped_with_their_own_fields() -> None:
    class Special(Address):
        extra: int = 5

    mapper = MongoDBModelMapper(Address, id_field="city")
    assert mapper.to_doc(Special(city="x")) == {"zip": None, "extra": 5, "_id": "x"}


# --- the dump is changed in place only when nothing in it is shared ------------------
class Shares(BaseModel):
    """Its serializer hands out the model's own list (a user function may do that)."""

    id: str
    prices: list[Decimal]

    @field_serializer("prices")
    def _prices(self, value: list[Decimal]) -> list[Decimal]:
        return self.prices


class Holds(BaseModel):
    id: str
    extra: dict[str, Any] = {}


class Plain(BaseModel):
    id: str
    inner: Line


class Annotated_(BaseModel):
    id: str
    total: Annotated[Decimal, PlainSerializer(lambda v: v)]


class Wraps(BaseModel):
    id: str
    shares: Shares


@pytest.mark.parametrize(
    ("model", "fresh"),
    [(Order, True), (Plain, True), (Line, True), (Holds, True), (Shares, False), (Annotated_, False), (Wraps, False)],
)
def test_serializer_builds_fresh(model: type[BaseModel], fresh: bool) -> None:
    assert serializer_builds_fresh(model) is fresh
    assert MongoDBModelMapper(model, id_field="id" if "id" in model.model_fields else "sku")._owned_dump is fresh


def test_to_doc_never_changes_what_a_serializer_shares() -> None:
    entity = Shares(id="s1", prices=[Decimal("1.50"), Decimal("2")])
    doc = MongoDBModelMapper(Shares).to_doc(entity)
    assert doc["prices"] == [Decimal128("1.50"), Decimal128("2")]
    assert entity.prices == [Decimal("1.50"), Decimal("2")] and all(type(p) is Decimal for p in entity.prices)


def test_owned_dump_gives_the_copying_result_and_leaves_the_entity_alone() -> None:
    mapper = MongoDBModelMapper(Order)
    assert mapper._owned_dump
    entity = _order()
    expected = _accel.map_to_doc(entity.model_dump(), "id", None, True)
    assert repr(mapper.to_doc(entity)) == repr(expected)
    assert repr(mapper.to_doc(entity)) == repr(expected)  # the entity was not changed by the first call
    assert entity.lines[0].price == Decimal("0.99") and entity.total == Decimal("12.50")


class Listed(enum.Enum):
    """An Enum whose value is a container (the mapping pass must never change it)."""

    PRICES = [Decimal("1.5")]


def test_owned_pass_reuses_what_only_it_refers_to_and_copies_what_is_shared() -> None:
    shared = [{"price": Decimal("2")}]
    data = {"id": "o1", "lines": [{"price": Decimal("1.5"), "sku": "a"}], "shared": shared, "e": Listed.PRICES}
    lines_at = id(data["lines"])
    doc = _accel.map_to_doc(data, "id", None, False, True)
    assert doc is data  # the handed-over dict became the document
    assert repr(doc) == repr(
        {"lines": [{"price": Decimal128("1.5"), "sku": "a"}], "shared": [{"price": Decimal128("2")}],
         "e": [Decimal128("1.5")], "_id": "o1"}
    )
    assert type(shared[0]["price"]) is Decimal and doc["shared"] is not shared  # referred to elsewhere: copied
    assert Listed.PRICES.value == [Decimal("1.5")] and type(Listed.PRICES.value[0]) is Decimal
    if _accel.BACKEND == "native":  # referred to only by its parent: changed in place, not copied
        assert id(doc["lines"]) == lines_at


def test_invalid_keys_are_refused_every_time_among_many_valid_ones() -> None:
    """Valid key objects are remembered; an invalid one never is, however many keys pass."""
    many = {f"k{i}": i for i in range(5000)}
    for _ in range(2):
        assert to_doc(dict(many)) == many
        for bad in ("a.b", "$x", "n\0"):
            with pytest.raises(InvalidDocument, match="invalid field name"):
                to_doc({**many, bad: 1})
            with pytest.raises(InvalidDocument, match=r"lines\[0\]"):
                to_doc({"lines": [{bad: Decimal("1")}]})


@pytest.mark.parametrize(
    "text",
    ["0.00", "-0.000", "19.99", "0.005", "-5E-3", "1E-40", "1E-41", "0E-6176", "1E+3", "123456789012345678901234567890123.4",
     "9999999999999999999999999999999999E-40", "1.000000000000000000000000000000000", "7", "-0"],
)
def test_decimal128_reads_back_with_its_exact_exponent(text: str) -> None:
    value = Decimal(text)
    back = from_doc({"v": Decimal128(value)})["v"]
    assert back.as_tuple() == value.as_tuple() and str(back) == str(value)


def test_mappers_pickle_and_copy() -> None:
    import copy
    import pickle

    mapper = MongoDBModelMapper(Order, field_map={"customer": "cust"}, exclude_fields={"note"})
    entity = _order()
    for clone in (pickle.loads(pickle.dumps(mapper)), copy.deepcopy(mapper), copy.copy(mapper)):
        assert repr(clone.to_doc(entity)) == repr(mapper.to_doc(entity))
        assert clone.from_doc(mapper.to_doc(entity)) == entity
        assert clone._codec is not mapper._codec  # rebuilt, not shared
