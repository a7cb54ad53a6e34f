"""Guarded bulk upserts of projection documents: build, check, split, send.

This is the write half of hot path 3, shared by :class:`MongoProjectionStore.bulk_upsert`
and the projection engine's coalesced writes. The statements themselves come from the
native builder (``_accel.build_upserts``, twin ``_pure/bulk.py``):

    filter = {"_id": <canonical key>,
              "_last_position": {"$not": {"$gte": p}},   # when the doc carries _last_position
              "_last_event_id": {"$ne": e}}               # when the doc carries _last_event_id
    update = {"$set": <every field but the key>}          # sent with upsert=True

With ``replace=True`` each existing document is replaced by the given fields (fields it
had and the new document lacks are removed) instead of having them set: the same guards,
and a cheaper write for the server (no update to apply field by field). For read models
written whole, as projections write them, the two are the same document.

Sending (outside a transaction): for new keys the cheapest write is the insert of
``{"_id": key, **$set}`` (exactly what its upsert would create); keys that already exist
answer E11000 on ``_id`` and only those get their guarded upsert statement. For existing
keys that insert is a wasted write, and the guarded upserts alone are cheaper. So the
first ``PROBE`` statements are sent as their guarded upserts (right for new and existing
keys alike, so nothing is written twice), and how many of them created their document
decides how the rest go: inserts first when most keys were new, upserts at once otherwise
(``insert_first=True`` / ``False`` decides without probing).

Guard semantics (how guard + upsert never create a second document): ``_id`` is unique, so
an upsert can only ever insert the one document with that key. When the document exists but
its guard fails (a newer or the same position / event is already stored), the filter
matches nothing and the upsert tries to insert ``_id`` again: the server answers E11000
duplicate key on the ``_id`` index. That error *is* the "skipped" signal and is counted as
``skipped``. Because the same E11000 also occurs when two writers race to insert a new
key, every E11000 statement is sent once more: by then the document exists, so the retry
either passes the guard (updated) or fails it again (truly skipped). A duplicate key on
any other unique index is a real error.

Inside a transaction a duplicate-key error would abort the transaction, so there the
writer uses two error-free passes instead: guarded updates without upsert, then
``$setOnInsert`` upserts by ``_id`` alone (inserting only what is still missing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import bson
from bson.errors import BSONError
from pymongo import InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, PyMongoError

from .. import _accel
from .._gateway import DUPLICATE_KEY as DUPLICATE_KEY  # re-exported: the projection engine reads it here
from .._gateway import duplicate_key_index, translate
from .._pure.bulk import EVENT_ID_FIELD, POSITION_FIELD
from ..exceptions import DuplicateEntityError, InvalidDocument, ProjectionError

Statement = tuple[dict[str, Any], dict[str, Any]]

MAX_WRITE_BATCH_COUNT = 100_000
MAX_BSON_BYTES = 16 * 1024 * 1024
STATEMENT_OVERHEAD = 48  # {"q": ..., "u": ..., "upsert": true} and the array index around each statement
PROBE = 64  # statements sent as inserts to learn whether a batch's keys are mostly new


@dataclass(frozen=True, slots=True)
class BulkLimits:
    """Most statements and encoded bytes per bulk write (the server's limits by default)."""

    max_count: int = MAX_WRITE_BATCH_COUNT
    max_bytes: int = MAX_BSON_BYTES

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_bytes < 1:
            raise ProjectionError("bulk limits must be positive (max_count >= 1, max_bytes >= 1)")


@dataclass(slots=True)
class BulkUpsertResult:
    """What a bulk upsert did: documents inserted, updated, and skipped by their guard."""

    inserted: int = 0
    updated: int = 0
    skipped: int = 0
    batches: int = 0

    @property
    def written(self) -> int:
        return self.inserted + self.updated


def build_upserts(
    docs: Sequence[dict[str, Any]],
    id_field: str = "id",
    position_field: str | None = POSITION_FIELD,
    event_id_field: str | None = EVENT_ID_FIELD,
) -> list[Statement]:
    """``[(filter, update), ...]`` for ``docs`` (native when available); see the module docstring.

    Each doc may carry its own guard: ``position_field`` (stored position must be lower) and
    ``event_id_field`` (stored last event must differ); ``None`` disables a guard. Raises
    ``InvalidDocument`` naming the path (``docs[3].items[0].$price``) if any doc is invalid,
    before anything is built, so nothing of an invalid batch is ever written.
    """
    return _accel.build_upserts(docs, id_field, position_field, event_id_field)


def to_update_ones(statements: Sequence[Statement]) -> list[UpdateOne]:
    """pymongo ``UpdateOne(filter, update, upsert=True)`` models for ``statements``."""
    return [UpdateOne(filter_, update, upsert=True) for filter_, update in statements]


def to_writes(statements: Sequence[Statement], replace: bool, upsert: bool = True) -> list[UpdateOne | ReplaceOne[Any]]:
    """The guarded write of each statement: its ``$set`` update, or with ``replace`` the
    replacement of the document by the same fields."""
    if replace:
        return [ReplaceOne(filter_, {"_id": filter_["_id"], **update["$set"]}, upsert=upsert) for filter_, update in statements]
    return [UpdateOne(filter_, update, upsert=upsert) for filter_, update in statements]


def _identity(value: Any) -> Any:
    """A hashable stand-in for a canonical ``_id`` (dicts are already in sorted order)."""
    if isinstance(value, dict):
        return ("d", tuple((k, _identity(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("l", tuple(_identity(v) for v in value))
    try:
        hash(value)
    except TypeError:
        return (type(value).__name__, repr(value))
    return (type(value).__name__, value)


def check_unique_keys(statements: Sequence[Statement]) -> None:
    """Refuse two statements for one ``_id``: an unordered bulk write gives them no order."""
    keys = [filter_["_id"] for filter_, _ in statements]
    if all(type(key) is str for key in keys) and len(set(keys)) == len(keys):
        return  # the common case, checked in C; the loop below names the duplicates
    seen: dict[Any, int] = {}
    for index, (filter_, _) in enumerate(statements):
        identity = _identity(filter_["_id"])
        first = seen.setdefault(identity, index)
        if first != index:
            raise InvalidDocument(
                f"docs[{first}] and docs[{index}] have the same key {filter_['_id']!r}; "
                "merge them into one document (keep the latest state) before a bulk upsert"
            )


def statement_sizes(statements: Sequence[Statement], codec_options: Any) -> list[int]:
    """Encoded size of each statement; unencodable or oversized documents raise ``InvalidDocument``."""
    sizes = []
    for index, (filter_, update) in enumerate(statements):
        try:
            size = (
                len(bson.encode(filter_, codec_options=codec_options))
                + len(bson.encode(update, codec_options=codec_options))
                + STATEMENT_OVERHEAD
            )
        except (BSONError, TypeError, ValueError, OverflowError) as exc:
            raise InvalidDocument(f"docs[{index}] cannot be encoded as BSON: {exc}") from exc
        sizes.append(size)
    return sizes


def plan_batches(statements: Sequence[Statement], codec_options: Any, limits: BulkLimits) -> list[range]:
    """The index ranges to send as bulk writes, every statement checked first.

    One encode of the whole batch when it fits in one write (the common case: sizing each
    statement would encode every document twice, once here and once by the driver);
    statement by statement otherwise, to split it and to name a statement that cannot be
    encoded or is too large. The one-shot total counts more overhead per statement than the
    per-statement sizes, so a batch it lets through fits by those too.
    """
    if not statements:
        return []
    if len(statements) <= limits.max_count:
        try:
            total = len(bson.encode({"s": list(statements)}, codec_options=codec_options))
        except (BSONError, TypeError, ValueError, OverflowError):
            total = None  # statement_sizes names the one that fails
        if total is not None and total + len(statements) * STATEMENT_OVERHEAD <= limits.max_bytes:
            return [range(len(statements))]
    return split_batches(statement_sizes(statements, codec_options), limits)


def split_batches(sizes: Sequence[int], limits: BulkLimits) -> list[range]:
    """Contiguous index ranges, each within ``limits`` (count and summed bytes).

    A single statement larger than ``limits.max_bytes`` raises ``InvalidDocument`` (it could
    never be sent); this runs before any write.
    """
    batches: list[range] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if size > limits.max_bytes:
            raise InvalidDocument(
                f"docs[{index}] encodes to {size} bytes, over the {limits.max_bytes}-byte limit of "
                "one write; split the document or move large parts elsewhere"
            )
        if index > start and (index - start >= limits.max_count or total + size > limits.max_bytes):
            batches.append(range(start, index))
            start, total = index, 0
        total += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


def is_id_conflict(error: dict[str, Any]) -> bool:
    """True for an E11000 on the ``_id`` index (the guard's "skipped" signal)."""
    return error.get("code") == DUPLICATE_KEY and duplicate_key_index(error) == "_id"


async def _bulk(
    collection: Any, models: Sequence[UpdateOne | ReplaceOne[Any] | InsertOne[Any]], session: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send ``models`` unordered; return (result counts, write errors)."""
    try:
        result = await collection.bulk_write(models, ordered=False, session=session)
    except BulkWriteError as exc:
        details = cast("dict[str, Any]", exc.details)
        return details, list(details.get("writeErrors", []))
    except PyMongoError as exc:  # a timeout stays OperationTimedOut, a lost server ConnectionFailed
        raise translate(exc, f"bulk upsert into '{collection.name}'", ProjectionError) or exc from exc
    return result.bulk_api_result, []


def _raise_other_errors(
    collection: Any, errors: list[dict[str, Any]], done: BulkUpsertResult, *, tolerate_id_conflicts: bool = True
) -> None:
    """Raise for write errors other than the guard's ``_id`` conflicts (all errors if not tolerated)."""
    others = [e for e in errors if not (tolerate_id_conflicts and is_id_conflict(e))]
    if not others:
        return
    first = others[0]
    message = (
        f"bulk upsert into '{collection.name}': {len(others)} statement(s) failed, first: "
        f"{first.get('errmsg')}; the other statements of the batch were applied "
        f"({done.inserted} inserted, {done.updated} updated so far), re-running the batch is safe"
    )
    if first.get("code") == DUPLICATE_KEY:
        raise DuplicateEntityError(message)
    raise ProjectionError(message)


def to_insert_ones(statements: Sequence[Statement]) -> list[InsertOne[Any]]:
    """``{"_id": key, **$set}``: exactly what each upsert would create for a missing key."""
    return [InsertOne({"_id": filter_["_id"], **update["$set"]}) for filter_, update in statements]


async def _insert_first(
    collection: Any, batch: list[Statement], session: Any, result: BulkUpsertResult
) -> list[Statement]:
    """Send ``batch`` as inserts; returns the statements whose key already exists."""
    if not batch:
        return []
    counts, errors = await _bulk(collection, to_insert_ones(batch), session)
    result.inserted += counts.get("nInserted", 0)
    _raise_other_errors(collection, errors, result)
    return [batch[e["index"]] for e in errors]


async def _write_batch(
    collection: Any, batch: list[Statement], session: Any, result: BulkUpsertResult, insert_first: bool | None,
    replace: bool = False,
) -> None:
    """Insert first, then guarded upserts for the keys that exist, then one retry of E11000s.

    A missing key passes every guard, so inserting it is what its upsert would do; inserts
    are the cheapest write a server has (a rebuild writes almost only new keys). Existing
    keys answer E11000 and get their guarded upsert statement. ``insert_first=None``: the
    first ``PROBE`` statements go out as upserts, and the rest as inserts first only if
    most of those upserts created their document.
    """
    if insert_first is None:
        probe, batch = batch[:PROBE], batch[PROBE:]
        created_before = result.inserted
        await _upsert(collection, probe, session, result, replace)
        insert_first = 2 * (result.inserted - created_before) >= len(probe)
    pending = await _insert_first(collection, batch, session, result) if insert_first else batch
    await _upsert(collection, pending, session, result, replace)


async def _upsert(
    collection: Any, pending: list[Statement], session: Any, result: BulkUpsertResult, replace: bool
) -> None:
    """The guarded upserts of ``pending``, then one retry of their E11000s: a statement that
    fails its guard answers E11000 again and is counted as skipped (the retry covers a
    concurrent insert of the same new key)."""
    for _ in range(2):
        if not pending:
            return
        counts, errors = await _bulk(collection, to_writes(pending, replace), session)
        result.inserted += counts.get("nUpserted", 0)
        result.updated += counts.get("nMatched", 0)
        _raise_other_errors(collection, errors, result)
        pending = [pending[e["index"]] for e in errors]
    result.skipped += len(pending)


async def _write_batch_in_transaction(
    collection: Any, batch: list[Statement], session: Any, result: BulkUpsertResult, replace: bool = False
) -> None:
    guarded = to_writes(batch, replace, upsert=False)
    inserts = [UpdateOne({"_id": f["_id"]}, {"$setOnInsert": u["$set"]}, upsert=True) for f, u in batch]
    counts, errors = await _bulk(collection, guarded, session)
    _raise_other_errors(collection, errors, result, tolerate_id_conflicts=False)
    updated = counts.get("nMatched", 0)
    counts, errors = await _bulk(collection, inserts, session)
    _raise_other_errors(collection, errors, result, tolerate_id_conflicts=False)
    inserted = counts.get("nUpserted", 0)
    result.updated += updated
    result.inserted += inserted
    result.skipped += len(batch) - updated - inserted


async def write_upserts(
    collection: Any,
    statements: list[Statement],
    *,
    session: Any = None,
    in_transaction: bool = False,
    limits: BulkLimits = BulkLimits(),
    insert_first: bool | None = None,
    replace: bool = False,
) -> BulkUpsertResult:
    """Send guarded upsert ``statements`` as unordered bulk writes within ``limits``.

    Guarantee: every statement is checked (unique keys, encodable, within the size limit)
    before the first write, so an invalid batch writes nothing. Each document's write is
    atomic; the batch as a whole is atomic only inside a transaction (``in_transaction``).
    Outside one, a crash or a failing statement leaves some documents written and others
    not; re-sending the same statements is idempotent (guards skip what is already there, and
    unguarded statements rewrite the same values). A concurrent writer of the same key sees
    either the old or the new document, never two documents.

    ``insert_first`` (outside transactions): ``True`` tries every statement as an insert
    first (a caller that knows most keys are new), ``False`` sends the upserts at once (most
    keys exist); ``None`` (default) probes the first ``PROBE`` keys and decides.
    ``replace``: existing documents are replaced by the statements' fields, not updated.
    """
    check_unique_keys(statements)
    spans = plan_batches(statements, collection.codec_options, limits)
    result = BulkUpsertResult()
    for span in spans:
        batch = statements[span.start : span.stop]
        if in_transaction:
            await _write_batch_in_transaction(collection, batch, session, result, replace)
        else:
            await _write_batch(collection, batch, session, result, insert_first, replace)
        result.batches += 1
    return result
