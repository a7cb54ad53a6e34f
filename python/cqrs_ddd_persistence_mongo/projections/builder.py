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

The next batch of events is read while the current one is folded and written.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import bson
from pymongo import InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError, PyMongoError

from .. import _accel
from ..exceptions import ProjectionError
from .applier import POSITION_FIELD, BatchOutcome, addressed, apply_batch, stopped_error
from .base import Projection
from .dead_letters import DeadLetters
from .documents import load_documents
from .partition import WHOLE, Partition
from .progress import Reporter

DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
DEFAULT_FLUSH_SECONDS = 30.0
#: in-memory dicts take several times their BSON size
PYTHON_OVERHEAD = 4
SIZE_SAMPLE = 16


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """How a rebuild batches: events per read, memory before a flush, seconds between flushes."""

    batch_size: int = 5000
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    flush_seconds: float = DEFAULT_FLUSH_SECONDS

    def __post_init__(self) -> None:
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
        to_list: Any,
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
        self._to_list = to_list
        self._clock = clock
        self._docs: dict[str, dict[Any, dict[str, Any]]] = {c: {} for c in projection.collections}
        self._dirty: dict[str, set[Any]] = {c: set() for c in projection.collections}
        self._stored: dict[str, set[Any]] = {c: set() for c in projection.collections}
        self._doc_bytes = 0.0
        self._last_flush = clock()

    # --- the loop -------------------------------------------------------------------------
    async def run(self, upto: int | None = None, progress: Reporter | None = None, done_before: int = 0) -> int:
        """Fold every readable event after the position (up to ``upto``), then flush.

        Returns the events consumed by this call. Stops at the head or at a hole that may
        still be filled (the event store's stream is gap-safe).
        """
        consumed = 0
        if upto is not None and upto <= self.position:
            await self.flush()
            return 0
        batches = self.events.get_events_from_position(self.position, self.options.batch_size).batches()
        pending: asyncio.Future[list[Any] | None] | None = asyncio.ensure_future(_next(batches))
        try:
            while pending is not None:
                batch = await pending
                pending = None
                if not batch:
                    break
                if upto is not None and batch[-1].position >= upto:
                    batch = [event for event in batch if event.position <= upto]
                else:
                    pending = asyncio.ensure_future(_next(batches))
                    await asyncio.sleep(0)  # let the read of the next batch go out before folding
                outcome = await self._fold(batch)
                if outcome.last_position is not None:
                    self.position = outcome.last_position
                consumed += outcome.consumed
                self.consumed += outcome.consumed
                if outcome.stopped is not None:
                    await self.flush()
                    raise stopped_error(self.projection, outcome.stopped)
                if self._over_budget():
                    await self.flush(evict=True)
                elif self._clock() - self._last_flush >= self.options.flush_seconds:
                    await self.flush()
                if progress is not None:
                    progress.update(done_before + self.consumed)
        except asyncio.CancelledError:  # interrupted: keep what is folded, then stop
            await self.flush(idempotent=True)
            raise
        finally:
            if pending is not None:
                pending.cancel()
                try:
                    await pending
                except (asyncio.CancelledError, Exception):
                    pass
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()
        await self.flush()
        return consumed

    async def _fold(self, batch: list[Any]) -> BatchOutcome:
        await self._load_misses(batch)
        outcome = apply_batch(self.projection, batch, self._docs, partition=self.partition)
        for collection, docs in outcome.changed.items():
            self._docs.setdefault(collection, {}).update(docs)
            self._dirty.setdefault(collection, set()).update(docs)
        if outcome.parked:
            await self.dead_letters.park(self.projection.projection_name, outcome.parked)
        if outcome.changed and not self._doc_bytes:
            sample = [doc for docs in outcome.changed.values() for doc in list(docs.values())[:SIZE_SAMPLE]]
            self._doc_bytes = sum(len(bson.encode(doc)) for doc in sample) / len(sample) * PYTHON_OVERHEAD
        return outcome

    async def _load_misses(self, batch: list[Any]) -> None:
        """Documents the batch addresses that are stored but not in memory: one ``$in`` load."""
        if not self._resumed and not any(self._stored.values()):
            return
        wanted: dict[str, dict[Any, Any]] = {}
        for collection, ids in addressed(self.projection, batch, self.partition).items():
            in_memory, stored = self._docs.get(collection, {}), self._stored.get(collection, set())
            missing = {k: v for k, v in ids.items() if k not in in_memory and (self._resumed or k in stored)}
            if missing:
                wanted[collection] = missing
        if not wanted:
            return
        loaded = await load_documents(self.db, wanted, self.physical, to_list=self._to_list)
        for collection, docs in loaded.items():
            self._docs.setdefault(collection, {}).update(docs)
            self._stored.setdefault(collection, set()).update(docs)

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
        written = 0
        for collection, keys in self._dirty.items():
            if not keys:
                continue
            docs, stored = self._docs[collection], self._stored.setdefault(collection, set())
            models: list[Any] = []
            for key in keys:
                doc = docs[key]
                if idempotent or key in stored:
                    models.append(ReplaceOne({"_id": doc["_id"]}, doc, upsert=True))
                else:
                    models.append(InsertOne(doc))
            _accel.validate_keys([doc for doc in (docs[key] for key in keys)])
            await self._write(collection, models)
            stored.update(keys)
            written += len(models)
            keys.clear()
        await self.positions.save_position(self.checkpoint, self.position)
        self._last_flush = self._clock()
        if evict:
            for docs in self._docs.values():
                docs.clear()
        return written

    async def _write(self, collection: str, models: list[Any]) -> None:
        target = self.db[self.physical.get(collection, collection)]
        try:
            await target.bulk_write(models, ordered=False)
        except BulkWriteError as exc:
            first = (exc.details.get("writeErrors") or [{}])[0]
            raise ProjectionError(
                f"writing the rebuilt documents into '{target.name}' failed: {first.get('errmsg', exc)}; "
                "run the rebuild again to resume from its last checkpoint"
            ) from exc
        except PyMongoError as exc:
            raise ProjectionError(
                f"writing the rebuilt documents into '{target.name}' failed: {exc}; "
                "run the rebuild again to resume from its last checkpoint"
            ) from exc


async def _next(batches: AsyncIterator[list[Any]]) -> list[Any] | None:
    try:
        return await batches.__anext__()
    except StopAsyncIteration:
        return None


__all__ = ["POSITION_FIELD", "BuildOptions", "ShadowBuilder"]
