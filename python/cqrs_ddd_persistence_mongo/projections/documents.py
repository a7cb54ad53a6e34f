"""Read-model documents of a batch: one load per collection, one coalesced write per document.

Loading uses ``_id $in`` queries in chunks (``LOAD_CHUNK`` ids each): one query per chunk,
never one per event, and chunks keep servers whose ``$in`` cost grows faster than linearly
(the embedded server) on their fast path. Writing uses the guarded bulk upserts of
:mod:`..advanced.bulk_upserts` (native statement builder).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import PyMongoError

from ..advanced.bulk_upserts import BulkUpsertResult, build_upserts, write_upserts
from ..exceptions import ProjectionError
from .applier import POSITION_FIELD, BatchOutcome, id_key

LOAD_CHUNK = 64


async def load_documents(
    db: Any,
    wanted: Mapping[str, Mapping[Any, Any]],
    physical: Mapping[str, str],
    *,
    session: Any = None,
    to_list: Any,
) -> dict[str, dict[Any, dict[str, Any]]]:
    """Fetch the documents ``wanted`` (collection -> {id key: _id}) that exist.

    ``physical`` maps the projection's collection names to the ones to read (a rebuild's
    shadow collections). Returns collection -> {id key: document}.
    """
    loaded: dict[str, dict[Any, dict[str, Any]]] = {}
    for collection, ids in wanted.items():
        target = db[physical.get(collection, collection)]
        found: dict[Any, dict[str, Any]] = {}
        values = list(ids.values())
        try:
            for start in range(0, len(values), LOAD_CHUNK):
                chunk = values[start : start + LOAD_CHUNK]
                cursor = target.find({"_id": {"$in": chunk}}, session=session, batch_size=len(chunk))
                for doc in await to_list(cursor, None):
                    found[id_key(doc["_id"])] = doc
        except PyMongoError as exc:
            raise ProjectionError(f"loading read-model documents from '{target.name}' failed: {exc}") from exc
        loaded[collection] = found
    return loaded


async def write_documents(
    db: Any,
    outcome: BatchOutcome,
    physical: Mapping[str, str],
    *,
    session: Any = None,
    in_transaction: bool = False,
) -> BulkUpsertResult:
    """Write every changed document of ``outcome`` once, guarded by its last applied position.

    Guarantee: per document atomic and idempotent; a stored document whose
    ``_last_position`` is at or above ours is left alone (a replay or a stale writer never
    overwrites newer state). Inside a transaction the whole batch commits or not at all;
    outside, a crash halfway leaves some documents written, and re-running the batch is safe
    (the guards skip what is already there).
    """
    total = BulkUpsertResult()
    for collection, docs in outcome.changed.items():
        if not docs:
            continue
        statements = build_upserts(list(docs.values()), "_id", POSITION_FIELD, None)
        for (filter_, update), key in zip(statements, docs):
            removed = outcome.unset.get((collection, key))
            if removed:
                update["$unset"] = dict.fromkeys(removed, "")
        result = await write_upserts(
            db[physical.get(collection, collection)], statements, session=session, in_transaction=in_transaction
        )
        total.inserted += result.inserted
        total.updated += result.updated
        total.skipped += result.skipped
        total.batches += result.batches
    return total
