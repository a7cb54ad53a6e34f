"""Apply a batch of events to read-model documents in memory (document handlers).

No I/O: the caller loads the addressed documents, this module folds the batch's events
into them in position order, and the caller writes every changed document once. A
document touched by 50 events of the batch is written once.

Rules:

* **Idempotent / replay-safe**: a document records the position of the last event applied
  to it (``_last_position``); an event at or below it is skipped for that document.
* **Failures**: a handler that raises is retried ``max_retries`` times on a fresh copy of
  the documents (restored from their state at the start of the batch plus the batch's
  earlier events), then parked. Parked events leave no trace in the documents.
  ``on_error="stop"`` ends the batch before the parked event; the checkpoint then stops
  there too, so the event is retried on the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import bson

from .. import _accel
from ..exceptions import ProjectionError, ProjectionHandlerFailed
from .base import Projection, Route
from .partition import WHOLE, Partition

POSITION_FIELD = "_last_position"
DocKey = tuple[str, Any]

_PLAIN_IDS = (str, int, float, bytes, bson.ObjectId)


def id_key(doc_id: Any) -> Any:
    """A hashable stand-in for a canonical ``_id`` (dict/list ids become their BSON)."""
    if isinstance(doc_id, _PLAIN_IDS) or doc_id is None:
        return doc_id
    if isinstance(doc_id, (dict, list, tuple)):
        return bson.encode({"": doc_id})
    try:
        hash(doc_id)
    except TypeError:
        return bson.encode({"": doc_id})
    return doc_id


def canonical(doc_id: Any) -> Any:
    """The ``_id`` stored for ``doc_id`` (plain ids as they are, dict keys sorted)."""
    return doc_id if isinstance(doc_id, _PLAIN_IDS) else _accel.canonical_id(doc_id)


def _copy(doc: dict[str, Any]) -> dict[str, Any]:
    """A deep copy at C speed (and a check that the document is BSON-encodable)."""
    return bson.decode(bson.encode(doc))


@dataclass(slots=True)
class Parked:
    """An event whose handler kept failing: what the dead-letter collection records."""

    event: Any
    error: BaseException
    attempts: int


@dataclass(slots=True)
class BatchOutcome:
    """What a batch did. ``changed`` maps collection -> {id key: document to write};
    ``unset`` the fields a handler removed from a stored document; ``existing`` the changed
    documents that were loaded (stored before the batch); ``last_position`` is
    where the checkpoint may move (None: nothing consumed)."""

    changed: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    unset: dict[DocKey, list[str]] = field(default_factory=dict)
    existing: set[DocKey] = field(default_factory=set)
    applied: int = 0
    skipped: int = 0
    consumed: int = 0
    parked: list[Parked] = field(default_factory=list)
    stopped: Parked | None = None
    last_position: int | None = None

    @property
    def writes(self) -> int:
        return sum(len(docs) for docs in self.changed.values())


def sort_events(events: Iterable[Any]) -> list[Any]:
    """Events in position order (a batch may arrive out of order); positions are required."""
    events = list(events)
    for event in events:
        if not isinstance(getattr(event, "position", None), int):
            raise ProjectionError(
                f"event {getattr(event, 'event_id', event)!r} has no position; "
                "read events from the event store (it assigns positions)"
            )
    return sorted(events, key=lambda e: e.position)


def addressed(projection: Projection, events: Iterable[Any], partition: Partition = WHOLE) -> dict[str, dict[Any, Any]]:
    """collection -> {id key: canonical id} of every document the events address (to load)."""
    out: dict[str, dict[Any, Any]] = {}
    for event in events:
        for collection, doc_id in projection.addresses(event):
            doc_id = canonical(doc_id)
            if partition.owns(doc_id):
                out.setdefault(collection, {})[id_key(doc_id)] = doc_id
    return out


class _Batch:
    """The working set of one batch: documents, their start states, the events applied."""

    def __init__(self, projection: Projection, loaded: Mapping[str, Mapping[Any, dict[str, Any]]],
                 position_field: str) -> None:
        self.projection = projection
        self.loaded = loaded
        self.position_field = position_field
        self.docs: dict[DocKey, dict[str, Any]] = {}
        self.start: dict[DocKey, tuple[dict[str, Any], bool]] = {}  # (copy, existed)
        self.history: dict[DocKey, list[tuple[Route, Any]]] = {}

    def doc(self, key: DocKey, doc_id: Any, event: Any) -> dict[str, Any]:
        doc = self.docs.get(key)
        if doc is None:
            stored = self.loaded.get(key[0], {}).get(key[1])
            if stored is None:
                doc = {**self.projection.new_document(key[0], doc_id, event), "_id": doc_id}
            else:
                doc = stored
            self.start[key] = (_copy(doc), stored is not None)
            self.docs[key] = doc
        return doc

    def restore(self, key: DocKey) -> dict[str, Any]:
        """The document as at the start of the batch plus its successfully applied events."""
        doc = _copy(self.start[key][0])
        for route, event in self.history.get(key, ()):
            getattr(self.projection, route.method)(doc, event)
            doc[self.position_field] = event.position
        self.docs[key] = doc
        return doc


def apply_batch(
    projection: Projection,
    events: Iterable[Any],
    loaded: Mapping[str, Mapping[Any, dict[str, Any]]],
    *,
    partition: Partition = WHOLE,
    position_field: str = POSITION_FIELD,
    upto: int | None = None,
    out_of_time: Callable[[], bool] | None = None,
) -> BatchOutcome:
    """Fold ``events`` into the ``loaded`` documents (collection -> {id key: doc}).

    ``loaded`` documents are mutated in place and returned in ``outcome.changed`` when an
    event changed them (a document restored after a parked event replaces its entry in
    ``loaded``). Events above ``upto`` are left for later (not consumed), and so are the
    rest of the batch once ``out_of_time()`` says so (asked before every event after the
    first, so a batch overruns its budget by one handler call at most).
    """
    if not projection.is_document_style:
        raise ProjectionError(f"{projection.projection_name} has no document handlers (self, doc, event)")
    batch = _Batch(projection, loaded, position_field)
    outcome = BatchOutcome()
    changed: set[DocKey] = set()
    default_collection = projection.collections[0] if projection.collections else ""
    whole = partition.is_whole
    handlers: dict[str, Any] = {}
    routes_of = projection._routes.get
    docs_get = batch.docs.get
    for event in sort_events(events):
        position = event.position
        if upto is not None and position > upto:
            break
        if out_of_time is not None and outcome.consumed and out_of_time():
            break
        pending: list[tuple[DocKey, Any, Route]] = []
        owned = False
        for route in routes_of(event.event_type, ()):
            doc_id = route.key(event)
            if type(doc_id) is str:  # the common case: canonical and hashable as it is
                ident = doc_id
            else:
                doc_id = canonical(doc_id)
                ident = id_key(doc_id)
            if whole or partition.owns(doc_id):
                owned = True
                key = (route.collection or default_collection, ident)
                doc = docs_get(key)
                if doc is None:
                    doc = batch.doc(key, doc_id, event)
                if (doc.get(position_field) or 0) < position:
                    pending.append((key, doc_id, route))
        if owned and not pending:
            outcome.skipped += 1  # already applied to every document it addresses (a replay)
        if pending:
            failure = None
            try:  # the fast path: every handler succeeds at the first attempt
                for key, _doc_id, route in pending:
                    handler = handlers.get(route.method)
                    if handler is None:
                        handler = handlers[route.method] = getattr(projection, route.method)
                    handler(batch.docs[key], event)
            except Exception as exc:  # restore, retry, maybe park
                failure = _retry(batch, event, pending, exc)
            if failure is not None:
                outcome.parked.append(failure)
                if projection.on_error == "stop":
                    outcome.stopped = failure
                    break
            else:
                for key, _doc_id, route in pending:
                    batch.docs[key][position_field] = position
                    batch.history.setdefault(key, []).append((route, event))
                    changed.add(key)
                outcome.applied += 1
        outcome.consumed += 1
        outcome.last_position = position
    if outcome.parked:
        for (collection, key), doc in batch.docs.items():
            stored = loaded.get(collection, {}).get(key)
            docs = loaded[collection] if stored is not None and stored is not doc else None
            if isinstance(docs, dict):
                docs[key] = doc  # the restored copy, not the half-mutated original
    for key in changed:
        doc = batch.docs[key]
        outcome.changed.setdefault(key[0], {})[key[1]] = doc
        start, existed = batch.start[key]
        if existed:
            outcome.existing.add(key)
            removed = [name for name in start if name not in doc]
            if removed:
                outcome.unset[key] = removed
    return outcome


def _retry(batch: _Batch, event: Any, targets: list[tuple[DocKey, Any, Route]], error: Exception) -> Parked | None:
    """``event`` failed on ``targets``: restore them and retry ``max_retries`` times.

    Returns None when a retry succeeded (the documents then hold the event's effects),
    else the event to park (the documents are restored without it).
    """
    projection = batch.projection
    for _ in range(projection.max_retries):
        for key, _doc_id, _route in targets:
            batch.restore(key)
        try:
            for key, _doc_id, route in targets:
                getattr(projection, route.method)(batch.docs[key], event)
            return None
        except Exception as exc:  # a handler's own failure: retry
            error = exc
    for key, _doc_id, _route in targets:
        batch.restore(key)
    return Parked(event, error, projection.max_retries + 1)


def stopped_error(projection: Projection, parked: Parked) -> ProjectionHandlerFailed:
    """The error of an ``on_error="stop"`` projection that parked ``parked``."""
    event = parked.event
    return ProjectionHandlerFailed(
        f"projection '{projection.projection_name}' stopped: its handler failed {parked.attempts} times "
        f"on event {event.event_id!r} ({event.event_type} at position {event.position}): {parked.error!r}. "
        "The event is parked in the dead-letter collection and the checkpoint stays before it; "
        "fix the handler and run again (or set on_error='continue' to skip parked events)",
        projection=projection.projection_name, event_id=event.event_id, position=event.position,
    )
