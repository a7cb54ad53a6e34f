"""Document key validation (twin of ``rust/keys.rs``).

MongoDB field names may not start with ``$``, contain ``.`` or NUL, and documents may
not nest deeper than 100 levels. Paths are reported as ``items[3].price``.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidDocument

MAX_DEPTH = 100


def child_path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def index_path(parent: str, index: int) -> str:
    return f"{parent}[{index}]"


def display_path(path: str) -> str:
    return path or "<root>"


def text_of(value: str) -> str:
    """The text of a str (a subclass's own methods are not asked: the native twin reads the
    characters themselves)."""
    return value if type(value) is str else str.__str__(value)


SHOWN_LIMIT = 200


def shown(value: Any) -> str:
    """``repr(value)`` for an error message: a str subclass shown by its characters, at most
    ``SHOWN_LIMIT`` characters, and never an error of its own (a value nested too deep to
    repr, or whose ``__repr__`` fails, is named by its type)."""
    try:
        text = repr(text_of(value)) if isinstance(value, str) else repr(value)
    except Exception:  # noqa: BLE001 - an error message must not fail on the value it shows
        return f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= SHOWN_LIMIT else text[: SHOWN_LIMIT - 3] + "..."


def key_text(key: Any) -> str:
    """A key's text in a path: a str (subclass or not) by its characters, anything else by
    ``str()``; never an error of its own."""
    try:
        return text_of(key) if isinstance(key, str) else str(key)
    except Exception:  # noqa: BLE001 - a path must not fail on the key it names
        return f"<unrepresentable {type(key).__name__}>"


def stored(value: dict[Any, Any]) -> dict[Any, Any]:
    """A plain dict of the items ``value`` stores (a subclass's own mapping methods are not
    asked: the native twin reads the table itself)."""
    return value if type(value) is dict else {k: v for k, v in dict.items(value)}


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a MongoDB field name, or None."""
    key = text_of(key)
    if key.startswith("$"):
        return "field names may not start with '$'"
    if "." in key:
        return "field names may not contain '.'"
    if "\0" in key:
        return "field names may not contain NUL"
    return None


def bad_key_error(path: str, problem: str) -> InvalidDocument:
    return InvalidDocument(
        f"invalid field name at '{path}': {problem}; rename the field or store the name as a value"
    )


def too_deep_error(path: str) -> InvalidDocument:
    return InvalidDocument(
        f"document at '{display_path(path)}' nests deeper than {MAX_DEPTH} levels "
        "(MongoDB's limit); flatten it or check for a cycle"
    )


def checked_key(key: Any, parent: str) -> str:
    """Validate one key; return the child path."""
    if not isinstance(key, str):
        raise InvalidDocument(
            f"field name {shown(key)} at '{display_path(parent)}' is not a string; "
            "MongoDB field names must be str"
        )
    path = child_path(parent, text_of(key))
    problem = key_problem(key)
    if problem is not None:
        raise bad_key_error(path, problem)
    return path


def _walk(value: Any, path: str, depth: int) -> None:
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise too_deep_error(path)
        for key, child in dict.items(value):
            _walk(child, checked_key(key, path), depth + 1)
    elif isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise too_deep_error(path)
        for index, child in enumerate(value):
            _walk(child, index_path(path, index), depth + 1)


def validate_keys(doc: Any) -> None:
    """Raise ``InvalidDocument`` naming the first offending path in ``doc``."""
    _walk(doc, "", 0)
