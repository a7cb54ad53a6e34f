"""MongoBackgroundJobRepository on the real-wire server, both drivers."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

from cqrs_ddd_persistence_mongo.advanced.jobs import MongoBackgroundJobRepository
from cqrs_ddd_persistence_mongo.domain import BaseBackgroundJob, JobStatus, utc_now
from cqrs_ddd_persistence_mongo.exceptions import (
    DuplicateEntityError,
    InvalidStoreArgument,
    VersionMismatchError,
)

from .conftest import assert_uses_index, transaction


class EmailBatchJob(BaseBackgroundJob):
    email_ids: list[str] = []
    template_id: str = "welcome"


class ReportJob(BaseBackgroundJob):
    pass


def _jobs(n: int, start=None, cls=EmailBatchJob) -> list[BaseBackgroundJob]:
    start = start or utc_now() - timedelta(hours=1)
    return [cls(id=f"job-{i:04d}", created_at=start + timedelta(seconds=i), total_items=10) for i in range(n)]


async def _seed(repo: MongoBackgroundJobRepository, jobs: list[BaseBackgroundJob]) -> None:
    """Bulk setup: the documents add() would write, in one insert_many."""
    docs = repo.mapper.to_docs(jobs)
    for doc, job in zip(docs, jobs):
        doc["_version"] = job.version = 1
    await (await repo._coll()).insert_many(docs)


async def test_add_get_and_versioned_save(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    job = EmailBatchJob(id="job-123", email_ids=["e1", "e2", "e3"], total_items=3)
    await repo.add(job)
    assert job.version == 1
    loaded = await repo.get("job-123")
    assert (loaded.id, loaded.version, loaded.total_items) == ("job-123", 1, 3)
    assert loaded.status is JobStatus.PENDING and loaded.email_ids == ["e1", "e2", "e3"]
    assert abs(loaded.created_at - job.created_at) < timedelta(milliseconds=1)  # BSON keeps ms
    with pytest.raises(DuplicateEntityError):
        await repo.add(EmailBatchJob(id="job-123"))
    loaded.mark_as_running("w1")
    await repo.add(loaded)
    job.mark_as_completed()
    with pytest.raises(VersionMismatchError) as info:
        await repo.add(job)  # stale copy
    assert info.value.expected == 1 and info.value.actual == 2
    assert (await repo.get("job-123")).status is JobStatus.RUNNING
    assert await repo.get("missing") is None


@pytest.mark.parametrize("prefetch", [0, 16])
async def test_claim_is_oldest_first_and_skips_types_and_cancelled(real_connection, prefetch) -> None:
    repo = MongoBackgroundJobRepository(real_connection, BaseBackgroundJob, claim_prefetch=prefetch)
    start = utc_now() - timedelta(hours=1)
    await repo.add(BaseBackgroundJob(id="b", job_type="report", created_at=start + timedelta(seconds=2)))
    await repo.add(BaseBackgroundJob(id="a", job_type="email", created_at=start + timedelta(seconds=1)))
    await repo.add(BaseBackgroundJob(id="c", job_type="email", created_at=start))
    await repo.request_cancellation("c")
    claimed = await repo.claim_next("w1", job_types=["report"])
    assert claimed.id == "b" and claimed.status is JobStatus.RUNNING and claimed.worker_id == "w1"
    assert claimed.version == 2 and claimed.heartbeat_at is not None and claimed.started_at is not None
    assert (await repo.claim_next("w2")).id == "a"
    assert await repo.claim_next("w3") is None


async def _race(repos: list[MongoBackgroundJobRepository], n_jobs: int) -> dict[str, list[str]]:
    """Seed ``n_jobs`` and let one worker per repository claim until the queue is empty."""
    await _seed(repos[0], _jobs(n_jobs))
    claims: dict[str, list[str]] = {}

    async def worker(worker_id: str, repo: MongoBackgroundJobRepository) -> None:
        mine = claims.setdefault(worker_id, [])
        while (job := await repo.claim_next(worker_id)) is not None:
            assert job.worker_id == worker_id and job.status is JobStatus.RUNNING
            mine.append(job.id)

    await asyncio.gather(*(worker(f"w{i}", repo) for i, repo in enumerate(repos)))
    every = [job_id for ids in claims.values() for job_id in ids]
    assert len(every) == n_jobs and len(set(every)) == n_jobs
    return claims


async def test_workers_with_their_own_repositories_claim_each_job_once(real_connection) -> None:
    """Like separate processes: prefetched candidates collide and are skipped."""
    repos = [MongoBackgroundJobRepository(real_connection, EmailBatchJob, claim_prefetch=8) for _ in range(4)]
    await _race(repos, 60)


async def test_workers_sharing_one_repository_take_distinct_candidates(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob, claim_prefetch=8)
    claims = await _race([repo] * 8, 80)
    assert sum(1 for ids in claims.values() if ids) > 1


async def test_direct_sorted_claims_without_prefetch(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob, claim_prefetch=0)
    claims = await _race([repo] * 4, 30)
    for ids in claims.values():
        assert ids == sorted(ids)  # each worker sees oldest first


async def test_eight_workers_claim_500_jobs_each_exactly_once(real_connection) -> None:
    """Eight workers, each with its own repository (as in eight processes): they read the
    same candidates and race for every job; the conditional update lets one win each."""
    repos = [MongoBackgroundJobRepository(real_connection, EmailBatchJob) for _ in range(8)]
    repo = repos[0]
    claims = await _race(repos, 500)
    assert sum(1 for ids in claims.values() if ids) > 1  # the work really was shared
    stored = Counter()
    async for doc in (await repo._coll()).find({}, {"worker_id": 1, "status": 1}):
        assert doc["status"] == "running"
        stored[doc["worker_id"]] += 1
    assert stored == Counter({w: len(ids) for w, ids in claims.items() if ids})


async def test_progress_after_claim_never_conflicts(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.add(EmailBatchJob(id="j", total_items=5))
    job = await repo.claim_next("w1")
    for done in range(1, 6):
        assert await repo.update_progress(job.id, done, worker_id="w1")
        assert await repo.heartbeat(job.id, worker_id="w1")
    # the worker's own copy is still current: a full save and a transition both succeed
    job.processed_items = 5
    await repo.add(job)
    completed = await repo.mark_completed(job.id, worker_id="w1")
    assert completed.status is JobStatus.COMPLETED and completed.processed_items == 5
    assert completed.completed_at is not None
    # progress on a finished job does not apply
    assert await repo.update_progress(job.id, 9) is False


async def test_progress_is_fenced_by_owner(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.add(EmailBatchJob(id="j"))
    await repo.claim_next("w1")
    assert await repo.update_progress("j", 3, worker_id="w2") is False
    assert await repo.mark_completed("j", worker_id="w2") is None
    assert await repo.update_progress("j", 3, total_items=7, worker_id="w1") is True
    job = await repo.get("j")
    assert (job.processed_items, job.total_items, job.status) == (3, 7, JobStatus.RUNNING)


async def test_mark_for_retry_respects_max_retries(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.add(EmailBatchJob(id="j", max_retries=2))
    outcomes = []
    for _ in range(3):
        claimed = await repo.claim_next("w1")
        if claimed is None:
            break
        retried = await repo.mark_for_retry("j", "$boom", worker_id="w1")
        outcomes.append((retried.status, retried.retry_count))
    assert outcomes == [(JobStatus.PENDING, 1), (JobStatus.PENDING, 2), (JobStatus.FAILED, 2)]
    final = await repo.get("j")
    assert final.error_message == "$boom" and final.worker_id == "w1"


async def test_concurrent_retries_never_exceed_max(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.add(EmailBatchJob(id="j", max_retries=3))
    await repo.mark_failed("j", "first failure")
    results = await asyncio.gather(*(repo.mark_for_retry("j") for _ in range(10)))
    applied = [r for r in results if r is not None]
    assert len(applied) == 1 and applied[0].status is JobStatus.PENDING and applied[0].retry_count == 1


async def test_mark_failed_and_transitions_from_wrong_state(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.add(EmailBatchJob(id="j"))
    assert await repo.mark_completed("j") is None  # pending, not running
    failed = await repo.mark_failed("j", "bad input")
    assert failed.status is JobStatus.FAILED and failed.error_message == "bad input"
    assert await repo.mark_failed("j", "again") is None
    assert await repo.mark_completed("missing") is None


async def test_cancellation(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob, claim_prefetch=0)  # strict order
    await repo.add(EmailBatchJob(id="pending"))
    await repo.add(EmailBatchJob(id="running", created_at=utc_now() - timedelta(minutes=1)))
    await repo.claim_next("w1")  # oldest: "running"
    assert await repo.is_cancellation_requested("running") is False
    cancelled = await repo.request_cancellation("pending")
    assert cancelled.status is JobStatus.CANCELLED
    flagged = await repo.request_cancellation("running")
    assert flagged.status is JobStatus.RUNNING and flagged.cancellation_requested
    assert await repo.is_cancellation_requested("running") and await repo.is_cancellation_requested("pending")
    assert await repo.claim_next("w2") is None
    await repo.mark_completed("running")
    assert await repo.request_cancellation("running") is None
    assert await repo.is_cancellation_requested("missing") is False


async def test_stale_jobs_oldest_heartbeat_first(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob, stale_job_timeout_seconds=600)
    now = utc_now()
    jobs = []
    for i, age in enumerate([30, 5, 60, 20]):
        job = EmailBatchJob(id=f"j{i}")
        job.mark_as_running("w")
        job.heartbeat_at = now - timedelta(minutes=age)
        jobs.append(job)
    await _seed(repo, jobs)
    await repo.add(EmailBatchJob(id="pending", heartbeat_at=now - timedelta(days=1)))
    assert [j.id for j in await repo.get_stale_jobs()] == ["j2", "j0", "j3"]
    assert [j.id for j in await repo.get_stale_jobs(timeout_seconds=25 * 60, limit=5)] == ["j2", "j0"]
    assert [j.id for j in await repo.get_stale_jobs(limit=1)] == ["j2"]
    assert await repo.heartbeat("j2")
    assert [j.id for j in await repo.get_stale_jobs()] == ["j0", "j3"]


async def test_find_by_status_newest_first_paged_and_counts(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await _seed(repo, _jobs(7))
    await repo.mark_failed("job-0001", "x")
    await repo.mark_failed("job-0004", "x")
    pending = await repo.find_by_status(JobStatus.PENDING, limit=3)
    assert [j.id for j in pending] == ["job-0006", "job-0005", "job-0003"]
    assert [j.id for j in await repo.find_by_status("pending", limit=3, offset=3)] == ["job-0002", "job-0000"]
    assert [j.id for j in await repo.find_by_status(status=JobStatus.FAILED, limit=10)] == ["job-0004", "job-0001"]
    both = await repo.find_by_status([JobStatus.FAILED, "pending"], limit=10)
    assert [j.id for j in both] == [f"job-{i:04d}" for i in range(6, -1, -1)]
    counts = await repo.count_by_status()
    assert counts == {JobStatus.PENDING: 5, JobStatus.RUNNING: 0, JobStatus.COMPLETED: 0,
                      JobStatus.FAILED: 2, JobStatus.CANCELLED: 0}
    assert counts["failed"] == 2


async def test_purge_completed(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await _seed(repo, _jobs(4))
    done = set()
    for _ in range(3):
        job = await repo.claim_next("w")
        await repo.mark_completed(job.id)
        done.add(job.id)
    (left,) = {f"job-{i:04d}" for i in range(4)} - done
    cutoff = utc_now() + timedelta(seconds=1)
    assert await repo.purge_completed(utc_now() - timedelta(days=1)) == 0
    assert await repo.purge_completed(cutoff) == 3
    assert await repo.purge_completed(cutoff) == 0
    assert [j.id for j in await repo.find_by_status([s for s in JobStatus], limit=10)] == [left]
    with pytest.raises(InvalidStoreArgument, match="pending or running"):
        await repo.purge_completed(cutoff, statuses=[JobStatus.COMPLETED, JobStatus.RUNNING])


async def test_queries_use_their_indexes(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await _seed(repo, _jobs(3))
    coll = await repo._coll()
    plans = {
        "status_created": coll.find({"status": "pending"}).sort([("created_at", 1), ("_id", 1)]),
        "status_type_created": coll.find({"status": "pending", "job_type": {"$in": ["a", "b"]}}).sort(
            [("created_at", 1), ("_id", 1)]
        ),
        "status_updated": coll.find({"status": "completed", "updated_at": {"$lt": utc_now()}}),
        "status_heartbeat": coll.find({"status": "running", "heartbeat_at": {"$lt": utc_now()}}).sort(
            [("status", 1), ("heartbeat_at", 1)]
        ),
    }
    for index, cursor in plans.items():
        await assert_uses_index(coll, cursor, index)


async def test_add_inside_aborted_transaction_leaves_nothing(real_connection) -> None:
    repo = MongoBackgroundJobRepository(real_connection, EmailBatchJob)
    await repo.ensure_indexes()
    async with transaction(real_connection, commit=False) as uow:
        await repo.add(EmailBatchJob(id="j"), uow=uow)
        assert await repo.get("j", uow=uow) is not None
    assert await repo.get("j") is None


async def test_bad_arguments(mock_connection) -> None:
    with pytest.raises(InvalidStoreArgument, match="job_cls"):
        MongoBackgroundJobRepository(mock_connection, dict)  # type: ignore[arg-type]
    repo = MongoBackgroundJobRepository(mock_connection, EmailBatchJob)
    with pytest.raises(InvalidStoreArgument, match="worker_id"):
        await repo.claim_next("")
    with pytest.raises(InvalidStoreArgument, match="processed_items"):
        await repo.update_progress("j", -1)
    with pytest.raises(InvalidStoreArgument, match="use one of"):
        await repo.find_by_status("sleeping")
    with pytest.raises(InvalidStoreArgument, match="limit"):
        await repo.find_by_status("pending", limit=0)
    with pytest.raises(InvalidStoreArgument, match="expects a EmailBatchJob"):
        await repo.add(ReportJob())  # type: ignore[arg-type]
