"""Core persistence: repository, unit of work, event store, outbox, model mapper."""

# --- unit of work and repository (issue 3) ---
from .model_mapper import MongoDBModelMapper
from .entity_stream import EntityStream
from .repository import MongoRepository
from .uow import MongoUnitOfWork

# --- search (issue 4) ---
from .search import SearchResult, search_collection

# --- event store and outbox (issue 5) ---
from .event_store import MongoEventStore
from .outbox import MongoOutboxStorage, OutboxPublisher

# --- event-sourced aggregates ---
from .event_sourced_repository import EventSourcedRepository, SnapshotEvery
from .upcasting import UpcasterRegistry, upcasters

__all__ = [
    "EntityStream",
    "EventSourcedRepository",
    "MongoDBModelMapper",
    "MongoEventStore",
    "MongoOutboxStorage",
    "MongoRepository",
    "MongoUnitOfWork",
    "OutboxPublisher",
    "SearchResult",
    "SnapshotEvery",
    "UpcasterRegistry",
    "search_collection",
    "upcasters",
]
