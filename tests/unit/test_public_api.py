"""Everything in ``__all__`` is importable from the package root, and the seeds'
module paths (per the API map) resolve."""

from __future__ import annotations

import importlib

import cqrs_ddd_persistence_mongo as pkg


def test_every_public_name_resolves() -> None:
    missing = [name for name in pkg.__all__ if not hasattr(pkg, name)]
    assert missing == []


def test_exception_hierarchy_has_one_root() -> None:
    from cqrs_ddd_persistence_mongo import exceptions

    for name in exceptions.__all__:
        assert issubclass(getattr(exceptions, name), exceptions.MongoPersistenceError), name


def test_seed_module_paths() -> None:
    paths = {
        "cqrs_ddd_persistence_mongo.core": ["MongoRepository", "MongoUnitOfWork", "MongoEventStore",
                                            "MongoOutboxStorage"],
        "cqrs_ddd_persistence_mongo.core.uow": ["MongoUnitOfWork"],
        "cqrs_ddd_persistence_mongo.core.model_mapper": ["MongoDBModelMapper"],
        "cqrs_ddd_persistence_mongo.connection": ["MongoConnectionManager"],
        "cqrs_ddd_persistence_mongo.advanced": ["MongoProjectionStore", "MongoSnapshotStore",
                                                "MongoProjectionPositionStore"],
        "cqrs_ddd_persistence_mongo.query_builder": ["MongoQueryBuilder"],
        "cqrs_ddd_persistence_mongo.indexes": ["ensure_indexes"],
        "cqrs_ddd_persistence_mongo.specifications": ["SpecificationBuilder", "build_default_registry",
                                                      "QueryOptions"],
        "cqrs_ddd_persistence_mongo.domain": ["AggregateRoot", "DomainEvent", "StoredEvent", "OutboxMessage",
                                              "SagaState", "SagaStatus", "BaseBackgroundJob", "JobStatus"],
    }
    for module, names in paths.items():
        loaded = importlib.import_module(module)
        for name in names:
            assert hasattr(loaded, name), f"{module}.{name}"
