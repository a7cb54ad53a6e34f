"""Model data <-> MongoDB document: one pass each way (twin of ``rust/mapping.rs``).

``map_to_doc`` takes what pydantic's ``model_dump()`` produced and returns the document
the driver encodes: ``id_field`` becomes ``_id``, ``version`` becomes ``_version``,
``field_map`` renames are applied and values are converted to types BSON stores exactly
(Decimal -> Decimal128, UUID -> Binary subtype 4, datetimes -> aware UTC, date -> UTC
midnight, Enum -> value, set/frozenset/tuple -> list). ``map_from_doc`` reverses it for
``model_validate``. Bad input raises ``InvalidDocument`` naming the document path; the
input is not modified (containers are copied where something in them changes, and
reused where nothing does), so nothing is half-written. ``map_to_doc(...,
owned=True)`` is for a caller that hands over a dict it has just built (what pydantic's
serializer returned): that dict becomes the document instead of being copied. (The
native pass also changes nested dicts and lists in place when nothing else refers to
them; results are the same.)
"""

from __future__ import annotations

import datetime as _dt
import enum
import uuid
from decimal import Decimal
from typing import Any, Callable, Mapping

from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.tz_util import utc as _BSON_UTC
from pydantic import BaseModel

from ..exceptions import InvalidDocument
from .keys import MAX_DEPTH, checked_key, child_path, display_path, index_path, key_text, stored, too_deep_error

_UTC = _dt.timezone.utc
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# Decimal128 (IEEE 754-2008 BID) limits.
_MAX_DIGITS = 34
_EXP_MIN = -6176
_EXP_MAX = 6111
_EXP_BIAS = 6176
_SIGN = 0x8000_0000_0000_0000
_INF = 0x7800_0000_0000_0000
_NAN = 0x7C00_0000_0000_0000
_SNAN = 0x7E00_0000_0000_0000
_COMBINATION_11 = 0x6000_0000_0000_0000
_MAX_COEFFICIENT = 10**34 - 1

# Values BSON stores as they are (checked after the fast paths).
_PASSTHROUGH: tuple[type, ...]


def _passthrough_types() -> tuple[type, ...]:
    import re

    from bson.code import Code
    from bson.dbref import DBRef
    from bson.int64 import Int64
    from bson.max_key import MaxKey
    from bson.min_key import MinKey
    from bson.objectid import ObjectId
    from bson.regex import Regex
    from bson.timestamp import Timestamp

    return (ObjectId, Decimal128, Binary, bytes, Regex, re.Pattern, Timestamp, MinKey, MaxKey, Code, DBRef, Int64)


_PASSTHROUGH = _passthrough_types()


# --- Decimal <-> Decimal128 ----------------------------------------------------------
def _inexact(path: str, value: Decimal) -> InvalidDocument:
    return InvalidDocument(
        f"Decimal {Decimal.__str__(value)} at '{display_path(path)}' cannot be stored exactly as Decimal128 "
        "(at most 34 significant digits, exponent -6176..6111); round it with quantize() "
        "or store it as a string"
    )


def decimal_to_bid(value: Decimal, path: str) -> tuple[int, int]:
    """(high, low) BID words of ``value``; ``InvalidDocument`` if not exactly representable."""
    sign, digits, exponent = Decimal.as_tuple(value)  # a subclass's own as_tuple is not asked
    high = _SIGN if sign else 0
    if exponent == "F":
        return high | _INF, 0
    if exponent in ("n", "N"):
        if digits:
            raise InvalidDocument(
                f"Decimal {Decimal.__str__(value)} at '{display_path(path)}' is a NaN with a payload, which "
                "Decimal128 cannot store; use a plain NaN or a string"
            )
        return high | (_SNAN if exponent == "N" else _NAN), 0
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).lstrip("0")
    if not text:  # zero: any exponent clamps into range exactly
        coefficient, exp = 0, min(max(exponent, _EXP_MIN), _EXP_MAX)
    else:
        length = len(text)
        trailing = length - len(text.rstrip("0"))
        exp = min(max(exponent, exponent + length - _MAX_DIGITS, _EXP_MIN), _EXP_MAX)
        shift = exp - exponent  # > 0: drop that many digits; < 0: pad zeros
        if shift > trailing or length - shift > _MAX_DIGITS:
            raise _inexact(path, value)
        coefficient = int(text[: length - shift]) if shift >= 0 else int(text) * 10 ** (-shift)
    high |= ((exp + _EXP_BIAS) << 49) | (coefficient >> 64)
    return high, coefficient & 0xFFFF_FFFF_FFFF_FFFF


def bid_to_decimal(high: int, low: int) -> Decimal:
    """The exact Decimal of BID words (non-canonical coefficients read as 0, like bson)."""
    sign = "-" if high & _SIGN else ""
    if high & _SNAN == _SNAN:
        return Decimal(sign + "sNaN")
    if high & _NAN == _NAN:
        return Decimal(sign + "NaN")
    if high & _INF == _INF:
        return Decimal(sign + "Infinity")
    if high & _COMBINATION_11 == _COMBINATION_11:
        exponent = ((high >> 47) & 0x3FFF) - _EXP_BIAS
        coefficient = 0
    else:
        exponent = ((high >> 49) & 0x3FFF) - _EXP_BIAS
        coefficient = ((high & 0x1_FFFF_FFFF_FFFF) << 64) | low
        if coefficient > _MAX_COEFFICIENT:
            coefficient = 0
    return Decimal(f"{sign}{coefficient}E{exponent}")


def _to_decimal128(value: Decimal, path: str) -> Decimal128:
    return Decimal128(decimal_to_bid(value, path))  # type: ignore[arg-type]  # the (high, low) BID form bson accepts


def _from_decimal128(value: Decimal128) -> Decimal:
    high, low = value.__getstate__()
    return bid_to_decimal(high, low)


# --- model data -> document ------------------------------------------------------------
def _unsupported(value: Any, path: str) -> InvalidDocument:
    return InvalidDocument(
        f"value of type {type(value).__qualname__} at '{display_path(path)}' cannot be stored "
        "in MongoDB; convert it to a supported type (str, int, float, bool, Decimal, datetime, "
        "date, UUID, Enum, bytes, list, dict, nested model) with a field serializer"
    )


def _int(value: int, path: str) -> int:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise InvalidDocument(
        f"integer at '{display_path(path)}' does not fit in 64 bits (MongoDB's largest integer); "
        "store it as a Decimal or a string"
    )


def _datetime(value: _dt.datetime) -> _dt.datetime:
    tz = value.tzinfo
    if tz is None:
        return value.replace(tzinfo=_UTC)
    if tz is _UTC or tz is _BSON_UTC:  # what tz-aware clients attach is already UTC
        return value
    return value.astimezone(_UTC)


Rule = Callable[[Any, str, int], Any]


def _map_seq(items: Any, path: str, depth: int, rule: Rule) -> list[Any]:
    """A list: copied on the first changed item; other sequences always become a new list."""
    if depth >= MAX_DEPTH:
        raise too_deep_error(path)
    if type(items) is list:
        out: list[Any] | None = None
        for i, item in enumerate(items):
            new = rule(item, index_path(path, i), depth + 1)
            if new is not item:
                if out is None:
                    out = items.copy()
                out[i] = new
        return items if out is None else out
    return [rule(item, index_path(path, i), depth + 1) for i, item in enumerate(items)]


def _map_dict(value: Mapping[Any, Any], path: str, depth: int, rule: Rule, check_keys: bool) -> dict[Any, Any]:
    """A dict: copied on the first changed value; a dict subclass always becomes a plain dict."""
    if depth >= MAX_DEPTH:
        raise too_deep_error(path)
    out: dict[Any, Any] | None = None if type(value) is dict else stored(value)  # type: ignore[arg-type]
    key: Any
    child: Any
    for key, child in dict.items(value):  # type: ignore[arg-type]
        new = rule(child, checked_key(key, path) if check_keys else child_path(path, key_text(key)), depth + 1)
        if new is not child:
            if out is None:
                out = value.copy()  # type: ignore[attr-defined]
            out[key] = new
    return value if out is None else out  # type: ignore[return-value]


def _seq_to_doc(items: Any, path: str, depth: int) -> list[Any]:
    return _map_seq(items, path, depth, _to_doc_value)


def _dict_to_doc(value: Mapping[Any, Any], path: str, depth: int) -> dict[str, Any]:
    return _map_dict(value, path, depth, _to_doc_value, True)


def _to_doc_value(value: Any, path: str, depth: int) -> Any:
    cls = type(value)
    if cls is str or cls is float or cls is bool or value is None:
        return value
    if cls is int:
        return _int(value, path)
    if cls is dict:
        return _dict_to_doc(value, path, depth)
    if cls is list:
        return _seq_to_doc(value, path, depth)
    if isinstance(value, enum.Enum):
        if depth >= MAX_DEPTH:  # a member's value may be another member (or itself)
            raise too_deep_error(path)
        return _to_doc_value(value._value_, path, depth + 1)
    if isinstance(value, Decimal):
        return _to_decimal128(value, path)
    if isinstance(value, _dt.datetime):
        return _datetime(value)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
    if isinstance(value, uuid.UUID):
        return Binary(value.bytes, 4)
    if isinstance(value, bool) or isinstance(value, float) or isinstance(value, str):
        return value
    if isinstance(value, int):
        return _int(value, path)
    if isinstance(value, dict):
        return _dict_to_doc(value, path, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _seq_to_doc(value, path, depth)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, _PASSTHROUGH):
        return value
    if isinstance(value, BaseModel):
        return _dict_to_doc(value.model_dump(), path, depth)
    raise _unsupported(value, path)


def _finish_renames(doc: dict[str, Any], removed: list[Any], renamed: list[tuple[Any, Any]], check_twice: bool) -> None:
    """Renamed fields go last, after the fields they replace are removed."""
    for key in removed:
        del doc[key]
    for target, value in renamed:
        if check_twice and target in doc:
            raise InvalidDocument(
                f"document field '{target}' is written twice; check field_map for two fields "
                "mapped to the same name or a field named like '_id'/'_version'"
            )
        doc[target] = value


def map_to_doc(
    data: dict[str, Any],
    id_field: str,
    field_map: dict[str, str] | None,
    versioned: bool,
    owned: bool = False,
) -> dict[str, Any]:
    """The MongoDB document of ``data`` (a ``model_dump()`` result).

    ``data[id_field]`` becomes ``_id`` (omitted when None: the driver then assigns an
    ObjectId); when ``versioned``, ``data['version']`` becomes ``_version``; other keys are
    renamed through ``field_map`` ({model field: document field}). ``data`` is not modified
    unless ``owned`` (see the module docstring).
    """
    if not isinstance(data, dict):
        raise InvalidDocument(f"a model's data must be a dict, got {type(data).__qualname__}; pass model_dump()")
    owned = owned and type(data) is dict
    # change only what must change: the caller's dict itself when owned, else a plain copy
    doc = data if owned else dict(data) if type(data) is dict else stored(data)
    removed: list[Any] = []
    renamed: list[tuple[str, Any]] = []
    for key, value in dict.items(data):
        if key == id_field or (versioned and key == "version"):
            removed.append(key)
            if key == id_field:
                if value is not None:
                    renamed.append(("_id", _to_doc_value(value, "_id", 1)))
            else:
                renamed.append(("_version", _to_doc_value(value, "_version", 1)))
            continue
        if field_map is not None and key in field_map:
            target = field_map[key]
            path = checked_key(target, "")
            removed.append(key)
            renamed.append((target, _to_doc_value(value, path, 1)))
            continue
        path = checked_key(key, "")
        new = _to_doc_value(value, path, 1)
        if new is not value:
            doc[key] = new
    _finish_renames(doc, removed, renamed, True)
    return doc


# --- document -> model data -----------------------------------------------------------
def _from_doc_value(value: Any, path: str, depth: int) -> Any:
    cls = type(value)
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if cls is dict:
        return _map_dict(value, path, depth, _from_doc_value, False)
    if cls is list:
        return _map_seq(value, path, depth, _from_doc_value)
    if cls is Decimal128:
        return _from_decimal128(value)
    if cls is _dt.datetime:
        return _datetime(value)
    if cls is Binary:
        subtype = value.subtype
        if subtype == 4 and len(value) == 16:
            return uuid.UUID(bytes=bytes(value))
        if subtype == 0:
            return bytes(value)
        return value
    if isinstance(value, dict):
        return _map_dict(value, path, depth, _from_doc_value, False)
    if isinstance(value, (list, tuple)):
        return _map_seq(value, path, depth, _from_doc_value)
    if isinstance(value, Decimal128):
        return _from_decimal128(value)
    if isinstance(value, _dt.datetime):
        return _datetime(value)
    return value


def map_from_doc(
    doc: Mapping[str, Any],
    id_field: str,
    reverse_map: dict[str, str] | None,
    versioned: bool,
) -> dict[str, Any]:
    """The model data of a stored document, ready for ``model_validate``.

    ``_id`` becomes ``id_field``; when ``versioned``, ``_version`` becomes ``version`` (0
    when absent); other keys are renamed through ``reverse_map`` ({document field: model
    field}). Decimal128 -> Decimal, Binary subtype 4 -> UUID, datetimes -> aware UTC.
    ``doc`` is not modified.
    """
    if not isinstance(doc, Mapping):
        raise InvalidDocument(f"a stored document must be a mapping, got {type(doc).__qualname__}")
    source = stored(doc) if isinstance(doc, dict) else dict(doc)
    data = dict(source)
    removed: list[Any] = []
    renamed: list[tuple[str, Any]] = []
    saw_version = False
    for key, value in source.items():
        new = _from_doc_value(value, key_text(key), 1)
        if key == "_id":
            name: str | None = id_field
        elif versioned and key == "_version":
            name, saw_version = "version", True
        elif reverse_map is not None and key in reverse_map:
            name = reverse_map[key]
        else:
            name = None
        if name is None:
            if new is not value:
                data[key] = new
        else:
            removed.append(key)
            renamed.append((name, new))
    _finish_renames(data, removed, renamed, False)  # renamed fields win over same-named ones
    if versioned and not saw_version:
        data["version"] = 0
    return data
