"""Parity tests call both implementations directly, whichever backend is bound."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from cqrs_ddd_persistence_mongo import _accel


def both(name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(native, pure) implementations of ``name``; skips when the native module is absent."""
    native = _accel.native_function(name)
    if native is None:
        pytest.skip("native module not built")
    return native, _accel.pure_twin(name)


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What a call did: ('ok', result) or ('error', (exception type name, message))."""
    try:
        return "ok", fn(*args)
    except Exception as exc:  # noqa: BLE001 - parity compares any error
        return "error", (type(exc).__name__, str(exc))
