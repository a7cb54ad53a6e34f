"""SpecificationBuilder: fluent, left-to-right construction of a specification.

Each call returns a new builder, so one builder can start several specifications:
``builder.where("status", "eq", "pending").build()`` leaves ``builder`` empty.
"""

from __future__ import annotations

from typing import Any, Callable

from .registry import OperatorRegistry
from .spec import _MISSING, Specification


class SpecificationBuilder:
    """``where`` starts (or and-s), ``and_where`` / ``or_where`` / ``not_where`` combine with
    what is built so far; ``and_group`` / ``or_group`` add a parenthesised sub-specification."""

    __slots__ = ("_current", "_registry")

    def __init__(self, registry: OperatorRegistry | None = None, _current: Specification | None = None) -> None:
        self._registry = registry
        self._current = _current

    def _leaf(self, attr: str, op: Any, val: Any) -> Specification:
        return Specification.leaf(attr, op, val, registry=self._registry)

    def _with(self, spec: Specification) -> SpecificationBuilder:
        return SpecificationBuilder(self._registry, spec)

    def _and(self, spec: Specification) -> SpecificationBuilder:
        return self._with(spec if self._current is None else self._current & spec)

    def _or(self, spec: Specification) -> SpecificationBuilder:
        return self._with(spec if self._current is None else self._current | spec)

    def where(self, attr: str, op: Any, val: Any = _MISSING) -> SpecificationBuilder:
        return self._and(self._leaf(attr, op, val))

    def and_where(self, attr: str, op: Any, val: Any = _MISSING) -> SpecificationBuilder:
        return self._and(self._leaf(attr, op, val))

    def or_where(self, attr: str, op: Any, val: Any = _MISSING) -> SpecificationBuilder:
        return self._or(self._leaf(attr, op, val))

    def not_where(self, attr: str, op: Any, val: Any = _MISSING) -> SpecificationBuilder:
        """And the negation of one condition."""
        return self._and(~self._leaf(attr, op, val))

    def _group(self, group: Specification | Callable[[SpecificationBuilder], SpecificationBuilder]) -> Specification:
        if isinstance(group, Specification):
            return group
        return group(SpecificationBuilder(self._registry)).build()

    def and_group(self, group: Specification | Callable[[SpecificationBuilder], SpecificationBuilder]) -> SpecificationBuilder:
        """``b.and_group(lambda g: g.where(...).or_where(...))`` -> ``current AND (...)``."""
        return self._and(self._group(group))

    def or_group(self, group: Specification | Callable[[SpecificationBuilder], SpecificationBuilder]) -> SpecificationBuilder:
        return self._or(self._group(group))

    def not_group(self, group: Specification | Callable[[SpecificationBuilder], SpecificationBuilder]) -> SpecificationBuilder:
        return self._and(~self._group(group))

    def build(self) -> Specification:
        """The specification built so far; an empty builder gives one matching everything."""
        return self._current if self._current is not None else Specification.all()
