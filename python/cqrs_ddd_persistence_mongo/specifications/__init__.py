"""Specifications: a tree of conditions that compiles to MongoDB filters.

House rule: this package imports nothing of ours except ``exceptions`` (which imports
nothing itself), so it can be used without a driver; compilation lives in
``query_builder`` / ``operators``.
"""

from .builder import SpecificationBuilder
from .operators import ALIASES, BUILTIN_OPERATORS, SpecificationOperator
from .options import QueryOptions
from .registry import OperatorRegistry, build_default_registry
from .spec import Specification

__all__ = [
    "ALIASES",
    "BUILTIN_OPERATORS",
    "OperatorRegistry",
    "QueryOptions",
    "Specification",
    "SpecificationBuilder",
    "SpecificationOperator",
    "build_default_registry",
]
