"""decode_events: the native decoder answers what the twin (pymongo's decoder plus
from_document) answers, value by value and type by type, errors included, for every input;
it decodes the documents the store writes itself and hands anything else to the twin, and
never crashes on hostile bytes."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import bson
import pytest
from bson import SON, Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cqrs_ddd_persistence_mongo._pure import events as _pure_events
from cqrs_ddd_persistence_mongo.core._event_codec import EVENT_CODEC, GAP_EVENT_TYPE, decode_page, gap_document
from cqrs_ddd_persistence_mongo.core.upcasting import UpcasterRegistry

from .conftest import both, outcome

FIELDS = ("event_id", "event_type", "aggregate_id", "aggregate_type", "version", "schema_version", "payload",
          "metadata", "occurred_at", "correlation_id", "causation_id", "position", "tenant_id")


def shape(value: Any) -> Any:
    """A value's type and repr all the way down (``1 == 1.0 == True``, and NaN != NaN)."""
    if isinstance(value, dict):
        return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [shape(v) for v in value])
    if isinstance(value, datetime):
        return ("datetime", repr(value), value.tzinfo is not None and type(value.tzinfo).__name__)
    return (type(value).__name__, repr(value))


def page_shape(page: Any) -> Any:
    if page is None:
        return None
    positions, events = page
    return ([shape(p) for p in positions],
            [None if e is None else [(f, shape(getattr(e, f))) for f in FIELDS] for e in events])


def event_document(at: int, **fields: Any) -> dict[str, Any]:
    doc = {
        "_id": str(uuid.UUID(int=at)), "event_type": "OrderItemAdded", "aggregate_id": f"order-{at}",
        "aggregate_type": "Order", "version": 1, "schema_version": 1, "payload": {"sku": "a", "quantity": 2},
        "metadata": {}, "occurred_at": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc),
        "correlation_id": None, "causation_id": None, "tenant_id": None, "position": at,
    }
    doc.update(fields)
    return doc


def raw(*docs: Any) -> bytes:
    return b"".join(bson.encode(doc, codec_options=EVENT_CODEC) for doc in docs)


def assert_same(data: bytes, *, covered: bool | None = None) -> None:
    """Both outcomes alike; ``covered``: whether the native decoder answers by itself."""
    native, pure = both("decode_events")
    answer, expected = outcome(native, data), outcome(pure, data)
    assert answer[0] == expected[0], (answer, expected)
    if answer[0] == "ok":
        assert page_shape(answer[1]) == page_shape(expected[1])
    else:
        assert answer[1] == expected[1]
    if covered is not None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_pure_events, "decode_events", refuse)
            assert (outcome(native, data)[0] == "ok") == covered


def refuse(data: bytes) -> Any:
    raise LookupError("the twin was asked")


def test_documents_the_store_writes_decode_alike() -> None:
    docs = [event_document(p) for p in range(1, 6)]
    docs[2] = gap_document(3)
    assert_same(raw(*docs), covered=True)


@pytest.mark.parametrize("value", [
    0, -1, 2**31 - 1, -(2**31), 2**31, Int64(5), 2**63 - 1, -(2**63), 1.5, float("inf"), float("nan"), -0.0,
    True, False, None, "", "é\0x", "$gap", [], [1, [2, {"a": None}]], {"a": {"b": {"c": []}}},
    datetime(1, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=timezone.utc),
    datetime(1969, 12, 31, 23, 59, 59, 1000, tzinfo=timezone.utc), datetime(2000, 2, 29, 12, tzinfo=timezone.utc),
])
def test_covered_values_decode_alike_in_every_field(value: Any) -> None:
    for field in ("payload", "metadata", "aggregate_id", "correlation_id", "tenant_id", "version", "occurred_at"):
        assert_same(raw(event_document(1, **{field: value})), covered=True)
        assert_same(raw(event_document(1, payload={"v": value, "w": [value]})), covered=True)


@pytest.mark.parametrize("value", [
    ObjectId(), Binary(b"x", 0), Binary(b"x", 5), uuid.uuid4(), Decimal128("1.5"), Regex("^a"), re.compile("a"),
    Timestamp(1, 2), MinKey(), MaxKey(), Code("x"), Code("x", {"a": 1}), b"bytes",
    {"$ref": "c", "$id": 1}, {"$ref": "c"},
])
def test_other_bson_types_are_left_to_the_twin(value: Any) -> None:
    assert_same(raw(event_document(1, payload={"v": value})), covered=False)
    assert_same(raw(event_document(1, payload={"v": [{"deep": value}]})), covered=False)


def test_documents_of_another_shape_are_left_to_the_twin() -> None:
    missing = event_document(1)
    del missing["tenant_id"]
    assert_same(raw(missing), covered=False)  # from_document fills the defaults
    assert_same(raw(event_document(1, extra=1)), covered=False)
    assert_same(raw(event_document(1, position=1.0)), covered=False)
    assert_same(raw(event_document(1, occurred_at="yesterday")), covered=True)
    assert_same(raw(event_document(1), {"position": 2}), covered=False)


def test_a_document_nested_deeper_than_the_bound_is_left_to_the_twin() -> None:
    deep: Any = {}
    for _ in range(150):
        deep = {"a": deep}
    assert_same(raw(event_document(1, payload=deep)), covered=False)


def test_a_repeated_field_keeps_its_last_value_as_pymongo_does() -> None:
    doc = SON(event_document(1))
    body = bson.encode(doc)
    extra = bson.encode({"event_type": GAP_EVENT_TYPE})[4:-1]  # one more element: a second event_type
    repeated = (len(body) + len(extra)).to_bytes(4, "little") + body[4:-1] + extra + b"\0"
    assert bson.decode(repeated)["event_type"] == GAP_EVENT_TYPE
    assert_same(repeated, covered=True)
    native, _ = both("decode_events")
    assert native(repeated)[1] == [None]  # the last event_type makes it a hole marker


def test_empty_input_is_an_empty_page() -> None:
    native, pure = both("decode_events")
    assert tuple(native(b"")) == ([], [])
    assert page_shape(pure(b"")) == ([], [])


def test_decode_page_upcasts_old_versions_on_both_paths() -> None:
    registry = UpcasterRegistry()
    registry.register("OrderItemAdded", 1, lambda payload: {**payload, "qty": payload["quantity"]})
    covered = raw(event_document(1))
    not_covered = raw(event_document(1, payload={"quantity": 2, "at": ObjectId()}))
    for data in (covered, not_covered):
        positions, events = decode_page(data, registry)
        assert positions == [1]
        assert events[0] is not None and events[0].schema_version == 2 and events[0].payload["qty"] == 2


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(), st.text(max_size=6),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=timezone.utc)),
    st.sampled_from([ObjectId("0" * 24), Int64(3), b"b", Decimal128("2")]),
)
names = st.text(max_size=4).filter(lambda name: "\0" not in name)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(names, children, max_size=3)),
    max_leaves=10,
)
fields = st.sampled_from(["payload", "metadata", "aggregate_id", "event_type", "version", "causation_id"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(fields, values), max_size=4), st.integers(1, 2**40))
def test_generated_event_documents_decode_alike(changes: list[tuple[str, Any]], position: int) -> None:
    assert_same(raw(event_document(position, **dict(changes)), event_document(position + 1)))


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 400), st.binary(max_size=8))
def test_hostile_bytes_give_the_twins_outcome(noise: bytes, cut: int, splice: bytes) -> None:
    valid = raw(event_document(1), event_document(2))
    for data in (noise, valid[:cut], valid[:cut] + splice + valid[cut + len(splice):]):
        assert_same(data)
