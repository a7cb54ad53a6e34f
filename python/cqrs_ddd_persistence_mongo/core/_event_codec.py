"""StoredEvent <-> MongoDB document, and the hole markers that fill abandoned positions.

One place for the event document shape (the original library's: ``_id`` = event id, plus ``position``)
so the writer, the readers and the fences agree on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson.binary import UuidRepresentation
from bson.codec_options import CodecOptions

from .. import _accel
from ..domain.events import StoredEvent, utc_now
from ..exceptions import EventStoreError, InvalidEvent
from ._documents import checked_mapping
from .upcasting import UpcasterRegistry, upcasters

#: what the connection's clients decode with; raw batches decoded with these options
#: (natively when the module is built) equal what a cursor of that client returns
EVENT_CODEC: CodecOptions[Mapping[str, Any]] = CodecOptions(
    tz_aware=True, uuid_representation=UuidRepresentation.STANDARD
)
#: a registry without upcasters: decode as stored
NO_UPCASTING = UpcasterRegistry()

#: one fetched page of the event collection: the positions of its documents, and for each
#: its event (None for a hole marker)
Page = tuple[list[Any], list[StoredEvent | None]]

#: ``event_type`` of a hole marker: a document that occupies a position nobody will ever
#: write (an appender failed or died after reserving it). Readers skip it.
GAP_EVENT_TYPE = "$gap"


def as_stored(event: Any) -> Any:
    """A DomainEvent becomes its StoredEvent; anything else is used as is (duck typing)."""
    to_stored = getattr(event, "to_stored", None)
    return to_stored() if callable(to_stored) else event


def to_document(event: Any) -> dict[str, Any]:
    """The document for one event (without ``position``, which the store assigns).

    Raises :class:`InvalidEvent` naming the event and the field when the event cannot be stored.
    """
    event = as_stored(event)
    event_id = getattr(event, "event_id", None)
    if event_id is None or event_id == "":
        raise InvalidEvent("an event needs an event_id (a unique string such as a UUID)")
    event_type = getattr(event, "event_type", None)
    if not isinstance(event_type, str) or not event_type or event_type == GAP_EVENT_TYPE:
        raise InvalidEvent(f"event {event_id!r}: event_type must be a non-empty string (the event's name)")
    aggregate_id = getattr(event, "aggregate_id", None)
    if aggregate_id is None:
        raise InvalidEvent(f"event {event_id!r}: aggregate_id is missing; every event belongs to a stream")
    version = getattr(event, "version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidEvent(f"event {event_id!r}: version must be an int >= 0, not {version!r}")
    occurred_at = getattr(event, "occurred_at", None) or utc_now()
    if not isinstance(occurred_at, datetime):
        raise InvalidEvent(f"event {event_id!r}: occurred_at must be a datetime, not {type(occurred_at).__name__}")
    return {
        "_id": event_id,
        "event_type": event_type,
        "aggregate_id": aggregate_id,
        "aggregate_type": getattr(event, "aggregate_type", "") or "",
        "version": version,
        "schema_version": getattr(event, "schema_version", 1),
        "payload": checked_mapping(getattr(event, "payload", None), f"event {event_id!r}: payload", InvalidEvent),
        "metadata": checked_mapping(getattr(event, "metadata", None), f"event {event_id!r}: metadata", InvalidEvent),
        "occurred_at": occurred_at,
        "correlation_id": getattr(event, "correlation_id", None),
        "causation_id": getattr(event, "causation_id", None),
        "tenant_id": getattr(event, "tenant_id", None),
    }


#: the fields of a StoredEvent, in the order the fast path fills them
_FIELDS = (
    "event_id", "event_type", "aggregate_id", "aggregate_type", "version", "schema_version", "payload",
    "metadata", "occurred_at", "correlation_id", "causation_id", "position", "tenant_id",
)
#: the fast path fills the slots directly; only while they are exactly these fields
_FAST = tuple(getattr(StoredEvent, "__slots__", ())) == _FIELDS
_new_event = object.__new__


def from_document(doc: Mapping[str, Any], registry: UpcasterRegistry = upcasters) -> StoredEvent:
    """A stored document back to a :class:`StoredEvent` (hot path of every projection).

    Every reader of events decodes here, so this is where old schema versions are upcast
    (``registry``, by default the process-wide one): the returned event carries the
    current payload and ``schema_version``; ``doc`` itself is left untouched.
    """
    if not (_FAST and type(doc) is dict):
        return _from_any_document(doc, registry)
    try:  # a document the store wrote has every field: no defaults to look up
        event_type = doc["event_type"]
        schema_version = doc["schema_version"]
        payload = doc["payload"] or {}
        event = _new_event(StoredEvent)
        event.event_id = doc["_id"]
        event.aggregate_id = doc["aggregate_id"]
        event.aggregate_type = doc["aggregate_type"]
        event.version = doc["version"]
        event.metadata = doc["metadata"] or {}
        event.occurred_at = doc["occurred_at"]
        event.correlation_id = doc["correlation_id"]
        event.causation_id = doc["causation_id"]
        event.position = doc["position"]
        event.tenant_id = doc["tenant_id"]
    except KeyError:  # an older or hand-written document: the general path
        return _from_any_document(doc, registry)
    current = registry.current.get(event_type)
    if current is not None and schema_version < current:
        schema_version, payload = registry.upcast(event_type, schema_version, payload, doc["_id"])
    event.event_type = event_type
    event.schema_version = schema_version
    event.payload = payload
    return event


def _from_any_document(doc: Mapping[str, Any], registry: UpcasterRegistry) -> StoredEvent:
    """:func:`from_document` for documents that may lack optional fields."""
    get: Callable[..., Any] = doc.get
    event_type = doc["event_type"]
    schema_version = get("schema_version", 1)
    payload = get("payload") or {}
    current = registry.current.get(event_type)
    if current is not None and schema_version < current:
        schema_version, payload = registry.upcast(event_type, schema_version, payload, doc["_id"])
    return StoredEvent(
        event_id=doc["_id"],
        event_type=event_type,
        aggregate_id=doc["aggregate_id"],
        aggregate_type=get("aggregate_type", ""),
        version=doc["version"],
        schema_version=schema_version,
        payload=payload,
        metadata=get("metadata") or {},
        occurred_at=get("occurred_at"),
        correlation_id=get("correlation_id"),
        causation_id=get("causation_id"),
        position=doc["position"],
        tenant_id=get("tenant_id"),
    )


def page_of_documents(docs: Sequence[Mapping[str, Any]], registry: UpcasterRegistry = upcasters) -> Page:
    """The :data:`Page` of decoded documents sorted by position.

    Raises :class:`EventStoreError` for a document that lacks a field every stored event
    has (it was not written by the store).
    """
    try:
        return [doc["position"] for doc in docs], [None if is_gap(doc) else from_document(doc, registry) for doc in docs]
    except KeyError as exc:
        raise EventStoreError(
            f"a document of the events collection has no {exc} field, so it is not an event this store "
            "wrote; remove it or point the store at a collection only the store writes to"
        ) from exc


def decode_page(data: bytes, registry: UpcasterRegistry = upcasters) -> Page:
    """The :data:`Page` of one raw cursor batch (documents decoded with :data:`EVENT_CODEC`).

    Old schema versions are then upcast, as :func:`from_document` does.
    """
    decode = _accel.decode_events if _FAST else _accel.pure_twin("decode_events")
    page: Page = decode(data)
    if registry.current:
        _upcast(page[1], registry)
    return page


def _upcast(events: Iterable[StoredEvent | None], registry: UpcasterRegistry) -> None:
    current = registry.current
    for event in events:
        if event is None:
            continue
        latest = current.get(event.event_type)
        if latest is not None and event.schema_version < latest:
            event.schema_version, event.payload = registry.upcast(
                event.event_type, event.schema_version, event.payload, event.event_id
            )


def is_gap(doc: Mapping[str, Any]) -> bool:
    return doc.get("event_type") == GAP_EVENT_TYPE


def gap_document(position: int) -> dict[str, Any]:
    """The hole marker for ``position``: unique per position, outside every real stream."""
    return {
        "_id": f"{GAP_EVENT_TYPE}:{position}",
        "event_type": GAP_EVENT_TYPE,
        "aggregate_id": None,  # real events never have a None stream
        "version": position,
        "position": position,
    }
