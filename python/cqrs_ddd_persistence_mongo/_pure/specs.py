"""Specification intake (twin of ``rust/filters/intake.rs``): a tree given as a dict is
validated and copied in one walk, with canonical operator names.

The walk is depth-limited like every walk over user data: a tree or a value nested deeper
than MongoDB's 100 levels raises :class:`InvalidSpecification` naming where.
"""

from __future__ import annotations

import copy
from collections.abc import Container
from typing import Any

from .filters import ALIASES, BUILTIN, _error, _too_deep_problem, _unknown
from .keys import MAX_DEPTH, text_of

VALUE_OPTIONAL = frozenset({"is_null", "is_not_null", "is_empty", "is_not_empty"})
_SCALARS = (str, int, float, bool, type(None))


def _value_too_deep(path: str) -> Exception:
    return _error(path, f"the value nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it")


def copy_value(val: Any, path: str, depth: int) -> Any:
    """An independent copy of a condition's value (plain containers copied here, depth
    limited; immutable scalars shared; anything else through ``copy.deepcopy``)."""
    kind = type(val)
    if kind in _SCALARS:
        return val
    if kind is dict or kind is list or kind is tuple:
        if depth > MAX_DEPTH:
            raise _value_too_deep(path)
        if kind is dict:
            return {k: copy_value(v, path, depth + 1) for k, v in dict.items(val)}
        items = [copy_value(v, path, depth + 1) for v in val]
        return items if kind is list else tuple(items)
    try:
        return copy.deepcopy(val)
    except RecursionError:
        raise _value_too_deep(path) from None


def _canonical(op: Any) -> str | None:
    if not isinstance(op, str):
        return None
    text = text_of(op)
    return ALIASES.get(text, text)


def _group(node: dict[str, Any], op: str, path: str, depth: int, ctx: tuple[Any, bool, Any]) -> dict[str, Any]:
    conditions = dict.get(node, "conditions", _MISSING)
    if conditions is _MISSING:
        raise _error(path, f"'{op}' needs 'conditions' (a list)")
    if not isinstance(conditions, (list, tuple)):
        raise _error(path, f"'conditions' must be a list, got {type(conditions).__name__}")
    children = list(list.__iter__(conditions) if isinstance(conditions, list) else tuple.__iter__(conditions))
    if op == "not" and len(children) != 1:
        raise _error(path, f"'not' takes exactly one condition, got {len(children)}")
    prefix = f"{path}.conditions" if path else "conditions"
    copies = [_normalize(child, f"{prefix}[{i}]", depth + 1, ctx) for i, child in enumerate(children)]
    return {"op": op, "conditions": copies}


def _leaf(node: dict[str, Any], op: str, path: str, ctx: tuple[Any, bool, Any]) -> dict[str, Any]:
    custom, trusted, _ = ctx
    builtin = op in BUILTIN
    is_custom = custom is not None and op in custom
    if not trusted and not builtin and not is_custom:
        raise _unknown(op, path)
    attr = dict.get(node, "attr", _MISSING)
    if attr is _MISSING:
        raise _error(path, "a condition needs 'attr' (the field path)")
    if not isinstance(attr, str):
        raise _error(path, f"field path must be a string, got {type(attr).__name__}")
    val = dict.get(node, "val", _MISSING)
    if val is not _MISSING:
        return {"attr": attr, "op": op, "val": copy_value(val, path, 1)}
    if trusted or op in VALUE_OPTIONAL or (not builtin and is_custom):
        return {"attr": attr, "op": op}
    raise _error(path, f"operator '{op}' needs a 'val'")


_MISSING: Any = object()


def _normalize(node: Any, path: str, depth: int, ctx: tuple[Any, bool, Any]) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _error(path, _too_deep_problem())
    custom, _, spec_type = ctx
    if spec_type is not None and not isinstance(node, dict) and isinstance(node, spec_type):
        # an already validated Specification: its tree is copied, names trusted
        return _normalize(node.tree, path, depth, (custom, True, spec_type))
    if not isinstance(node, dict):
        raise _error(path, f"a condition must be a dict, got {type(node).__name__}")
    raw_op = dict.get(node, "op", _MISSING)
    if raw_op is _MISSING:
        raise _error(path, "a condition needs 'op'")
    op = _canonical(raw_op)
    if op is None:
        raise _error(path, f"'op' must be a string, got {type(raw_op).__name__}")
    if op in ("and", "or", "not"):
        return _group(node, op, path, depth, ctx)
    return _leaf(node, op, path, ctx)


def normalize_spec(
    tree: Any, custom: Container[str] | None = None, trusted: bool = False, spec_type: type | None = None
) -> dict[str, Any]:
    """A validated copy of ``tree`` with canonical operator names; raises
    ``InvalidSpecification`` naming the first problem and where it is."""
    return _normalize(tree, "", 1, (custom, trusted, spec_type))
