"""Fuzz parity over adversarial inputs: native and pure give the same result or raise the
same exception class with the same message, and neither lets a builtin exception or a
crash through. Inputs: trees and documents around the depth limit and very wide ones,
``str`` / ``int`` / ``dict`` / ``Decimal`` subclasses whose methods lie, NaN and infinities, huge ints,
Decimal edge values. The budget is fixed (derandomized, bounded example counts) so CI
time stays bounded."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import both, outcome
from .test_hostile_values_parity import HugeExponentText, LyingDecimal

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class LyingStr(str):
    """A str whose text methods lie: checks must read the characters themselves."""

    def startswith(self, *args: Any) -> bool:  # type: ignore[override]
        return False

    def endswith(self, *args: Any) -> bool:  # type: ignore[override]
        return False

    def split(self, *args: Any, **kwargs: Any) -> list[str]:  # type: ignore[override]
        return ["ok"]

    def strip(self, *args: Any) -> str:  # type: ignore[override]
        return "ok"

    def __contains__(self, item: object) -> bool:  # type: ignore[override]
        return False

    def __iter__(self) -> Any:
        return iter("ok")

    def __format__(self, spec: str) -> str:
        return "ok"


class LyingInt(int):
    """An int that claims to be small and positive."""

    def __lt__(self, other: object) -> bool:
        return False

    def __float__(self) -> float:
        return 1.0


class LyingDict(dict):  # type: ignore[type-arg]
    """A dict whose mapping methods lie: walks must read the stored items."""

    def __getitem__(self, key: Any) -> Any:
        return "lie"

    def get(self, key: Any, default: Any = None) -> Any:
        return "lie"

    def __contains__(self, key: object) -> bool:
        return True

    def keys(self) -> Any:  # type: ignore[override]
        return iter(["lie"])

    def items(self) -> Any:  # type: ignore[override]
        return iter([("lie", "lie")])

    def __iter__(self) -> Any:
        return iter(["lie"])


ODD_NUMBERS = [
    float("nan"), float("inf"), float("-inf"), -0.0, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**200,
    LyingInt(-5), LyingInt(2**70), True, False,
    Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"), Decimal("NaN12"), Decimal("Infinity"), Decimal("-0"),
    Decimal("1E+6144"), Decimal("1E+6145"), Decimal("1E-6176"), Decimal("1E-6177"), Decimal("9" * 34),
    Decimal("9" * 35), Decimal("1" + "0" * 40), Decimal("0E-9999"), Decimal("-1.50"),
    LyingDecimal("7.25"), LyingDecimal("NaN5"), HugeExponentText("1E+9000"),
]
ODD_KEYS = ["a", "$a", "a.b", "a\0b", "", "_id", "id", "version", LyingStr("$a"), LyingStr("a.b"), LyingStr("ok"), 1, None]
scalars = st.one_of(
    st.sampled_from(ODD_NUMBERS),
    st.text(max_size=6),
    st.sampled_from([LyingStr("x.y"), LyingStr("$x"), None, b"raw", uuid.UUID(int=7), dt.date(2024, 2, 29)]),
    st.datetimes(timezones=st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=5))])),
)


def _nested(depth: int, leaf: Any, make: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = make(value)
    return value


@st.composite
def deep_values(draw: Any) -> Any:
    """A chain 95..105 levels deep of dicts / lists / tuples / LyingDicts."""
    depth = draw(st.integers(95, 105))
    kind = draw(st.sampled_from(["dict", "list", "tuple", "lying"]))
    makers = {
        "dict": lambda v: {"k": v},
        "list": lambda v: [v],
        "tuple": lambda v: (v,),
        "lying": lambda v: LyingDict(k=v),
    }
    return _nested(depth, draw(scalars), makers[kind])


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(ODD_KEYS), children, max_size=4),
        st.dictionaries(st.sampled_from(ODD_KEYS), children, max_size=3).map(LyingDict),
    )


POINT = {"type": "Point", "coordinates": [1, 2]}
GEO_VALUES = [
    LyingDict({"$geometry": POINT}),
    {"$geometry": LyingDict(POINT)},
    {"type": LyingStr("Point"), "coordinates": [LyingInt(5), 2**200]},
    {"type": "Point", "coordinates": [LyingInt(2**70), float("-inf")]},
    {"type": "Point", "coordinates": [Decimal("1"), 2]},
    [[LyingInt(1), 2.0], LyingInt(2**70)],
    [[1, 2], Decimal("NaN")],
    LyingDict({"coordinates": [1, 2], "maxDistance": LyingInt(-5)}),
    {"coordinates": (1, 2), "maxDistance": 2**200, "minDistance": True},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]], "crs": LyingDict(type="name", properties={"name": "x"})},
    [LyingDict(k=1), "a", None],
    LyingDict(l=[LyingDict(x=[1, LyingStr("$a")])]),
]
values = st.one_of(scalars, deep_values(), st.recursive(scalars, _containers, max_leaves=12), st.sampled_from(GEO_VALUES))
wide = st.lists(scalars, min_size=200, max_size=400)
documents = st.one_of(
    st.dictionaries(st.sampled_from(ODD_KEYS), values, max_size=5),
    st.dictionaries(st.sampled_from(ODD_KEYS), values, max_size=5).map(LyingDict),
    wide.map(lambda items: {f"f{i}": v for i, v in enumerate(items)}),
    deep_values(),
)

OPS = [
    "eq", "in", "json_contains", "json_has_key", "startswith", "size", "dwithin", "regex", ">=", "bogus", "not_in",
    "all", "json_has_any", "json_has_all", "within", "intersects", "near", "distance_lt",
]
leaves = st.fixed_dictionaries(
    {"attr": st.sampled_from(ODD_KEYS), "op": st.sampled_from(OPS + [LyingStr("eq"), 3]), "val": values}
) | st.fixed_dictionaries({"attr": st.sampled_from(ODD_KEYS), "op": st.sampled_from(OPS)}).map(LyingDict)


@st.composite
def deep_trees(draw: Any) -> Any:
    depth = draw(st.integers(97, 103))
    op = draw(st.sampled_from(["not", "and", "or"]))
    return _nested(depth, draw(leaves), lambda t: {"op": op, "conditions": [t]})


trees = st.one_of(
    st.recursive(
        leaves,
        lambda children: st.builds(
            lambda op, cs: {"op": op, "conditions": cs}, st.sampled_from(["and", "or", "not", LyingStr("and")]), st.lists(children, max_size=3)
        ),
        max_leaves=8,
    ),
    deep_trees(),
    st.lists(leaves, min_size=150, max_size=300).map(lambda cs: {"op": "or", "conditions": cs}),
)


def same(name: str, *args: Any) -> None:
    native, pure = both(name)
    got_native, got_pure = outcome(native, *args), outcome(pure, *args)
    # repr tells 1 from True from 1.0, list from tuple, and shows NaN as NaN
    assert repr(got_native) == repr(got_pure), (name, args)
    if got_native[0] == "error":
        kind = got_native[1][0]
        assert kind in {"InvalidDocument", "InvalidSpecification"}, (name, got_native)


@FUZZ
@given(trees)
def test_specification_intake_and_compile_agree(tree: Any) -> None:
    same("normalize_spec", tree)
    same("compile_filter", tree)


@FUZZ
@given(documents)
def test_key_validation_agrees(doc: Any) -> None:
    same("validate_keys", doc)


@FUZZ
@given(documents, st.booleans())
def test_mapping_agrees(doc: Any, versioned: bool) -> None:
    same("map_to_doc", doc, "id", None, versioned)
    same("map_from_doc", doc, "id", None, versioned)


@FUZZ
@given(st.lists(documents, max_size=3))
def test_bulk_statements_agree(docs: Any) -> None:
    same("build_upserts", docs)
    for doc in docs:
        same("canonical_id", doc)


@FUZZ
@given(st.one_of(values, st.lists(st.one_of(st.sampled_from(ODD_KEYS), st.tuples(st.sampled_from(ODD_KEYS), st.sampled_from(ODD_NUMBERS + ["asc"]))))))
def test_sort_and_projection_agree(value: Any) -> None:
    same("compile_sort", value)
    same("compile_projection", value)
