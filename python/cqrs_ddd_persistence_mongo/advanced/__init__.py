"""Advanced stores: projections, snapshots, positions, sagas, background jobs."""

# --- projection store (issue 6) ---

# --- snapshots, positions, sagas, jobs (issue 6) ---
from .position_store import MongoProjectionPositionStore
from .snapshots import MongoSnapshotStore
