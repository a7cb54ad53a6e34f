"""How stores find the driver session of a unit of work (``uow=``)."""

from __future__ import annotations

from typing import Any


def session_of(uow: Any) -> Any:
    """The driver session to pass as ``session=`` for ``uow``, or None outside a unit of work.

    Any object with a ``session`` attribute works (duck typing); a unit of work running
    without transactions (mongomock, ``require_replica_set=False``) has ``session = None``.
    """
    return None if uow is None else getattr(uow, "session", None)
