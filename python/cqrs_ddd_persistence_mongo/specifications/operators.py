"""The operator vocabulary of specifications: names, aliases and what each needs."""

from __future__ import annotations

from enum import Enum


class SpecificationOperator(str, Enum):
    """Every built-in operator (``docs/specifications.md`` gives each one's MongoDB meaning)."""

    # standard
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    # the original library's names of gte / lte (aliases: the same members)
    GE = "gte"
    LE = "lte"
    # sets
    IN = "in"
    NOT_IN = "not_in"
    ALL = "all"
    BETWEEN = "between"
    NOT_BETWEEN = "not_between"
    # strings
    CONTAINS = "contains"
    ICONTAINS = "icontains"
    STARTSWITH = "startswith"
    ISTARTSWITH = "istartswith"
    ENDSWITH = "endswith"
    IENDSWITH = "iendswith"
    LIKE = "like"
    ILIKE = "ilike"
    NOT_LIKE = "not_like"
    REGEX = "regex"
    IREGEX = "iregex"
    # null / emptiness
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"
    IS_EMPTY = "is_empty"
    IS_NOT_EMPTY = "is_not_empty"
    # documents
    JSON_CONTAINS = "json_contains"
    JSON_CONTAINED_BY = "json_contained_by"
    JSON_HAS_KEY = "json_has_key"
    JSON_HAS_ANY = "json_has_any"
    JSON_HAS_ALL = "json_has_all"
    JSON_PATH_EXISTS = "json_path_exists"
    SIZE = "size"
    # geometry (GeoJSON values)
    WITHIN = "within"
    INTERSECTS = "intersects"
    DISJOINT = "disjoint"
    CONTAINS_GEOM = "contains_geom"
    TOUCHES = "touches"
    CROSSES = "crosses"
    OVERLAPS = "overlaps"
    GEOM_EQUALS = "geom_equals"
    BBOX_INTERSECTS = "bbox_intersects"
    DISTANCE_LT = "distance_lt"
    DWITHIN = "dwithin"
    NEAR = "near"
    # full-text
    FTS = "fts"
    FTS_PHRASE = "fts_phrase"
    # group nodes ({"op": AND, "conditions": [...]}): named here for the original library's
    # users, but not leaf operators (kept out of BUILTIN_OPERATORS, never registrable)
    AND = "and"
    OR = "or"
    NOT = "not"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def _missing_(cls, value: object) -> SpecificationOperator | None:
        """``SpecificationOperator(">=")`` is ``GTE``: the symbols name their operators."""
        name = ALIASES.get(value) if isinstance(value, str) else None
        return cls(name) if name is not None else None


ALIASES: dict[str, str] = {"=": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
GROUP_OPERATORS: frozenset[str] = frozenset({"and", "or", "not"})
BUILTIN_OPERATORS: frozenset[str] = frozenset(
    op.value for op in SpecificationOperator if op.value not in GROUP_OPERATORS
)
VALUE_OPTIONAL: frozenset[str] = frozenset({"is_null", "is_not_null", "is_empty", "is_not_empty"})


def canonical(op: object) -> str:
    """``SpecificationOperator.GTE`` / ``">="`` / ``"gte"`` -> ``"gte"`` (unknown names pass through)."""
    name = op.value if isinstance(op, SpecificationOperator) else op
    if not isinstance(name, str):
        return name  # type: ignore[return-value]  # validation reports it
    return ALIASES.get(name, name)
