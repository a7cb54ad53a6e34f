"""Outbox messages: events waiting to be published to a broker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from .events import new_id, utc_now


class OutboxStatus(str, Enum):
    PENDING = "pending"
    PUBLISHING = "publishing"  # leased to one publisher
    PUBLISHED = "published"
    FAILED = "failed"  # will be retried at next_attempt_at
    DEAD = "dead"  # retries exhausted; requeue_dead() returns it


@dataclass(slots=True)
class OutboxMessage:
    message_id: str = field(default_factory=new_id)
    event_type: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utc_now)
    status: str = OutboxStatus.PENDING.value
    retry_count: int = 0
    error: str | None = None
    published_at: datetime | None = None
    next_attempt_at: datetime | None = None
    correlation_id: str | None = None
    locked_by: str | None = None  # the publisher holding the lease while status is "publishing"
