"""MongoDB persistence for CQRS/DDD applications, with Rust-accelerated hot paths.

Everything a user needs is importable from here. ``BACKEND`` says which implementation
of the hot paths is bound: ``"native"`` (the Rust module) or ``"pure"`` (identical
results, slower; forced by ``CQRS_DDD_MONGO_PURE=1``).
"""

from typing import TYPE_CHECKING

from . import exceptions as _exceptions
from ._accel import BACKEND
from .advanced import (
    MongoBackgroundJobRepository,
    MongoCheckpointStore,
    MongoProjectionPositionStore,
    MongoProjectionStore,
    MongoSagaRepository,
    MongoSnapshotStore,
)
from .connection import MongoConnectionManager
from .core import (
    MongoDBModelMapper,
    MongoEventStore,
    MongoOutboxStorage,
    MongoRepository,
    MongoUnitOfWork,
    OutboxPublisher,
    SearchResult,
)
from .core import EventSourcedRepository, SnapshotEvery, UpcasterRegistry, upcasters
from .domain import EventSourcedAggregate, applies
from .domain import (
    AggregateRoot,
    BackgroundJob,
    BaseBackgroundJob,
    DomainEvent,
    JobStatus,
    OutboxMessage,
    OutboxStatus,
    SagaState,
    SagaStatus,
    StoredEvent,
    saga_step,
)
from .exceptions import *  # noqa: F403 - the whole hierarchy is public
from .indexes import ensure_indexes
from .query_builder import MongoQueryBuilder
from .upgrade import UpgradeReport, upgrade_original_data
from .roles import ConnectionRole, TransactionalUnitOfWork, UnitOfWorkRole
from .specifications import (
    OperatorRegistry,
    QueryOptions,
    Specification,
    SpecificationBuilder,
    SpecificationOperator,
    build_default_registry,
)

__version__ = "0.1.0"

# The projection engine sits on top of every store; it is loaded on first use so that
# importing the package stays cheap and nothing below it depends on it.
_PROJECTION_NAMES = frozenset({"Projection", "ProjectionRunner"})

if TYPE_CHECKING:  # type checkers see the real classes; at run time __getattr__ loads them
    from .projections import Projection, ProjectionRunner


def __getattr__(name: str) -> object:
    if name in _PROJECTION_NAMES:
        from . import projections

        return getattr(projections, name)
    raise AttributeError(f"module 'cqrs_ddd_persistence_mongo' has no attribute {name!r}")


__all__ = [
    "BACKEND",
    "Projection",
    "ProjectionRunner",
    "AggregateRoot",
    "BackgroundJob",
    "BaseBackgroundJob",
    "ConnectionRole",
    "DomainEvent",
    "JobStatus",
    "MongoBackgroundJobRepository",
    "MongoCheckpointStore",
    "MongoConnectionManager",
    "MongoDBModelMapper",
    "MongoEventStore",
    "MongoOutboxStorage",
    "MongoProjectionPositionStore",
    "MongoProjectionStore",
    "MongoQueryBuilder",
    "MongoRepository",
    "MongoSagaRepository",
    "MongoSnapshotStore",
    "MongoUnitOfWork",
    "OperatorRegistry",
    "OutboxMessage",
    "OutboxPublisher",
    "OutboxStatus",
    "QueryOptions",
    "SagaState",
    "SagaStatus",
    "SearchResult",
    "Specification",
    "SpecificationBuilder",
    "SpecificationOperator",
    "StoredEvent",
    "TransactionalUnitOfWork",
    "UnitOfWorkRole",
    "__version__",
    "build_default_registry",
    "ensure_indexes",
    "upgrade_original_data",
    "UpgradeReport",
    "EventSourcedAggregate",
    "EventSourcedRepository",
    "SnapshotEvery",
    "UpcasterRegistry",
    "applies",
    "upcasters",
    "saga_step",
    *_exceptions.__all__,
]
