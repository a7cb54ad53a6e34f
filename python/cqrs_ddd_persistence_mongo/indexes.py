"""ensure_indexes: declare the indexes a collection needs, in the seeds' compact forms.

Accepted index specs:
* ``("status", 1)`` and compound ``("customer_id", 1, "status", 1)``;
* ``[("a", 1), ("b", -1)]`` (pymongo's key list);
* a dict ``{"keys": [("loc", "2dsphere")], "unique": True, "name": ..., "expireAfterSeconds": 3600, ...}``
  (any ``create_index`` option), or a pymongo ``IndexModel``.
Creating an index that already exists with the same options is a no-op on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pymongo import IndexModel
from pymongo.errors import PyMongoError

from .exceptions import MongoQueryError

_DIRECTIONS = {1, -1, "2dsphere", "2d", "text", "hashed"}


def _pairs(flat: Sequence[Any]) -> list[tuple[str, Any]]:
    if len(flat) % 2:
        raise MongoQueryError(f"index spec {flat!r} must alternate field and direction")
    keys = []
    for field, direction in zip(flat[0::2], flat[1::2]):
        if not isinstance(field, str) or direction not in _DIRECTIONS:
            raise MongoQueryError(
                f"index spec {flat!r}: expected (field, 1|-1|'2dsphere'|'text'|'hashed', ...)"
            )
        keys.append((field, direction))
    return keys


def to_index_model(spec: Any, **defaults: Any) -> IndexModel:
    """Turn one compact spec into a pymongo ``IndexModel``."""
    if isinstance(spec, IndexModel):
        return spec
    if isinstance(spec, dict):
        options = dict(spec)
        raw_keys = options.pop("keys")
        keys = _pairs(raw_keys) if raw_keys and isinstance(raw_keys[0], str) else [tuple(k) for k in raw_keys]
        return IndexModel(keys, **{**defaults, **options})
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        return IndexModel(_pairs(spec), **defaults)
    if isinstance(spec, list):
        return IndexModel([tuple(k) for k in spec], **defaults)
    raise MongoQueryError(f"unsupported index spec {spec!r}; see ensure_indexes' docstring")


async def ensure_indexes(collection: Any, specs: Iterable[Any], **options: Any) -> list[str]:
    """Create every index in ``specs`` on ``collection``; returns the index names.

    ``options`` apply to every spec (``background=True`` is accepted and ignored by
    servers >= 4.2, which always build without blocking).
    """
    options.pop("background", None)
    models = [to_index_model(spec, **options) for spec in specs]
    if not models:
        return []
    try:
        return list(await collection.create_indexes(models))
    except PyMongoError as exc:
        raise MongoQueryError(f"creating indexes on '{collection.name}' failed: {exc}") from exc
