"""Small checks shared by the event store and the outbox before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from .. import _accel
from ..exceptions import InvalidDocument


def checked_mapping(value: Any, what: str, error: type[Exception]) -> dict[str, Any]:
    """``value`` as a dict whose keys MongoDB accepts, else ``error`` naming ``what``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{what} must be a dict, not {type(value).__name__}")
    value = dict(value)
    try:
        _accel.validate_keys(value)
    except InvalidDocument as exc:
        raise error(f"{what}: {exc}") from exc
    return cast("dict[str, Any]", value)
