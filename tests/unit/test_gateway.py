"""The gateway's checks and its one error classifier, without a server."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from datetime import datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import bson
import pytest
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    InvalidOperation,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
    WTimeoutError,
)
from pymongo.errors import _OperationCancelled  # type: ignore[attr-defined]

import cqrs_ddd_persistence_mongo as package
from cqrs_ddd_persistence_mongo._gateway import (
    check_key,
    check_name,
    check_pipeline,
    check_query,
    duplicate_key_index,
    translate,
)
from cqrs_ddd_persistence_mongo.connection import time_limit
from cqrs_ddd_persistence_mongo.core.uow import has_error_label
from cqrs_ddd_persistence_mongo.exceptions import (
    ConcurrencyConflict,
    ConnectionFailed,
    InvalidDocument,
    InvalidSpecification,
    InvalidStoreArgument,
    MongoPersistenceError,
    OperationTimedOut,
    UnsafeKeyError,
    UnsafeQueryError,
)

PLAIN = ["a", 1, -(2**63), 2**63 - 1, 1.5, uuid.uuid4(), ObjectId(), b"x", Decimal("1.5"), bson.Decimal128("2"),
         datetime.now(timezone.utc), bson.Binary(b"x", 4)]
HOSTILE = [{"$ne": None}, {"a": {"$gt": 1}}, re.compile("^"), bson.Regex("^"), bson.Code("1"), MappingProxyType({"$ne": 1}),
           RawBSONDocument(bson.encode({"$ne": None})), 2**63, -(2**63) - 1, None, True, [1], object()]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_keys_pass(value: Any) -> None:
    assert check_key(value, "id") is value


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_hostile_keys_are_refused_naming_the_argument(value: Any) -> None:
    with pytest.raises(UnsafeKeyError, match="order_id"):
        check_key(value, "order_id")


def test_composite_keys_are_plain_documents_only() -> None:
    assert check_key({"a": 1, "b": ["x", {"c": 2}]}, "doc_id", composite=True)
    for bad in ({"a": {"$ne": 1}}, {"$or": []}, {"a": re.compile("x")}, {"a": [bson.Regex("x")]}, {"a": 2**64}):
        with pytest.raises(UnsafeKeyError, match="doc_id"):
            check_key(bad, "doc_id", composite=True)
    deep: Any = "leaf"
    for _ in range(200):
        deep = {"k": deep}
    with pytest.raises(UnsafeKeyError, match="deeper"):
        check_key(deep, "doc_id", composite=True)


@pytest.mark.parametrize(
    "query",
    [
        MappingProxyType({"$where": "1"}),
        RawBSONDocument(bson.encode({"$where": "1"})),
        {"a": MappingProxyType({"$expr": {"$function": {}}})},
        {"$and": [RawBSONDocument(bson.encode({"b": {"$accumulator": {}}}))]},
        ({"x": bson.SON([("$where", "1")])},),
        {"a": bson.Code("1")},
    ],
    ids=repr,
)
def test_queries_are_walked_in_every_mapping_and_sequence_type(query: Any) -> None:
    with pytest.raises(UnsafeQueryError):
        check_query(query)


def test_write_stages_hide_nowhere() -> None:
    for pipeline in (
        [MappingProxyType({"$facet": {"x": [{"$merge": {"into": "p"}}]}})],
        [RawBSONDocument(bson.encode({"$facet": {"x": [{"$out": "p"}]}}))],
        ({"$lookup": {"pipeline": [MappingProxyType({"$merge": "p"})]}},),
    ):
        with pytest.raises(UnsafeQueryError, match="writes"):
            check_pipeline(pipeline)
        check_pipeline(pipeline, allow_write_stages=True)
    with pytest.raises(InvalidSpecification):
        check_pipeline({"$match": {}})


def test_deep_queries_stop_at_the_depth_limit() -> None:
    deep: Any = {}
    for _ in range(500):
        deep = {"$and": [deep]}
    with pytest.raises(InvalidSpecification, match="deeper"):
        check_query(deep)


def test_duplicate_key_index_names_the_unique_index() -> None:
    assert duplicate_key_index({"code": 11000, "keyPattern": {"aggregate_id": 1, "version": 1}}) == "aggregate_id,version"
    assert duplicate_key_index({"code": 11000, "errmsg": "E11000 duplicate key error index: position_1 dup key"}) == "position"
    assert duplicate_key_index({"code": 11000, "errmsg": "E11000 index: _id_ dup key"}) == "_id"
    assert duplicate_key_index({"code": 11000, "errmsg": "full error: {'keyPattern': {'a': 1, 'b': 1}}"}) == "a,b"
    assert duplicate_key_index({"code": 112}) is None
    exc = DuplicateKeyError("E11000", 11000, {"code": 11000, "keyPattern": {"email": 1}})
    assert duplicate_key_index(exc) == "email"


def _labelled(exc: OperationFailure, *labels: str) -> OperationFailure:
    for label in labels:
        exc._add_error_label(label)
    return exc


@pytest.mark.parametrize(
    "raw, expected",
    [
        (NetworkTimeout("timed out"), OperationTimedOut),
        (ExecutionTimeout("exceeded", 50), OperationTimedOut),
        (OperationFailure("operation exceeded time limit", 50), OperationTimedOut),
        (WTimeoutError("w timeout", 64), OperationTimedOut),
        (ServerSelectionTimeoutError("no servers"), ConnectionFailed),
        (AutoReconnect("connection reset"), ConnectionFailed),
        (_OperationCancelled("cancelled"), ConnectionFailed),
        (DocumentTooLarge("too large"), InvalidDocument),
        (OverflowError("MongoDB can only handle up to 8-byte ints"), InvalidDocument),
        (bson.errors.InvalidDocument("cannot encode object"), InvalidDocument),
        (TypeError("'<' not supported"), InvalidStoreArgument),
        (OperationFailure("WriteConflict", 112), ConcurrencyConflict),
        (DuplicateKeyError("E11000", 11000, {"code": 11000, "keyPattern": {"_id": 1}}), MongoPersistenceError),
        (BulkWriteError({"writeErrors": [{"code": 11000, "keyPattern": {"x": 1}, "index": 0}]}), MongoPersistenceError),
        (OperationFailure("boom", 2), MongoPersistenceError),
    ],
    ids=lambda v: type(v).__name__,
)
def test_one_classifier_maps_driver_errors_to_library_errors(raw: Exception, expected: type) -> None:
    error = translate(raw, "doing it")
    assert isinstance(error, expected)
    assert "doing it" in str(error)


def test_duplicate_key_errors_name_the_index() -> None:
    error = translate(DuplicateKeyError("E11000", 11000, {"code": 11000, "keyPattern": {"email": 1}}), "saving")
    assert error is not None and "email" in str(error)


def test_labels_travel_with_the_library_error() -> None:
    conflict = translate(_labelled(OperationFailure("WriteConflict", 112), "TransientTransactionError"), "saving")
    assert conflict is not None and conflict.transient and conflict.has_error_label("TransientTransactionError")
    assert has_error_label(conflict, "TransientTransactionError")
    unknown = translate(_labelled(OperationFailure("net", 6), "UnknownTransactionCommitResult"), "committing")
    assert unknown is not None and unknown.has_error_label("UnknownTransactionCommitResult")
    assert not unknown.transient
    assert translate(NetworkTimeout("t"), "x").transient  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw",
    [ServerSelectionTimeoutError("no servers"), AutoReconnect("connection reset"), _OperationCancelled("pool cleared"),
     NetworkTimeout("timed out"), ExecutionTimeout("exceeded", 50)],
    ids=lambda v: type(v).__name__,
)
def test_lost_connections_and_timeouts_are_worth_a_retry(raw: Exception) -> None:
    """What a retry loop on ``.transient`` expects: the server may answer next time. The
    transaction label stays the driver's, so ``uow.run`` retries only what pymongo marks."""
    error = translate(raw, "reading")
    assert isinstance(error, (ConnectionFailed, OperationTimedOut))
    assert error.transient
    assert not error.has_error_label("TransientTransactionError")


def test_connection_errors_a_retry_cannot_fix_are_not_transient() -> None:
    not_connected = translate(InvalidOperation("Cannot use MongoClient after close"), "reading")
    assert isinstance(not_connected, ConnectionFailed) and not not_connected.transient
    assert not ConnectionFailed("invalid MongoDB URL").transient


#: modules allowed to spell a server code: the gateway defines them; the exception that is
#: also a pymongo DuplicateKeyError carries its code (it cannot import the gateway)
CODE_OWNERS = {"_gateway.py", "exceptions.py"}


def test_server_codes_and_name_checks_are_defined_once() -> None:
    root = Path(package.__file__).parent
    spelled = []
    for path in sorted(root.rglob("*.py")):
        if path.name in CODE_OWNERS or "_pure" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![\w.])(11000|112)(?![\w.])", code) or re.match(r"\s*def (require|check)_name\b", code):
                spelled.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert spelled == [], "import the codes and checks from _gateway"
    from cqrs_ddd_persistence_mongo.advanced._store import require_name

    assert require_name is check_name


def test_cancellation_and_library_errors_pass_through() -> None:
    assert translate(asyncio.CancelledError(), "x") is None
    assert translate(KeyboardInterrupt(), "x") is None
    assert translate(InvalidDocument("mine"), "x") is None


def test_time_limit_needs_a_positive_number() -> None:
    for bad in (0, -1, "2", True, None):
        with pytest.raises(InvalidStoreArgument):
            with time_limit(bad):  # type: ignore[arg-type]
                pass
    with time_limit(0.5):
        import pymongo._csot as csot

        assert csot.get_timeout() == 0.5


def test_the_connection_sets_the_client_wide_operation_timeout() -> None:
    from cqrs_ddd_persistence_mongo import MongoConnectionManager

    default = MongoConnectionManager(url="mongodb://h/")
    assert default.operation_timeout == 30.0 and default._options["timeoutMS"] == 30_000
    short = MongoConnectionManager(url="mongodb://h/", operation_timeout=1.5)
    assert short._options["timeoutMS"] == 1500
    unbounded = MongoConnectionManager(url="mongodb://h/", operation_timeout=None)
    assert unbounded.operation_timeout is None and "timeoutMS" not in unbounded._options
    from_url = MongoConnectionManager(url="mongodb://h/?timeoutMS=2500")
    assert "timeoutMS" not in from_url._options  # the URL's value reaches the client as given
    assert from_url.operation_timeout == 2.5
    given = MongoConnectionManager(url="mongodb://h/", timeoutMS=4000)
    assert given.operation_timeout == 4.0
    for bad in (0, -1, "5", True):
        with pytest.raises(InvalidStoreArgument):
            MongoConnectionManager(url="mongodb://h/", operation_timeout=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidStoreArgument):
        MongoConnectionManager(url="mongodb://h/").transaction_concerns(5, "majority")  # type: ignore[arg-type]
