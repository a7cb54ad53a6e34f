"""Key validation through the bound backend: each rule, with the path it names."""

from __future__ import annotations

import pytest

from cqrs_ddd_persistence_mongo import InvalidDocument, MongoPersistenceError
from cqrs_ddd_persistence_mongo._accel import validate_keys


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ({"$where": 1}, "$where", "start with '$'"),
        ({"a.b": 1}, "a.b", "contain '.'"),
        ({"a\0": 1}, "a\0", "NUL"),
        ({"items": [{"ok": 1}, {"p": {"$gt": 1}}]}, "items[1].p.$gt", "start with '$'"),
        ({"t": ({"x": 1}, {"y.z": 2})}, "t[1].y.z", "contain '.'"),
    ],
)
def test_bad_keys_are_named(doc: dict, path: str, reason: str) -> None:
    with pytest.raises(InvalidDocument) as info:
        validate_keys(doc)
    assert f"'{path}'" in str(info.value)
    assert reason in str(info.value)
    assert isinstance(info.value, MongoPersistenceError)


def test_non_string_key() -> None:
    with pytest.raises(InvalidDocument, match=r"field name 3 at 'a' is not a string"):
        validate_keys({"a": {3: "x"}})


def test_good_documents_pass() -> None:
    validate_keys({"_id": 1, "a": {"b": [1, {"c": None}], "d$": "$not-a-key"}, "e": ("$x",)})
