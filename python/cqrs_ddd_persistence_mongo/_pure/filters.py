"""Specification tree -> MongoDB filter, ordering -> sort, fields -> projection.

Twin of ``rust/filters.rs``: same results, same exception types, same messages.

Safety rules (both backends):
* values are data: every comparison wraps its value in ``$eq``/``$in``/... so a value that
  looks like an operator (``{"$gt": 1}``, ``"$where"``) is matched literally;
* field paths are validated segment by segment (no empty segment, no leading ``$``, no NUL);
* string operators escape the user's text; ``regex`` patterns must compile with ``re``;
* ``$near`` and ``$text`` are only emitted where MongoDB accepts them (top level / top-level and).
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, cast

from bson.regex import Regex

from ..exceptions import InvalidSpecification
from .keys import MAX_DEPTH, child_path, display_path, index_path, key_problem, shown, stored, text_of

EARTH_RADIUS_M = 6378100.0
ALIASES = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
NO_EQUIVALENT = {
    "json_contained_by": "MongoDB cannot test that a document's keys are a subset of a value "
    "without $expr; use json_contains on the keys you need",
    "contains_geom": "MongoDB has no 'geometry contains value' operator; use within with the roles swapped",
    "touches": "MongoDB has no DE-9IM 'touches' predicate; use intersects",
    "crosses": "MongoDB has no DE-9IM 'crosses' predicate; use intersects",
    "overlaps": "MongoDB has no DE-9IM 'overlaps' predicate; use intersects",
    "geom_equals": "MongoDB has no spatial equality; use eq to match the exact GeoJSON document",
    "bbox_intersects": "MongoDB has no bounding-box-of-geometry test; use intersects with a Polygon",
}
GEO_ALL = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
GEO_AREAS = ("Polygon", "MultiPolygon")
GEO_POINT = ("Point",)
REGEX_META = set("\\.^$|?*+()[]{}")
WHITESPACE = " \t\n\r\x0b\x0c"

Custom = dict[str, Callable[[str, Any], Any]] | None


def _match_nothing() -> dict[str, Any]:
    return {"$nor": [{}]}


def _error(path: str, problem: str) -> InvalidSpecification:
    return InvalidSpecification(f"invalid specification at '{display_path(path)}': {problem}")


def _type_name(value: Any) -> str:
    return type(value).__name__


def field_path_problem(attr: Any) -> str | None:
    """Why ``attr`` is not a usable field path, or None."""
    if not isinstance(attr, str):
        return f"field path must be a string, got {_type_name(attr)}"
    text = text_of(attr)
    for segment in text.split("."):
        problem = "empty segment" if segment == "" else key_problem(segment)
        if problem is not None:
            return f"invalid field path {shown(text)}: {problem}"
    return None


def _checked_path(attr: Any, path: str) -> str:
    problem = field_path_problem(attr)
    if problem is not None:
        raise _error(path, problem)
    return text_of(attr)


# --- text helpers ---------------------------------------------------------------------
def _escape(text: str) -> str:
    out = []
    for c in text:
        if c in REGEX_META:
            out.append("\\" + c)
        elif c == "\0":
            out.append("\\x00")
        else:
            out.append(c)
    return "".join(out)


def _like_to_regex(pattern: str) -> str:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(_escape(pattern[i + 1]))
            i += 2
            continue
        if c == "%":
            out.append(".*")
        elif c == "_":
            out.append(".")
        else:
            out.append(_escape(c))
        i += 1
    out.append("\\z")
    return "".join(out)


def _words(text: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for c in text:
        if c in WHITESPACE:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(c)
    if current:
        words.append("".join(current))
    return words


def _regex(pattern: str, options: str) -> dict[str, Any]:
    return {"$regex": pattern, "$options": options} if options else {"$regex": pattern}


# --- value checks -----------------------------------------------------------------------
def _need_str(op: str, val: Any, path: str) -> str:
    if not isinstance(val, str):
        raise _error(path, f"operator '{op}' expects a string, got {_type_name(val)}")
    return text_of(val)


def _need_list(op: str, val: Any, path: str) -> list[Any]:
    if not isinstance(val, (list, tuple)):
        raise _error(path, f"operator '{op}' expects a list, got {_type_name(val)}")
    return list(val)


def _no_regex_elements(op: str, items: list[Any], path: str) -> None:
    for item in items:
        if isinstance(item, (re.Pattern, Regex)):
            raise _error(
                path,
                f"operator '{op}' got a regular expression object as a value; MongoDB would "
                "interpret it as a pattern: use regex for patterns or pass the text",
            )


def _need_number(op: str, name: str, val: Any, path: str) -> float:
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise _error(path, f"operator '{op}' expects '{name}' to be a number, got {_type_name(val)}")
    try:
        number = float(val)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise _error(path, f"operator '{op}' expects '{name}' to be a finite number >= 0, got {shown(val)}")
    return number


def _flag(op: str, val: Any, path: str) -> bool:
    if val is None:
        return True
    if isinstance(val, bool):
        return val
    raise _error(path, f"operator '{op}' takes no value or True/False, got {_type_name(val)}")


GEO_NESTING = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
GEO_KEYS_HINT = "only 'type', 'coordinates' and 'crs' are allowed, optionally wrapped as {'$geometry': ...}"
CRS_SHAPE = "GeoJSON 'crs' must be {'type': 'name', 'properties': {'name': '...'}} (the only CRS MongoDB accepts)"
CIRCLE_FORMS = "{'geometry': Point, 'distance': meters}, {'coordinates': [lng, lat], 'maxDistance': meters} or [[lng, lat], radians]"


def _items(val: list[Any] | tuple[Any, ...]) -> list[Any]:
    """The stored items of a list or tuple (a subclass's own iteration is not asked)."""
    return list(list.__iter__(val)) if isinstance(val, list) else list(tuple.__iter__(val))


def _coordinate(val: Any, where: str, path: str) -> None:
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise _error(path, f"GeoJSON '{where}' must be a number, got {_type_name(val)}")
    try:
        number = float(val)
    except OverflowError:  # an int beyond float range
        number = math.inf
    if not math.isfinite(number):
        raise _error(path, f"GeoJSON '{where}' must be a finite number, got {shown(val)}")


def _coordinates(val: Any, levels: int, where: str, path: str) -> None:
    """``val`` is a position ([lng, lat, ...] numbers) nested ``levels`` lists deep."""
    if not isinstance(val, (list, tuple)):
        raise _error(path, f"GeoJSON '{where}' must be a list, got {_type_name(val)}")
    items = _items(val)
    if levels == 0:
        if len(items) < 2:
            raise _error(path, f"GeoJSON '{where}' must be a position [lng, lat], got {len(items)} value(s)")
        for index, item in enumerate(items):
            _coordinate(item, f"{where}[{index}]", path)
        return
    for index, item in enumerate(items):
        _coordinates(item, levels - 1, f"{where}[{index}]", path)


def _crs(val: Any, path: str) -> dict[str, Any]:
    """A clean copy of MongoDB's one custom CRS (``{'type': 'name', 'properties': {'name': ...}}``)."""
    if isinstance(val, dict):
        val = stored(val)
        props = val.get("properties")
        if set(val) == {"type", "properties"} and isinstance(props, dict):
            props = stored(props)
            kind, name = val["type"], props.get("name")
            if isinstance(kind, str) and text_of(kind) == "name" and set(props) == {"name"} and isinstance(name, str):
                return {"type": "name", "properties": {"name": name}}
    raise _error(path, CRS_SHAPE)


def _unwrapped(val: Any) -> Any:
    """``val`` without a ``{'$geometry': ...}`` wrapper (a dict of that one key), else ``val``."""
    if isinstance(val, dict):
        items = stored(val)
        if "$geometry" in items and len(items) == 1:
            return items["$geometry"]
    return val


def _geometry(op: str, val: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """A clean copy of a GeoJSON geometry given bare or as ``{'$geometry': geometry}``."""
    val = _unwrapped(val)
    if isinstance(val, dict):
        val = stored(val)
    if not isinstance(val, dict):
        raise _error(
            path,
            f"operator '{op}' expects a GeoJSON geometry {{'type': ..., 'coordinates': [...]}}, "
            f"got {_type_name(val)}",
        )
    val = stored(val)
    for key in val:
        if key not in ("type", "coordinates", "crs"):
            raise _error(path, f"GeoJSON geometry has unexpected key {shown(key)}; {GEO_KEYS_HINT}")
    kind = val.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise _error(
            path,
            f"operator '{op}' expects a GeoJSON geometry of type {' or '.join(allowed)}, got type {shown(kind)}",
        )
    coordinates = val.get("coordinates")
    _coordinates(coordinates, GEO_NESTING[text_of(kind)], "coordinates", path)
    geometry = {"type": kind, "coordinates": coordinates}
    if "crs" in val:
        geometry["crs"] = _crs(val["crs"], path)
    return geometry


def _payload(op: str, val: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(val, dict):
        raise _error(path, f"operator '{op}' expects a dict with keys {', '.join(allowed)}, got {_type_name(val)}")
    val = stored(val)
    for key in val:
        if key not in allowed:
            raise _error(path, f"operator '{op}' got unexpected key {shown(key)}; allowed: {', '.join(allowed)}")
    if "geometry" not in val:
        raise _error(path, f"operator '{op}' needs a 'geometry' (a GeoJSON Point)")
    return cast("dict[str, Any]", val)


def _point_form(op: str, val: dict[str, Any], path: str, allowed: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The original library's ``{'coordinates': [lng, lat], 'maxDistance': m, ...}`` form:
    (the Point geometry, the payload with the distance keys)."""
    for key in val:
        if key not in allowed:
            raise _error(path, f"operator '{op}' got unexpected key {shown(key)}; allowed: {', '.join(allowed)}")
    point = _geometry(op, {"type": val.get("type", "Point"), "coordinates": val["coordinates"]}, path, GEO_POINT)
    return point, val


def _circle(op: str, val: Any, path: str) -> tuple[Any, float]:
    """(center coordinates, radius in radians) of a dwithin / distance_lt value."""
    if isinstance(val, (list, tuple)):
        items = _items(val)
        if len(items) != 2:
            raise _error(path, f"operator '{op}' expects {CIRCLE_FORMS}, got a list of {len(items)} item(s)")
        _coordinates(items[0], 0, "[0]", path)
        return items[0], _need_number(op, "radius", items[1], path)
    if isinstance(val, dict) and "coordinates" in stored(val):
        point, payload = _point_form(op, stored(val), path, ("type", "coordinates", "maxDistance"))
        if "maxDistance" not in payload:
            raise _error(path, f"operator '{op}' needs a 'maxDistance' in meters")
        meters = _need_number(op, "maxDistance", payload["maxDistance"], path)
        return point["coordinates"], meters / EARTH_RADIUS_M
    payload = _payload(op, val, path, ("geometry", "distance"))
    point = _geometry(op, payload["geometry"], path, GEO_POINT)
    if "distance" not in payload:
        raise _error(path, f"operator '{op}' needs a 'distance' in meters")
    meters = _need_number(op, "distance", payload["distance"], path)
    return point["coordinates"], meters / EARTH_RADIUS_M


def _near(op: str, val: Any, path: str) -> dict[str, Any]:
    val = _unwrapped(val)  # a point given as {'$geometry': point} reads as the bare point
    if isinstance(val, dict) and "coordinates" in stored(val):
        allowed = ("type", "coordinates", "maxDistance", "minDistance")
        point, payload = _point_form(op, stored(val), path, allowed)
        names = ("maxDistance", "minDistance")
    else:
        payload = _payload(op, val, path, ("geometry", "max_distance", "min_distance"))
        point = _geometry(op, payload["geometry"], path, GEO_POINT)
        names = ("max_distance", "min_distance")
    near: dict[str, Any] = {"$geometry": point}
    for name, key in zip(names, ("$maxDistance", "$minDistance")):
        if name in payload:
            near[key] = _need_number(op, name, payload[name], path)
    return near


def _contains_key(key: Any, path: str) -> str:
    if not isinstance(key, str):
        raise _error(path, f"operator 'json_contains' expects string keys, got {shown(key)}")
    text = text_of(key)
    problem = "empty segment" if text == "" else key_problem(text)
    if problem is not None:
        raise _error(path, f"invalid key {shown(key)} in 'json_contains': {problem}")
    return text


def _contains(prefix: str, val: Any, where: str, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    """Conditions (appended to ``out``) that the value at ``prefix`` contains ``val`` as jsonb
    ``@>`` does: a dict's keys are contained recursively, every element of a list is contained
    in some element of an array, scalars compare equal (MongoDB's equality). ``depth`` counts
    dict levels (lists cannot nest directly, so every second call at most adds one)."""
    if isinstance(val, dict):
        if depth > MAX_DEPTH:
            raise _error(
                path,
                f"operator 'json_contains' value nests deeper than {MAX_DEPTH} levels (MongoDB's limit) at '{where}'",
            )
        if not dict.__len__(val):
            raise _error(path, f"operator 'json_contains' expects a non-empty dict, got {shown(val)}")
        for key, item in stored(val).items():
            text = _contains_key(key, path)
            sub = f"{prefix}.{text}" if prefix else text
            _contains(sub, item, f"{where}.{text}", path, depth + 1, out)
    elif isinstance(val, (list, tuple)):
        _contains_list(prefix, _items(val), where, path, depth, out)
    else:
        _no_regex_elements("json_contains", [val], path)
        out.append({prefix: {"$eq": val}})


def _contains_list(prefix: str, items: list[Any], where: str, path: str, depth: int, out: list[dict[str, Any]]) -> None:
    """One condition: the field is an array holding every scalar and, for each document, an
    element containing it (``$all`` of ``$elemMatch``es when there is more than one test)."""
    scalars = [item for item in items if not isinstance(item, (dict, list, tuple))]
    documents = [item for item in items if isinstance(item, dict)]
    if len(scalars) + len(documents) != len(items):
        raise _error(path, f"operator 'json_contains' does not support arrays nested in arrays (at '{where}')")
    _no_regex_elements("json_contains", scalars, path)
    if not documents:
        cond: dict[str, Any] = {"$type": "array"}
        if scalars:
            cond["$all"] = scalars
        out.append({prefix: cond})
        return
    matches: list[dict[str, Any]] = [{"$elemMatch": {"$eq": scalar}} for scalar in scalars]
    for index, document in enumerate(documents):
        matches.append({"$elemMatch": _element_query(document, f"{where}[{index}]", path, depth)})
    out.append({prefix: matches[0] if len(matches) == 1 else {"$all": matches}})


def _element_query(document: dict[str, Any], where: str, path: str, depth: int) -> dict[str, Any]:
    """The ``$elemMatch`` query of an array element containing ``document``: one document of
    field tests (an ``$and`` there is not accepted by every server). Keys are single segments,
    so no path is tested twice."""
    conditions: list[dict[str, Any]] = []
    _contains("", document, where, path, depth, conditions)
    return {key: test for condition in conditions for key, test in condition.items()}


def _has_keys(field: str, keys: list[str], any_key: bool) -> dict[str, Any]:
    """jsonb ``?|`` / ``?&``: the keys exist in the object at ``field`` (not in an array's
    documents), or are string elements of the array at ``field`` (or the string itself)."""
    not_array = {"$not": {"$type": "array"}}
    if any_key:
        parts: list[dict[str, Any]] = [{f"{field}.{key}": {"$exists": True}, field: not_array} for key in keys]
    else:
        together: dict[str, Any] = {f"{field}.{key}": {"$exists": True} for key in keys}
        together[field] = not_array
        parts = [together]
    parts.append({field: {"$in" if any_key else "$all": keys}})
    return {"$or": parts}


def _key_list(op: str, val: Any, path: str) -> list[str]:
    keys = _items(val) if isinstance(val, (list, tuple)) else [val]
    if not keys:
        raise _error(path, f"operator '{op}' needs at least one key")
    for key in keys:
        problem = field_path_problem(key)
        if problem is not None:
            raise _error(path, f"operator '{op}': {problem}")
    return [text_of(key) for key in keys]


# --- leaves -------------------------------------------------------------------------------
def _compile_leaf(node: dict[str, Any], op: str, path: str, top: bool, custom: Custom) -> dict[str, Any]:
    if "attr" not in node:
        raise _error(path, "a condition needs 'attr' (the field path)")
    field = _checked_path(node["attr"], path)
    has_val = "val" in node
    val = node.get("val")
    op = ALIASES.get(op, op)
    if op in ("is_null", "is_not_null", "is_empty", "is_not_empty"):
        positive = _flag(op, val, path) == (op in ("is_null", "is_empty"))
        if op in ("is_null", "is_not_null"):
            return {field: {"$eq" if positive else "$ne": None}}
        return {field: {"$in" if positive else "$nin": [None, "", [], {}]}}
    if op in NO_EQUIVALENT:
        raise _error(path, f"operator '{op}' has no exact MongoDB equivalent: {NO_EQUIVALENT[op]}")
    if op not in BUILTIN:
        if custom is not None and op in custom:
            result = custom[op](field, val)
            if not isinstance(result, dict):
                raise _error(path, f"custom operator '{op}' must return a filter dict, got {_type_name(result)}")
            return result
        raise _unknown(op, path)
    if not has_val:
        raise _error(path, f"operator '{op}' needs a 'val'")
    if op == "eq" or op == "ne":
        return {field: {"$" + op: val}}
    if op in ("gt", "gte", "lt", "lte"):
        if val is None:
            raise _error(path, f"operator '{op}' cannot compare with None; use is_null / is_not_null")
        return {field: {"$" + op: val}}
    if op in ("in", "not_in", "all"):
        items = _items(val) if isinstance(val, (list, tuple)) else [val]
        _no_regex_elements(op, items, path)
        if any(isinstance(item, dict) for item in items):
            # documents inside $in/$nin/$all would be read as operators ($elemMatch, "cannot
            # nest $ under $in"): spell the same test with one $eq per value instead.
            parts = [{field: {"$eq": item}} for item in items]
            if op == "not_in":
                return {"$nor": parts}
            return parts[0] if len(parts) == 1 else {"$and" if op == "all" else "$or": parts}
        return {field: {{"in": "$in", "not_in": "$nin", "all": "$all"}[op]: items}}
    if op in ("between", "not_between"):
        bounds = _need_list(op, val, path)
        if len(bounds) != 2 or bounds[0] is None or bounds[1] is None:
            raise _error(path, f"operator '{op}' expects [low, high] (two values, not None), got {shown(val)}")
        cond = {field: {"$gte": bounds[0], "$lte": bounds[1]}}
        return cond if op == "between" else {"$nor": [cond]}
    if op in STRING_OPS:
        return _compile_string(field, op, _need_str(op, val, path), path)
    if op == "json_contains":
        conditions: list[dict[str, Any]] = []
        _contains(field, val, field, path, 1, conditions)
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}
    if op in ("json_has_key", "json_path_exists"):
        key = _need_str(op, val, path)
        if op == "json_path_exists" and key.startswith("$."):
            key = key[2:]
        problem = field_path_problem(key)
        if problem is not None:
            raise _error(path, f"operator '{op}': {problem}")
        if op == "json_path_exists":
            return {f"{field}.{key}": {"$exists": True}}
        return _has_keys(field, [key], True)
    if op in ("json_has_any", "json_has_all"):
        return _has_keys(field, _key_list(op, val, path), op == "json_has_any")
    if op == "size":
        if isinstance(val, bool) or not isinstance(val, int) or val < 0:
            raise _error(path, f"operator 'size' expects an integer >= 0, got {shown(val)}")
        return {field: {"$size": val}}
    if op in ("within", "intersects", "disjoint"):
        allowed = GEO_AREAS if op == "within" else GEO_ALL
        geometry = _geometry(op, val, path, allowed)
        if op == "within":
            return {field: {"$geoWithin": {"$geometry": geometry}}}
        cond = {field: {"$geoIntersects": {"$geometry": geometry}}}
        return cond if op == "intersects" else {"$nor": [cond]}
    if op in ("dwithin", "distance_lt"):
        center, radians = _circle(op, val, path)
        return {field: {"$geoWithin": {"$centerSphere": [center, radians]}}}
    if op == "near":
        if not top:
            raise _nested_only_top(op, path)
        return {field: {"$near": _near(op, val, path)}}
    if op in ("fts", "fts_phrase"):
        if not top:
            raise _nested_only_top(op, path)
        text = _need_str(op, val, path)
        if op == "fts":
            words = [w for w in (word.replace('"', "").lstrip("-") for word in _words(text)) if w]
            search = " ".join(words)
        else:
            words = [w for w in _words(text.replace('"', "")) if w]
            search = '"' + " ".join(words) + '"' if words else ""
        if not words:
            raise _error(path, f"operator '{op}' needs at least one word to search for")
        return {"$text": {"$search": search}}
    raise _unknown(op, path)


def _compile_string(field: str, op: str, text: str, path: str) -> dict[str, Any]:
    kind, options = STRING_OPS[op]
    if kind == "regex":
        # the user's pattern, not text: it must compile.
        try:
            re.compile(text)
        except re.error as exc:
            raise _error(path, f"invalid regular expression {shown(text)}: {exc}") from None
        return {field: _regex(text, options)}
    if kind == "like":
        cond = {field: _regex(_like_to_regex(text), options)}
        return {"$nor": [cond]} if op == "not_like" else cond
    escaped = _escape(text)
    if kind == "startswith":
        escaped = "^" + escaped
    elif kind == "endswith":
        escaped = escaped + "\\z"
    return {field: _regex(escaped, options)}


STRING_OPS: dict[str, tuple[str, str]] = {
    "contains": ("contains", ""),
    "icontains": ("contains", "i"),
    "startswith": ("startswith", ""),
    "istartswith": ("startswith", "i"),
    "endswith": ("endswith", ""),
    "iendswith": ("endswith", "i"),
    "like": ("like", "s"),
    "ilike": ("like", "is"),
    "not_like": ("like", "s"),
    "regex": ("regex", ""),
    "iregex": ("regex", "i"),
}
BUILTIN = frozenset(
    "eq ne gt gte lt lte in not_in all between not_between is_null is_not_null is_empty is_not_empty "
    "json_contains json_contained_by json_has_key json_has_any json_has_all json_path_exists size "
    "within intersects disjoint contains_geom touches crosses overlaps geom_equals bbox_intersects "
    "distance_lt dwithin near fts fts_phrase".split()
) | frozenset(STRING_OPS)


def _unknown(op: str, path: str) -> InvalidSpecification:
    return _error(
        path,
        f"unknown operator {shown(op)}; use one listed in docs/specifications.md or register it on the registry",
    )


def _nested_only_top(op: str, path: str) -> InvalidSpecification:
    return _error(
        path,
        f"operator '{op}' is only allowed at the top level or inside top-level 'and' groups "
        "(MongoDB rejects $near and $text under $or / $nor)",
    )


# --- tree ---------------------------------------------------------------------------------
def _too_deep_problem() -> str:
    return f"the specification nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it"


def _group_members(compiled: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    """The conditions of a ``{key: [...]}`` group when its value is a list of dicts."""
    members = compiled.get(key)
    if isinstance(members, list) and all(isinstance(m, dict) for m in members):
        return members
    return None


def _compile_node(node: Any, path: str, depth: int, top: bool, custom: Custom) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _error(path, _too_deep_problem())
    if not isinstance(node, dict):
        raise _error(path, f"a condition must be a dict, got {_type_name(node)}")
    node = stored(node)
    if "op" not in node:
        raise _error(path, "a condition needs 'op'")
    op = node["op"]
    if not isinstance(op, str):
        raise _error(path, f"'op' must be a string, got {_type_name(op)}")
    if op not in ("and", "or", "not"):
        return _compile_leaf(node, op, path, top, custom)
    if "conditions" not in node:
        raise _error(path, f"'{op}' needs 'conditions' (a list)")
    conditions = node["conditions"]
    if not isinstance(conditions, (list, tuple)):
        raise _error(path, f"'conditions' must be a list, got {_type_name(conditions)}")
    base = child_path(path, "conditions")
    if op == "not":
        if len(conditions) != 1:
            raise _error(path, f"'not' takes exactly one condition, got {len(conditions)}")
        return {"$nor": [_compile_node(conditions[0], index_path(base, 0), depth + 1, False, custom)]}
    key = "$" + op
    parts: list[dict[str, Any]] = []
    for index, child in enumerate(conditions):
        compiled = _compile_node(child, index_path(base, index), depth + 1, top and op == "and", custom)
        members = _group_members(compiled, key) if len(compiled) == 1 else None
        if members is not None:
            parts.extend(members)
        elif op == "and" and not compiled:
            continue
        else:
            parts.append(compiled)
    if not parts:
        return {} if op == "and" else _match_nothing()
    if len(parts) == 1:
        return parts[0]
    return {key: parts}


def compile_filter(spec: Any, custom: Custom = None) -> dict[str, Any]:
    """Compile a specification tree to a MongoDB filter document.

    ``custom`` maps extra operator names to ``fn(field_path, value) -> filter dict``.
    """
    return _compile_node(spec, "", 1, True, custom)


# --- ordering and projection -----------------------------------------------------------
def _sort_error(item: Any, problem: str) -> InvalidSpecification:
    return InvalidSpecification(f"invalid ordering {shown(item)}: {problem}")


def _sort_direction(raw: Any) -> int | None:
    """1 / -1 for a direction given as an int (not a bool), a float, or 'asc' / 'desc'; the
    value's own comparison methods are not asked (they may raise or lie)."""
    number: int | None = None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        number = int.__int__(raw)
    elif isinstance(raw, float):
        value = float.__float__(raw)
        number = int(value) if value in (1.0, -1.0) else None
    elif isinstance(raw, str):
        number = {"asc": 1, "desc": -1}.get(text_of(raw))
    return number if number in (1, -1) else None


def _sort_item(item: Any) -> tuple[str, int]:
    if isinstance(item, str):
        text = text_of(item).strip(WHITESPACE)
        direction = 1
        if text.startswith("-"):
            direction, text = -1, text[1:]
        elif text.startswith("+"):
            text = text[1:]
    elif isinstance(item, (list, tuple)) and len(item) == 2:
        text, raw = item[0], item[1]
        found = _sort_direction(raw)
        if found is None:
            raise _sort_error(item, "direction must be 1, -1, 'asc' or 'desc'")
        direction = found
    else:
        raise _sort_error(item, "use 'field', '-field' or (field, 1 | -1)")
    problem = field_path_problem(text)
    if problem is not None:
        raise _sort_error(item, problem)
    return text, direction


def compile_sort(order_by: Any) -> list[tuple[str, int]]:
    """``"-created_at,name"`` / ``["-created_at", ("name", 1)]`` -> ``[("created_at", -1), ("name", 1)]``;
    every string, alone or in a list, may name several fields separated by commas."""
    if order_by is None:
        return []
    if isinstance(order_by, str):
        order_by = [order_by]
    elif not isinstance(order_by, (list, tuple)):
        raise _sort_error(order_by, "expected a string or a list of fields")
    # a string item may name several fields: "-created_at,name"
    items = [part for item in order_by for part in (text_of(item).split(",") if isinstance(item, str) else [item])]
    out: list[tuple[str, int]] = []
    seen: set[str] = set()
    for item in items:
        name, direction = _sort_item(item)
        if name in seen:
            raise _sort_error(item, f"field {shown(name)} is ordered twice")
        seen.add(name)
        out.append((name, direction))
    return out


def compile_projection(fields: Any) -> dict[str, int] | None:
    """``["name", "address.city"]`` -> ``{"name": 1, "address.city": 1}``; None or empty -> None."""
    if fields is None:
        return None
    items = [fields] if isinstance(fields, str) else fields
    if not isinstance(items, (list, tuple)):
        raise InvalidSpecification(f"invalid field selection {shown(fields)}: expected a list of field paths")
    if not items:
        return None
    out: dict[str, int] = {}
    for item in items:
        problem = field_path_problem(item)
        if problem is not None:
            raise InvalidSpecification(f"invalid field selection {shown(item)}: {problem}")
        out[item] = 1
    return out
