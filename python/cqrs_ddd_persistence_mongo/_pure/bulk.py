"""Upsert statements for projection documents (twin of ``rust/bulk.rs``, same messages).

``build_upserts`` turns documents into ``(filter, update)`` pairs, one per document,
meant to be sent with ``upsert=True``:

* filter: ``{"_id": <canonical key>, <guards>}``; guards come from the document itself:
  ``position_field`` (default ``_last_position``) becomes ``{"$not": {"$gte": p}}`` (the stored
  position must be lower than ``p``, or absent) and ``event_id_field`` (default
  ``_last_event_id``) becomes ``{"$ne": e}`` (the stored last event must differ). ``None``
  switches a guard off; the field is then stored as ordinary data.
* update: ``{"$set": <every field except the key fields>}``.

The key is ``doc[id_field]`` (else ``doc["_id"]``). A dict key (composite key) is stored with
its fields in sorted order, recursively, so the same key written in any field order is the
same ``_id``. Every field name is validated like ``validate_keys`` (paths such as
``docs[3].items[0].price``); the first invalid document raises ``InvalidDocument`` and no
statement is returned, so a caller writes nothing for an invalid batch.
"""

from __future__ import annotations

from typing import Any

from ..exceptions import InvalidDocument
from .keys import MAX_DEPTH, _walk, checked_key, display_path, index_path, stored, too_deep_error

POSITION_FIELD = "_last_position"
EVENT_ID_FIELD = "_last_event_id"


def _canonical(value: Any, path: str, depth: int) -> Any:
    """``value`` with every dict's fields sorted by name (validated on the way)."""
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise too_deep_error(path)
        fields = [(key, checked_key(key, path), child) for key, child in dict.items(value)]
        fields.sort(key=lambda item: item[0])
        return {key: _canonical(child, child_path, depth + 1) for key, child_path, child in fields}
    if isinstance(value, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise too_deep_error(path)
        return [_canonical(child, index_path(path, i), depth + 1) for i, child in enumerate(value)]
    return value


def _checked_id(key: Any, path: str) -> Any:
    if key is None:
        raise InvalidDocument(f"the key at '{display_path(path)}' is None; give every document a key")
    if isinstance(key, (list, tuple)):
        raise InvalidDocument(
            f"the key at '{display_path(path)}' is a list; MongoDB _id cannot be an array, "
            "use a dict for a composite key"
        )
    return _canonical(key, path, 1)


def canonical_id(key: Any) -> Any:
    """The ``_id`` stored for ``key``: dict keys get their fields in sorted order."""
    return _checked_id(key, "_id")


def _statement(
    doc: Any,
    path: str,
    id_field: str,
    position_field: str | None,
    event_id_field: str | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    if not isinstance(doc, dict):
        raise InvalidDocument(
            f"the document at '{display_path(path)}' is a {type(doc).__name__}, not a dict"
        )
    doc = stored(doc)
    if id_field in doc:
        key_name = id_field
    elif "_id" in doc:
        key_name = "_id"
    else:
        raise InvalidDocument(
            f"the document at '{display_path(path)}' has no '{id_field}' (or '_id') field; "
            "give every document its key"
        )
    key_path = checked_key(key_name, path)
    filter_: dict[str, Any] = {"_id": _checked_id(doc[key_name], key_path)}
    body: dict[str, Any] = {}
    for key, value in doc.items():
        _walk(value, checked_key(key, path), 1)
        if key != id_field and key != "_id":
            body[key] = value
    if position_field is not None:
        position = body.get(position_field)
        if position is not None:
            filter_[position_field] = {"$not": {"$gte": position}}
    if event_id_field is not None:
        event_id = body.get(event_id_field)
        if event_id is not None:
            filter_[event_id_field] = {"$ne": event_id}
    return filter_, {"$set": body}


def build_upserts(
    docs: Any,
    id_field: str = "id",
    position_field: str | None = POSITION_FIELD,
    event_id_field: str | None = EVENT_ID_FIELD,
    label: str = "docs",
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One ``(filter, update)`` upsert statement per document; see the module docstring.

    ``label`` names the batch in error messages (``docs[3].price``); ``""`` reports paths
    from the document root, as for a single document.
    """
    if not isinstance(docs, (list, tuple)):
        raise InvalidDocument(f"docs must be a list of dicts, not {type(docs).__name__}")
    return [
        _statement(doc, index_path(label, i) if label else "", id_field, position_field, event_id_field)
        for i, doc in enumerate(docs)
    ]
