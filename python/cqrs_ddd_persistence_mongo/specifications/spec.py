"""Specification: an immutable tree of conditions, composable with ``&``, ``|`` and ``~``.

Leaves are ``{"attr": "address.city", "op": "eq", "val": ...}``; groups are
``{"op": "and" | "or", "conditions": [...]}`` and ``{"op": "not", "conditions": [child]}``.
The tree is validated and copied when it is built or loaded (operator known, fields present,
arity, at most 100 levels deep), in one native walk (``_accel.normalize_spec``); values and
field paths are checked again by the compiler, which is the safety boundary.
"""

from __future__ import annotations

import json
from typing import Any

from .. import _accel
from ..exceptions import InvalidSpecification
from .registry import OperatorRegistry

_MISSING: Any = object()


_normalize = _accel.normalize_spec
_set_tree = object.__setattr__


def _copy(tree: dict[str, Any]) -> dict[str, Any]:
    """A copy of a tree built from validated parts (depth checked again: composing can
    nest one level deeper than either part)."""
    copied: dict[str, Any] = _normalize(tree, None, True)
    return copied


class Specification:
    """An immutable, validated specification tree."""

    __slots__ = ("_tree",)
    _tree: dict[str, Any]

    def __init__(self, tree: dict[str, Any], *, registry: OperatorRegistry | None = None) -> None:
        custom = registry.custom if registry is not None and registry.custom else None
        _set_tree(self, "_tree", _normalize(tree, custom, False, Specification))

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
        return _copy(self._tree)

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self._tree, **kwargs)

    # --- composition ------------------------------------------------------------------
    @staticmethod
    def _combine(op: str, left: Specification, right: Specification) -> Specification:
        conditions: list[dict[str, Any]] = []
        for part in (left._tree, right._tree):
            if part.get("op") == op and "conditions" in part:
                conditions.extend(part["conditions"])
            else:
                conditions.append(part)
        return Specification._trusted(_copy({"op": op, "conditions": conditions}))

    @classmethod
    def _trusted(cls, tree: dict[str, Any]) -> Specification:
        """Wrap a tree built from already validated parts without re-validating it."""
        spec = cls.__new__(cls)
        _set_tree(spec, "_tree", tree)
        return spec

    def __and__(self, other: Any) -> Specification:
        if not isinstance(other, Specification):
            return NotImplemented
        return self._combine("and", self, other)

    def __or__(self, other: Any) -> Specification:
        if not isinstance(other, Specification):
            return NotImplemented
        return self._combine("or", self, other)

    def __invert__(self) -> Specification:
        return Specification._trusted(_copy({"op": "not", "conditions": [self._tree]}))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Specification is immutable; compose with &, | and ~")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Specification) and other._tree == self._tree

    def __hash__(self) -> int:
        return hash(json.dumps(self._tree, sort_keys=True, default=repr))

    def __repr__(self) -> str:
        return f"Specification({self._tree!r})"
