"""Checks on filters and pipelines that callers hand to a store as raw MongoDB syntax.

The checks live in the gateway (one place for every store); this module keeps the names
importable. Server-side JavaScript (``$where``, ``$function``, ``$accumulator``) is refused
at any depth and in every mapping type the driver encodes; write stages (``$out``,
``$merge``) only with an explicit opt-in.
"""

from __future__ import annotations

from ._gateway import CODE_OPERATORS, WRITE_STAGES, check_pipeline, check_query

__all__ = ["CODE_OPERATORS", "WRITE_STAGES", "check_pipeline", "check_query"]
