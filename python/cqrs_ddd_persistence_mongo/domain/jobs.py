"""Background jobs: units of work claimed by one worker at a time."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import Field

from .aggregate import AggregateRoot
from .events import new_id, utc_now


class JobStatus(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BaseBackgroundJob(AggregateRoot):
    """Base of background jobs. Subclass it with the job's own fields."""

    id: Any = Field(default_factory=new_id)
    job_type: str = ""
    status: JobStatus = JobStatus.PENDING
    total_items: int = 0
    processed_items: int = 0
    retry_count: int = 0
    max_retries: int = 3
    error_message: str | None = None
    worker_id: str | None = None
    correlation_id: str | None = None
    cancellation_requested: bool = False
    created_at: datetime = Field(default_factory=utc_now)
    updated_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    heartbeat_at: datetime | None = None

    def model_post_init(self, __context: Any) -> None:
        if not self.job_type:
            self.job_type = type(self).__name__

    @property
    def progress(self) -> float:
        """Fraction done, 0.0 to 1.0 (0.0 when total_items is unknown)."""
        return self.processed_items / self.total_items if self.total_items else 0.0

    def mark_as_running(self, worker_id: str | None = None) -> None:
        now = utc_now()
        self.status = JobStatus.RUNNING
        self.worker_id = worker_id or self.worker_id
        self.started_at = self.started_at or now
        self.heartbeat_at = now
        self.updated_at = now

    def mark_as_completed(self) -> None:
        self.status = JobStatus.COMPLETED
        self.completed_at = utc_now()
        self.updated_at = self.completed_at

    def mark_as_failed(self, error: str) -> None:
        self.status = JobStatus.FAILED
        self.error_message = error
        self.updated_at = utc_now()

    def mark_for_retry(self) -> None:
        self.retry_count += 1
        self.status = JobStatus.PENDING
        self.worker_id = None
        self.updated_at = utc_now()

    def mark_as_cancelled(self) -> None:
        self.status = JobStatus.CANCELLED
        self.updated_at = utc_now()


BackgroundJob = BaseBackgroundJob
