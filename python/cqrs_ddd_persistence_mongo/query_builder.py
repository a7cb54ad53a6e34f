"""MongoQueryBuilder: specifications -> filter, sort and projection documents.

The compiler (native or pure, via ``_accel``) treats every value as data and validates every
field path. ``build_match`` never passes a caller's raw filter through: it accepts a
``Specification`` or a spec dict only, and rejects raw filters with server-side code
(``$where``, ``$function``, ``$accumulator``) as :class:`UnsafeQueryError`.
"""

from __future__ import annotations

from typing import Any, cast

from . import _accel
from .exceptions import InvalidSpecification, UnsafeQueryError
from .specifications import OperatorRegistry, QueryOptions, Specification

SERVER_CODE_OPERATORS = frozenset({"$where", "$function", "$accumulator"})


def find_operator(value: Any, names: frozenset[str], depth: int = 0) -> str | None:
    """The first of ``names`` used as a key anywhere in ``value`` (a filter document)."""
    if depth > 100:
        return None
    if isinstance(value, dict):
        for key, child in value.items():
            if key in names:
                return cast(str, key)
            found = find_operator(child, names, depth + 1)
            if found:
                return found
    elif isinstance(value, (list, tuple)):
        for child in value:
            found = find_operator(child, names, depth + 1)
            if found:
                return found
    return None


def spec_tree(spec: Specification | dict[str, Any] | None) -> dict[str, Any]:
    """The tree to compile for ``spec``; raw filters are refused (see module docstring)."""
    if spec is None:
        return {"op": "and", "conditions": []}
    if isinstance(spec, Specification):
        return spec.tree
    if isinstance(spec, dict):
        if "op" in spec:
            return spec
        code = find_operator(spec, SERVER_CODE_OPERATORS)
        if code is not None:
            raise UnsafeQueryError(
                f"refusing a raw filter that runs server-side code ({code}); "
                "express the condition as a specification"
            )
        raise InvalidSpecification(
            "build_match takes a Specification or a spec dict ({'attr', 'op', 'val'} or "
            "{'op': 'and'|'or'|'not', 'conditions'}), not a raw MongoDB filter"
        )
    raise InvalidSpecification(f"expected a Specification or a spec dict, got {type(spec).__name__}")


class MongoQueryBuilder:
    """Compiles specifications with the operators of ``registry`` (built-ins plus custom ones)."""

    def __init__(self, registry: OperatorRegistry | None = None) -> None:
        self.registry = registry

    def _custom(self, registry: OperatorRegistry | None = None) -> Any:
        chosen = registry or self.registry
        return dict(chosen.custom) if chosen is not None and chosen.custom else None

    def build_match(self, spec: Specification | dict[str, Any] | None, *, registry: OperatorRegistry | None = None) -> dict[str, Any]:
        """The filter document of ``spec`` (``{}`` for None / an empty ``and``)."""
        return _accel.compile_filter(spec_tree(spec), self._custom(registry))

    def build_sort(self, order_by: Any) -> list[tuple[str, int]]:
        """``"-created_at"`` / ``["-created_at", "name"]`` -> ``[("created_at", -1), ("name", 1)]``."""
        return _accel.compile_sort(order_by)

    def build_project(self, fields: Any) -> dict[str, int] | None:
        """``["name", "address.city"]`` -> ``{"name": 1, "address.city": 1}``."""
        return _accel.compile_projection(fields)

    def build_options(self, options: QueryOptions) -> tuple[dict[str, Any], list[tuple[str, int]], dict[str, int] | None]:
        """(filter, sort, projection) of ``options``."""
        return (
            self.build_match(options.specification, registry=options.registry),
            self.build_sort(list(options.order_by)),
            self.build_project(options.fields),
        )
