"""Read-model documents of a batch: one load per collection, one coalesced write per document.

Loading uses ``_id $in`` queries in chunks (``LOAD_CHUNK`` ids each): one query per chunk,
never one per event, and chunks keep servers whose ``$in`` cost grows faster than linearly
(the embedded server) on their fast path. Writing uses the statements of the native bulk
builder (``advanced/bulk_upserts.build_upserts``: canonical ids, key validation, the
``_last_position`` guard).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from ..advanced.bulk_upserts import DUPLICATE_KEY, Statement, build_upserts, write_upserts
from ..exceptions import ProjectionError
from .applier import POSITION_FIELD, BatchOutcome, id_key

LOAD_CHUNK = 64


@dataclass(slots=True)
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    skipped: int = 0


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
) -> WriteCounts:
    """Write every changed document of ``outcome`` once, guarded by its last applied position.

    Documents that did not exist when the batch loaded them are inserted (the cheapest
    write); the others get the guarded update (stored ``_last_position`` must be lower).
    Outside a transaction an insert that meets a document created meanwhile falls back to
    the guarded upsert, and updates are guarded upserts. So a replay or a stale writer
    never overwrites newer state.

    Guarantee: per document atomic and idempotent. Inside a transaction the whole batch
    commits or not at all (a concurrent writer of the same documents makes it abort and
    retry). Outside, a crash halfway leaves some documents written; re-running the batch is
    safe (the guards skip what is already there).
    """
    counts = WriteCounts()
    for collection, docs in outcome.changed.items():
        if not docs:
            continue
        target = db[physical.get(collection, collection)]
        statements = build_upserts(list(docs.values()), "_id", POSITION_FIELD, None)
        fresh: list[Statement] = []
        stored: list[Statement] = []
        for statement, key in zip(statements, docs):
            if (collection, key) in outcome.existing:
                removed = outcome.unset.get((collection, key))
                if removed:
                    statement[1]["$unset"] = dict.fromkeys(removed, "")
                stored.append(statement)
            else:
                fresh.append(statement)
        if fresh:
            await _insert(target, fresh, session, in_transaction, counts)
        if stored:
            await _update(target, stored, session, in_transaction, counts)
    return counts


async def _insert(target: Any, statements: list[Statement], session: Any, in_transaction: bool,
                  counts: WriteCounts) -> None:
    models = [InsertOne({"_id": filter_["_id"], **update["$set"]}) for filter_, update in statements]
    try:
        result = await target.bulk_write(models, ordered=False, session=session)
        counts.inserted += result.inserted_count
        return
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if in_transaction or others:
            first = (others or errors)[0]
            raise ProjectionError(
                f"writing read-model documents into '{target.name}' failed: {first.get('errmsg')}"
                + ("; another writer created the same documents: run one runner per projection"
                   if not others else "")
            ) from exc
        counts.inserted += exc.details.get("nInserted", 0)
        retry = [statements[e["index"]] for e in errors]
    except PyMongoError as exc:
        raise ProjectionError(f"writing read-model documents into '{target.name}' failed: {exc}") from exc
    result = await write_upserts(target, retry, session=session)  # created meanwhile: guarded upsert
    counts.updated += result.updated + result.inserted
    counts.skipped += result.skipped


async def _update(target: Any, statements: list[Statement], session: Any, in_transaction: bool,
                  counts: WriteCounts) -> None:
    if not in_transaction:
        result = await write_upserts(target, statements, session=session)
        counts.updated += result.updated + result.inserted
        counts.skipped += result.skipped
        return
    models = [UpdateOne(filter_, update, upsert=False) for filter_, update in statements]
    try:
        result = await target.bulk_write(models, ordered=False, session=session)
    except PyMongoError as exc:
        raise ProjectionError(f"writing read-model documents into '{target.name}' failed: {exc}") from exc
    counts.updated += result.matched_count
    counts.skipped += len(models) - result.matched_count
