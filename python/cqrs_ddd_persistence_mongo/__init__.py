"""MongoDB persistence for CQRS/DDD applications, with Rust-accelerated hot paths.

``BACKEND`` says which implementation of the hot paths is bound: ``"native"`` (the Rust
module) or ``"pure"`` (identical results, slower; forced by ``CQRS_DDD_MONGO_PURE=1``).
"""

from ._accel import BACKEND
from .connection import MongoConnectionManager
from .exceptions import (
    ConcurrencyConflict,
    ConnectionFailed,
    DuplicateEntityError,
    EntityNotFound,
    EventStoreError,
    InvalidDocument,
    InvalidSpecification,
    MongoConnectionError,
    MongoPersistenceError,
    MongoQueryError,
    MongoUnitOfWorkError,
    OptimisticConcurrencyError,
    OutboxError,
    ProjectionError,
    TransactionsNotSupported,
    UnsafeQueryError,
    VersionMismatchError,
)

__version__ = "0.1.0"

__all__ = [
    "BACKEND",
    "ConcurrencyConflict",
    "ConnectionFailed",
    "DuplicateEntityError",
    "EntityNotFound",
    "EventStoreError",
    "InvalidDocument",
    "InvalidSpecification",
    "MongoConnectionError",
    "MongoConnectionManager",
    "MongoPersistenceError",
    "MongoQueryError",
    "MongoUnitOfWorkError",
    "OptimisticConcurrencyError",
    "OutboxError",
    "ProjectionError",
    "TransactionsNotSupported",
    "UnsafeQueryError",
    "VersionMismatchError",
    "__version__",
]
