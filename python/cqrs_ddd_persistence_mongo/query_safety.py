"""Checks on filters and pipelines that callers hand to a store as raw MongoDB syntax.

Server-side JavaScript (``$where``, ``$function``, ``$accumulator``) is refused at any depth:
it runs arbitrary code on the server and is a classic injection path when a filter is built
from user input. Stages that write elsewhere (``$out``, ``$merge``) are refused unless the
caller opts in, so a read API cannot overwrite a collection by accident.
"""

from __future__ import annotations

from typing import Any

from .exceptions import InvalidSpecification, UnsafeQueryError

CODE_OPERATORS = frozenset({"$where", "$function", "$accumulator"})
WRITE_STAGES = frozenset({"$out", "$merge"})


def check_query(value: Any, what: str = "filter", *, allow_write_stages: bool = False) -> None:
    """Raise ``UnsafeQueryError`` if ``value`` (a filter, sort or pipeline) uses a refused operator.

    ``what`` names the argument in the message (``filter``, ``pipeline``). The walk is
    iterative, so a deeply nested filter cannot exhaust the interpreter stack.
    """
    stack: list[tuple[Any, str]] = [(value, what)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            for key, child in node.items():
                if key in CODE_OPERATORS:
                    raise UnsafeQueryError(
                        f"{key} at '{path}' runs JavaScript on the server and is not accepted in a "
                        f"caller-supplied {what}; express the condition with query operators"
                    )
                if key in WRITE_STAGES and not allow_write_stages:
                    raise UnsafeQueryError(
                        f"{key} at '{path}' writes to another collection; construct the store with "
                        "allow_write_stages=True if this pipeline is meant to write"
                    )
                stack.append((child, f"{path}.{key}"))
        elif isinstance(node, (list, tuple)):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node))


def check_pipeline(pipeline: Any, *, allow_write_stages: bool = False) -> None:
    """A pipeline must be a list of stage dicts and pass :func:`check_query`."""
    if not isinstance(pipeline, (list, tuple)) or not all(isinstance(stage, dict) for stage in pipeline):
        raise InvalidSpecification("pipeline must be a list of stage dicts, e.g. [{'$match': {...}}]")
    check_query(pipeline, "pipeline", allow_write_stages=allow_write_stages)
