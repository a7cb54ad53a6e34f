"""Hostile arguments: every public store method that takes an id, key, name, position,
filter or pipeline refuses operator dicts, patterns, code, oversized ints and wrong types
with a library error, and no data changes or leaks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from cqrs_ddd_persistence_mongo import MongoConnectionManager, StoredEvent
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument, InvalidEvent, MongoPersistenceError

from ._store_calls import (
    Order,
    Stores,
    keyed_calls,
    make_stores,
    number_calls,
    query_calls,
    seed,
    snapshot_of_data,
)

HOSTILE_KEYS: list[Any] = [
    {"$ne": None},
    {"$regex": "^"},
    {"$gt": ""},
    re.compile("^"),
    bson.Regex("^"),
    bson.Code("true"),
    MappingProxyType({"$ne": None}),
    RawBSONDocument(bson.encode({"$ne": None})),
    2**63,
    None,
    True,
    object(),
]
HOSTILE_NUMBERS: list[Any] = ["0", "5", 2**63, 2**64, -1, 1.5, {"$gt": 0}]

_where = {"$where": "sleep(100) || true"}
_function = {"$expr": {"$function": {"body": "function() { return true }", "args": [], "lang": "js"}}}
_merge_in_facet = {"$facet": {"x": [{"$merge": {"into": "pwned"}}]}}
_out = {"$out": "pwned"}
HOSTILE_QUERIES: list[tuple[Any, Any]] = [
    (MappingProxyType(_where), [MappingProxyType({"$match": MappingProxyType(_where)})]),
    (RawBSONDocument(bson.encode(_where)), [RawBSONDocument(bson.encode({"$match": _where}))]),
    (MappingProxyType(_function), [{"$match": MappingProxyType(_function)}]),
    (RawBSONDocument(bson.encode(_function)), [RawBSONDocument(bson.encode(_merge_in_facet))]),
    ({"a": [MappingProxyType(_where)]}, [MappingProxyType(_merge_in_facet)]),
    ({"$and": [RawBSONDocument(bson.encode(_where))]}, [{"$facet": {"y": [MappingProxyType(_out)]}}]),
]


@pytest.fixture
async def stores(pymongo_connection: MongoConnectionManager) -> AsyncIterator[Stores]:
    s = make_stores(pymongo_connection)
    await seed(s)
    yield s


async def _refused(call: Any) -> BaseException | None:
    """The exception a call raised (None if it returned)."""
    try:
        result = call()
        await result
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        return exc
    return None


@pytest.mark.parametrize("method", list(keyed_calls(None, None)))  # type: ignore[arg-type]
async def test_ids_and_keys_must_be_plain_values(stores: Stores, method: str) -> None:
    before = await snapshot_of_data(stores.connection)
    problems = []
    optional = "(correlation_id)" in method or "(event_id)" in method  # None means "not given" there
    for bad in HOSTILE_KEYS:
        if bad is None and optional:
            continue
        error = await _refused(keyed_calls(stores, bad)[method])
        if not isinstance(error, MongoPersistenceError):
            problems.append(f"{bad!r}: {'returned' if error is None else type(error).__name__ + ': ' + str(error)}")
    assert not problems, f"{method} accepted hostile keys:\n" + "\n".join(problems)
    assert await snapshot_of_data(stores.connection) == before


@pytest.mark.parametrize("method", list(number_calls(None, None)))  # type: ignore[arg-type]
async def test_positions_versions_and_counts_must_be_64_bit_ints(stores: Stores, method: str) -> None:
    before = await snapshot_of_data(stores.connection)
    problems = []
    for bad in HOSTILE_NUMBERS:
        error = await _refused(number_calls(stores, bad)[method])
        if not isinstance(error, MongoPersistenceError):
            problems.append(f"{bad!r}: {'returned' if error is None else type(error).__name__ + ': ' + str(error)}")
    assert not problems, f"{method} accepted hostile numbers:\n" + "\n".join(problems)
    assert await snapshot_of_data(stores.connection) == before


@pytest.mark.parametrize("method", list(query_calls(None, None, None)))  # type: ignore[arg-type]
async def test_filters_and_pipelines_are_checked_in_every_mapping_type(stores: Stores, method: str) -> None:
    before = await snapshot_of_data(stores.connection)
    problems = []
    for bad_filter, bad_pipeline in HOSTILE_QUERIES:
        error = await _refused(query_calls(stores, bad_filter, bad_pipeline)[method])
        if not isinstance(error, MongoPersistenceError):
            problems.append(f"{bad_filter!r} / {bad_pipeline!r}: {error!r}")
    assert not problems, f"{method} sent hostile queries:\n" + "\n".join(problems)
    assert "pwned" not in await stores.connection.db().list_collection_names()
    assert await snapshot_of_data(stores.connection) == before


async def test_operator_ids_no_longer_reach_other_documents(stores: Stores) -> None:
    """The reported cases, one by one: each used to read, change or delete other documents."""
    cases = {
        "snapshot of another aggregate": stores.snapshots.get_latest_snapshot("Order", {"$ne": None}),
        "delete every snapshot": stores.snapshots.delete_snapshot("Order", {"$regex": "^"}),
        "every stream": stores.events.get_events({"$ne": None}),
        "any outbox message": stores.outbox.get_message({"$ne": None}),
        "fail any outbox message": stores.outbox.mark_failed({"$ne": None}, "x"),
        "complete any job": stores.jobs.mark_completed({"$ne": None}),
        "cancel any job": stores.jobs.request_cancellation({"$ne": None}),
        "any aggregate by pattern": stores.repo.get(re.compile("^")),
        "delete an aggregate by pattern": stores.repo.delete(re.compile("^")),
        "delete a read model by pattern": stores.projections.delete("summaries", re.compile("^")),
        "any aggregate by bson.Regex": stores.repo.get(bson.Regex("^")),
    }
    for what, call in cases.items():
        with pytest.raises(MongoPersistenceError):
            await call
    assert len(await stores.snapshots.get_latest_snapshot("Order", "o1") or {}) > 0
    assert await stores.repo.exists("o1") and await stores.repo.exists("o2")


async def test_values_the_server_cannot_store_are_library_errors(stores: Stores) -> None:
    """ints over 2**63 and documents over 16 MiB raise InvalidDocument, not OverflowError /
    DocumentTooLarge; nothing is written."""
    huge = 2**64
    cases = {
        "event payload": stores.events.append(StoredEvent(event_type="X", aggregate_id="big", version=1, payload={"n": huge})),
        "snapshot": stores.snapshots.save_snapshot("Order", "big", {"n": huge}, 1),
        "projection upsert": stores.projections.upsert("summaries", "big", {"n": huge}),
        "projection upsert too large": stores.projections.upsert("summaries", "big", {"s": "x" * (17 * 1024 * 1024)}),
        "repository add too large": stores.repo.add(Order(id="big", customer_id="x" * (17 * 1024 * 1024))),
    }
    for what, call in cases.items():
        with pytest.raises((InvalidDocument, InvalidEvent)):
            await call
    assert await stores.repo.get("big") is None
    assert await stores.projections.find_one("summaries", "big") is None
    assert await stores.events.get_events("big") == []


async def test_a_string_event_position_cannot_defeat_the_position_guard(stores: Stores) -> None:
    await stores.projections.upsert("summaries", "g", {"n": 1}, event_position=10)
    with pytest.raises(MongoPersistenceError):
        await stores.projections.upsert("summaries", "g", {"n": 0}, event_position="9")
    assert not await stores.projections.upsert("summaries", "g", {"n": 0}, event_position=9)
    assert (await stores.projections.find_one("summaries", "g"))["n"] == 1
