"""How stores find the driver session of a unit of work (``uow=``); lives in the gateway."""

from __future__ import annotations

from .._gateway import session_of

__all__ = ["session_of"]
