"""Domain primitives the stores speak. Imports nothing else of this package.

Stores accept any object with the same attributes (duck typing), so code built on the
original ``cqrs_ddd_core`` / ``cqrs_ddd_advanced_core`` primitives keeps working.
"""

from .aggregate import AggregateRoot, EventSourcedAggregate, applies
from .events import DomainEvent, StoredEvent, utc_now
from .jobs import BaseBackgroundJob, BackgroundJob, JobStatus
from .outbox import OutboxMessage, OutboxStatus
from .sagas import SagaState, SagaStatus, saga_step

__all__ = [
    "AggregateRoot",
    "BackgroundJob",
    "BaseBackgroundJob",
    "DomainEvent",
    "EventSourcedAggregate",
    "JobStatus",
    "OutboxMessage",
    "OutboxStatus",
    "SagaState",
    "SagaStatus",
    "StoredEvent",
    "applies",
    "saga_step",
    "utc_now",
]
