"""Advanced stores: projections, snapshots, positions, sagas, background jobs."""

# --- projection store (issue 6) ---
from .bulk_upserts import BulkLimits, BulkUpsertResult, build_upserts, to_update_ones, write_upserts
from .projection_store import MongoProjectionStore

# --- snapshots, positions, sagas, jobs (issue 6) ---
from .position_store import MongoProjectionPositionStore
from .checkpoint_store import MongoCheckpointStore
from .snapshots import MongoSnapshotStore
from .jobs import MongoBackgroundJobRepository
from .saga import MongoSagaRepository
from .persistence import (
    MongoOperationPersistence,
    MongoProjectionDualPersistence,
    MongoProjectionQueryPersistence,
    MongoProjectionSpecPersistence,
    MongoQueryPersistence,
    MongoQuerySpecificationPersistence,
    MongoRetrievalPersistence,
)

__all__ = [
    "BulkLimits",
    "BulkUpsertResult",
    "MongoBackgroundJobRepository",
    "MongoCheckpointStore",
    "MongoOperationPersistence",
    "MongoProjectionDualPersistence",
    "MongoProjectionQueryPersistence",
    "MongoProjectionSpecPersistence",
    "MongoQueryPersistence",
    "MongoQuerySpecificationPersistence",
    "MongoRetrievalPersistence",
    "MongoProjectionPositionStore",
    "MongoProjectionStore",
    "MongoSagaRepository",
    "MongoSnapshotStore",
    "build_upserts",
    "to_update_ones",
    "write_upserts",
]
