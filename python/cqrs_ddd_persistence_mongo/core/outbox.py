"""MongoOutboxStorage: the transactional outbox, with leases, retries and dead letters.

One field drives delivery: ``next_attempt_at`` is set while a message may still be
published (pending: its creation time; failed: when the retry is due; publishing: when the
lease expires) and ``None`` once it is final (published or dead). "Due" means
``next_attempt_at <= now``, one indexed range. Details in docs/outbox.md.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo.errors import BulkWriteError

from .._gateway import Gateway, check_key, check_name, duplicate_key_index

from ..domain.events import utc_now
from ..domain.outbox import OutboxMessage, OutboxStatus
from ..exceptions import InvalidOutboxMessage, OutboxError
from ..roles import ConnectionRole, UnitOfWorkRole
from ._documents import checked_mapping
from ._session import session_of
from .search import search_collection
from .outbox_publisher import OutboxPublisher

PENDING = OutboxStatus.PENDING.value
PUBLISHING = OutboxStatus.PUBLISHING.value
PUBLISHED = OutboxStatus.PUBLISHED.value
FAILED = OutboxStatus.FAILED.value
DEAD = OutboxStatus.DEAD.value

_CLAIM_ATTEMPTS = 3
_CLAIM_SPREAD = 4
_CAS_ATTEMPTS = 10

__all__ = ["MongoOutboxStorage", "OutboxPublisher"]


def _to_document(message: Any) -> dict[str, Any]:
    """The original library's outbox document for ``message`` (duck typed), new messages due at once."""
    message_id = getattr(message, "message_id", None)
    if message_id is None or message_id == "":
        raise InvalidOutboxMessage("an outbox message needs a message_id (usually the event id)")
    event_type = getattr(message, "event_type", None)
    if not isinstance(event_type, str) or not event_type:
        raise InvalidOutboxMessage(f"outbox message {message_id!r}: event_type must be a non-empty string")
    created_at = getattr(message, "created_at", None) or utc_now()
    if not isinstance(created_at, datetime):
        raise InvalidOutboxMessage(f"outbox message {message_id!r}: created_at must be a datetime")
    status = getattr(message, "status", PENDING) or PENDING
    status = getattr(status, "value", status)
    if status not in (PENDING, FAILED):
        raise InvalidOutboxMessage(
            f"outbox message {message_id!r}: new messages are saved as 'pending' (or 'failed'), not {status!r}"
        )
    check_key(message_id, "message_id")
    correlation_id = getattr(message, "correlation_id", None)
    if correlation_id is not None:
        check_key(correlation_id, f"outbox message {message_id!r}: correlation_id")
    return {
        "_id": message_id,
        "event_type": event_type,
        "payload": checked_mapping(getattr(message, "payload", None), f"outbox message {message_id!r}: payload",
                                   InvalidOutboxMessage),
        "metadata": checked_mapping(getattr(message, "metadata", None), f"outbox message {message_id!r}: metadata",
                                    InvalidOutboxMessage),
        "status": status,
        "retry_count": int(getattr(message, "retry_count", 0) or 0),
        "error": getattr(message, "error", None),
        "created_at": created_at,
        "published_at": None,
        "next_attempt_at": getattr(message, "next_attempt_at", None) or created_at,
        "correlation_id": correlation_id,
        "locked_by": None,
    }


def _from_document(doc: Mapping[str, Any]) -> OutboxMessage:
    get: Callable[..., Any] = doc.get
    return OutboxMessage(
        message_id=doc["_id"],
        event_type=doc["event_type"],
        payload=get("payload") or {},
        metadata=get("metadata") or {},
        created_at=get("created_at"),
        status=get("status", PENDING),
        retry_count=get("retry_count", 0),
        error=get("error"),
        published_at=get("published_at"),
        next_attempt_at=get("next_attempt_at"),
        correlation_id=get("correlation_id"),
        locked_by=get("locked_by"),
    )


class MongoOutboxStorage:
    """Outbox messages in one collection (default ``outbox``).

    ``max_retries`` failed retries after the first attempt move a message to ``dead``;
    the n-th failure waits ``retry_backoff * 2**(n-1)`` (at most ``max_backoff``).
    Times are the publishers' clocks: keep leases much longer than their clock skew.
    """

    def __init__(
        self,
        connection: ConnectionRole,
        database: str | None = None,
        collection: str = "outbox",
        *,
        max_retries: int = 5,
        retry_backoff: timedelta = timedelta(seconds=1),
        max_backoff: timedelta = timedelta(minutes=5),
    ) -> None:
        if max_retries < 0:
            raise OutboxError(f"max_retries must be >= 0, not {max_retries}")
        self._connection = connection
        self._database = database
        self.collection_name = collection
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self._indexes_ready = False
        self._gateway = Gateway(connection, database, collection, OutboxError)
        self._created_in: set[Any] = set()

    def _collection(self) -> Any:
        return self._gateway.collection

    def _call(self, what: str) -> Any:
        return self._gateway.call(f"{what} in '{self.collection_name}'")

    _INDEXES = (("next_attempt_at", 1), ("status", 1, "created_at", 1))

    async def ensure_indexes(self) -> None:
        """Indexes for due messages and dead letters (idempotent). Call it at startup;
        otherwise the first save creates them where that cannot meet an open transaction."""
        await self._gateway.create_indexes(self._INDEXES)
        self._indexes_ready = True

    async def _ready(self, session: Any = None) -> None:
        if not self._indexes_ready:
            self._indexes_ready = await self._gateway.prepare_indexes(self._INDEXES, session, self._created_in)

    async def _find_docs(self, filter_: dict[str, Any], sort: list[tuple[str, int]], limit: int,
                         projection: dict[str, Any] | None = None, session: Any = None) -> list[dict[str, Any]]:
        cursor = self._collection().find(
            filter_, projection, sort=sort or None, limit=limit, batch_size=limit or 1000, session=session
        )
        return await self._gateway.to_list(cursor, None)

    async def _find(self, filter_: dict[str, Any], sort: list[tuple[str, int]], limit: int,
                    session: Any = None) -> list[OutboxMessage]:
        return [_from_document(doc) for doc in await self._find_docs(filter_, sort, limit, None, session)]

    async def _update_many(self, filter_: dict[str, Any], update: dict[str, Any], session: Any = None) -> int:
        result = await self._collection().update_many(filter_, update, session=session)
        return int(result.modified_count)

    def _and_spec(self, filter_: dict[str, Any], specification: Any) -> dict[str, Any]:
        """``filter_`` AND the compiled ``specification`` (field ``message_id`` means ``_id``)."""
        if specification is None:
            return filter_
        match = search_collection(self._collection(), specification, field_names={"message_id": "_id"}).filter
        return {"$and": [filter_, match]} if match else filter_

    # --- writing ----------------------------------------------------------------------
    async def save_messages(self, messages: Iterable[Any], uow: UnitOfWorkRole | None = None) -> None:
        """Store new messages, due at once; an empty list is a no-op.

        With ``uow=`` the insert is part of the caller's transaction: the messages exist
        exactly when the rest of the unit of work commits. Without, one ordered insert:
        a failure keeps the messages before it. Not idempotent: a message id already
        saved raises :class:`OutboxError` (and aborts the transaction).
        """
        docs = [_to_document(message) for message in messages]
        if not docs:
            return
        session = session_of(uow)
        with self._call("saving outbox messages"):
            await self._ready(session)
            try:
                await self._collection().insert_many(docs, ordered=True, session=session)
            except BulkWriteError as exc:
                error = (exc.details.get("writeErrors") or [{}])[0]
                if duplicate_key_index(error) is not None:
                    raise OutboxError(
                        f"outbox message {docs[error.get('index', 0)]['_id']!r} is already saved; "
                        "message ids must be unique (use the event id)"
                    ) from exc
                raise OutboxError(f"saving outbox messages failed: {error.get('errmsg', exc)}") from exc

    async def claim_batch(self, worker_id: str, limit: int = 100,
                          lease: timedelta = timedelta(seconds=30)) -> list[OutboxMessage]:
        """Lease up to ``limit`` due messages to ``worker_id``, among the oldest due.

        Atomic per message: each one is leased to exactly one caller (a conditional update
        on ``next_attempt_at``), so concurrent publishers never get the same message while
        its lease runs. When the lease expires before ``mark_published``/``mark_failed``
        (the publisher died), the message is due again: delivery is at least once.
        Three round trips: pick candidates, lease them with one token, read what was won.
        Each claimer picks ``limit`` of the ``4 * limit`` oldest due messages at random, so
        concurrent publishers rarely race for the same ones; the batch is returned oldest first.
        """
        check_name(worker_id, "worker_id")
        if type(limit) is not int or limit <= 0:
            raise OutboxError(f"limit must be a positive int, not {limit!r}")
        if not isinstance(lease, timedelta):
            raise OutboxError(f"lease must be a timedelta, not {lease!r}")
        with self._call("claiming outbox messages"):
            return await self._claim(worker_id, limit, lease)

    async def _claim(self, worker_id: str, limit: int, lease: timedelta) -> list[OutboxMessage]:
        await self._ready()
        for _ in range(_CLAIM_ATTEMPTS):
            now = utc_now()
            due = {"next_attempt_at": {"$lte": now}}
            due_ids = [doc["_id"] for doc in await self._find_docs(
                due, [("next_attempt_at", 1)], limit * _CLAIM_SPREAD, {"_id": 1})]
            if not due_ids:
                return []
            picked = sorted(random.sample(range(len(due_ids)), min(limit, len(due_ids))))
            candidates = [due_ids[i] for i in picked]
            token = uuid.uuid4().hex
            won = await self._update_many(
                {"_id": {"$in": candidates}, **due},
                {"$set": {"status": PUBLISHING, "locked_by": worker_id, "lease_token": token,
                          "next_attempt_at": now + lease}},
            )
            if won:
                claimed = await self._find({"_id": {"$in": candidates}, "lease_token": token}, [], 0)
                order = {message_id: i for i, message_id in enumerate(candidates)}
                return sorted(claimed, key=lambda m: order.get(m.message_id, 0))
            # another publisher leased every candidate first: pick again
        return []

    async def release(self, ids: Iterable[Any], worker_id: str) -> int:
        """Give leased messages back (due now) without counting a failure; returns how many.

        Only messages still leased to ``worker_id`` are released. Idempotent.
        """
        ids = _checked_ids(ids)
        check_name(worker_id, "worker_id")
        if not ids:
            return 0
        with self._call("releasing outbox messages"):
            return await self._update_many(
                {"_id": {"$in": ids}, "status": PUBLISHING, "locked_by": worker_id},
                {"$set": {"status": PENDING, "locked_by": None, "next_attempt_at": utc_now()}},
            )

    async def mark_published(self, ids: Iterable[Any], uow: UnitOfWorkRole | None = None) -> int:
        """Mark messages published (final); returns how many changed. Idempotent, one round trip.

        With ``uow=`` the change commits (or vanishes) with the unit of work.
        """
        ids = _checked_ids(ids)
        if not ids:
            return 0
        session = session_of(uow)
        with self._call("marking outbox messages published"):
            return await self._update_many(
                {"_id": {"$in": ids}, "status": {"$ne": PUBLISHED}},
                {"$set": {"status": PUBLISHED, "published_at": utc_now(), "next_attempt_at": None, "locked_by": None}},
                session,
            )

    def backoff(self, failures: int) -> timedelta:
        """How long the ``failures``-th failure waits before the next attempt."""
        delay: timedelta = min(self.retry_backoff * (2 ** max(failures - 1, 0)), self.max_backoff)
        return delay

    async def mark_failed(self, message_id: Any, error: str, uow: UnitOfWorkRole | None = None) -> str:
        """Record a failed attempt; returns the new status ('failed' or 'dead').

        Atomic compare-and-set on ``retry_count``: concurrent calls each count once.
        A failed message is due again after :meth:`backoff`; after ``max_retries`` retries
        it becomes ``dead`` with its last error. A published or dead message is left as is.
        With ``uow=`` the change commits (or vanishes) with the unit of work.
        """
        check_key(message_id, "message_id")
        session = session_of(uow)
        with self._call(f"marking outbox message {message_id!r} failed"):
            return await self._mark_failed(message_id, error, session)

    async def _mark_failed(self, message_id: Any, error: str, session: Any = None) -> str:
        collection = self._collection()
        for _ in range(_CAS_ATTEMPTS):
            doc = await collection.find_one({"_id": message_id}, {"status": 1, "retry_count": 1}, session=session)
            if doc is None:
                raise OutboxError(f"no outbox message {message_id!r} in '{self.collection_name}'")
            if doc.get("status") in (PUBLISHED, DEAD):
                return str(doc["status"])
            failures = int(doc.get("retry_count", 0)) + 1
            now = utc_now()
            dead = failures > self.max_retries
            update = {
                "status": DEAD if dead else FAILED,
                "retry_count": failures,
                "error": str(error),
                "locked_by": None,
                "next_attempt_at": None if dead else now + self.backoff(failures),
            }
            result = await collection.update_one(
                {"_id": message_id, "status": doc.get("status"), "retry_count": doc.get("retry_count", 0)},
                {"$set": update},
                session=session,
            )
            if result.matched_count:
                return str(update["status"])
        raise OutboxError(f"outbox message {message_id!r} kept changing under mark_failed; retry")

    async def requeue_dead(self, ids: Iterable[Any] | None = None) -> int:
        """Return dead messages (all when ``ids`` is None) to pending with a fresh retry budget.

        Keeps their last error for the record. Idempotent; returns how many were requeued.
        """
        filter_: dict[str, Any] = {"status": DEAD}
        if ids is not None:
            filter_["_id"] = {"$in": _checked_ids(ids)}
        with self._call("requeueing dead outbox messages"):
            return await self._update_many(
                filter_,
                {"$set": {"status": PENDING, "retry_count": 0, "next_attempt_at": utc_now(), "locked_by": None}},
            )

    async def _schedule_original_messages(self, *, dry_run: bool = False) -> int:
        """Give pending and failed messages written by the original library (no
        ``next_attempt_at``) the field that makes them due: their ``created_at`` (now when
        they have no creation date). Returns how many were (or, with ``dry_run``, would be)
        scheduled.

        Guarantee: two ``update_many`` (dated messages, then the rest) whose filters need the
        field missing, so it is idempotent and never touches a message this package wrote;
        each document changes atomically, a crash halfway leaves the rest for the next run.
        """
        filter_ = {"status": {"$in": [PENDING, FAILED]}, "next_attempt_at": {"$exists": False}}
        with self._call("scheduling outbox messages written by the original library"):
            if dry_run:
                return int(await self._collection().count_documents(filter_))
            dated = await self._collection().update_many(
                {**filter_, "created_at": {"$type": "date"}}, [{"$set": {"next_attempt_at": "$created_at"}}]
            )
            undated = await self._collection().update_many(filter_, {"$set": {"next_attempt_at": utc_now()}})
            return int(dated.modified_count) + int(undated.modified_count)

    # --- reading ----------------------------------------------------------------------
    async def get_pending(
        self, limit: int = 100, uow: UnitOfWorkRole | None = None, *, specification: Any = None
    ) -> list[OutboxMessage]:
        """Due messages (new, retries due, expired leases), oldest due first, without leasing.

        For a single publisher (the original library's loop); concurrent publishers use :meth:`claim_batch`.
        ``uow=`` reads in its transaction (its own uncommitted messages included);
        ``specification=`` keeps only matching messages (field ``message_id`` is ``_id``).
        """
        _check_limit(limit)
        session = session_of(uow)
        filter_ = self._and_spec({"next_attempt_at": {"$lte": utc_now()}}, specification)
        with self._call("reading pending outbox messages"):
            return await self._find(filter_, [("next_attempt_at", 1)], limit, session)

    async def get_dead(self, limit: int = 100) -> list[OutboxMessage]:
        """Dead letters, oldest first, with their last error."""
        _check_limit(limit)
        with self._call("reading dead outbox messages"):
            return await self._find({"status": DEAD}, [("status", 1), ("created_at", 1)], limit)

    async def get_message(self, message_id: Any) -> OutboxMessage | None:
        """The message with ``message_id``, or None."""
        check_key(message_id, "message_id")
        with self._call(f"reading outbox message {message_id!r}"):
            docs = await self._find({"_id": message_id}, [], 1)
        return docs[0] if docs else None


def _checked_ids(ids: Any) -> list[Any]:
    if isinstance(ids, (str, bytes, Mapping)) or not isinstance(ids, Iterable):
        raise OutboxError(f"ids must be a list of message ids, not {type(ids).__name__}")
    return [check_key(message_id, "message id") for message_id in ids]


def _check_limit(limit: Any) -> None:
    if type(limit) is not int or limit <= 0:
        raise OutboxError(f"limit must be a positive int, not {limit!r}")
