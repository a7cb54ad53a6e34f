"""ensure_indexes: declare the indexes a collection needs, in the original library's compact forms.

Accepted index specs:
* ``("status", 1)`` and compound ``("customer_id", 1, "status", 1)``;
* the same with a trailing options dict: ``("email", 1, {"unique": True})``,
  ``("created_at", 1, {"ttl": 3600})``;
* ``[("a", 1), ("b", -1)]`` (pymongo's key list);
* a dict ``{"keys": [("loc", "2dsphere")], "unique": True, "name": ..., "ttl": 3600, ...}``
  whose ``keys`` is a key list or a flat tuple, with any ``create_index`` option; or a
  pymongo ``IndexModel``.

Directions: ``1``, ``-1``, ``"2dsphere"``, ``"2d"``, ``"text"``, ``"hashed"``. ``ttl`` is
short for ``expireAfterSeconds`` (a TTL index needs exactly one date field). Creating an
index that already exists with the same options is a no-op on the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pymongo import IndexModel
from pymongo.errors import OperationFailure, PyMongoError

from .exceptions import MongoQueryError

_DIRECTIONS = (1, -1, "2dsphere", "2d", "text", "hashed")
_HELP = "expected ('field', 1|-1|'2dsphere'|'2d'|'text'|'hashed', ...) or [('field', direction), ...]"


def _direction_ok(direction: Any) -> bool:
    return not isinstance(direction, bool) and any(
        direction == d and type(direction) is type(d) for d in _DIRECTIONS
    )


def _checked(keys: Sequence[tuple[Any, Any]], spec: Any) -> list[tuple[str, Any]]:
    if not keys:
        raise MongoQueryError(f"index spec {spec!r} names no field; {_HELP}")
    for field, direction in keys:
        if not isinstance(field, str) or not field or not _direction_ok(direction):
            raise MongoQueryError(f"index spec {spec!r}: bad key ({field!r}, {direction!r}); {_HELP}")
    return [(field, direction) for field, direction in keys]


def _pairs(flat: Sequence[Any], spec: Any) -> list[tuple[str, Any]]:
    if len(flat) % 2:
        raise MongoQueryError(f"index spec {spec!r} must alternate field and direction; {_HELP}")
    return _checked(list(zip(flat[0::2], flat[1::2])), spec)


def _key_list(raw: Any, spec: Any) -> list[tuple[str, Any]]:
    """Keys given flat (``("a", 1, "b", -1)``) or as pairs (``[("a", 1), ("b", -1)]``)."""
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], str):
        return _pairs(raw, spec)
    if isinstance(raw, (tuple, list)) and all(isinstance(k, (tuple, list)) and len(k) == 2 for k in raw):
        return _checked([tuple(k) for k in raw], spec)
    raise MongoQueryError(f"index spec {spec!r}: unsupported keys {raw!r}; {_HELP}")


def _options(options: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    options = dict(options)
    if "ttl" in options:
        ttl = options.pop("ttl")
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0:
            raise MongoQueryError(f"index spec {spec!r}: ttl must be whole seconds >= 0, got {ttl!r}")
        options["expireAfterSeconds"] = ttl
    return options


def to_index_model(spec: Any, **defaults: Any) -> IndexModel:
    """Turn one compact spec into a pymongo ``IndexModel`` (``defaults`` are options every
    spec gets unless it sets them itself)."""
    if isinstance(spec, IndexModel):
        return spec
    if isinstance(spec, Mapping):
        options = dict(spec)
        if "keys" not in options:
            raise MongoQueryError(f"index spec {spec!r} has no 'keys'; {_HELP}")
        keys = _key_list(options.pop("keys"), spec)
        return IndexModel(keys, **_options({**defaults, **options}, spec))
    if isinstance(spec, tuple) and spec and isinstance(spec[0], str):
        if isinstance(spec[-1], Mapping):
            return IndexModel(_pairs(spec[:-1], spec), **_options({**defaults, **spec[-1]}, spec))
        return IndexModel(_pairs(spec, spec), **_options(defaults, spec))
    if isinstance(spec, list):
        return IndexModel(_key_list(spec, spec), **_options(defaults, spec))
    raise MongoQueryError(f"unsupported index spec {spec!r}; see ensure_indexes' docstring")


async def ensure_indexes(collection: Any, specs: Iterable[Any], **options: Any) -> list[str]:
    """Create every index in ``specs`` on ``collection``; returns the index names.

    ``options`` apply to every spec (``background=True`` is accepted and ignored by
    servers >= 4.2, which always build without blocking). Every spec is checked before
    anything is sent, so a bad spec creates no index at all. Idempotent: an index that
    exists with the same keys and options is left as it is; one that exists with other
    options raises :class:`MongoQueryError` (drop it first).
    """
    options.pop("background", None)
    models = [to_index_model(spec, **options) for spec in specs]
    if not models:
        return []
    try:
        try:
            return list(await collection.create_indexes(models))
        except OperationFailure as exc:
            if exc.code not in _NAME_CONFLICTS:
                raise
            # the same index under another name (e.g. the one shardCollection built for its
            # key) serves as well: keep it, create only what is really missing
            from ._gateway import _maybe_awaitable

            existing = [index async for index in await _maybe_awaitable(collection.list_indexes())]
            missing = [model for model in models if equivalent_index(model, existing) is None]
            created = list(await collection.create_indexes(missing)) if missing else []
            return [equivalent_index(model, existing) or created.pop(0) for model in models]
    except PyMongoError as exc:
        from ._gateway import translate

        raise translate(exc, f"creating indexes on '{collection.name}'", MongoQueryError) or exc from exc


#: IndexOptionsConflict / IndexKeySpecsConflict: an index exists for the key, named otherwise
_NAME_CONFLICTS = (85, 86)
#: what an index description holds besides its options
_NOT_OPTIONS = frozenset({"v", "ns", "name", "key", "background"})


def equivalent_index(model: IndexModel, existing: Iterable[Mapping[str, Any]]) -> str | None:
    """The name of the index in ``existing`` (``listIndexes`` documents) with the same keys,
    in order, and the same options as ``model``, whatever its name; None if there is none."""
    wanted = model.document
    keys = list(wanted["key"].items())
    options = {k: v for k, v in wanted.items() if k not in _NOT_OPTIONS}
    for index in existing:
        if list(index["key"].items()) != keys:
            continue
        if {k: v for k, v in index.items() if k not in _NOT_OPTIONS} == options:
            return str(index["name"])
    return None



# --- the original library's one-index helpers (thin wrappers over ensure_indexes) --------
async def create_ttl_index(
    collection: Any, field: str, expire_after_seconds: int, *, name: str | None = None
) -> str:
    """A TTL index: documents expire ``expire_after_seconds`` after the date in ``field``."""
    options: dict[str, Any] = {"ttl": expire_after_seconds}
    if name is not None:
        options["name"] = name
    return (await ensure_indexes(collection, [(field, 1, options)]))[0]


#: The original library's name for :func:`create_ttl_index` (idempotent as well).
ensure_ttl_index = create_ttl_index


async def create_compound_index(
    collection: Any, keys: Sequence[tuple[str, Any]], *, unique: bool = False, name: str | None = None,
    **options: Any,
) -> str:
    """An index over several fields, e.g. ``[("customer_id", 1), ("created_at", -1)]``."""
    spec: dict[str, Any] = {"keys": list(keys), **options}
    if unique:
        spec["unique"] = True
    if name is not None:
        spec["name"] = name
    return (await ensure_indexes(collection, [spec]))[0]


async def create_text_index(
    collection: Any, fields: str | Sequence[str], *, weights: Mapping[str, int] | None = None,
    default_language: str | None = None, name: str | None = None,
) -> str:
    """The collection's text index over ``fields`` (MongoDB allows one text index per collection)."""
    names = [fields] if isinstance(fields, str) else list(fields)
    spec: dict[str, Any] = {"keys": [(field, "text") for field in names]}
    if weights is not None:
        spec["weights"] = dict(weights)
    if default_language is not None:
        spec["default_language"] = default_language
    if name is not None:
        spec["name"] = name
    return (await ensure_indexes(collection, [spec]))[0]


async def ensure_all_indexes(*stores: Any) -> None:
    """Call ``ensure_indexes()`` of every store given (event store, outbox, snapshot,
    position, saga, job stores): what an application runs once at startup, so no index is
    ever built next to an open transaction. Idempotent."""
    for store in stores:
        await store.ensure_indexes()


from .sharding import recommended_shard_keys, shard_collections  # noqa: E402  (sharded clusters)
