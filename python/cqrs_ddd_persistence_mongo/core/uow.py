"""MongoUnitOfWork: one driver session and one multi-document transaction per block.

Two ways to get a session (both from the original library):

* **self-managed** (recommended): ``MongoUnitOfWork(connection=connection)`` starts a
  session from the connection's client on entry and ends it on exit;
* **client-managed**: ``MongoUnitOfWork(session=session)`` uses a session the caller
  started and leaves it open (the caller ends it).

Every session/transaction call goes through the connection's :class:`DriverAdapter`, so
PyMongo async, Motor and mongomock-motor behave the same here.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.errors import PyMongoError

from .._gateway import TRANSIENT, UNKNOWN_COMMIT, call, deadline, translate
from ..connection import DriverAdapter, MongoConnectionManager
from ..exceptions import MongoPersistenceError, MongoUnitOfWorkError, TransactionsNotSupported, VersionMismatchError
from ..roles import ConnectionRole

logger = logging.getLogger(__name__)

R = TypeVar("R")
Hook = Callable[[], Any]

#: Same budget as the drivers' ``with_transaction``: retry for at most 120 seconds.
DEFAULT_RETRY_TIME_LIMIT = 120.0
_BACKOFF_BASE = 0.005
_BACKOFF_CAP = 0.5

# Connections (or session clients) already warned about running without transactions.
_warned: weakref.WeakSet[Any] = weakref.WeakSet()
# Managers wrapped around the clients of client-managed sessions passed without a
# connection, so their ``hello`` is asked once per client too.
_client_managers: weakref.WeakKeyDictionary[Any, MongoConnectionManager] = weakref.WeakKeyDictionary()


def has_error_label(exc: BaseException | None, label: str) -> bool:
    """True when ``exc`` or an exception it was raised from carries the driver ``label``.

    Library errors translated from driver errors (``raise ... from exc``) keep the
    label reachable, so :meth:`MongoUnitOfWork.run` retries them like the driver would.
    Only explicit causes are followed: an error merely raised *while handling* a
    transient one (implicit context) is the caller's own and is not retried.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        check = getattr(exc, "has_error_label", None)
        if isinstance(exc, (PyMongoError, MongoPersistenceError)) and check is not None and check(label):
            return True
        exc = exc.__cause__
    return False


def raised_by_server(exc: BaseException | None) -> bool:
    """True when ``exc`` is, or was raised from, a driver error: the server (or the link to
    it) failed the operation, which aborts an open transaction. Errors raised before
    anything was sent (a bad argument, a stale version found by a match count) are not."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PyMongoError):
            return True
        exc = exc.__cause__
    return False


def _max_time_expired(exc: BaseException) -> bool:
    return getattr(exc, "code", None) == 50  # MaxTimeMSExpired: the commit itself timed out


def _connection_for_session(session: Any) -> MongoConnectionManager:
    client = session.client
    try:
        manager = _client_managers.get(client)
    except TypeError:  # client not weak-referenceable: no cache, still correct
        manager = None
    if manager is None:
        manager = MongoConnectionManager(client=client)
        try:
            _client_managers[client] = manager
        except TypeError:
            pass
    return manager


async def _call_hook(hook: Hook) -> None:
    result = hook()
    if inspect.isawaitable(result):
        await result


class MongoUnitOfWork:
    """A transactional boundary: everything done with ``uow=uow`` commits or aborts together.

    ``async with uow:`` starts a transaction when the deployment supports it (replica set
    or mongos; asked once per connection, then cached). Inside the block:

    * leaving the block without an exception commits what is not committed yet;
    * an exception escaping the block aborts it (nothing of it is committed);
    * ``await uow.commit()`` commits early; the unit of work then starts a fresh
      transaction, so a second commit with nothing written since is a no-op;
    * ``await uow.rollback()`` aborts (and also starts a fresh transaction).

    The transaction starts with ``read_concern`` / ``write_concern`` (default: the
    connection's, ``"snapshot"`` and ``"majority"``): a commit is acknowledged only once a
    majority of members has it, so a failover cannot roll it back.

    On a standalone server ``require_replica_set=True`` (the default) raises
    :class:`TransactionsNotSupported` on entry, before anything is written.
    There, ``require_replica_set=False`` (tests, mongomock, local development) runs without
    a transaction and logs a warning once per connection: every write is then applied
    immediately and ``rollback()`` cannot undo it. Where transactions are supported they
    are always used, whatever ``require_replica_set`` says.

    ``uow.session`` is the driver session every store passes as ``session=`` (``None``
    when not transactional; outside the block it raises). Commit hooks (:meth:`on_commit`) run only after a
    successful commit; rollback hooks (:meth:`on_rollback`) run when work is aborted.
    """

    def __init__(
        self,
        connection: ConnectionRole | None = None,
        session: Any = None,
        *,
        require_replica_set: bool = True,
        read_concern: str | None = None,
        write_concern: str | int | None = None,
    ) -> None:
        if connection is None and session is None:
            raise MongoUnitOfWorkError(
                "MongoUnitOfWork needs connection=MongoConnectionManager(...) or an open session=..."
            )
        if connection is not None and session is not None and getattr(session, "client", None) is not None:
            if connection.is_connected and session.client is not connection.client:
                raise MongoUnitOfWorkError(
                    "the session was started by another client than the connection's: start it "
                    "with 'await connection.driver().start_session(connection.client)' or pass "
                    "only session=..."
                )
        self._connection = connection if connection is not None else _connection_for_session(session)
        self._given_session = session
        self.require_replica_set = require_replica_set
        self._concerns = self._connection.transaction_concerns(read_concern, write_concern)
        self._session: Any = None
        self._transactional = False
        self._active = False
        self._commit_hooks: list[Hook] = []
        self._rollback_hooks: list[Hook] = []
        self._rollback_only: str | None = None

    # --- public state ------------------------------------------------------------
    @property
    def session(self) -> Any:
        """The driver session of the running transaction, or None when not transactional.

        Raises :class:`MongoUnitOfWorkError` outside the ``async with`` block: there is no
        session then, and ``None`` would let a store write outside any transaction.
        """
        if not self._active:
            raise MongoUnitOfWorkError(
                "uow.session is only available inside 'async with MongoUnitOfWork(...) as uow:'"
            )
        return self._session if self._transactional else None

    @property
    def connection(self) -> ConnectionRole:
        return self._connection

    @property
    def transactional(self) -> bool:
        """True while the unit of work runs inside a server transaction."""
        return self._active and self._transactional

    @property
    def is_active(self) -> bool:
        """True between entering and leaving the ``async with`` block."""
        return self._active

    def _adapter(self) -> DriverAdapter:
        return self._connection.driver()

    async def _start_transaction(self) -> None:
        await self._adapter().start_transaction(self._session, *self._concerns)

    # --- lifecycle ---------------------------------------------------------------
    async def __aenter__(self) -> MongoUnitOfWork:
        await self.begin()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Commit when the block ends normally, abort when it raises; then end the session.

        A block that caught a store error which aborted the transaction (a write conflict
        marks the unit of work rollback-only) is rolled back on exit, with a warning: the
        caller has seen that error, and nothing of the block is committed.
        """
        try:
            if exc_type is None and self._active:
                if self._rollback_only is not None:
                    logger.warning("unit of work rolled back on exit: %s", self._rollback_only)
                    await self.rollback()
                else:
                    await self.commit()
        finally:
            await self.close()

    async def begin(self) -> None:
        """Check transaction support, get the session and start the transaction."""
        if self._active:
            raise MongoUnitOfWorkError("this unit of work is already active; use a new one per block")
        with call(self._connection, "starting a unit of work", MongoUnitOfWorkError):
            await self._begin()

    async def _begin(self) -> None:
        supports = await self._connection.supports_transactions()
        if not supports:
            self._refuse_or_warn()
            self._transactional = False
            self._session = None
        else:
            adapter = self._adapter()
            if self._given_session is not None:
                if adapter.in_transaction(self._given_session):
                    raise MongoUnitOfWorkError(
                        "the session passed in is already in a transaction; commit or abort it "
                        "first, or pass a fresh session"
                    )
                self._session = self._given_session
            else:
                self._session = await adapter.start_session(self._connection.client)
            self._transactional = True
            try:
                await self._start_transaction()
            except BaseException:
                await self._end_own_session()
                self._session, self._transactional = None, False
                raise
        self._active = True
        self._rollback_only = None

    def _refuse_or_warn(self) -> None:
        if self.require_replica_set:
            raise TransactionsNotSupported(
                "this MongoDB deployment does not support transactions (a standalone server, "
                "or a client without sessions such as mongomock): MongoUnitOfWork needs a "
                "replica set or mongos, e.g. 'mongodb://host:27017/?replicaSet=rs0' after "
                "rs.initiate(). For tests or local development pass require_replica_set=False "
                "(writes are then applied one by one, without atomicity). Nothing was written."
            )
        key = self._connection
        if key not in _warned:
            _warned.add(key)
            logger.warning(
                "MongoUnitOfWork runs WITHOUT transactions on this connection "
                "(require_replica_set=False): writes are applied immediately and "
                "rollback() cannot undo them"
            )

    async def close(self) -> None:
        """Abort whatever is uncommitted and end a self-managed session (idempotent).

        Called by ``__aexit__`` after its commit; calling it directly discards
        uncommitted work.
        """
        if not self._active:
            return
        try:
            if self._transactional and self._adapter().in_transaction(self._session):
                await self._abort_quietly()
                await self._run_rollback_hooks()
        finally:
            self._active = False
            self._commit_hooks.clear()
            self._rollback_hooks.clear()
            await self._end_own_session()
            self._session = None
            self._transactional = False

    async def _end_own_session(self) -> None:
        session = self._session
        if session is not None and self._given_session is None:
            try:
                await self._adapter().end_session(session)
            except PyMongoError as exc:  # ending a session never fails the caller
                logger.warning("ending the MongoDB session failed: %s", exc)

    async def _abort_quietly(self) -> None:
        try:
            await self._adapter().abort_transaction(self._session)
        except PyMongoError as exc:  # the server may have aborted already; nothing to undo
            logger.debug("abortTransaction failed (ignored): %s", exc)

    def _require_active(self, what: str) -> None:
        if not self._active:
            raise MongoUnitOfWorkError(
                f"{what}() outside the unit of work: use 'async with MongoUnitOfWork(...) as uow:'"
            )

    # --- commit / rollback ---------------------------------------------------------
    async def commit(self, *, time_limit: float = DEFAULT_RETRY_TIME_LIMIT) -> None:
        """Commit the transaction, then run the commit hooks.

        Guarantee: all writes made with ``uow=self`` since the last commit become visible
        together, or none do. ``UnknownTransactionCommitResult`` (network error or
        failover during commit) is retried for up to ``time_limit`` seconds; commit is
        idempotent on the server, so a retry never commits twice. Any other failure
        raises :class:`MongoUnitOfWorkError` (the driver error is its ``__cause__``; a
        ``TransientTransactionError`` stays detectable, see :meth:`run`) and the
        transaction is aborted.
        """
        self._require_active("commit")
        if self._rollback_only is not None:
            reason = self._rollback_only
            await self.rollback()
            raise MongoUnitOfWorkError(f"cannot commit: {reason}; the unit of work was rolled back")
        if self._transactional:
            with call(self._connection, "committing the unit of work", MongoUnitOfWorkError):
                await self._commit_with_retry(time_limit)
        hooks, self._commit_hooks = self._commit_hooks, []
        self._rollback_hooks.clear()
        if self._transactional:
            await self._start_transaction()
        await self._run_commit_hooks(hooks)

    async def _commit_with_retry(self, time_limit: float) -> None:
        adapter = self._adapter()
        started = time.monotonic()
        bound = self._connection.operation_timeout
        if bound is not None:
            time_limit = min(time_limit, bound)
        while True:
            try:
                await adapter.commit_transaction(self._session)
                return
            except PyMongoError as exc:
                retry = (
                    has_error_label(exc, UNKNOWN_COMMIT)
                    and not _max_time_expired(exc)
                    and time.monotonic() - started < time_limit
                )
                if retry:
                    logger.info("commit result unknown (%s); retrying the commit", exc)
                    continue
                await self._abort_quietly()
                await self._run_rollback_hooks()
                self._commit_hooks.clear()
                await self._start_transaction()
                error = translate(exc, "committing the unit of work", MongoUnitOfWorkError)
                if error is None or isinstance(error, VersionMismatchError):
                    error = MongoUnitOfWorkError(f"transaction commit failed: {exc}")
                raise error from exc

    async def rollback(self) -> None:
        """Abort the transaction (discarding commit hooks) and start a fresh one.

        Without a transaction there is nothing to abort: writes already happened.
        """
        self._require_active("rollback")
        self._commit_hooks.clear()
        self._rollback_only = None
        if self._transactional:
            adapter = self._adapter()
            if adapter.in_transaction(self._session):
                await self._abort_quietly()
            await self._run_rollback_hooks()
            await self._start_transaction()
        else:
            self._rollback_hooks.clear()

    def set_rollback_only(self, reason: str) -> None:
        """Doom the current transaction: the next commit() rolls back and raises.

        Stores call this when a failed write may have left part of its batch in the
        transaction, so a caller that catches the error cannot commit half of it.
        """
        if self._rollback_only is None:
            self._rollback_only = reason

    # --- hooks -----------------------------------------------------------------------
    def on_commit(self, hook: Hook) -> None:
        """Run ``hook()`` (sync or async) after the next successful commit only.

        May be called before entering the block: the hook waits for the block's commit.
        Hooks run in registration order; a rollback discards them. If one raises, the
        others still run and the first error is re-raised (the commit itself stands).
        """
        self._commit_hooks.append(hook)

    add_commit_hook = on_commit

    def on_rollback(self, hook: Hook) -> None:
        """Run ``hook()`` when the current transaction's work is aborted (LIFO order).

        Repositories use this to restore in-memory versions of aggregates whose save
        was rolled back. Discarded after a successful commit.
        """
        self._rollback_hooks.append(hook)

    async def _run_commit_hooks(self, hooks: list[Hook]) -> None:
        first: BaseException | None = None
        for hook in hooks:
            try:
                await _call_hook(hook)
            except Exception as exc:  # noqa: BLE001 - reported after the others ran
                logger.exception("commit hook %r failed", hook)
                first = first or exc
        if first is not None:
            raise first

    async def _run_rollback_hooks(self) -> None:
        hooks, self._rollback_hooks = self._rollback_hooks, []
        for hook in reversed(hooks):
            try:
                await _call_hook(hook)
            except Exception:  # noqa: BLE001 - a rollback must finish
                logger.exception("rollback hook %r failed", hook)

    # --- retrying a whole block ---------------------------------------------------------
    async def run(
        self,
        fn: Callable[[MongoUnitOfWork], Awaitable[R]],
        *,
        time_limit: float = DEFAULT_RETRY_TIME_LIMIT,
    ) -> R:
        """Run ``await fn(uow)`` and commit, retrying the whole block on transient errors.

        Like the drivers' ``with_transaction``: when ``fn`` or the commit fails with a
        ``TransientTransactionError`` (write conflict, failover, ...), the transaction is
        aborted (rollback hooks restore in-memory aggregate versions), and ``fn`` runs
        again after a jittered exponential backoff, for at most ``time_limit`` seconds.
        ``fn`` must therefore be safe to repeat: load what it changes inside the block.
        The whole run, retries included, is bounded by the connection's ``operation_timeout``.
        Any other exception aborts and propagates. Works on a fresh unit of work (then
        ``run`` enters and leaves it itself) or on an entered one; in the latter case
        commit first anything done before ``run``, since a retry aborts it with the
        failed attempt and only ``fn`` is repeated.
        """
        if not self._active:
            async with self:
                return await self.run(fn, time_limit=time_limit)
        bound = self._connection.operation_timeout
        if bound is not None:
            time_limit = min(time_limit, bound)
        with deadline(self._connection):  # errors of fn are the caller's: not translated
            return await self._run(fn, time_limit)

    async def _run(self, fn: Callable[[MongoUnitOfWork], Awaitable[R]], time_limit: float) -> R:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                result = await fn(self)
                await self.commit(time_limit=max(0.0, time_limit - (time.monotonic() - started)))
                return result
            except BaseException as exc:
                transient = self._transactional and has_error_label(exc, TRANSIENT)
                if self._active:
                    await self.rollback()
                if not transient or time.monotonic() - started >= time_limit:
                    raise
                delay = random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * (2**attempt)))
                attempt += 1
                logger.info("transient transaction error (%s); retry %d in %.3fs", exc, attempt, delay)
                await asyncio.sleep(delay)

    def __repr__(self) -> str:
        mode = "transactional" if self._transactional else "non-transactional"
        state = "active" if self._active else "inactive"
        return f"<MongoUnitOfWork {mode} {state}>"
