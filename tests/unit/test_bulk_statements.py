"""The upsert statement builder (bound backend), the batch splitter and the query checks."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from bson.codec_options import CodecOptions
from bson.binary import UuidRepresentation

from cqrs_ddd_persistence_mongo import _accel
from cqrs_ddd_persistence_mongo.advanced import BulkLimits, build_upserts, to_update_ones
from cqrs_ddd_persistence_mongo.advanced.bulk_upserts import (
    check_unique_keys,
    plan_batches,
    is_id_conflict,
    split_batches,
    statement_sizes,
)
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument, InvalidSpecification, UnsafeQueryError
from cqrs_ddd_persistence_mongo.query_safety import check_pipeline, check_query


def test_statement_shape_with_guards() -> None:
    [(flt, upd)] = build_upserts([{"id": "o1", "total": 5, "_last_position": 9, "_last_event_id": "e9"}])
    assert flt == {"_id": "o1", "_last_position": {"$not": {"$gte": 9}}, "_last_event_id": {"$ne": "e9"}}
    assert upd == {"$set": {"total": 5, "_last_position": 9, "_last_event_id": "e9"}}


def test_guards_can_be_switched_off_and_renamed() -> None:
    doc = {"id": "o1", "_last_position": 9, "_last_event_id": "e9", "seq": 4}
    [(flt, _)] = build_upserts([doc], position_field=None, event_id_field=None)
    assert flt == {"_id": "o1"}
    [(flt, _)] = build_upserts([doc], position_field="seq", event_id_field=None)
    assert flt == {"_id": "o1", "seq": {"$not": {"$gte": 4}}}
    [(flt, _)] = build_upserts([{"id": "o1", "_last_position": None}])
    assert flt == {"_id": "o1"}


def test_key_fields_are_not_in_the_body_and_id_field_wins_over_underscore_id() -> None:
    [(flt, upd)] = build_upserts([{"_id": "x", "code": "k1", "n": 1}], id_field="code")
    assert flt == {"_id": "k1"} and upd == {"$set": {"n": 1}}
    [(flt, upd)] = build_upserts([{"_id": "x", "n": 1}])
    assert flt == {"_id": "x"} and upd == {"$set": {"n": 1}}


def test_composite_keys_are_canonical_in_any_order() -> None:
    a = build_upserts([{"id": {"product_id": "p", "customer_id": "c", "extra": {"z": 1, "a": 2}}}])[0][0]["_id"]
    b = build_upserts([{"id": {"extra": {"a": 2, "z": 1}, "customer_id": "c", "product_id": "p"}}])[0][0]["_id"]
    assert a == b
    assert list(a) == ["customer_id", "extra", "product_id"] and list(a["extra"]) == ["a", "z"]
    assert list(_accel.canonical_id({"b": 1, "a": 2})) == ["a", "b"]


@pytest.mark.parametrize(
    ("docs", "message"),
    [
        ([{"id": 1}, {"id": 2, "items": [{"$price": 1}]}], "docs[1].items[0].$price"),
        ([{"id": 1, "a.b": 1}], "docs[0].a.b"),
        ([{"id": 1, "x": {"bad\0": 1}}], "NUL"),
        ([{"n": 1}], "has no 'id'"),
        ([{"id": None}], "is None"),
        ([{"id": [1, 2]}], "composite key"),
        ([{"id": {"$x": 1}}], "docs[0].id.$x"),
        (["nope"], "is a str, not a dict"),
    ],
)
def test_invalid_documents_name_the_path(docs: list, message: str) -> None:
    with pytest.raises(InvalidDocument) as info:
        build_upserts(docs)
    assert message in str(info.value)


def test_to_update_ones_sets_upsert() -> None:
    [model] = to_update_ones(build_upserts([{"id": 1, "n": 2}]))
    assert model._doc == {"$set": {"n": 2}} and model._filter == {"_id": 1} and model._upsert is True


def test_split_respects_count_and_bytes() -> None:
    assert split_batches([10] * 7, BulkLimits(max_count=3, max_bytes=1000)) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split_batches([40, 40, 40, 10, 90], BulkLimits(max_count=100, max_bytes=100)) == [
        range(0, 2),
        range(2, 4),
        range(4, 5),
    ]
    assert split_batches([], BulkLimits()) == []
    with pytest.raises(InvalidDocument, match=r"docs\[1\] encodes to 101 bytes"):
        split_batches([5, 101], BulkLimits(max_count=10, max_bytes=100))


def test_split_every_batch_within_limits_and_order_kept() -> None:
    sizes = [(i * 37) % 90 + 1 for i in range(500)]
    limits = BulkLimits(max_count=17, max_bytes=400)
    batches = split_batches(sizes, limits)
    assert [i for b in batches for i in b] == list(range(500))
    for b in batches:
        assert len(b) <= 17 and sum(sizes[i] for i in b) <= 400


def test_statement_sizes_use_codec_options_and_report_unencodable() -> None:
    codec = CodecOptions(uuid_representation=UuidRepresentation.STANDARD, tz_aware=True)
    sizes = statement_sizes(build_upserts([{"id": uuid.uuid4(), "at": dt.datetime.now(dt.timezone.utc)}]), codec)
    assert sizes[0] > 40
    with pytest.raises(InvalidDocument, match=r"docs\[1\] cannot be encoded"):
        statement_sizes(build_upserts([{"id": 1}, {"id": 2, "s": {1, 2}}]), codec)


def test_plan_batches_encodes_a_batch_that_fits_once_and_splits_the_others_like_the_sizes() -> None:
    codec = CodecOptions(uuid_representation=UuidRepresentation.STANDARD, tz_aware=True)
    statements = build_upserts([{"id": f"k{i}", "payload": "x" * (i % 5) * 40} for i in range(60)])
    assert plan_batches(statements, codec, BulkLimits()) == [range(60)]
    small = BulkLimits(max_count=7, max_bytes=2_000)
    assert plan_batches(statements, codec, small) == split_batches(statement_sizes(statements, codec), small)
    assert plan_batches([], codec, BulkLimits()) == []
    with pytest.raises(InvalidDocument, match=r"docs\[1\] cannot be encoded"):
        plan_batches(build_upserts([{"id": 1}, {"id": 2, "s": {1, 2}}]), codec, BulkLimits())
    with pytest.raises(InvalidDocument, match=r"docs\[0\] encodes to \d+ bytes"):
        plan_batches(build_upserts([{"id": "big", "payload": "x" * 3_000}]), codec, BulkLimits(max_bytes=2_000))


def test_duplicate_keys_in_one_batch_are_refused() -> None:
    statements = build_upserts([{"id": {"a": 1, "b": 2}}, {"id": "x"}, {"id": {"b": 2, "a": 1}}])
    with pytest.raises(InvalidDocument, match=r"docs\[0\] and docs\[2\] have the same key"):
        check_unique_keys(statements)
    check_unique_keys(build_upserts([{"id": 1}, {"id": "1"}, {"id": 1.5}]))
    with pytest.raises(InvalidDocument, match=r"docs\[1\] and docs\[3\] have the same key 'b'"):
        check_unique_keys(build_upserts([{"id": "a"}, {"id": "b"}, {"id": "c"}, {"id": "b"}]))  # all str


def test_id_conflict_recognises_only_the_id_index() -> None:
    assert is_id_conflict({"code": 11000, "keyPattern": {"_id": 1}})
    assert not is_id_conflict({"code": 11000, "keyPattern": {"email": 1}})
    assert is_id_conflict({"code": 11000, "errmsg": "E11000 duplicate key error collection: d.c index: _id_ dup key"})
    assert not is_id_conflict({"code": 2, "keyPattern": {"_id": 1}})


@pytest.mark.parametrize(
    "value",
    [
        {"$where": "this.a > 1"},
        {"a": {"$elemMatch": {"$where": "1"}}},
        {"$and": [{"x": 1}, {"$expr": {"$function": {"body": "f", "args": [], "lang": "js"}}}]},
        [{"$group": {"_id": 1, "x": {"$accumulator": {}}}}],
    ],
)
def test_code_operators_are_refused_at_any_depth(value: object) -> None:
    with pytest.raises(UnsafeQueryError, match="JavaScript"):
        check_query(value)


def test_write_stages_need_the_flag() -> None:
    for stage in ({"$out": "other"}, {"$merge": {"into": "other"}}):
        with pytest.raises(UnsafeQueryError, match="allow_write_stages"):
            check_pipeline([{"$match": {}}, stage])
        check_pipeline([stage], allow_write_stages=True)
    with pytest.raises(UnsafeQueryError):
        check_pipeline([{"$facet": {"a": [{"$out": "x"}]}}])
    with pytest.raises(InvalidSpecification, match="list of stage dicts"):
        check_pipeline({"$match": {}})
    check_query({"status": {"$in": ["a", "b"]}, "n": {"$gte": 1}})
