"""Specification: an immutable tree of conditions, composable with ``&``, ``|`` and ``~``.

Leaves are ``{"attr": "address.city", "op": "eq", "val": ...}``; groups are
``{"op": "and" | "or", "conditions": [...]}`` and ``{"op": "not", "conditions": [child]}``.
The tree is validated when it is built or loaded (operator known, fields present, arity);
values and field paths are checked again by the compiler, which is the safety boundary.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from ..exceptions import InvalidSpecification
from .operators import GROUP_OPERATORS, VALUE_OPTIONAL, canonical
from .registry import OperatorRegistry, build_default_registry

_MISSING: Any = object()
_DEFAULT_REGISTRY = build_default_registry()


def _at(path: str) -> str:
    return path or "<root>"


def _error(path: str, problem: str) -> InvalidSpecification:
    return InvalidSpecification(f"invalid specification at '{_at(path)}': {problem}")


def _normalize(node: Any, path: str, registry: OperatorRegistry) -> dict[str, Any]:
    """A validated copy of ``node`` with canonical operator names."""
    if isinstance(node, Specification):
        return copy.deepcopy(node.tree)
    if not isinstance(node, dict):
        raise _error(path, f"a condition must be a dict, got {type(node).__name__}")
    if "op" not in node:
        raise _error(path, "a condition needs 'op'")
    op = canonical(node["op"])
    if not isinstance(op, str):
        raise _error(path, f"'op' must be a string, got {type(node['op']).__name__}")
    if op in GROUP_OPERATORS:
        conditions = node.get("conditions", _MISSING)
        if conditions is _MISSING:
            raise _error(path, f"'{op}' needs 'conditions' (a list)")
        if not isinstance(conditions, (list, tuple)):
            raise _error(path, f"'conditions' must be a list, got {type(conditions).__name__}")
        if op == "not" and len(conditions) != 1:
            raise _error(path, f"'not' takes exactly one condition, got {len(conditions)}")
        prefix = f"{path}.conditions" if path else "conditions"
        children = [_normalize(child, f"{prefix}[{i}]", registry) for i, child in enumerate(conditions)]
        return {"op": op, "conditions": children}
    if not registry.is_known(op):
        raise _error(
            path, f"unknown operator {op!r}; use one listed in docs/specifications.md or register it on the registry"
        )
    if "attr" not in node:
        raise _error(path, "a condition needs 'attr' (the field path)")
    if not isinstance(node["attr"], str):
        raise _error(path, f"field path must be a string, got {type(node['attr']).__name__}")
    leaf = {"attr": node["attr"], "op": op}
    if "val" in node:
        leaf["val"] = copy.deepcopy(node["val"])
    elif op not in VALUE_OPTIONAL and op not in registry.custom:
        raise _error(path, f"operator '{op}' needs a 'val'")
    return leaf


class Specification:
    """An immutable, validated specification tree."""

    __slots__ = ("_tree",)

    def __init__(self, tree: dict[str, Any], *, registry: OperatorRegistry | None = None) -> None:
        object.__setattr__(self, "_tree", _normalize(tree, "", registry or _DEFAULT_REGISTRY))

    # --- construction -------------------------------------------------------------
    @classmethod
    def leaf(cls, attr: str, op: Any, val: Any = _MISSING, *, registry: OperatorRegistry | None = None) -> Specification:
        node: dict[str, Any] = {"attr": attr, "op": op}
        if val is not _MISSING:
            node["val"] = val
        return cls(node, registry=registry)

    @classmethod
    def all(cls) -> Specification:
        """Matches every document (an empty ``and``)."""
        return cls({"op": "and", "conditions": []})

    @classmethod
    def none(cls) -> Specification:
        """Matches no document (an empty ``or``)."""
        return cls({"op": "or", "conditions": []})

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, registry: OperatorRegistry | None = None) -> Specification:
        return cls(data, registry=registry)

    @classmethod
    def from_json(cls, text: str | bytes, *, registry: OperatorRegistry | None = None) -> Specification:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InvalidSpecification(f"specification JSON does not parse: {exc}") from None
        return cls(data, registry=registry)

    # --- views ----------------------------------------------------------------------
    @property
    def tree(self) -> dict[str, Any]:
        """The validated tree itself (what the compiler reads): do not mutate; use ``to_dict``."""
        return self._tree

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._tree)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self._tree, **kwargs)

    # --- composition ------------------------------------------------------------------
    @staticmethod
    def _combine(op: str, left: Specification, right: Any) -> Specification:
        if not isinstance(right, Specification):
            return NotImplemented
        conditions: list[dict[str, Any]] = []
        for part in (left._tree, right._tree):
            if part.get("op") == op and "conditions" in part:
                conditions.extend(part["conditions"])
            else:
                conditions.append(part)
        return Specification._trusted({"op": op, "conditions": copy.deepcopy(conditions)})

    @classmethod
    def _trusted(cls, tree: dict[str, Any]) -> Specification:
        """Wrap a tree built from already validated parts without re-validating it."""
        spec = cls.__new__(cls)
        object.__setattr__(spec, "_tree", tree)
        return spec

    def __and__(self, other: Any) -> Specification:
        return self._combine("and", self, other)

    def __or__(self, other: Any) -> Specification:
        return self._combine("or", self, other)

    def __invert__(self) -> Specification:
        return Specification._trusted({"op": "not", "conditions": [copy.deepcopy(self._tree)]})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Specification is immutable; compose with &, | and ~")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Specification) and other._tree == self._tree

    def __hash__(self) -> int:
        return hash(json.dumps(self._tree, sort_keys=True, default=repr))

    def __repr__(self) -> str:
        return f"Specification({self._tree!r})"
