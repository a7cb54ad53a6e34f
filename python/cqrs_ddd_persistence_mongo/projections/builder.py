"""Build a rebuild's shadow collections at the speed the server allows.

A rebuild is the only writer of its shadow collections, so it needs neither to re-read
what it wrote nor to guard its writes. The builder keeps the working set (every document
the events touched) in memory across batches, folds each batch into it, and flushes: each
changed document is written once, with a plain insert (new) or replacement (written by an
earlier flush), and the checkpoint is saved after the flush. A flush happens when the
working set's estimated size reaches ``memory_budget`` (then the working set is dropped
from memory, keeping only which ids are stored), every ``flush_seconds``, and at the end.

Crash safety: a crash between flushes loses only the work since the last flush. The next
run (``resumed=True``) starts at the checkpoint, loads the documents it meets from the
shadow, and skips for each document the events it already holds (``_last_position``), so
the result equals a clean rebuild.

Two folds: a build that did not resume folds each event straight into the working set
(no copies, no per-document replay checks: every document it holds was built by it from
events below the current one). The first handler that raises ends that: the builder drops
what it folded since the last flush and goes on from the last flush exactly as a resumed
run does, with the careful fold of :func:`.applier.apply_batch` (retries on fresh copies,
parking, ``on_error="stop"``). So a failing handler costs at most one flush interval of
refolding, and its outcome is the careful fold's.

The next batch of events is read while the current one is folded and written. Changed
documents that no event of the current batch touched ("cold": an order closed a batch ago)
are written in the background meanwhile, without a checkpoint, so the server's write time
hides behind the fold; one that changes again later is written again. A document is thus
written at least once per flush interval in which it changed, always in order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import bson
from pymongo import InsertOne, ReplaceOne
from .. import _accel
from .._gc import GC_THRESHOLD, fewer_collections
from .._gateway import call
from .._tasks import cancel_and_wait
from ..exceptions import ProjectionError
from ..roles import ConnectionRole
from .applier import POSITION_FIELD, BatchOutcome, addressed, apply_batch, canonical, id_key, stopped_error
from .base import Projection
from .dead_letters import DeadLetters
from .documents import load_documents
from .partition import WHOLE, Partition
from .progress import Reporter

DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
DEFAULT_FLUSH_SECONDS = 30.0
#: new containers between two young-generation collections while a rebuild folds: the
#: interpreter's default (700) has the cyclic collector walk the growing working set and
#: event batches ~200 times per 30,000 events, 10-15% of a rebuild's time
DEFAULT_GC_THRESHOLD = GC_THRESHOLD
#: fewer cold documents than this wait for the next flush (a write per batch costs a round trip)
COLD_WRITE_MIN = 256
#: cold writes stop once more than this share of the documents written cold changed again
COLD_RELAPSE_LIMIT = 0.25
#: in-memory dicts take several times their BSON size
PYTHON_OVERHEAD = 4
SIZE_SAMPLE = 16

#: one handler of one event type, ready for the direct fold:
#: (key function, collection, its documents, its changed ids, bound handler)
_Plan = tuple[tuple[Callable[[Any], Any], str, dict[Any, dict[str, Any]], set[Any], Callable[..., Any]], ...]


class _DirectFoldFailed(Exception):
    """A handler (or key function) raised during the direct fold: refold carefully."""


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """How a rebuild batches: events per read, memory before a flush, seconds between flushes."""

    batch_size: int = 5000
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    gc_threshold: int | None = DEFAULT_GC_THRESHOLD
    """the interpreter's first garbage-collection threshold while folding (see
    docs/projections.md); None leaves the collector alone"""

    def __post_init__(self) -> None:
        threshold = self.gc_threshold
        if threshold is not None and (type(threshold) is not int or threshold < 1):
            raise ProjectionError(f"gc_threshold must be a positive int or None, not {threshold!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ProjectionError(f"batch_size must be a positive int, not {self.batch_size!r}")
        if not isinstance(self.memory_budget, int) or self.memory_budget < 1:
            raise ProjectionError(f"memory_budget must be a positive number of bytes, not {self.memory_budget!r}")
        if not self.flush_seconds > 0:
            raise ProjectionError(f"flush_seconds must be > 0, not {self.flush_seconds!r}")


class ShadowBuilder:
    """Folds events into a shadow read model held in memory; see the module docstring."""

    def __init__(
        self,
        db: Any,
        events: Any,
        positions: Any,
        projection: Projection,
        physical: dict[str, str],
        checkpoint: str,
        *,
        position: int,
        resumed: bool,
        connection: ConnectionRole,
        dead_letters: DeadLetters,
        partition: Partition = WHOLE,
        options: BuildOptions = BuildOptions(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.events = events
        self.positions = positions
        self.projection = projection
        self.physical = physical
        self.checkpoint = checkpoint
        self.position = position
        self.partition = partition
        self.options = options
        self.consumed = 0
        self.dead_letters = dead_letters
        self._resumed = resumed
        self._started_empty = not resumed  # then every document of the shadow is one it wrote
        self.connection = connection
        self._clock = clock
        self._docs: dict[str, dict[Any, dict[str, Any]]] = {c: {} for c in projection.collections}
        self._dirty: dict[str, set[Any]] = {c: set() for c in projection.collections}
        self._stored: dict[str, set[Any]] = {c: set() for c in projection.collections}
        self._doc_bytes = 0.0
        self._last_flush = clock()
        self._evicted = False
        self._flushed = (position, 0)  # (position, consumed) at the last flush
        self._saved: int | None = None  # the checkpoint this builder last saved
        self._plans: dict[str, _Plan] = {}
        self._writing: asyncio.Future[None] | None = None  # a write of cold documents in flight
        self._cold_count = 0  # documents the last cold write wrote
        self._cold_writes = True
        self._previous_batch_start = position  # documents untouched since are cold

    # --- the loop -------------------------------------------------------------------------
    async def run(
        self, upto: int | None = None, progress: Reporter | None = None, done_before: int = 0,
        ready: asyncio.Future[Any] | None = None,
    ) -> int:
        """Fold every readable event after the position (up to ``upto``), then flush.

        Returns the events consumed by this call. Stops at the head or at a hole that may
        still be filled (the event store's stream is gap-safe). ``ready``: the preparation
        of the shadow collections, awaited once the first read is on its way (nothing is
        written before).
        """
        consumed_before = self.consumed
        with fewer_collections(self.options.gc_threshold):
            while True:
                try:
                    await self._run(upto, progress, done_before, ready)
                except _DirectFoldFailed:
                    await self._cold_written()
                    self._refold_from_last_flush()
                    continue
                return self.consumed - consumed_before

    async def _run(
        self, upto: int | None, progress: Reporter | None, done_before: int, ready: asyncio.Future[Any] | None
    ) -> None:
        if upto is not None and upto <= self.position:
            if ready is not None:
                await ready
            await self.flush()
            return
        batches = self.events.get_events_from_position(self.position, self.options.batch_size).batches()
        pending: asyncio.Future[list[Any] | None] | None = asyncio.ensure_future(_next(batches))
        try:
            if ready is not None:
                await ready
            while pending is not None:
                batch = await pending
                pending = None
                if _cancel_requested():  # the driver may finish a read that a cancel hit
                    raise asyncio.CancelledError()
                if not batch:
                    break
                if upto is not None and batch[-1].position >= upto:
                    batch = [event for event in batch if event.position <= upto]
                else:
                    pending = asyncio.ensure_future(_next(batches))
                    await asyncio.sleep(0)  # let the read of the next batch go out before folding
                if self._resumed:
                    outcome = await self._fold(batch)
                    if outcome.last_position is not None:
                        self.position = outcome.last_position
                    self.consumed += outcome.consumed
                    if outcome.stopped is not None:
                        await self.flush()
                        raise stopped_error(self.projection, outcome.stopped)
                else:
                    if self._evicted:
                        await self._load_misses(batch)
                    self._fold_directly(batch)
                    await self._write_cold(batch[0].position)
                if self._over_budget():
                    await self.flush(evict=True)
                elif self._clock() - self._last_flush >= self.options.flush_seconds:
                    await self.flush()
                if progress is not None:
                    progress.update(done_before + self.consumed)
        except asyncio.CancelledError:  # interrupted: keep what is folded (into a prepared shadow), then stop
            if ready is None or (ready.done() and not ready.cancelled() and ready.exception() is None):
                await self.flush(idempotent=True)
            raise
        finally:
            if self._writing is not None:
                await asyncio.wait([self._writing])  # never leave a write running behind
                if not self._writing.cancelled():
                    self._writing.exception()  # seen here; the next flush still raises it
            await cancel_and_wait(pending)
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.flush()

    def _fold_directly(self, batch: list[Any]) -> None:
        """Fold a batch straight into the working set (see the module docstring)."""
        plans = self._plans
        partition = self.partition
        whole = partition.is_whole
        owns = partition.owns
        new_document = self.projection.new_document
        position = self.position
        try:
            for event in batch:
                plan = plans.get(event.event_type)
                if plan is None:
                    plan = plans[event.event_type] = self._plan(event.event_type)
                position = event.position
                for key_of, collection, docs, changed, handler in plan:
                    doc_id = key_of(event)
                    if type(doc_id) is str:  # the common case: canonical and hashable as it is
                        ident = doc_id
                    else:
                        doc_id = canonical(doc_id)
                        ident = id_key(doc_id)
                    if not whole and not owns(doc_id):
                        continue
                    doc = docs.get(ident)
                    if doc is None:
                        doc = docs[ident] = {**new_document(collection, doc_id, event), "_id": doc_id}
                    handler(doc, event)
                    doc[POSITION_FIELD] = position
                    changed.add(ident)
        except Exception as exc:  # a handler's own failure: the careful fold decides
            raise _DirectFoldFailed() from exc
        self.position = position
        self.consumed += len(batch)
        if not self._doc_bytes:
            self._sample_size(self._docs)

    def _plan(self, event_type: str) -> _Plan:
        projection = self.projection
        if not projection.is_document_style:
            raise ProjectionError(f"{projection.projection_name} has no document handlers (self, doc, event)")
        default = projection.collections[0] if projection.collections else ""
        plan = []
        for route in projection.routes(event_type):
            collection = route.collection or default
            plan.append((route.key, collection, self._docs.setdefault(collection, {}),
                         self._dirty.setdefault(collection, set()), getattr(projection, route.method)))
        return tuple(plan)

    def _refold_from_last_flush(self) -> None:
        """Drop the work since the last flush and go on carefully from there."""
        self.position, self.consumed = self._flushed
        for docs in self._docs.values():
            docs.clear()
        for keys in self._dirty.values():
            keys.clear()
        self._resumed = True  # the shadow may hold documents newer than the checkpoint

    def _sample_size(self, docs_by_collection: dict[str, dict[Any, dict[str, Any]]]) -> None:
        """Estimate a held document's size from the first few (for the memory budget)."""
        sample = [doc for docs in docs_by_collection.values() for doc in list(docs.values())[:SIZE_SAMPLE]]
        if sample:
            self._doc_bytes = sum(len(bson.encode(doc)) for doc in sample) / len(sample) * PYTHON_OVERHEAD

    async def _fold(self, batch: list[Any]) -> BatchOutcome:
        await self._load_misses(batch)
        outcome = apply_batch(self.projection, batch, self._docs, partition=self.partition)
        for collection, docs in outcome.changed.items():
            self._docs.setdefault(collection, {}).update(docs)
            self._dirty.setdefault(collection, set()).update(docs)
        if outcome.parked:
            await self.dead_letters.park(self.projection.projection_name, outcome.parked)
        if outcome.changed and not self._doc_bytes:
            self._sample_size(outcome.changed)
        return outcome

    async def _load_misses(self, batch: list[Any]) -> None:
        """Documents the batch addresses that are stored but not in memory: one ``$in`` load."""
        if not self._resumed and not self._evicted:
            return
        wanted: dict[str, dict[Any, Any]] = {}
        for collection, ids in addressed(self.projection, batch, self.partition).items():
            in_memory, stored = self._docs.get(collection, {}), self._stored.get(collection, set())
            missing = {k: v for k, v in ids.items() if k not in in_memory and (self._resumed or k in stored)}
            if missing:
                wanted[collection] = missing
        if not wanted:
            return
        loaded = await load_documents(self.db, wanted, self.physical, connection=self.connection)
        for collection, docs in loaded.items():
            self._docs.setdefault(collection, {}).update(docs)
            self._stored.setdefault(collection, set()).update(docs)

    def written_counts(self) -> dict[str, int] | None:
        """Documents per shadow collection, known without asking the server when this
        builder started from the empty shadow and wrote every document in it; else None."""
        if not self._started_empty:
            return None
        return {collection: len(self._stored.get(collection, ())) for collection in self.physical}

    def _over_budget(self) -> bool:
        held = sum(len(docs) for docs in self._docs.values())
        return held * self._doc_bytes >= self.options.memory_budget

    # --- writing --------------------------------------------------------------------------
    async def flush(self, *, evict: bool = False, idempotent: bool = False) -> int:
        """Write every document changed since the last flush once, then save the checkpoint.

        Guarantee: not atomic; each document's write is. A crash halfway leaves some
        documents newer than the checkpoint, which a resumed run skips per document
        (``_last_position``), so re-running is safe. ``idempotent`` writes every document
        as a replacement (for a flush that may repeat one cut off halfway). Returns the
        documents written.
        """
        written = await self._cold_written()
        for collection, keys in self._dirty.items():
            if not keys:
                continue
            models = self._models(collection, keys, idempotent)
            await self._write(collection, models)
            self._stored.setdefault(collection, set()).update(keys)
            written += len(models)
            keys.clear()
        if written or self._saved != self.position:
            await self.positions.save_position(self.checkpoint, self.position)
            self._saved = self.position
        self._flushed = (self.position, self.consumed)
        self._last_flush = self._clock()
        if evict:
            for docs in self._docs.values():
                docs.clear()
            self._evicted = True
        return written

    def _models(self, collection: str, keys: set[Any] | list[Any], idempotent: bool = False) -> list[Any]:
        """One write per document: an insert when no flush wrote it yet, else a replacement."""
        docs, stored = self._docs[collection], self._stored.setdefault(collection, set())
        models: list[Any] = []
        for key in keys:
            doc = docs[key]
            if idempotent or key in stored:
                models.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
            else:
                models.append(InsertOne(doc))
        _accel.validate_keys([docs[key] for key in keys])
        return models

    async def _write_cold(self, batch_start: int) -> None:
        """Start writing, while the next batch is read and folded, the changed documents
        that no event of the last two batches touched (an order shipped a while ago).

        Cold documents rarely change again, so writing them now hides the server's write
        time behind the fold; one that does change is written again (a replacement) later.
        Where that happens to many (a history in which every document keeps changing), cold
        writes stop for the rest of the build: they would only multiply the writes.
        The checkpoint is not saved: documents newer than the checkpoint are what a resumed
        build already expects (skipped per document). One such write runs at a time, and
        every flush waits for it first, so a document's writes reach the server in order.
        """
        since, self._previous_batch_start = self._previous_batch_start, batch_start
        await self._cold_written()
        if not self._cold_writes:
            return
        rewarmed = sum(len(keys & self._stored.get(c, set())) for c, keys in self._dirty.items())
        if self._cold_count and rewarmed > self._cold_count * COLD_RELAPSE_LIMIT:
            self._cold_writes = False
            return
        cold: dict[str, list[Any]] = {}
        count = 0
        for collection, keys in self._dirty.items():
            docs = self._docs[collection]
            found = [key for key in keys if docs[key][POSITION_FIELD] < since]
            if found:
                cold[collection] = found
                count += len(found)
        if count < COLD_WRITE_MIN:
            return
        writes = []
        for collection, cold_keys in cold.items():
            writes.append((collection, self._models(collection, cold_keys)))
            self._dirty[collection].difference_update(cold_keys)
            self._stored.setdefault(collection, set()).update(cold_keys)
        self._cold_count = count
        self._writing = asyncio.ensure_future(self._write_all(writes))

    async def _write_all(self, writes: list[tuple[str, list[Any]]]) -> None:
        for collection, models in writes:
            await self._write(collection, models)

    async def _cold_written(self) -> int:
        """Wait for the write of cold documents in flight (its error is raised here);
        returns the documents it wrote."""
        writing, self._writing = self._writing, None
        if writing is None:
            return 0
        await writing
        return self._cold_count

    async def _write(self, collection: str, models: list[Any]) -> None:
        target = self.db[self.physical.get(collection, collection)]
        what = f"writing the rebuilt documents into '{target.name}' (run the rebuild again to resume)"
        with call(self.connection, what, ProjectionError):
            await target.bulk_write(models, ordered=False)


def _cancel_requested() -> bool:
    """True when this task was asked to stop (Ctrl-C) but the cancel did not land."""
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling is not None and cancelling())


async def _next(batches: AsyncIterator[list[Any]]) -> list[Any] | None:
    try:
        return await batches.__anext__()
    except StopAsyncIteration:
        return None


__all__ = ["DEFAULT_GC_THRESHOLD", "POSITION_FIELD", "BuildOptions", "ShadowBuilder"]
