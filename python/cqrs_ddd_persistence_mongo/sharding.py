"""Sharded clusters: the shard key of every collection the library owns, and a helper that
shards them (design and trade-offs in docs/sharding.md).

Every single-document write the stores send (``update``, ``delete``, ``findAndModify``)
carries equality on every field of its collection's key below, so mongos routes it to one
shard (before MongoDB 7.0 such writes fail otherwise; from 7.0 they are broadcast).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pymongo.errors import OperationFailure

from ._gateway import call, is_timeout
from .exceptions import MongoPersistenceError
from .roles import ConnectionRole

#: collection (default name) -> shard key document
_KEYS: dict[str, dict[str, Any]] = {
    # streams are read and unique per aggregate: (aggregate_id, version) stays unique
    "domain_events": {"aggregate_id": 1},
    # one document per counter, written by _id
    "counters": {"_id": 1},
    # claimed, released and marked by _id ($in targets the shards that hold the ids)
    "outbox": {"_id": "hashed"},
    # one document per version, pruned and read per aggregate
    "snapshots": {"aggregate_type": 1, "aggregate_id": 1},
    # one document per projection (or worker partition); the name is also _id, and the
    # unique name index is prefixed by the key
    "projection_positions": {"projection_name": 1},
    "projection_checkpoints": {"projection_name": 1},
    # written and read by _id
    "sagas": {"_id": "hashed"},
    "background_jobs": {"_id": "hashed"},
    "projection_dead_letters": {"_id": "hashed"},
}

#: collections whose store keeps a unique index on exactly the shard key: sharded with
#: ``unique: true`` so the index shardCollection builds is the one the store asks for
#: (an equal key with other options would make the store's createIndexes fail)
_UNIQUE_KEYS = frozenset({"projection_positions", "projection_checkpoints"})

#: the key the library's writes need on an application's own collections (repositories,
#: projection read models): every write they send filters on ``_id``
APPLICATION_KEY: Mapping[str, Any] = MappingProxyType({"_id": "hashed"})


class ShardingError(MongoPersistenceError):
    """Sharding the collections failed (not connected to mongos, a conflicting key...)."""


def recommended_shard_keys() -> dict[str, dict[str, Any]]:
    """The shard key of every collection the library owns, by default collection name
    (a fresh copy: change it freely before passing it to :func:`shard_collections`)."""
    return {name: dict(key) for name, key in _KEYS.items()}


def _has_sharding_commands(hello: Mapping[str, Any]) -> bool:
    return hello.get("msg") == "isdbgrid"


async def is_mongos(connection: ConnectionRole) -> bool:
    """True when ``connection`` talks to a mongos router (one ``hello`` round trip; callers
    remember the answer). A mock client without commands is no mongos."""
    with call(connection, "asking the server whether it is a mongos router", ShardingError):
        try:
            hello = await connection.client.admin.command("hello")
        except NotImplementedError:  # mongomock
            return False
    return _has_sharding_commands(hello)


async def shard_collections(
    connection: ConnectionRole,
    database: str | None = None,
    keys: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Shard the library's collections (``keys``: name -> key, default
    :func:`recommended_shard_keys`) in ``database`` (default: the connection's); returns
    the namespaces sharded. Run it once, before the application writes.

    Idempotent: a collection already sharded with the same key is left as it is; one
    sharded with another key, or holding a unique index the key does not prefix, raises
    :class:`ShardingError` saying so. Not through a mongos: :class:`ShardingError`.
    """
    if not await is_mongos(connection):
        raise ShardingError(
            "shard_collections() needs a connection to a mongos router of a sharded cluster; "
            "this server is a replica set or standalone (nothing to shard: the stores work as they are)"
        )
    db_name = connection.db(database).name
    wanted = recommended_shard_keys() if keys is None else {name: dict(key) for name, key in keys.items()}
    done: list[str] = []
    for name, key in wanted.items():
        namespace = f"{db_name}.{name}"
        options = {"unique": True} if name in _UNIQUE_KEYS and "hashed" not in key.values() else {}
        with call(connection, f"sharding '{namespace}'", ShardingError):
            try:
                await connection.client.admin.command("shardCollection", namespace, key=key, **options)
            except OperationFailure as exc:
                if is_timeout(exc):
                    raise  # translated by the call: OperationTimedOut
                raise ShardingError(
                    f"sharding '{namespace}' with key {key} failed: {exc.details.get('errmsg', exc) if exc.details else exc}; "
                    "if it is sharded with another key or has a unique index the key does not prefix "
                    "(e.g. the event store's 'position_unique' made before sharding), fix that first "
                    "(see docs/sharding.md)"
                ) from exc
        done.append(namespace)
    return done
