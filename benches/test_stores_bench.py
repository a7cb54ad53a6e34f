"""Issue-6 stores on the embedded real-wire server (or MONGODB_URL): what claiming a job,
reading a snapshot and saving a checkpoint cost over the raw driver calls they are made
of. Same-run ratios, calls alternated (see ``best_pair``)."""

from __future__ import annotations

from typing import Any

import pytest
from pymongo import ReturnDocument

from cqrs_ddd_persistence_mongo import MongoConnectionManager
from cqrs_ddd_persistence_mongo.advanced import (
    MongoBackgroundJobRepository,
    MongoProjectionPositionStore,
    MongoSnapshotStore,
)
from cqrs_ddd_persistence_mongo.domain import BaseBackgroundJob, utc_now

from .conftest import best_pair, report

DB = "bench_stores"
QUEUE = 260  # pending jobs per queue: benchmark rounds + timed calls


@pytest.fixture
def conn(loop: Any, mongo_url: str) -> Any:
    connection = MongoConnectionManager(url=mongo_url, database=DB)
    loop.run_until_complete(connection.connect())
    loop.run_until_complete(connection.client.drop_database(DB))
    yield connection
    loop.run_until_complete(connection.client.drop_database(DB))
    loop.run_until_complete(connection.disconnect())


async def _queue(repo: MongoBackgroundJobRepository, n: int) -> list[str]:
    jobs = [BaseBackgroundJob(id=f"{repo.collection_name}-{i:05d}") for i in range(n)]
    docs = repo.mapper.to_docs(jobs)
    for doc in docs:
        doc["_version"] = 1
    await (await repo._coll()).insert_many(docs)
    return [job.id for job in jobs]


def test_claim_next_costs_little_over_a_raw_point_claim(benchmark: Any, loop: Any, conn: MongoConnectionManager) -> None:
    prefetch = MongoBackgroundJobRepository(conn, collection="jobs_prefetch")
    direct = MongoBackgroundJobRepository(conn, collection="jobs_direct", claim_prefetch=0)
    raw_repo = MongoBackgroundJobRepository(conn, collection="jobs_raw")
    loop.run_until_complete(_queue(prefetch, QUEUE))
    loop.run_until_complete(_queue(direct, QUEUE))
    raw_ids = iter(loop.run_until_complete(_queue(raw_repo, QUEUE)))
    raw = raw_repo.collection
    calls = iter(range(10**6))

    async def raw_claim() -> None:
        """The least a claim is: a conditional point update and reading the job back, plus
        (every ``claim_prefetch`` claims) reading the ids of the oldest pending jobs."""
        if next(calls) % prefetch.claim_prefetch == 0:
            cursor = raw.find({"status": "pending"}, {"_id": 1}).sort([("created_at", 1), ("_id", 1)])
            await cursor.limit(prefetch.claim_prefetch).to_list(prefetch.claim_prefetch)
        job_id = next(raw_ids)
        now = utc_now()
        await raw.update_one(
            {"_id": job_id, "status": "pending"},
            {
                "$set": {"status": "running", "worker_id": "w", "started_at": now, "heartbeat_at": now, "updated_at": now},
                "$inc": {"_version": 1},
            },
        )
        await raw.find_one({"_id": job_id})

    benchmark.pedantic(lambda: loop.run_until_complete(prefetch.claim_next("bench")), rounds=60, iterations=1)
    t_claim, t_raw = loop.run_until_complete(best_pair(lambda: prefetch.claim_next("w"), raw_claim, number=30, repeat=3))
    t_direct, t_claim2 = loop.run_until_complete(
        best_pair(lambda: direct.claim_next("w"), lambda: prefetch.claim_next("w"), number=30, repeat=3)
    )
    report(
        f"claim_next: prefetched {t_claim * 1e3:.2f} ms, raw point claim {t_raw * 1e3:.2f} ms "
        f"(x{t_claim / t_raw:.2f}); sorted find_one_and_update per claim {t_direct * 1e3:.2f} ms "
        f"(prefetch speed-up x{t_direct / t_claim2:.2f})"
    )
    assert t_claim / t_raw <= 1.5, "claim_next should cost at most 1.5x the raw statements it is made of"


def test_snapshot_and_position_cost_little_over_raw(benchmark: Any, loop: Any, conn: MongoConnectionManager) -> None:
    snapshots = MongoSnapshotStore(conn, keep_last=None)
    positions = MongoProjectionPositionStore(conn)
    data = {"id": "o-1", "lines": [{"sku": f"s{i}", "qty": i} for i in range(10)]}

    async def seed() -> None:
        for version in range(1, 41):
            await snapshots.save_snapshot("Order", "o-1", data, version)

    loop.run_until_complete(seed())
    raw_snapshots = snapshots.collection
    raw_positions = conn.db()["raw_positions"]
    latest_key = [("aggregate_id", 1), ("aggregate_type", 1), ("version", -1)]

    async def raw_latest() -> None:
        cursor = raw_snapshots.find({"aggregate_id": "o-1", "aggregate_type": "Order"}, {"_id": 0})
        await cursor.sort(latest_key).limit(1).to_list(1)

    counter = iter(range(10**6))

    async def raw_position() -> None:
        """The statement save_position is: one find_one_and_update upsert."""
        await raw_positions.find_one_and_update(
            {"_id": "P"},
            {"$set": {"projection_name": "P", "updated_at": utc_now(), "position": next(counter)}},
            upsert=True,
            projection={"position": 1},
            return_document=ReturnDocument.AFTER,
        )

    benchmark(lambda: loop.run_until_complete(snapshots.get_latest_snapshot("Order", "o-1")))
    t_latest, t_raw_latest = loop.run_until_complete(
        best_pair(lambda: snapshots.get_latest_snapshot("Order", "o-1"), raw_latest, number=30, repeat=3)
    )
    t_save, t_raw_save = loop.run_until_complete(
        best_pair(lambda: positions.save_position("P", next(counter)), raw_position, number=30, repeat=3)
    )
    report(
        f"get_latest_snapshot {t_latest * 1e3:.2f} ms vs raw {t_raw_latest * 1e3:.2f} ms (x{t_latest / t_raw_latest:.2f}); "
        f"save_position {t_save * 1e3:.2f} ms vs raw upsert {t_raw_save * 1e3:.2f} ms (x{t_save / t_raw_save:.2f})"
    )
    assert t_latest / t_raw_latest <= 1.5, "get_latest_snapshot should cost at most 1.5x the raw query"
    assert t_save / t_raw_save <= 1.5, "save_position should cost at most 1.5x a raw upsert"
