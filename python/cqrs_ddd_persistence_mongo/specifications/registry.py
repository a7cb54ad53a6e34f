"""Which operators a specification may use: the built-ins plus the ones users register."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable

from ..exceptions import InvalidSpecification
from .operators import ALIASES, BUILTIN_OPERATORS, GROUP_OPERATORS

CustomCompiler = Callable[[str, Any], dict[str, Any]]


class OperatorRegistry:
    """Built-in operators plus custom ones compiled by a Python function.

    A custom compiler receives ``(field_path, value)`` (the path already validated) and
    returns a MongoDB filter dict. It is trusted code: what it returns is sent as is.
    """

    def __init__(self) -> None:
        self._custom: dict[str, CustomCompiler] = {}

    def register(self, name: str, compiler: CustomCompiler) -> OperatorRegistry:
        """Add operator ``name``; returns the registry so calls chain."""
        if not isinstance(name, str) or not name or name.startswith("$"):
            raise InvalidSpecification(f"custom operator name {name!r} must be a non-empty string not starting with '$'")
        if name in BUILTIN_OPERATORS or name in ALIASES or name in GROUP_OPERATORS:
            raise InvalidSpecification(f"operator {name!r} is built in; register your operator under another name")
        if not callable(compiler):
            raise InvalidSpecification(f"the compiler of operator {name!r} must be callable (field_path, value) -> dict")
        self._custom[name] = compiler
        return self

    def is_known(self, name: str) -> bool:
        return name in BUILTIN_OPERATORS or name in ALIASES or name in self._custom

    @property
    def custom(self) -> Mapping[str, CustomCompiler]:
        """Read-only view of the custom compilers (what the filter compiler calls back)."""
        return MappingProxyType(self._custom)

    def copy(self) -> OperatorRegistry:
        clone = OperatorRegistry()
        clone._custom = dict(self._custom)
        return clone


def build_default_registry() -> OperatorRegistry:
    """A fresh registry with every built-in operator; extend it with ``register``."""
    return OperatorRegistry()
