"""ensure_indexes: the seeds' compact forms, options, and errors."""

from __future__ import annotations

import pytest
from pymongo import IndexModel
from pymongo.errors import BulkWriteError

from cqrs_ddd_persistence_mongo.exceptions import MongoQueryError
from cqrs_ddd_persistence_mongo.indexes import ensure_indexes, to_index_model


async def test_seed_forms_create_the_indexes(real_connection) -> None:
    coll = real_connection.db()["orders"]
    names = await ensure_indexes(
        coll,
        [
            ("status", 1),
            ("customer_id", 1),
            ("customer_id", 1, "status", 1),
            ("created_at", -1),
        ],
        background=True,
    )
    assert names == ["status_1", "customer_id_1", "customer_id_1_status_1", "created_at_-1"]
    info = await coll.index_information()
    assert info["customer_id_1_status_1"]["key"] == [("customer_id", 1), ("status", 1)]
    assert info["created_at_-1"]["key"] == [("created_at", -1)]
    # idempotent
    assert await ensure_indexes(coll, [("status", 1)]) == ["status_1"]


async def test_options_unique_ttl_2dsphere_partial(real_connection) -> None:
    coll = real_connection.db()["places"]
    await ensure_indexes(
        coll,
        [
            ("email", 1, {"unique": True}),
            ("expires_at", 1, {"ttl": 3600}),
            {"keys": [("loc", "2dsphere")], "name": "geo"},
            {"keys": ("kind", 1, "rank", -1), "partialFilterExpression": {"kind": "a"}, "name": "part"},
            [("a", 1), ("b", -1)],
            IndexModel([("c", 1)], name="c_model"),
        ],
    )
    info = await coll.index_information()
    assert info["email_1"]["unique"] is True
    assert info["expires_at_1"]["expireAfterSeconds"] == 3600
    assert info["geo"]["key"] == [("loc", "2dsphere")]
    assert info["part"]["key"] == [("kind", 1), ("rank", -1)] and "partialFilterExpression" in info["part"]
    assert info["a_1_b_-1"]["key"] == [("a", 1), ("b", -1)]
    assert "c_model" in info
    with pytest.raises(BulkWriteError):
        await coll.insert_many([{"email": "x"}, {"email": "x"}])


def test_text_index_spec_builds_a_text_model() -> None:
    # (the embedded server does not build text indexes; the spec is what we own)
    model = to_index_model({"keys": [("title", "text"), ("body", "text")], "default_language": "english"})
    assert model.document["key"] == {"title": "text", "body": "text"}
    assert model.document["default_language"] == "english"


@pytest.mark.parametrize(
    "spec",
    [
        ("status",),
        ("status", 2),
        ("status", True),
        ("status", 1, "x"),
        (),
        {"unique": True},
        {"keys": []},
        [("a", "up")],
        ("created_at", 1, {"ttl": -5}),
        42,
    ],
)
async def test_bad_specs_raise_before_anything_is_created(real_connection, spec) -> None:
    coll = real_connection.db()["bad"]
    with pytest.raises(MongoQueryError):
        await ensure_indexes(coll, [("ok", 1), spec])
    assert "ok_1" not in await coll.index_information()


async def test_conflicting_options_raise_query_error(real_connection) -> None:
    coll = real_connection.db()["conflict"]
    await ensure_indexes(coll, [("expires_at", 1, {"ttl": 60})])
    with pytest.raises(MongoQueryError, match="creating indexes on 'conflict'"):
        await ensure_indexes(coll, [("expires_at", 1, {"ttl": 120})])
