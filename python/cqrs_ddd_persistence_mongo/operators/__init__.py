"""Per-family operator compilers: ``compile_<family>(field, op, value) -> filter dict``.

Each delegates to the one compiler in ``_accel`` (native or pure) and only accepts the
operators of its family, so callers building filters by hand get the same safety rules
(values as data, validated paths, escaped text) as specifications.
"""

from __future__ import annotations

from typing import Any

from .. import _accel
from ..exceptions import InvalidSpecification
from ..specifications.operators import canonical

_MISSING: Any = object()

FAMILIES: dict[str, frozenset[str]] = {
    "standard": frozenset({"eq", "ne", "gt", "gte", "lt", "lte"}),
    "string": frozenset(
        {"contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "like", "ilike",
         "not_like", "regex", "iregex"}
    ),
    "set": frozenset({"in", "not_in", "all", "between", "not_between"}),
    "null": frozenset({"is_null", "is_not_null", "is_empty", "is_not_empty"}),
    "jsonb": frozenset(
        {"json_contains", "json_contained_by", "json_has_key", "json_has_any", "json_has_all",
         "json_path_exists", "size"}
    ),
    "geometry": frozenset(
        {"within", "intersects", "disjoint", "contains_geom", "touches", "crosses", "overlaps", "geom_equals",
         "bbox_intersects", "distance_lt", "dwithin", "near"}
    ),
    "text": frozenset({"fts", "fts_phrase"}),
}


def _compile(family: str, field: str, op: Any, value: Any) -> dict[str, Any]:
    name = canonical(op)
    if name not in FAMILIES[family]:
        allowed = ", ".join(sorted(FAMILIES[family]))
        raise InvalidSpecification(f"operator {name!r} is not a {family} operator; use one of: {allowed}")
    node: dict[str, Any] = {"attr": field, "op": name}
    if value is not _MISSING:
        node["val"] = value
    return _accel.compile_filter(node)


def compile_standard(field: str, op: Any, value: Any) -> dict[str, Any]:
    """eq ne gt gte lt lte (and = != > >= < <=) -> ``{field: {"$op": value}}``."""
    return _compile("standard", field, op, value)


def compile_string(field: str, op: Any, value: str) -> dict[str, Any]:
    """contains / startswith / endswith / like (+ i- variants), regex -> ``$regex`` (text escaped)."""
    return _compile("string", field, op, value)


def compile_set(field: str, op: Any, value: Any) -> dict[str, Any]:
    """in not_in all between not_between -> ``$in`` / ``$nin`` / ``$all`` / ``$gte``+``$lte``
    (in / not_in / all take a list or one value)."""
    return _compile("set", field, op, value)


def compile_null(field: str, op: Any, value: Any = _MISSING) -> dict[str, Any]:
    """is_null is_not_null is_empty is_not_empty (value: nothing, True or False)."""
    return _compile("null", field, op, value)


def compile_jsonb(field: str, op: Any, value: Any) -> dict[str, Any]:
    """Document operators with PostgreSQL jsonb meaning -> dot-notation ``$eq``, ``$all`` /
    ``$elemMatch`` for lists, ``$exists`` / ``$in`` for keys, ``$size``."""
    return _compile("jsonb", field, op, value)


def compile_geometry(field: str, op: Any, value: Any) -> dict[str, Any]:
    """GeoJSON operators -> ``$geoWithin`` / ``$geoIntersects`` / ``$near`` (2dsphere index);
    geometries bare or as ``{"$geometry": g}``, circles also as ``[[lng, lat], radians]`` or
    ``{"coordinates": [lng, lat], "maxDistance": meters}``."""
    return _compile("geometry", field, op, value)


def compile_text(field: str, op: Any, value: str) -> dict[str, Any]:
    """fts / fts_phrase -> ``$text`` (needs a text index)."""
    return _compile("text", field, op, value)


__all__ = [
    "FAMILIES",
    "compile_geometry",
    "compile_jsonb",
    "compile_null",
    "compile_set",
    "compile_standard",
    "compile_string",
    "compile_text",
]
