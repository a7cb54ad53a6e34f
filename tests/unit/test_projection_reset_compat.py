"""Projection.reset written as ``reset(self)`` (the seeds' form) or ``reset(self, db)``:
the engine's ``reset(db)`` call reaches both."""

from __future__ import annotations

from typing import Any

from cqrs_ddd_persistence_mongo.exceptions import ProjectionError, UnknownProjection
from cqrs_ddd_persistence_mongo.projections import Projection


class FakeDb:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    async def drop_collection(self, name: str) -> None:
        self.dropped.append(name)


class SeedStyle(Projection):
    def __init__(self) -> None:
        self.calls = 0

    async def on_A(self, event: Any) -> None: ...

    async def reset(self) -> None:
        self.calls += 1


class SyncSeedStyle(SeedStyle):
    def reset(self) -> None:  # type: ignore[override]
        self.calls += 10


class WithDb(Projection):
    collections = ("x",)

    async def on_A(self, event: Any) -> None: ...

    async def reset(self, db: Any = None) -> None:
        self.db = db


class Inherits(SeedStyle):
    pass


class Default(Projection):
    collections = ("a", "b")

    def on_A(self, doc: dict[str, Any], event: Any) -> None: ...


async def test_seed_style_reset_takes_the_engines_db_argument() -> None:
    projection = SeedStyle()
    await projection.reset()
    await projection.reset(FakeDb())
    assert projection.calls == 2
    assert SeedStyle.reset.__name__ == "reset" and SeedStyle.reset.__doc__ is None


async def test_sync_and_inherited_seed_style_resets() -> None:
    sync = SyncSeedStyle()
    await sync.reset(FakeDb())
    assert sync.calls == 10
    inherited = Inherits()
    await inherited.reset(FakeDb())
    assert inherited.calls == 1


async def test_reset_with_db_and_the_default_are_unchanged() -> None:
    db = FakeDb()
    projection = WithDb()
    await projection.reset(db)
    assert projection.db is db
    await Default().reset(db)
    assert db.dropped == ["a", "b"]


def test_unknown_projection_is_a_projection_error_and_a_value_error() -> None:
    assert issubclass(UnknownProjection, ProjectionError) and issubclass(UnknownProjection, ValueError)
