"""QueryOptions: immutable search options (specification, ordering, pagination, fields)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..exceptions import InvalidSpecification
from .registry import OperatorRegistry
from .spec import Specification


def _flatten(items: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(items) == 1 and isinstance(items[0], (list, tuple)) and not (
        len(items[0]) == 2 and isinstance(items[0][1], int)
    ):
        return tuple(items[0])
    return items


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """Every ``with_*`` returns a new instance; ordering uses ``"-field"`` for descending."""

    specification: Specification | None = None
    registry: OperatorRegistry | None = None
    order_by: tuple[Any, ...] = ()
    limit: int | None = None
    offset: int = 0
    fields: tuple[str, ...] | None = None

    def with_specification(self, spec: Specification | dict[str, Any] | None, *, registry: OperatorRegistry | None = None) -> QueryOptions:
        registry = registry or self.registry
        if spec is not None and not isinstance(spec, Specification):
            spec = Specification.from_dict(spec, registry=registry)
        return replace(self, specification=spec, registry=registry)

    def with_ordering(self, *order_by: Any) -> QueryOptions:
        """``with_ordering("-created_at", "name")`` or ``with_ordering(["-created_at", ("name", 1)])``."""
        return replace(self, order_by=_flatten(order_by))

    def with_pagination(self, limit: int | None = None, offset: int = 0) -> QueryOptions:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise InvalidSpecification(f"limit must be an integer >= 1 or None (no limit), got {limit!r}")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise InvalidSpecification(f"offset must be an integer >= 0, got {offset!r}")
        return replace(self, limit=limit, offset=offset)

    def with_fields(self, *fields: str) -> QueryOptions:
        """Select fields (a projection); ``_id`` is always returned."""
        selected = _flatten(fields)
        return replace(self, fields=tuple(selected) if selected else None)
