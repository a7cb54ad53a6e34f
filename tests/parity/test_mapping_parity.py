"""map_to_doc / map_from_doc: native and pure agree on generated nested documents,
including errors and their messages; Decimal128 encoding agrees with bson's own."""

from __future__ import annotations

import cqrs_ddd_persistence_mongo
from pathlib import Path
import copy
import datetime as dt
import decimal
import enum
from decimal import Decimal
from typing import Any

import pytest
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.objectid import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_ddd_persistence_mongo._pure.mapping import bid_to_decimal, decimal_to_bid
from cqrs_ddd_persistence_mongo.exceptions import InvalidDocument

from .conftest import both, outcome


PACKAGE_PARENT = str(Path(cqrs_ddd_persistence_mongo.__file__).resolve().parents[1])  # where the tested package is imported from (site-packages in CI)

class Color(enum.Enum):
    RED = "red"
    NUM = 3
    DEC = Decimal("1.5")


class Level(enum.IntEnum):
    LOW = 1


def _shown(result: tuple[str, Any]) -> tuple[str, str]:
    """repr shows types, tzinfo, Decimal digits and Binary subtypes (and NaN != NaN)."""
    return result[0], repr(result[1])


def _shared(source: Any, result: Any, path: str = "") -> list[str]:
    """Paths where the result reuses the input's own container (copy-on-write must agree)."""
    found: list[str] = []
    if isinstance(source, dict) and isinstance(result, dict):
        for key, value in source.items():
            if key in result:
                if result[key] is value and isinstance(value, (dict, list)):
                    found.append(f"{path}.{key!r}")
                found += _shared(value, result[key], f"{path}.{key!r}")
    elif isinstance(source, list) and isinstance(result, list):
        for i, (a, b) in enumerate(zip(source, result)):
            if a is b and isinstance(a, (dict, list)):
                found.append(f"{path}[{i}]")
            found += _shared(a, b, f"{path}[{i}]")
    return found


digits_text = st.text(alphabet="0123456789", min_size=1, max_size=40)
decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(lambda s, d, e: Decimal(f"{s}{d}E{e}"), st.sampled_from(["", "-"]), digits_text, st.integers(-6300, 6300)),
    st.sampled_from([Decimal("NaN123"), Decimal("-sNaN"), Decimal("-0"), Decimal("0E-9999"), Decimal("1E+6144")]),
    # results of arithmetic keep their digits in separately allocated words
    st.builds(lambda a, b: a * b, st.decimals(allow_nan=False, allow_infinity=False), st.decimals(allow_nan=False, allow_infinity=False)),
    st.builds(lambda n, e: Decimal(n).scaleb(e), st.integers(-(10**45), 10**45), st.integers(-6200, 6200)),
)
timezones = st.sampled_from([None, dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))])
datetimes = st.builds(
    lambda d, tz: d.replace(tzinfo=tz),
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1)),
    timezones,
)
unsupported = st.sampled_from([dt.time(1, 2), dt.timedelta(3), complex(1, 1), object])
keys = st.one_of(
    st.text(max_size=5),
    st.sampled_from(["$set", "a.b", "x\0", "_id", "version", "_version", "id"]),
    st.integers(-2, 2),
)
to_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    decimals,
    datetimes,
    st.dates(),
    st.uuids(),
    st.sampled_from(list(Color) + list(Level)),
    st.binary(max_size=4),
    st.binary(max_size=4).map(bytearray),
    st.builds(ObjectId),
    st.just(Decimal128("2.50")),
    st.just(Binary(b"xyz", 5)),
    unsupported,
)
to_documents = st.recursive(
    to_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.frozensets(st.integers(-3, 3) | st.text(max_size=2), max_size=3),
        st.dictionaries(keys, children, max_size=4),
    ),
    max_leaves=20,
)
valid_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.decimals(allow_nan=False, places=4, min_value=-(10**12), max_value=10**12),
    datetimes,
    st.dates(),
    st.uuids(),
    st.sampled_from(list(Color) + list(Level)),
    st.binary(max_size=4),
    st.builds(ObjectId),
)
valid_documents = st.recursive(
    valid_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.frozensets(st.integers(-3, 3), max_size=3),
        st.dictionaries(st.text(alphabet="abcxyz_", max_size=4), children, max_size=4),
    ),
    max_leaves=20,
)
field_maps = st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b", "c", "", "1"]), st.sampled_from(["x", "a", "$y", "_id", "b.c"]), max_size=3))


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, to_documents, max_size=5), st.sampled_from(["id", "a", "_id"]), field_maps, st.booleans())
def test_to_doc_agrees(data: dict[Any, Any], id_field: str, field_map: dict[str, str] | None, versioned: bool) -> None:
    native, pure = both("map_to_doc")
    n = outcome(native, data, id_field, field_map, versioned)
    p = outcome(pure, data, id_field, field_map, versioned)
    assert _shown(n) == _shown(p)
    if n[0] == "ok":
        assert _shared(data, n[1]) == _shared(data, p[1])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "version", "a", "b", "c", "d"]), valid_documents, max_size=6), field_maps, st.booleans())
def test_to_doc_agrees_on_storable_data(data: dict[str, Any], field_map: dict[str, str] | None, versioned: bool) -> None:
    """Mostly-valid data: the successful results (and what they share with the input) agree."""
    native, pure = both("map_to_doc")
    n = outcome(native, data, "id", field_map, versioned)
    p = outcome(pure, data, "id", field_map, versioned)
    assert _shown(n) == _shown(p)
    if n[0] == "ok":
        assert _shared(data, n[1]) == _shared(data, p[1])
        back = both("map_from_doc")
        assert _shown(outcome(back[0], n[1], "id", None, versioned)) == _shown(outcome(back[1], p[1], "id", None, versioned))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, to_documents, max_size=5), st.sampled_from(["id", "a"]), field_maps, st.booleans())
def test_owned_to_doc_agrees_with_copying(
    data: dict[Any, Any], id_field: str, field_map: dict[str, str] | None, versioned: bool
) -> None:
    """Handing the input over (owned=True: changed in place where only the pass refers to
    it) gives exactly the copying pass's result or error, natively and in pure Python."""
    native, pure = both("map_to_doc")
    expected = _shown(outcome(pure, copy.deepcopy(data), id_field, field_map, versioned))
    for fn in (native, pure):
        handed = copy.deepcopy(data)
        assert _shown(outcome(fn, handed, id_field, field_map, versioned, True)) == expected


bid_words = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
from_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    bid_words.map(Decimal128),
    datetimes,
    st.uuids(),
    st.builds(Binary, st.binary(max_size=17), st.sampled_from([0, 3, 4, 5, 128])),
    st.binary(max_size=4),
    st.builds(ObjectId),
    st.just(Decimal("3.25")),
)
from_documents = st.recursive(
    from_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4) | st.integers(0, 3), children, max_size=4),
    ),
    max_leaves=20,
)
reverse_maps = st.one_of(st.none(), st.dictionaries(st.sampled_from(["a", "b", "_id", "_version"]), st.sampled_from(["x", "y", "id"]), max_size=3))


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["_id", "_version", "version", "a", "b", "c"]) | st.text(max_size=3), from_documents, max_size=5),
    st.sampled_from(["id", "key"]),
    reverse_maps,
    st.booleans(),
)
def test_from_doc_agrees(doc: dict[str, Any], id_field: str, reverse_map: dict[str, str] | None, versioned: bool) -> None:
    native, pure = both("map_from_doc")
    n = outcome(native, doc, id_field, reverse_map, versioned)
    p = outcome(pure, doc, id_field, reverse_map, versioned)
    assert _shown(n) == _shown(p)
    if n[0] == "ok":
        assert _shared(doc, n[1]) == _shared(doc, p[1])


@settings(max_examples=500, deadline=None)
@given(decimals)
def test_decimal128_agrees_with_bson(value: Decimal) -> None:
    """Exactly what bson's own (slow) Decimal128(Decimal) accepts, with the same bits."""
    native, pure = both("map_to_doc")
    try:
        expected: tuple[str, Any] = ("ok", Decimal128(value).bid)
    except (decimal.DecimalException, ValueError):
        expected = ("error", None)
    for fn in (native, pure):
        try:
            got: tuple[str, Any] = ("ok", fn({"v": value}, "id", None, False)["v"].bid)
        except InvalidDocument:
            got = ("error", None)
        assert got == expected
    if expected[0] == "ok":  # and it reads back as the same number
        back = both("map_from_doc")[0]({"v": Decimal128.from_bid(expected[1])}, "id", None, False)["v"]
        if value.is_nan():
            assert back.is_nan() and back.is_snan() == value.is_snan() and back.is_signed() == value.is_signed()
        else:
            assert back == value and back.is_signed() == value.is_signed()


@settings(max_examples=500, deadline=None)
@given(bid_words)
def test_decimal128_reads_like_bson(words: tuple[int, int]) -> None:
    value = Decimal128(words)
    got = both("map_from_doc")[0]({"v": value}, "id", None, False)["v"]
    assert repr(got) == repr(value.to_decimal()) == repr(bid_to_decimal(*words))


@settings(max_examples=300, deadline=None)
@given(bid_words)
def test_decimals_read_back_behave_like_parsed_ones(words: tuple[int, int]) -> None:
    """A Decimal the native pass builds directly is the one Decimal parses from its text
    in everything that reads its digits: hash, tuple, arithmetic, rounding, pickling."""
    import pickle

    got = both("map_from_doc")[0]({"v": Decimal128(words)}, "id", None, False)["v"]
    parsed = bid_to_decimal(*words)
    assert type(got) is Decimal and got.as_tuple() == parsed.as_tuple()
    if got.is_nan():
        return
    assert hash(got) == hash(parsed) and got.adjusted() == parsed.adjusted()
    with decimal.localcontext(decimal.Context(prec=7, Emax=10**6, Emin=-(10**6))):
        for op in (lambda d: +d, lambda d: d * 3, lambda d: d - Decimal("0.5"), lambda d: d.sqrt() if d >= 0 else -d):
            assert repr(op(got)) == repr(op(parsed))
    assert repr(pickle.loads(pickle.dumps(got))) == repr(parsed) and str(got) == str(parsed)


_PURE_DECIMAL_CHILD = r"""
import sys, _pydecimal
sys.modules["decimal"] = _pydecimal  # Decimal objects without the C layout
from decimal import Decimal
from bson.decimal128 import Decimal128
from cqrs_ddd_persistence_mongo import _accel

native_to, pure_to = _accel.native_function("map_to_doc"), _accel.pure_twin("map_to_doc")
native_from, pure_from = _accel.native_function("map_from_doc"), _accel.pure_twin("map_from_doc")
data = {"a": Decimal("-12.50"), "b": Decimal("1E+30"), "c": Decimal("0E-7"), "n": Decimal("NaN")}
doc = native_to(dict(data), "id", None, False)
assert doc == pure_to(dict(data), "id", None, False) and str(doc["a"]) == "-12.50", doc
back = native_from(doc, "id", None, False)
assert type(back["a"]) is Decimal and repr(back) == repr(pure_from(doc, "id", None, False)), back
print("fallback ok")
"""


_SUBCLASSED_DATE_CHILD = r"""
import datetime as dt
class Day(dt.date):
    pass
dt.date = Day  # the datetime C API's date class is no longer the one the pass classifies by
from cqrs_ddd_persistence_mongo import _accel

native_to, pure_to = _accel.native_function("map_to_doc"), _accel.pure_twin("map_to_doc")
data = {"a": Day(2024, 6, 1), "b": [Day(1, 1, 1), Day(9999, 12, 31)]}
doc = native_to(dict(data), "id", None, False)
assert doc == pure_to(dict(data), "id", None, False), doc
assert doc["a"] == dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc) and doc["a"].tzinfo is dt.timezone.utc, doc
print("fallback ok")
"""


@pytest.mark.parametrize("child", [_PURE_DECIMAL_CHILD, _SUBCLASSED_DATE_CHILD], ids=["decimal", "date"])
def test_values_without_the_checked_c_layouts_take_the_public_route(child: str) -> None:
    """When `decimal.Decimal` is not laid out as the C module's (here: the pure-Python
    `_pydecimal`), or the date class is not the datetime C API's, the layout checks refuse
    them and the pass still gives the pure results."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    both("map_to_doc")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    env.pop("CQRS_DDD_MONGO_PURE", None)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("fallback ok")


def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(depth - 1):
        doc = {"n": doc}
    return doc


@pytest.mark.parametrize("name", ["map_to_doc", "map_from_doc"])
def test_depth_and_cycles_agree(name: str) -> None:
    native, pure = both(name)
    for depth in (99, 100, 101, 150):
        assert outcome(native, _nested(depth), "id", None, False) == outcome(pure, _nested(depth), "id", None, False)
    assert outcome(pure, _nested(100), "id", None, False)[0] == "ok"
    assert outcome(pure, _nested(101), "id", None, False)[0] == "error"
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    n = outcome(native, {"c": cyclic}, "id", None, False)
    assert n == outcome(pure, {"c": cyclic}, "id", None, False)
    assert n[0] == "error" and "cycle" in n[1][1]


def test_non_dict_input_agrees() -> None:
    for name in ("map_to_doc", "map_from_doc"):
        native, pure = both(name)
        assert outcome(native, [1], "id", None, False) == outcome(pure, [1], "id", None, False)
        assert outcome(pure, [1], "id", None, False)[0] == "error"


def test_decimal_to_bid_rejects_what_it_cannot_hold() -> None:
    with pytest.raises(InvalidDocument, match="'x'"):
        decimal_to_bid(Decimal("1" * 35), "x")
