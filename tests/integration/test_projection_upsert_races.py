"""The E11000 retry that makes racing inserts of one new key end at the right state.

The embedded server applies writes one at a time, so two upserts never really race there;
these tests inject the race's outcome instead: a competitor has just inserted the document
(for real) and our first write answers E11000, exactly what a real race produces. The retry
must then apply our newer state; without it the document would stay at the competitor's.
"""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import MongoProjectionStore

pytestmark = pytest.mark.integration
C = "race"


class LosesFirstRace:
    """A real collection whose first write reports E11000 on ``_id`` after writing nothing."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self.raced = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        if not self.raced:
            self.raced += 1
            raise DuplicateKeyError("E11000 duplicate key", 11000, {"code": 11000, "keyPattern": {"_id": 1}})
        return await self._collection.update_one(*args, **kwargs)

    async def bulk_write(self, requests: list[Any], **kwargs: Any) -> Any:
        if not self.raced and isinstance(requests[0], UpdateOne):  # the guarded-upsert pass
            self.raced += 1
            errors = [{"index": i, "code": 11000, "keyPattern": {"_id": 1}, "errmsg": "E11000"} for i in range(len(requests))]
            raise BulkWriteError({"writeErrors": errors, "nUpserted": 0, "nMatched": 0, "upserted": []})
        return await self._collection.bulk_write(requests, **kwargs)


@pytest.fixture
def racing_store(pymongo_connection: MongoConnectionManager, monkeypatch: pytest.MonkeyPatch) -> tuple[MongoProjectionStore, LosesFirstRace]:
    store = MongoProjectionStore(pymongo_connection)
    proxy = LosesFirstRace(pymongo_connection.db()[C])
    real = store._collection
    monkeypatch.setattr(store, "_collection", lambda name: proxy if name == C else real(name))
    return store, proxy


async def test_single_upsert_retries_a_lost_insert_race(racing_store: tuple[MongoProjectionStore, LosesFirstRace]) -> None:
    store, proxy = racing_store
    await store.connection.db()[C].insert_one({"_id": "k", "p": 5, "_last_position": 5})  # the competitor
    assert await store.upsert(C, "k", {"p": 7}, event_position=7)
    assert proxy.raced == 1
    assert (await store.find_one(C, "k"))["p"] == 7


async def test_bulk_upsert_retries_lost_insert_races(racing_store: tuple[MongoProjectionStore, LosesFirstRace]) -> None:
    store, proxy = racing_store
    await store.connection.db()[C].insert_many([{"_id": f"k{i}", "_last_position": 5} for i in range(4)])
    docs = [{"id": f"k{i}", "_last_position": 3 + i} for i in range(4)]  # k0, k1, k2 older; k3 newer
    result = await store.bulk_upsert(C, docs)
    assert proxy.raced == 1
    assert (result.inserted, result.updated, result.skipped) == (0, 1, 3)
    assert (await store.find_one(C, "k3"))["_last_position"] == 6
    assert (await store.find_one(C, "k0"))["_last_position"] == 5
