"""Saga state: a long-running process persisted between the messages that drive it."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field

from .aggregate import AggregateRoot
from .events import new_id, utc_now


class SagaStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SagaState(AggregateRoot):
    """Base of sagas. Subclass it with the saga's own fields."""

    id: Any = Field(default_factory=new_id)
    saga_type: str = ""
    correlation_id: str | None = None
    status: SagaStatus = SagaStatus.RUNNING
    current_step: str | None = None
    step_history: list[dict[str, Any]] = Field(default_factory=list)
    error: str | None = None
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    suspended_at: datetime | None = None
    suspension_reason: str | None = None
    timeout_at: datetime | None = None
    completed_at: datetime | None = None

    def model_post_init(self, __context: Any) -> None:
        if not self.saga_type:
            self.saga_type = type(self).__name__

    def _touch(self) -> None:
        self.updated_at = utc_now()

    def record_step(self, step: str, **details: Any) -> None:
        self.current_step = step
        self.step_history.append({"step": step, "at": utc_now(), **details})
        self._touch()

    def suspend(self, reason: str, timeout_at: datetime | None = None) -> None:
        self.status = SagaStatus.SUSPENDED
        self.suspension_reason = reason
        self.suspended_at = utc_now()
        self.timeout_at = timeout_at
        self._touch()

    def resume(self) -> None:
        self.status = SagaStatus.RUNNING
        self.suspension_reason = None
        self.suspended_at = None
        self.timeout_at = None
        self._touch()

    def mark_as_completed(self) -> None:
        self.status = SagaStatus.COMPLETED
        self.completed_at = utc_now()
        self._touch()

    def mark_as_failed(self, error: str) -> None:
        self.status = SagaStatus.FAILED
        self.error = error
        self._touch()

    def mark_as_cancelled(self, reason: str) -> None:
        self.status = SagaStatus.CANCELLED
        self.error = reason
        self._touch()
