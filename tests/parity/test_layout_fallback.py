"""The native mapping pass builds Binary / Decimal128 / UUID values through pymongo's
private layouts only after checking once that they give what the public constructors
give. These tests change the layouts (in a child process, before the native module first
maps anything) and check that the pass falls back to the public constructors: the results
stay correct and equal to the pure backend's."""

from __future__ import annotations

import cqrs_ddd_persistence_mongo
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cqrs_ddd_persistence_mongo import _accel

PACKAGE_PARENT = str(Path(cqrs_ddd_persistence_mongo.__file__).resolve().parents[1])  # where the tested package is imported from (site-packages in CI)

_CHILD = r"""
import decimal, uuid
import bson.binary, bson.decimal128

class MovedBinary(bson.binary.Binary):
    # the subtype lives in another field: a value built through `_Binary__subtype` would
    # have no subtype at all
    def __new__(cls, data, subtype=0):
        self = super().__new__(cls, data, subtype)
        self._kind = subtype
        return self

    @property
    def subtype(self):
        return self._kind

class MovedDecimal128(bson.decimal128.Decimal128):
    # the BID words are slots of the base class, not of this one
    __slots__ = ()

bson.binary.Binary = MovedBinary
bson.decimal128.Decimal128 = MovedDecimal128

from cqrs_ddd_persistence_mongo import _accel

native_to, pure_to = _accel.native_function("map_to_doc"), _accel.pure_twin("map_to_doc")
native_from, pure_from = _accel.native_function("map_from_doc"), _accel.pure_twin("map_from_doc")
data = {"u": uuid.UUID(int=0x0123456789ABCDEF), "d": decimal.Decimal("-12.50"), "n": decimal.Decimal("NaN")}
doc = native_to(dict(data), "id", None, False)
assert type(doc["u"]) is MovedBinary and doc["u"].subtype == 4, doc
assert type(doc["d"]) is MovedDecimal128 and str(doc["d"]) == "-12.50", doc
assert doc == pure_to(dict(data), "id", None, False)
back = native_from(doc, "id", None, False)
assert back["u"] == data["u"] and back["d"] == data["d"] and back["n"].is_nan(), back
assert back["u"] == pure_from(doc, "id", None, False)["u"]
print("fallback ok")
"""


def test_changed_private_layouts_fall_back_to_public_constructors() -> None:
    if _accel.native_function("map_to_doc") is None:
        pytest.skip("native module not built")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    env.pop("CQRS_DDD_MONGO_PURE", None)
    done = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("fallback ok")


_CHILD_C_LAYOUTS = r"""
import sys, _pydecimal
# decimal becomes the pure-Python implementation (no PyDecObject inside) and the datetime
# C API capsule disappears: the native pass must take its public routes for both
sys.modules["decimal"] = _pydecimal
import datetime, decimal
import bson, pymongo, pydantic_core  # C extensions that need the capsule, loaded before it goes
from pydantic import BaseModel
datetime.datetime_CAPI = object()

from cqrs_ddd_persistence_mongo import _accel

native_to, pure_to = _accel.native_function("map_to_doc"), _accel.pure_twin("map_to_doc")
native_from, pure_from = _accel.native_function("map_from_doc"), _accel.pure_twin("map_from_doc")
data = {
    "d": decimal.Decimal("-12.50"), "e": decimal.Decimal("1E-6176"), "day": datetime.date(2024, 2, 29),
    "at": datetime.datetime(2024, 6, 1, 12, 30, tzinfo=datetime.timezone.utc),
}
doc = native_to(dict(data), "id", None, False)
assert doc == pure_to(dict(data), "id", None, False), doc
assert str(doc["d"]) == "-12.50" and str(doc["e"]) == "1E-6176", doc
assert doc["day"] == datetime.datetime(2024, 2, 29, tzinfo=datetime.timezone.utc), doc
back = native_from(doc, "id", None, False)
assert back == pure_from(doc, "id", None, False), back
assert type(back["d"]) is _pydecimal.Decimal and back["d"] == data["d"] and back["e"] == data["e"], back
print("fallback ok")
"""


def test_a_decimal_or_datetime_laid_out_otherwise_takes_the_public_routes() -> None:
    if _accel.native_function("map_to_doc") is None:
        pytest.skip("native module not built")
    env = {**os.environ, "PYTHONPATH": PACKAGE_PARENT}
    env.pop("CQRS_DDD_MONGO_PURE", None)
    done = subprocess.run([sys.executable, "-c", _CHILD_C_LAYOUTS], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("fallback ok")
