"""Read-model documents of a batch: one load per collection, one coalesced write per document.

Loading uses ``_id $in`` queries in chunks (``LOAD_CHUNK`` ids each): one query per chunk,
never one per event, and chunks keep servers whose ``$in`` cost grows faster than linearly
(the embedded server) on their fast path. Writing uses the statements of the native bulk
builder (``advanced/bulk_upserts.build_upserts``: canonical ids, key validation, the
``_last_position`` guard). Every round trip goes through the gateway: bounded by the
connection's ``operation_timeout`` and its errors translated (a write conflict stays a
transient :class:`ConcurrencyConflict`, so ``MongoUnitOfWork.run`` retries the batch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError

from .._gateway import TRANSIENT, WRITE_CONFLICT, call
from ..advanced.bulk_upserts import DUPLICATE_KEY, Statement, build_upserts, write_upserts
from ..exceptions import ConcurrencyConflict, ProjectionError
from ..roles import ConnectionRole
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
    connection: ConnectionRole,
    session: Any = None,
) -> dict[str, dict[Any, dict[str, Any]]]:
    """Fetch the documents ``wanted`` (collection -> {id key: _id}) that exist.

    ``physical`` maps the projection's collection names to the ones to read (a rebuild's
    shadow collections). Returns collection -> {id key: document}.
    """
    loaded: dict[str, dict[Any, dict[str, Any]]] = {}
    to_list = connection.driver().to_list
    for collection, ids in wanted.items():
        target = db[physical.get(collection, collection)]
        found: dict[Any, dict[str, Any]] = {}
        values = list(ids.values())
        for start in range(0, len(values), LOAD_CHUNK):
            chunk = values[start : start + LOAD_CHUNK]
            with call(connection, f"loading read-model documents from '{target.name}'", ProjectionError):
                cursor = target.find({"_id": {"$in": chunk}}, session=session, batch_size=len(chunk))
                for doc in await to_list(cursor, None):
                    found[id_key(doc["_id"])] = doc
        loaded[collection] = found
    return loaded


async def write_documents(
    db: Any,
    outcome: BatchOutcome,
    physical: Mapping[str, str],
    *,
    connection: ConnectionRole,
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
        what = f"writing read-model documents into '{target.name}'"
        with call(connection, what, ProjectionError):
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
        if in_transaction and any(e.get("code") == WRITE_CONFLICT for e in errors):
            raise _write_conflict(target.name) from exc
        if not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise  # the gateway translates it (keeping a transient label)
        if in_transaction:
            raise ProjectionError(
                f"writing read-model documents into '{target.name}' failed: {errors[0].get('errmsg')}; "
                "another writer created the same documents: run one runner per projection"
            ) from exc
        counts.inserted += exc.details.get("nInserted", 0)
        retry = [statements[e["index"]] for e in errors]
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
    except BulkWriteError as exc:
        if any(e.get("code") == WRITE_CONFLICT for e in exc.details.get("writeErrors", [])):
            raise _write_conflict(target.name) from exc
        raise
    counts.updated += result.matched_count
    counts.skipped += len(models) - result.matched_count


def _write_conflict(collection: str) -> ConcurrencyConflict:
    """A write conflict reported per document inside a transaction: transient, so
    ``MongoUnitOfWork.run`` retries the batch."""
    conflict = ConcurrencyConflict(
        f"writing read-model documents into '{collection}': a concurrent transaction wrote the same "
        "documents (write conflict); retry the batch (MongoUnitOfWork.run retries automatically)"
    )
    conflict._add_error_labels({TRANSIENT})
    return conflict
