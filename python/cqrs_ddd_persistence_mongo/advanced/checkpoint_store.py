"""MongoCheckpointStore: the projection checkpoint store under its earlier name."""

from __future__ import annotations

from .position_store import MongoProjectionPositionStore


class MongoCheckpointStore(MongoProjectionPositionStore):
    """A :class:`MongoProjectionPositionStore` kept in ``projection_checkpoints`` by default,
    the collection earlier releases used, so existing checkpoints are found where they are.

    ``get_position(name)`` / ``save_position(name, position)`` behave (and guarantee) exactly
    as the position store's; ``collection=`` picks another collection.
    """

    default_collection = "projection_checkpoints"
