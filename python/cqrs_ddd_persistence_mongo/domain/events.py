"""Domain events (what aggregates record) and stored events (what the event store keeps)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import UndecodableEvent


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


class DomainEvent(BaseModel):
    """Something that happened to an aggregate. Subclass it and add the payload fields.

    ``event_type`` defaults to the class name; ``aggregate_id``/``version`` are filled in
    by the aggregate that records the event.
    """

    model_config = ConfigDict(frozen=False, extra="allow")

    event_id: str = Field(default_factory=new_id)
    event_type: str = ""
    aggregate_id: Any = None
    aggregate_type: str | None = None
    version: int = 0
    schema_version: int = 1
    occurred_at: datetime = Field(default_factory=utc_now)
    correlation_id: str | None = None
    causation_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def model_post_init(self, __context: Any) -> None:
        if not self.event_type:
            self.event_type = type(self).__name__

    _ENVELOPE = frozenset(
        {
            "event_id",
            "event_type",
            "aggregate_id",
            "aggregate_type",
            "version",
            "schema_version",
            "occurred_at",
            "correlation_id",
            "causation_id",
            "metadata",
        }
    )

    def payload(self) -> dict[str, Any]:
        """The event's own fields, without the envelope (what a StoredEvent keeps as payload)."""
        return {k: v for k, v in self.model_dump().items() if k not in self._ENVELOPE}

    @classmethod
    def type_name(cls) -> str:
        """The ``event_type`` instances of this class carry (a declared default, else the class name)."""
        field_info = cls.model_fields.get("event_type")
        default = field_info.default if field_info is not None else None
        return default if isinstance(default, str) and default else cls.__name__

    @classmethod
    def from_stored(cls, stored: Any) -> Any:
        """Decode a stored event (a :class:`StoredEvent` or any object with its attributes)
        into this class: payload fields plus the envelope.

        Raises :class:`UndecodableEvent` when the payload does not validate as this class.
        """
        data = dict(stored.payload)
        data.update(
            event_id=stored.event_id,
            event_type=stored.event_type,
            aggregate_id=stored.aggregate_id,
            aggregate_type=stored.aggregate_type,
            version=stored.version,
            schema_version=stored.schema_version,
            metadata=stored.metadata,
            correlation_id=stored.correlation_id,
            causation_id=stored.causation_id,
        )
        if stored.occurred_at is not None:
            data["occurred_at"] = stored.occurred_at
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise UndecodableEvent(
                f"stored event {stored.event_id!r} ({stored.event_type} schema v{stored.schema_version}) "
                f"does not validate as {cls.__name__}: {exc.errors(include_url=False)[:3]}; if the "
                "event's schema changed, register an upcaster for the old version"
            ) from exc

    def to_stored(self, position: int | None = None, tenant_id: str | None = None) -> StoredEvent:
        return StoredEvent(
            event_id=self.event_id,
            event_type=self.event_type,
            aggregate_id=self.aggregate_id,
            aggregate_type=self.aggregate_type or "",
            version=self.version,
            schema_version=self.schema_version,
            payload=self.payload(),
            metadata=dict(self.metadata),
            occurred_at=self.occurred_at,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            position=position,
            tenant_id=tenant_id,
        )


@dataclass(slots=True)
class StoredEvent:
    """An event as the event store keeps it (``_id`` = ``event_id``, plus ``position``).

    A plain dataclass, not a pydantic model: projections decode millions of these.
    """

    event_id: str = field(default_factory=new_id)
    event_type: str = ""
    aggregate_id: Any = None
    aggregate_type: str = ""
    version: int = 0
    schema_version: int = 1
    payload: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=utc_now)
    correlation_id: str | None = None
    causation_id: str | None = None
    position: int | None = None
    tenant_id: str | None = None
