"""Read models behind a pointer: how a rebuild swaps collections ``renameCollection`` cannot
move (a sharded read model; see docs/sharding.md).

A projection's pointer document (``projection_read_models``, ``_id`` = projection name)
maps each logical collection to the physical one that holds the current generation
(``<collection>__g<N>``). A rebuild fills the next generation, then flips the pointer with
one single-document write: every collection of the projection changes at once, so a reader
that resolves the pointer sees the old read model or the new one, never a mix. Without a
pointer document the logical name is the physical one (the rename swap's layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .._gateway import call
from ..exceptions import ProjectionError

POINTER_COLLECTION = "projection_read_models"
GENERATION_SUFFIX = "__g"


def _translated(what: str) -> Any:
    """Driver errors of ``what`` as library errors (timeouts and lost connections keep their
    own classes; everything else is a ProjectionError). The caller's call bounds the time."""
    return call(None, what, ProjectionError)


def generation_name(collection: str, generation: int) -> str:
    return f"{collection}{GENERATION_SUFFIX}{generation}"


def retired_name(collection: str, generation: int) -> str | None:
    """The physical name of ``collection`` two generations before ``generation``: what a
    switch to ``generation`` drops. The generation it replaces stays until the next switch,
    so a reader that resolved the pointer just before the switch still finds its data."""
    if generation < 2:
        return None
    return collection if generation == 2 else generation_name(collection, generation - 2)


async def read_pointer(db: Any, projection_name: str, session: Any = None) -> dict[str, Any] | None:
    """The pointer document of ``projection_name`` (None: the read model was never swapped
    by pointer)."""
    with _translated(f"reading the read-model pointer of '{projection_name}'"):
        return await db[POINTER_COLLECTION].find_one({"_id": projection_name}, session=session)  # type: ignore[no-any-return]


async def resolve_read_models(
    db: Any, projection_name: str, collections: Iterable[str], session: Any = None
) -> dict[str, str]:
    """Logical collection -> physical collection readers and writers must use now."""
    pointer = await read_pointer(db, projection_name, session)
    current: Mapping[str, str] = (pointer or {}).get("collections", {})
    return {c: current.get(c, c) for c in collections}


async def resolve_read_model(db: Any, projection_name: str, collection: str, session: Any = None) -> Any:
    """The driver collection that holds the current ``collection`` of ``projection_name``
    (what an application reading a pointer-swapped read model queries)."""
    return db[(await resolve_read_models(db, projection_name, [collection], session))[collection]]


async def next_generation(db: Any, projection_name: str, collections: Iterable[str]) -> dict[str, str]:
    """Physical names for the generation after the current one."""
    pointer = await read_pointer(db, projection_name)
    generation = int((pointer or {}).get("generation", 0)) + 1
    return {c: generation_name(c, generation) for c in collections}


async def flip_pointer(db: Any, projection_name: str, physical: Mapping[str, str]) -> dict[str, str]:
    """Point ``projection_name`` at ``physical`` in one atomic single-document write (by
    ``_id``, the pointer collection's shard key); returns the mapping it replaced."""
    previous = await resolve_read_models(db, projection_name, physical)
    generation = generation_of(physical)
    with _translated(
        f"switching the read model of '{projection_name}' to {dict(physical)} (run the rebuild again to finish the swap)"
    ):
        await db[POINTER_COLLECTION].update_one(
            {"_id": projection_name},
            {"$set": {"collections": dict(physical), "generation": generation}},
            upsert=True,
        )
    return previous


def generation_of(physical: Mapping[str, str]) -> int:
    for name in physical.values():
        head, sep, tail = name.rpartition(GENERATION_SUFFIX)
        if sep and tail.isdigit():
            return int(tail)
    return 0


async def use_pointer_swap(db: Any, projection_name: str, collections: Iterable[str]) -> None:
    """Opt ``projection_name`` in to pointer swaps before its read model is sharded: a
    pointer to the current (logical) collections; rebuilds then swap by pointer from the
    start. Idempotent: an existing pointer is left as it is."""
    if await read_pointer(db, projection_name) is None:
        await flip_pointer(db, projection_name, {c: c for c in collections})


async def swaps_by_pointer(db: Any, projection_name: str, collections: Iterable[str]) -> bool:
    """Whether a rebuild of ``projection_name`` must swap by pointer: it has a pointer
    already (once by pointer, always by pointer), or one of its collections is sharded."""
    if await read_pointer(db, projection_name) is not None:
        return True
    for collection in collections:
        if await is_sharded(db, collection):
            return True
    return False


async def is_sharded(db: Any, collection: str) -> bool:
    """True when ``db.collection`` is a sharded collection (``config.collections`` on a
    cluster; nothing there on a replica set)."""
    with _translated(f"checking whether '{collection}' is sharded"):
        doc = await db.client["config"]["collections"].find_one({"_id": f"{db.name}.{collection}"})
    return bool(doc) and not doc.get("dropped") and not doc.get("unsplittable")


async def shard_like(db: Any, source: str, target: str) -> None:
    """Shard ``target`` with the shard key of ``source`` (a new generation of a sharded read
    model must be sharded like the live one before it is filled)."""
    with _translated(f"sharding '{target}' like '{source}'"):
        doc = await db.client["config"]["collections"].find_one({"_id": f"{db.name}.{source}"})
        if doc and doc.get("key") and not doc.get("unsplittable") and not doc.get("dropped"):
            await db.client.admin.command("shardCollection", f"{db.name}.{target}", key=dict(doc["key"]))
