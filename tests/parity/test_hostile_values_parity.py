"""Values built to break the walks from inside: an Enum member whose value is itself, a
Decimal subclass whose ``__str__`` / ``as_tuple`` lie, objects whose ``__repr__`` fails or
that nest too deep to repr, keys whose ``__str__`` fails, and values whose repr is very
long. Both backends give the same result or the same library error, and an error message
never fails on the value it shows."""

from __future__ import annotations

import enum
from decimal import Decimal
from typing import Any

import pytest

from .conftest import both, outcome


class Loop(enum.Enum):
    A = 1


Loop.A._value_ = Loop.A  # a member whose value is itself


class Chain(enum.Enum):
    B = 2
    C = 3


Chain.C._value_ = Chain.B  # one member leads to another, which is a plain value


class LyingDecimal(Decimal):
    """Claims other digits through every method a walk could ask."""

    def __str__(self) -> str:
        return "abc"

    def __repr__(self) -> str:
        return "abc"

    def as_tuple(self) -> Any:
        return (0, (9,), 0)


class HugeExponentText(Decimal):
    def __str__(self) -> str:
        return "1E-170141183460469231731687303715884105728"


class Unrepresentable:
    def __repr__(self) -> str:
        raise ValueError("no repr")


class Nameless(str):
    """A str key whose own text methods fail: paths must read its characters."""

    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise ValueError("no repr")


def deep_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


TOO_DEEP_TO_REPR = deep_list(50_000)


def same(name: str, *args: Any) -> tuple[str, Any]:
    native, pure = both(name)
    got = outcome(native, *args)
    assert repr(got) == repr(outcome(pure, *args)), (name, got)
    if got[0] == "error":
        assert got[1][0] in {"InvalidDocument", "InvalidSpecification"}, got
    return got


def test_an_enum_member_whose_value_is_itself_is_too_deep_not_a_crash() -> None:
    kind, (cls, message) = same("map_to_doc", {"a": Loop.A}, "id", None, False)
    assert (kind, cls) == ("error", "InvalidDocument")
    assert "nests deeper than 100 levels" in message and "'a'" in message


def test_an_enum_member_leading_to_another_stores_the_plain_value() -> None:
    assert same("map_to_doc", {"a": Chain.C}, "id", None, False) == ("ok", {"a": 2})


@pytest.mark.parametrize("value", [LyingDecimal("1"), LyingDecimal("-12.50"), HugeExponentText("2.5"), LyingDecimal("1E+7000")])
def test_a_decimal_subclass_is_stored_as_the_number_it_holds(value: Decimal) -> None:
    kind, result = same("map_to_doc", {"a": value}, "id", None, False)
    if kind == "ok":
        assert result["a"].to_decimal() == Decimal.__new__(Decimal, value)
    else:
        assert "Decimal 1E+7000 at 'a' cannot be stored exactly" in result[1]


@pytest.mark.parametrize(
    "name, args",
    [
        ("compile_filter", ({"attr": "a", "op": "size", "val": TOO_DEEP_TO_REPR},)),
        ("compile_filter", ({"attr": "a", "op": "size", "val": Unrepresentable()},)),
        ("compile_filter", ({"attr": "a", "op": "between", "val": [Unrepresentable(), 1, 2]},)),
        ("compile_sort", ([[TOO_DEEP_TO_REPR]],)),
        ("compile_sort", ([Unrepresentable()],)),
        ("compile_projection", ([Unrepresentable()],)),
        ("compile_projection", (Unrepresentable(),)),
        ("validate_keys", ({Unrepresentable(): 1},)),
    ],
)
def test_an_error_message_never_fails_on_the_value_it_shows(name: str, args: tuple[Any, ...]) -> None:
    kind, (cls, message) = same(name, *args)
    assert kind == "error"
    assert "<unrepresentable " in message


def test_long_values_are_clipped_the_same_way_in_both_backends() -> None:
    kind, (cls, message) = same("compile_filter", {"attr": "a", "op": "size", "val": "é" * 500})
    assert kind == "error"
    shown = message.split("got ", 1)[1]
    assert len(shown) == 200 and shown.endswith("...")


def test_a_key_whose_own_str_fails_is_named_by_its_characters() -> None:
    kind, (cls, message) = same("map_to_doc", {"x": {Nameless("a"): object()}}, "id", None, False)
    assert kind == "error" and "at 'x.a'" in message
    kind, (cls, message) = same("map_from_doc", {"x": {Nameless("a"): deep_list(120)}}, "id", None, False)
    assert kind == "error" and message.startswith("document at 'x.a[0]")
