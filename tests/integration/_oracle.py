"""A pure-Python evaluation of specifications with MongoDB's matching rules, and random
generators of datasets and specifications for the correctness oracle.

Independent of the compiler: it reads the specification tree, never the compiled filter.
Rules modelled: path traversal into documents, array fields match when the array itself or
one element matches, null matches a missing field, comparisons only within one type bracket
(numbers, strings), ``$size`` on the array itself, documents compare in key order; the json
operators with PostgreSQL jsonb meaning (``?|`` / ``?&``: keys of an object or string
elements of an array; ``@>``: every element of a list contained in some element of the array,
dict keys recursively, scalars by MongoDB equality).
"""

from __future__ import annotations

import random
import re
from typing import Any

_MISSING = object()

# --- MongoDB values ---------------------------------------------------------------------


def _bracket(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def mongo_equal(a: Any, b: Any) -> bool:
    if _bracket(a) != _bracket(b):
        return False
    if isinstance(a, dict):
        return list(a.keys()) == list(b.keys()) and all(mongo_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(mongo_equal(x, y) for x, y in zip(a, b))
    return a == b


def _resolve(doc: Any, parts: list[str]) -> Any:
    """The value at ``parts`` or _MISSING (datasets never put documents inside arrays)."""
    value = doc
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _candidates(value: Any) -> list[Any]:
    if value is _MISSING:
        return []
    if isinstance(value, list):
        return [value, *value]
    return [value]


def _eq(value: Any, x: Any) -> bool:
    if x is None and value is _MISSING:
        return True
    return any(mongo_equal(c, x) for c in _candidates(value))


def _cmp(value: Any, op: str, x: Any) -> bool:
    for c in _candidates(value):
        if _bracket(c) != _bracket(x) or _bracket(x) not in ("number", "string"):
            continue
        if (op == "gt" and c > x) or (op == "gte" and c >= x) or (op == "lt" and c < x) or (op == "lte" and c <= x):
            return True
    return False


def _strings(value: Any) -> list[str]:
    return [c for c in _candidates(value) if isinstance(c, str)]


def _like(pattern: str, flags: int) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), flags | re.DOTALL)


EMPTIES: list[Any] = [None, "", [], {}]


def evaluate(node: dict[str, Any], doc: dict[str, Any]) -> bool:
    op = node["op"]
    if op == "and":
        return all(evaluate(c, doc) for c in node["conditions"])
    if op == "or":
        return any(evaluate(c, doc) for c in node["conditions"])
    if op == "not":
        return not evaluate(node["conditions"][0], doc)
    field = node["attr"]
    value = _resolve(doc, field.split("."))
    val = node.get("val")
    op = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}.get(op, op)
    if op == "eq":
        return _eq(value, val)
    if op == "ne":
        return not _eq(value, val)
    if op in ("gt", "gte", "lt", "lte"):
        return _cmp(value, op, val)
    if op in ("in", "not_in", "all"):
        items = val if isinstance(val, list) else [val]
        if op == "in":
            return any(_eq(value, x) for x in items)
        if op == "not_in":
            return not any(_eq(value, x) for x in items)
        return bool(items) and all(_eq(value, x) for x in items)
    if op == "between":
        return _cmp(value, "gte", val[0]) and _cmp(value, "lte", val[1])
    if op == "not_between":
        return not (_cmp(value, "gte", val[0]) and _cmp(value, "lte", val[1]))
    if op in ("is_null", "is_not_null"):
        positive = (val is None or val is True) == (op == "is_null")
        return _eq(value, None) == positive
    if op in ("is_empty", "is_not_empty"):
        positive = (val is None or val is True) == (op == "is_empty")
        return any(_eq(value, e) for e in EMPTIES) == positive
    strings = _strings(value)
    if op == "contains":
        return any(val in s for s in strings)
    if op == "icontains":
        return any(val.lower() in s.lower() for s in strings)
    if op == "startswith":
        return any(s.startswith(val) for s in strings)
    if op == "istartswith":
        return any(s.lower().startswith(val.lower()) for s in strings)
    if op == "endswith":
        return any(s.endswith(val) for s in strings)
    if op == "iendswith":
        return any(s.lower().endswith(val.lower()) for s in strings)
    if op in ("like", "ilike"):
        pattern = _like(val, re.IGNORECASE if op == "ilike" else 0)
        return any(pattern.fullmatch(s) for s in strings)
    if op == "not_like":
        return not any(_like(val, 0).fullmatch(s) for s in strings)
    if op in ("regex", "iregex"):
        pattern = re.compile(val, re.IGNORECASE if op == "iregex" else 0)
        return any(pattern.search(s) for s in strings)
    if op == "json_contains":
        return _contains(doc, field.split("."), val)
    if op == "json_path_exists":
        key = val[2:] if val.startswith("$.") else val
        return _resolve(doc, f"{field}.{key}".split(".")) is not _MISSING
    if op in ("json_has_key", "json_has_any", "json_has_all"):
        keys = val if isinstance(val, list) else [val]
        hits = [_has_key(value, k) for k in keys]
        return all(hits) if op == "json_has_all" else any(hits)
    if op == "size":
        return isinstance(value, list) and len(value) == val
    raise AssertionError(f"oracle has no rule for {op}")


def _has_key(value: Any, key: str) -> bool:
    """jsonb ``value ? key`` (a key may be a dot path into nested objects)."""
    if isinstance(value, dict):
        return _resolve(value, key.split(".")) is not _MISSING
    if isinstance(value, list):
        return any(isinstance(e, str) and e == key for e in value)
    return isinstance(value, str) and value == key


def _contains(doc: Any, parts: list[str], val: Any) -> bool:
    """The value at ``parts`` of ``doc`` contains ``val`` (jsonb ``@>``, MongoDB equality)."""
    if isinstance(val, dict):
        return all(_contains(doc, parts + key.split("."), item) for key, item in val.items())
    value = _resolve(doc, parts)
    if not isinstance(val, list):
        return _eq(value, val)
    if not isinstance(value, list):
        return False
    for item in val:
        if isinstance(item, dict):
            if not any(isinstance(e, dict) and _contains(e, [], item) for e in value):
                return False
        elif not _eq(value, item):
            return False
    return True


# --- generators ----------------------------------------------------------------------------
WORDS = ["a", "ab", "Ab", "abc", "b.c", "a%b", "x_y", "a*", "(p)", "$gt", "AB c", "", "5", "a\\b"]
NUMBERS = [-3, -1, 0, 1, 2, 2.5, 5, 7]
TAGS = ["red", "green", "blue", "Red"]
ITEMS: list[Any] = [{"k": 1, "w": "ab"}, {"k": 2}, {"w": "red", "sub": {"x": 1}}, "red", 2, {"tags": ["red", "blue"]}]


def _scalar(rng: random.Random) -> Any:
    return rng.choice([rng.choice(NUMBERS), rng.choice(WORDS), None])


def random_doc(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": i}
    choices = {
        "n": lambda: rng.choice([rng.choice(NUMBERS), rng.choice(WORDS), None, [rng.choice(NUMBERS) for _ in range(rng.randint(0, 3))]]),
        "s": lambda: rng.choice([rng.choice(WORDS), rng.choice(WORDS), None, [rng.choice(WORDS) for _ in range(rng.randint(0, 2))], 3]),
        "tags": lambda: rng.choice([sorted(set(rng.sample(TAGS, rng.randint(0, 3)))), "red", None, [["red"], "blue"]]),
        "meta": lambda: rng.choice(
            [
                {k: v for k, v in (("k", rng.choice(NUMBERS)), ("w", rng.choice(WORDS)), ("sub", {"x": rng.choice(NUMBERS)})) if rng.random() < 0.7},
                None,
                4,
                {"k": None},
            ]
        ),
        "e": lambda: rng.choice(["", [], {}, None, "x", [None], [""], [[]], 0]),
        "items": lambda: rng.choice(
            [
                rng.sample(ITEMS, rng.randint(0, len(ITEMS))),
                rng.sample(ITEMS, rng.randint(0, 2)),
                {"k": rng.choice(NUMBERS), "w": "red"},
                "red",
                None,
            ]
        ),
    }
    for name, make in choices.items():
        if rng.random() < 0.85:
            doc[name] = make()
    return doc


FIELDS = ["n", "s", "tags", "meta", "meta.k", "meta.w", "meta.sub.x", "e", "items", "missing"]
REGEXES = ["^a", "b$", "a.b", "[ab]+c", "A|B", "x*", "\\d", "^$", "c\\.?"]
LIKES = ["a%", "%b", "a_c", "%.%", "_", "%", "a\\%b", "A%", "x\\_y"]


def random_leaf(rng: random.Random) -> dict[str, Any]:
    field = rng.choice(FIELDS)
    op = rng.choice(LEAF_OPS)
    node: dict[str, Any] = {"attr": field, "op": op}
    if op in ("eq", "ne", "=", "!="):
        node["val"] = rng.choice([_scalar(rng), _scalar(rng), rng.choice(TAGS), [rng.choice(NUMBERS)], [], {"k": 1}, {"$gt": 1}, "$where"])
    elif op in ("gt", "gte", "lt", "lte", ">", ">=", "<", "<="):
        node["val"] = rng.choice([rng.choice(NUMBERS), rng.choice(WORDS)])
    elif op in ("in", "not_in"):
        node["val"] = [_scalar(rng) for _ in range(rng.randint(0, 3))] + rng.choice([[], [rng.choice(TAGS)], [[]], [{"$ne": 1}]])
        if rng.random() < 0.25:
            node["val"] = rng.choice([_scalar(rng), rng.choice(TAGS)])
    elif op == "all":
        node["val"] = rng.choice(
            [[rng.choice(TAGS) for _ in range(rng.randint(0, 2))], [rng.choice(NUMBERS)], [{"k": 1}], rng.choice(TAGS), rng.choice(NUMBERS)]
        )
    elif op in ("between", "not_between"):
        if rng.random() < 0.7:
            lo, hi = sorted(rng.sample(NUMBERS, 2))
        else:
            lo, hi = sorted(rng.sample(WORDS, 2))
        node["val"] = [lo, hi]
    elif op in ("contains", "icontains", "startswith", "istartswith", "endswith", "iendswith"):
        node["val"] = rng.choice(WORDS + ["A", "B", "C", "."])
    elif op in ("like", "ilike", "not_like"):
        node["val"] = rng.choice(LIKES + WORDS)
    elif op in ("regex", "iregex"):
        node["val"] = rng.choice(REGEXES)
    elif op in ("is_null", "is_not_null", "is_empty", "is_not_empty"):
        choice = rng.choice(["absent", True, False, None])
        if choice != "absent":
            node["val"] = choice
    elif op == "json_contains":
        # dict values only on "meta" (the oracle does not traverse arrays of documents by path)
        node["attr"] = rng.choice(["meta", "items", "tags", "n"])
        lists = [rng.sample(TAGS, rng.randint(0, 2)), [rng.choice(NUMBERS)], rng.choice(TAGS)]
        if node["attr"] == "items":
            lists += [
                rng.sample(ITEMS, rng.randint(0, 2)),
                [{"k": rng.choice([1, 2])}],
                [{"k": 1, "w": rng.choice(["ab", "red"])}, "red"],
                [{"sub": {"x": 1}}, {"tags": [rng.choice(TAGS)]}],
            ]
        node["val"] = rng.choice(lists)
        if node["attr"] == "meta":
            node["val"] = rng.choice(
                [
                    {"k": rng.choice(NUMBERS)},
                    {"sub": {"x": rng.choice(NUMBERS)}},
                    {"w": rng.choice(WORDS), "k": 1},
                    {"k": None},
                    node["val"],
                ]
            )
    elif op in ("json_has_key", "json_path_exists"):
        # a path traverses arrays of documents, which the oracle does not model
        node["attr"] = rng.choice(["meta", "n"] if op == "json_path_exists" else ["meta", "n", "tags", "items", "s"])
        # "0" names an array index to a path (json_path_exists), never to jsonb's "?"
        keys = ["$.sub.x", "$.k"] if op == "json_path_exists" else ["0"]
        node["val"] = rng.choice(["k", "w", "sub.x", "nope", "red", "ab", *keys])
    elif op in ("json_has_any", "json_has_all"):
        node["attr"] = rng.choice(["meta", "meta", "tags", "items", "s"])
        node["val"] = rng.sample(["k", "w", "sub", "nope", "red", "blue", "0", "ab"], rng.randint(1, 3))
        if rng.random() < 0.2:
            node["val"] = node["val"][0]
    elif op == "size":
        node["val"] = rng.randint(0, 3)
    return node


# checked on every dataset: the shapes that need more than one test on one array
FIXED_LEAVES: list[dict[str, Any]] = [
    {"attr": "items", "op": "json_contains", "val": [{"k": 1}, {"w": "red"}]},
    {"attr": "items", "op": "json_contains", "val": [{"k": 1, "w": "ab"}, "red", 2]},
    {"attr": "items", "op": "json_contains", "val": [{"tags": ["red", "blue"]}, {"sub": {"x": 1}}]},
    {"attr": "items", "op": "json_contains", "val": ["red"]},
    {"attr": "tags", "op": "json_has_all", "val": ["red", "blue"]},
    {"attr": "items", "op": "json_has_any", "val": ["k", "red"]},
    {"attr": "meta", "op": "json_has_key", "val": "sub.x"},
    {"attr": "tags", "op": "in", "val": "red"},
]

LEAF_OPS = [
    "eq", "ne", "gt", "gte", "lt", "lte", "=", "!=", ">", ">=", "<", "<=",
    "in", "not_in", "all", "between", "not_between",
    "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith",
    "like", "ilike", "not_like", "regex", "iregex",
    "is_null", "is_not_null", "is_empty", "is_not_empty",
    "json_contains", "json_has_key", "json_has_any", "json_has_all", "json_path_exists", "size",
]


def random_spec(rng: random.Random, depth: int) -> dict[str, Any]:
    if depth <= 0 or rng.random() < 0.4:
        return random_leaf(rng)
    op = rng.choice(["and", "or", "not", "and", "or"])
    if op == "not":
        return {"op": "not", "conditions": [random_spec(rng, depth - 1)]}
    return {"op": op, "conditions": [random_spec(rng, depth - 1) for _ in range(rng.randint(0, 3))]}
