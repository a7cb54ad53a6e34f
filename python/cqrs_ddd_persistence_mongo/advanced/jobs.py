"""MongoBackgroundJobRepository: a job queue where each job is claimed by exactly one worker.

Jobs are documents of a ``BaseBackgroundJob`` subclass, converted by ``MongoDBModelMapper``
(``id`` -> ``_id``, ``version`` -> ``_version``, enums by value, aware datetimes).

Two kinds of writes:

* **state transitions** (``claim_next``, ``mark_completed``, ``mark_failed``,
  ``mark_for_retry``, ``request_cancellation``) are single conditional
  ``find_one_and_update`` statements: atomic, they check the status they start from (and
  the owning worker when ``worker_id=`` is given), and bump ``_version`` so a stale full
  save (:meth:`add` of an old copy) fails with a version conflict instead of undoing them;
* **progress reports** (``update_progress``, ``heartbeat``) set only their own fields and
  leave ``_version`` alone: the claiming worker's copy stays current, so its later save or
  transition never conflicts with its own progress reports.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Generic

from pymongo import ReturnDocument
from typing_extensions import TypeVar

from .._gateway import check_key
from ..core._session import session_of
from ..core.model_mapper import MongoDBModelMapper
from ..core.repository import MongoRepository
from ..domain import BaseBackgroundJob, JobStatus, utc_now
from ..exceptions import BackgroundJobError, InvalidStoreArgument
from ..roles import ConnectionRole, UnitOfWorkRole
from ._store import CollectionStore, require_int, require_limit, require_name

#: the job class; ``MongoBackgroundJobRepository`` without a parameter stores ``BaseBackgroundJob``
J = TypeVar("J", bound=BaseBackgroundJob, default=BaseBackgroundJob)

_PENDING, _RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
_COMPLETED, _FAILED = JobStatus.COMPLETED.value, JobStatus.FAILED.value
_CANCELLED = JobStatus.CANCELLED.value
_MAX_REFILLS = 8
_CANDIDATE_TTL_SECONDS = 5.0


def _status_values(statuses: Any) -> list[str]:
    """One status or many (JobStatus or its string value) -> the stored values."""
    items = [statuses] if isinstance(statuses, (str, JobStatus)) else list(statuses or ())
    if not items:
        raise InvalidStoreArgument("statuses must name at least one JobStatus")
    try:
        return [JobStatus(s).value for s in items]
    except ValueError as exc:
        raise InvalidStoreArgument(f"{exc}; use one of {[s.value for s in JobStatus]}") from exc


def _status_filter(values: list[str]) -> Any:
    """Equality for one status (every planner uses the status index for it), else ``$in``."""
    return values[0] if len(values) == 1 else {"$in": values}


def _id_of(job_or_id: Any) -> Any:
    job_id = job_or_id.id if isinstance(job_or_id, BaseBackgroundJob) else job_or_id
    return check_key(job_id, "job_id")


class MongoBackgroundJobRepository(CollectionStore, Generic[J]):
    """Persist, claim and track background jobs of ``job_cls``.

    ``stale_job_timeout_seconds`` is how long a running job may go without a heartbeat
    before :meth:`get_stale_jobs` reports it. ``claim_prefetch`` is how many of the oldest
    pending ids :meth:`claim_next` reads at once (0: one sorted ``find_one_and_update`` per
    claim; see :meth:`claim_next`).
    """

    default_collection = "background_jobs"
    index_specs = (
        {"keys": ("status", 1, "created_at", 1, "_id", 1), "name": "status_created"},
        {"keys": ("status", 1, "job_type", 1, "created_at", 1, "_id", 1), "name": "status_type_created"},
        {"keys": ("status", 1, "heartbeat_at", 1), "name": "status_heartbeat"},
        {"keys": ("status", 1, "updated_at", 1), "name": "status_updated"},
    )
    error_cls = BackgroundJobError

    def __init__(
        self,
        connection: ConnectionRole,
        job_cls: type[J] = BaseBackgroundJob,  # type: ignore[assignment]
        collection: str = "background_jobs",
        stale_job_timeout_seconds: int = 3600,
        *,
        database: str | None = None,
        auto_index: bool = True,
        claim_prefetch: int = 16,
    ) -> None:
        if not (isinstance(job_cls, type) and issubclass(job_cls, BaseBackgroundJob)):
            raise InvalidStoreArgument(f"job_cls must be a BaseBackgroundJob subclass, got {job_cls!r}")
        require_int(stale_job_timeout_seconds, "stale_job_timeout_seconds", minimum=1)
        super().__init__(connection, database, collection, auto_index=auto_index)
        self.job_cls = job_cls
        self.mapper: MongoDBModelMapper[J] = MongoDBModelMapper(job_cls)
        self.stale_job_timeout_seconds = stale_job_timeout_seconds
        self._repository: MongoRepository[J, Any] = MongoRepository(
            connection, self.collection_name, job_cls, database=database, mapper=self.mapper
        )
        self.claim_prefetch = require_int(claim_prefetch, "claim_prefetch")
        self._candidates: dict[Any, tuple[float, deque[Any]]] = {}

    # --- whole-job reads and writes -------------------------------------------------
    async def add(self, job: J, *, uow: UnitOfWorkRole | None = None) -> J:
        """Insert a new job or save a changed one: :meth:`MongoRepository.add`.

        Guarantee: one atomic statement. A new job (version 0) is inserted; a second insert
        of the same id raises ``DuplicateEntityError``. A loaded job is replaced only if its
        stored version is still ``job.version``, else ``VersionMismatchError`` (a transition
        happened meanwhile: reload). On success ``job.version`` is the stored one.
        """
        if not isinstance(job, self.job_cls):
            raise InvalidStoreArgument(f"add() expects a {self.job_cls.__name__}, got {type(job).__name__}")
        with self._errors("saving a job"):
            await self._coll(session_of(uow))  # indexes first
        await self._repository.add(job, uow)
        return job

    save = add

    async def get(self, job_id: Any, *, uow: UnitOfWorkRole | None = None) -> J | None:
        """The job with ``job_id``, or None."""
        return await self._repository.get(_id_of(job_id), uow)

    # --- claiming -------------------------------------------------------------------
    async def claim_next(
        self, worker_id: str, job_types: Iterable[str] | None = None, *, uow: UnitOfWorkRole | None = None
    ) -> J | None:
        """Claim the oldest pending job (of ``job_types``, if given) for ``worker_id``.

        Guarantee: atomic (one ``find_one_and_update`` matching ``status == pending``), so
        of any number of concurrent workers exactly one gets each job; the others get the
        next one or None when the queue is empty (a pending job whose cancellation was
        requested is already cancelled, see :meth:`request_cancellation`). With ``claim_prefetch > 1`` the
        repository reads the ids of the oldest pending jobs in one query and claims them one
        by one by ``_id`` (a cheap point update instead of a sorted search per claim), in
        random order within the batch so workers of different processes rarely race for
        the same job; workers sharing the repository take distinct candidates, a
        candidate someone else took is skipped, candidates older than a few seconds are
        re-read. Order is then "the oldest batch first"; exactly-once is unchanged. Jobs whose cancellation was requested
        are skipped. The claimed job comes back running, owned by ``worker_id``, with a
        fresh heartbeat and its new version. A crash after the claim leaves the job
        running; :meth:`get_stale_jobs` finds it once its heartbeat is old.
        """
        require_name(worker_id, "worker_id")
        query: dict[str, Any] = {"status": _PENDING}
        sort = [("created_at", 1), ("_id", 1)]
        if job_types is not None:
            types = [job_types] if isinstance(job_types, str) else list(job_types)
            for job_type in types:
                require_name(job_type, "job_types entry")
            query["job_type"] = {"$in": types}
        now = utc_now()
        update = {
            "$set": {"status": _RUNNING, "worker_id": worker_id, "started_at": now, "heartbeat_at": now, "updated_at": now},
            "$inc": {"_version": 1},
        }
        if self.claim_prefetch <= 1:
            return await self._transition("claiming a job", query, update, uow, sort=sort)
        key = tuple(sorted(query["job_type"]["$in"])) if "job_type" in query else None
        for _ in range(_MAX_REFILLS):
            queue = self._fresh_candidates(key)
            while queue:
                job = await self._claim_candidate(queue.popleft(), query, update, uow)
                if job is not None:
                    return job
            if not await self._refill(key, query, sort, uow):
                return None
        # every candidate went to other workers _MAX_REFILLS times in a row: claim directly
        return await self._transition("claiming a job", query, update, uow, sort=sort)

    async def _claim_candidate(self, job_id: Any, query: dict[str, Any], update: Any, uow: UnitOfWorkRole | None) -> J | None:
        """Claim one candidate by ``_id``: the conditional point update is the claim; the job
        is read back right after (a plain update by ``_id`` is the cheapest atomic write on
        every server, where some scan for a ``findAndModify`` with extra conditions)."""
        session = session_of(uow)
        with self._errors("claiming a job"):
            collection = await self._coll(session)
            result = await collection.update_one({"_id": job_id, **query}, update, session=session)
            if result.modified_count != 1:
                return None
            doc = await collection.find_one({"_id": job_id}, session=session)
        return None if doc is None else self.mapper.from_doc(doc)

    def _fresh_candidates(self, key: Any) -> deque[Any]:
        read_at, queue = self._candidates.get(key, (0.0, deque()))
        return queue if time.monotonic() - read_at < _CANDIDATE_TTL_SECONDS else deque()

    async def _refill(self, key: Any, query: dict[str, Any], sort: list[Any], uow: UnitOfWorkRole | None) -> bool:
        """Read the ids of the oldest ``claim_prefetch`` pending jobs as claim candidates."""
        collection = self.collection
        with self._errors("finding jobs to claim"):
            cursor = collection.find(query, {"_id": 1}, session=session_of(uow)).sort(sort).limit(self.claim_prefetch)
            docs = await self._gateway.to_list(cursor, self.claim_prefetch)
        ids = [doc["_id"] for doc in docs]
        random.shuffle(ids)  # workers of other processes read the same batch: spread them out
        self._candidates[key] = (time.monotonic(), deque(ids))
        return bool(docs)

    async def update_progress(
        self,
        job_id: Any,
        processed_items: int,
        *,
        total_items: int | None = None,
        worker_id: str | None = None,
        uow: UnitOfWorkRole | None = None,
    ) -> bool:
        """Record progress of a running job (also counts as a heartbeat).

        Guarantee: one atomic field update that does not touch ``_version`` (no conflict
        with the worker's own claim or later save); applies only while the job runs (and
        is owned by ``worker_id``, if given). Returns False when it did not apply: the
        job finished, was requeued, or belongs to another worker now.
        """
        require_int(processed_items, "processed_items")
        fields: dict[str, Any] = {"processed_items": processed_items}
        if total_items is not None:
            fields["total_items"] = require_int(total_items, "total_items")
        return await self._touch(job_id, fields, worker_id, uow)

    async def heartbeat(self, job_id: Any, *, worker_id: str | None = None, uow: UnitOfWorkRole | None = None) -> bool:
        """Tell the repository a running job is alive (see :meth:`update_progress`)."""
        return await self._touch(job_id, {}, worker_id, uow)

    async def _touch(self, job_id: Any, fields: dict[str, Any], worker_id: str | None, uow: UnitOfWorkRole | None) -> bool:
        now = utc_now()
        query = self._owned(job_id, [_RUNNING], worker_id)
        with self._errors(f"updating job {job_id!r}"):
            collection = await self._coll(session_of(uow))
            result = await collection.update_one(
                query, {"$set": {**fields, "heartbeat_at": now, "updated_at": now}}, session=session_of(uow)
            )
        matched: int = result.matched_count
        return matched == 1

    # --- transitions ----------------------------------------------------------------
    async def mark_completed(self, job_id: Any, *, worker_id: str | None = None, uow: UnitOfWorkRole | None = None) -> J | None:
        """Running -> completed. Atomic and fenced (see the module docstring); returns the
        job, or None if it was not running (or not owned by ``worker_id``)."""
        now = utc_now()
        update = {"$set": {"status": _COMPLETED, "completed_at": now, "updated_at": now}, "$inc": {"_version": 1}}
        return await self._transition(f"completing job {job_id!r}", self._owned(job_id, [_RUNNING], worker_id), update, uow)

    async def mark_failed(
        self, job_id: Any, error: str, *, worker_id: str | None = None, uow: UnitOfWorkRole | None = None
    ) -> J | None:
        """Pending or running -> failed with ``error``. Atomic; returns the job or None."""
        update = {
            "$set": {"status": _FAILED, "error_message": str(error), "updated_at": utc_now()},
            "$inc": {"_version": 1},
        }
        query = self._owned(job_id, [_PENDING, _RUNNING], worker_id)
        return await self._transition(f"failing job {job_id!r}", query, update, uow)

    async def mark_for_retry(
        self, job_id: Any, error: str | None = None, *, worker_id: str | None = None, uow: UnitOfWorkRole | None = None
    ) -> J | None:
        """Running or failed -> pending again (``retry_count + 1``), or -> failed once
        ``retry_count`` has reached ``max_retries``.

        Guarantee: one atomic pipeline update that decides retry-or-fail on the stored
        counters, so concurrent retries never exceed ``max_retries``. Returns the job (look
        at its ``status`` to see which way it went), or None if it was in neither state.
        """
        can_retry = {"$lt": ["$retry_count", "$max_retries"]}
        stage: dict[str, Any] = {
            "status": {"$cond": [can_retry, _PENDING, _FAILED]},
            "retry_count": {"$cond": [can_retry, {"$add": ["$retry_count", 1]}, "$retry_count"]},
            "worker_id": {"$cond": [can_retry, None, "$worker_id"]},
            "updated_at": utc_now(),
            "_version": {"$add": ["$_version", 1]},
        }
        if error is not None:
            stage["error_message"] = {"$literal": str(error)}
        query = self._owned(job_id, [_RUNNING, _FAILED], worker_id)
        return await self._transition(f"retrying job {job_id!r}", query, [{"$set": stage}], uow)

    async def request_cancellation(self, job_id: Any, *, uow: UnitOfWorkRole | None = None) -> J | None:
        """Cancel a job: a pending one is cancelled at once; a running one gets
        ``cancellation_requested`` set, and its worker should stop when it sees it.

        Guarantee: each branch is one atomic conditional update; a job claimed between the
        two is caught by the second. Returns the job, or None if it had already finished.
        """
        now = utc_now()
        pending = {"$set": {"status": _CANCELLED, "cancellation_requested": True, "updated_at": now}, "$inc": {"_version": 1}}
        job = await self._transition(
            f"cancelling job {job_id!r}", self._owned(job_id, [_PENDING], None), pending, uow
        )
        if job is not None:
            return job
        running = {"$set": {"cancellation_requested": True, "updated_at": now}, "$inc": {"_version": 1}}
        return await self._transition(
            f"cancelling job {job_id!r}", self._owned(job_id, [_RUNNING], None), running, uow
        )

    async def is_cancellation_requested(self, job_id: Any, *, uow: UnitOfWorkRole | None = None) -> bool:
        """True once :meth:`request_cancellation` was called for the job (or it is cancelled)."""
        collection = self.collection
        with self._errors(f"reading job {job_id!r}"):
            doc = await collection.find_one(
                {"_id": _id_of(job_id)}, {"cancellation_requested": 1, "status": 1}, session=session_of(uow)
            )
        return bool(doc) and (bool(doc.get("cancellation_requested")) or doc.get("status") == _CANCELLED)

    def _owned(self, job_id: Any, statuses: list[str], worker_id: str | None) -> dict[str, Any]:
        query: dict[str, Any] = {"_id": _id_of(job_id), "status": {"$in": statuses}}
        if worker_id is not None:
            query["worker_id"] = require_name(worker_id, "worker_id")
        return query

    async def _transition(
        self,
        what: str,
        query: dict[str, Any],
        update: Any,
        uow: UnitOfWorkRole | None,
        sort: list[Any] | None = None,
    ) -> J | None:
        """One atomic conditional update; the job after it, or None if nothing matched."""
        with self._errors(what):
            collection = await self._coll(session_of(uow))
            doc = await collection.find_one_and_update(
                query, update, sort=sort, return_document=ReturnDocument.AFTER, session=session_of(uow)
            )
        return None if doc is None else self.mapper.from_doc(doc)

    # --- queries --------------------------------------------------------------------
    async def get_stale_jobs(
        self, timeout_seconds: int | None = None, limit: int = 100, *, uow: UnitOfWorkRole | None = None
    ) -> list[J]:
        """Running jobs without a heartbeat for ``timeout_seconds`` (default: the
        repository's ``stale_job_timeout_seconds``), longest silent first."""
        timeout = self.stale_job_timeout_seconds if timeout_seconds is None else timeout_seconds
        require_int(timeout, "timeout_seconds")
        cutoff = utc_now() - timedelta(seconds=timeout)
        query = {"status": _RUNNING, "heartbeat_at": {"$lt": cutoff}}
        return await self._find(query, [("status", 1), ("heartbeat_at", 1)], limit, 0, uow)

    async def find_by_status(
        self,
        statuses: Any = None,
        limit: int = 100,
        offset: int = 0,
        *,
        status: Any = None,
        uow: UnitOfWorkRole | None = None,
    ) -> list[J]:
        """Jobs in any of ``statuses`` (one status or several; ``status=`` is the original library's
        spelling), newest first, paged by ``limit``/``offset``."""
        values = _status_values(statuses if statuses is not None else status)
        require_int(offset, "offset")
        query = {"status": _status_filter(values)}
        return await self._find(query, [("created_at", -1), ("_id", -1)], limit, offset, uow)

    async def count_by_status(self, *, uow: UnitOfWorkRole | None = None) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status present, zero included)."""
        collection = self.collection
        counts: dict[JobStatus, int] = {}
        with self._errors("counting jobs"):
            for status in JobStatus:
                counts[status] = await collection.count_documents({"status": status.value}, session=session_of(uow))
        return counts

    async def purge_completed(
        self, before: datetime, *, statuses: Any = JobStatus.COMPLETED, uow: UnitOfWorkRole | None = None
    ) -> int:
        """Delete finished jobs last updated before ``before``; returns how many.

        Guarantee: one ``delete_many``, atomic per job, idempotent; only jobs in
        ``statuses`` (completed by default) are touched, never pending or running ones.
        """
        if not isinstance(before, datetime):
            raise InvalidStoreArgument(f"before must be a datetime, got {before!r}")
        values = _status_values(statuses)
        if {_PENDING, _RUNNING} & set(values):
            raise InvalidStoreArgument("purge_completed() never deletes pending or running jobs")
        with self._errors("purging jobs"):
            collection = await self._coll(session_of(uow))
            result = await collection.delete_many(
                {"status": _status_filter(values), "updated_at": {"$lt": before}}, session=session_of(uow)
            )
        deleted: int = result.deleted_count
        return deleted

    async def _find(self, query: dict[str, Any], sort: list[Any], limit: int, offset: int, uow: UnitOfWorkRole | None) -> list[J]:
        require_limit(limit)
        collection = self.collection
        with self._errors("finding jobs"):
            cursor = collection.find(query, session=session_of(uow)).sort(sort).skip(offset).limit(limit)
            docs = await self._gateway.to_list(cursor, limit)
        return self.mapper.from_docs(docs)
