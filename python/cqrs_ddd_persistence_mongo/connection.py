"""MongoConnectionManager and the one adapter that absorbs driver differences.

Three clients work: PyMongo's ``AsyncMongoClient`` (the default the manager builds),
Motor's ``AsyncIOMotorClient`` and mongomock-motor's ``AsyncMongoMockClient`` (passed as
``client=``). How a session starts, how a transaction starts and ends, and how a cursor
becomes a list differ between them; :class:`DriverAdapter` is the only place that knows.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pymongo
from pymongo.errors import ConfigurationError, InvalidURI, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from ._tasks import keep_until_done
from .exceptions import InvalidStoreArgument, MongoConnectionError

logger = logging.getLogger(__name__)

#: the deadline a caller chose with time_limit(); while set, stores do not apply their own
_CALLER_LIMIT: ContextVar[float | None] = ContextVar("cqrs_ddd_mongo_time_limit", default=None)


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Run the enclosed calls under one deadline of ``seconds`` (shorter or longer than the
    connection's ``operation_timeout``); they raise :class:`OperationTimedOut` past it.

    ``with time_limit(2): await repo.search(spec)`` bounds a search with a user pattern.
    Works with PyMongo async and Motor (the deadline is a context variable the driver reads).
    """
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise InvalidStoreArgument(f"time_limit needs a positive number of seconds, got {seconds!r}")
    token = _CALLER_LIMIT.set(float(seconds))
    try:
        with pymongo.timeout(float(seconds)):
            yield
    finally:
        _CALLER_LIMIT.reset(token)


DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000
#: Seconds any one public store operation may take before it raises OperationTimedOut.
#: Where ``MongoConnectionManager()`` connects when given neither url nor client.
DEFAULT_URL = "mongodb://localhost:27017"
DEFAULT_OPERATION_TIMEOUT = 30.0
#: Transactions read a snapshot and commit only once a majority of members has the writes.
DEFAULT_TRANSACTION_READ_CONCERN = "snapshot"
DEFAULT_TRANSACTION_WRITE_CONCERN: str | int = "majority"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class DriverAdapter:
    """Driver differences in one place.

    * PyMongo async: ``start_session()`` is a plain call, ``start_transaction()`` a coroutine.
    * Motor: ``start_session()`` is a coroutine, ``start_transaction()`` a plain call.
    * mongomock-motor: no sessions or transactions at all.
    """

    def __init__(self, client: Any) -> None:
        modules = {cls.__module__.split(".")[0] for cls in type(client).__mro__}
        if "mongomock_motor" in modules or "mongomock" in modules:
            self.kind = "mongomock"
        elif "motor" in modules:
            self.kind = "motor"
        else:
            self.kind = "pymongo"

    @property
    def supports_sessions(self) -> bool:
        return self.kind != "mongomock"

    async def start_session(self, client: Any) -> Any:
        return await _maybe_await(client.start_session())

    async def start_transaction(
        self, session: Any, read_concern: ReadConcern | None = None, write_concern: WriteConcern | None = None
    ) -> None:
        options: dict[str, Any] = {}
        if read_concern is not None:
            options["read_concern"] = read_concern
        if write_concern is not None:
            options["write_concern"] = write_concern
        await _maybe_await(session.start_transaction(**options))

    async def commit_transaction(self, session: Any) -> None:
        await _maybe_await(session.commit_transaction())

    async def abort_transaction(self, session: Any) -> None:
        await _maybe_await(session.abort_transaction())

    async def end_session(self, session: Any) -> None:
        await _maybe_await(session.end_session())

    @staticmethod
    def in_transaction(session: Any) -> bool:
        return bool(session is not None and getattr(session, "in_transaction", False))

    @staticmethod
    async def aggregate(collection: Any, pipeline: list[Any], **kwargs: Any) -> Any:
        """An aggregation cursor: a coroutine in PyMongo async, a plain call in Motor."""
        return await _maybe_await(collection.aggregate(pipeline, **kwargs))

    @staticmethod
    async def to_list(cursor: Any, length: int | None = None) -> list[Any]:
        """Drain a cursor; every driver accepts ``length`` positionally."""
        return list(await cursor.to_list(length))


def adapter_for(client: Any) -> DriverAdapter:
    return DriverAdapter(client)


class MongoConnectionManager:
    """Owns one client (connection pool) and hands out databases.

    Built clients use ``tz_aware=True`` and ``uuidRepresentation="standard"`` so datetimes
    come back aware (UTC) and UUIDs round-trip. ``connect()`` pings the server and raises
    :class:`MongoConnectionError` within ``server_selection_timeout_ms`` when it cannot.

    ``operation_timeout`` (seconds, default 30; ``None`` = unbounded) bounds every store
    operation: the built client gets it as ``timeoutMS`` (the driver's client-side operation
    timeout, which also sends ``maxTimeMS`` to the server) and each public store call runs
    under one deadline of that length, so a stalled or dead server raises
    ``OperationTimedOut`` / ``ConnectionFailed`` instead of waiting. A ``timeoutMS`` in the
    URL or ``client_options`` wins for the client. ``transaction_read_concern`` /
    ``transaction_write_concern`` (default ``"snapshot"`` / ``"majority"``) are what every
    unit of work's transaction starts with (see docs/gateway.md for their cost).
    """

    def __init__(
        self,
        url: str | None = None,
        database: str | None = None,
        client: Any = None,
        *,
        max_pool_size: int | None = None,
        min_pool_size: int | None = None,
        max_idle_time_ms: int | None = None,
        connect_timeout_ms: int | None = None,
        socket_timeout_ms: int | None = None,
        server_selection_timeout_ms: int | None = None,
        driver: str = "pymongo",
        operation_timeout: float | None = DEFAULT_OPERATION_TIMEOUT,
        transaction_read_concern: str | None = DEFAULT_TRANSACTION_READ_CONCERN,
        transaction_write_concern: str | int | None = DEFAULT_TRANSACTION_WRITE_CONCERN,
        **client_options: Any,
    ) -> None:
        if client is None and not url:
            url = DEFAULT_URL
        if driver not in ("pymongo", "motor"):
            raise MongoConnectionError(f"driver must be 'pymongo' or 'motor', not {driver!r}")
        if operation_timeout is not None and (
            isinstance(operation_timeout, bool) or not isinstance(operation_timeout, (int, float)) or operation_timeout <= 0
        ):
            raise InvalidStoreArgument(
                f"operation_timeout must be a positive number of seconds or None, not {operation_timeout!r}"
            )
        self.url = url
        self.database_name = database
        self.operation_timeout: float | None = None if operation_timeout is None else float(operation_timeout)
        self.transaction_read_concern = transaction_read_concern
        self.transaction_write_concern = transaction_write_concern
        self._client = client
        self._owns_client = client is None
        self._driver = driver
        explicit = {
            "maxPoolSize": max_pool_size,
            "minPoolSize": min_pool_size,
            "maxIdleTimeMS": max_idle_time_ms,
            "connectTimeoutMS": connect_timeout_ms,
            # 0 means "no timeout", which the driver spells None
            "socketTimeoutMS": socket_timeout_ms or None,
            "serverSelectionTimeoutMS": server_selection_timeout_ms,
        }
        self._options: dict[str, Any] = {
            # what core/_event_codec.EVENT_CODEC reproduces: raw event batches are decoded alike
            "tz_aware": True,
            "uuidRepresentation": "standard",
            **{k: v for k, v in explicit.items() if v is not None},
            **client_options,
        }
        # Our defaults apply only where neither the caller nor the URL chose a value.
        for key, value in self._DEFAULTS.items():
            if key not in self._options and key.lower() not in self._url_options():
                self._options[key] = value
        given_timeout = self._options.get("timeoutMS", self._options.get("timeoutms", self._url_timeout_ms()))
        if given_timeout is None:
            if self.operation_timeout is not None:
                self._options["timeoutMS"] = int(self.operation_timeout * 1000)
        elif given_timeout is not None and operation_timeout == DEFAULT_OPERATION_TIMEOUT:
            self.operation_timeout = float(given_timeout) / 1000 or None
        self._connected = False
        self._hello: dict[str, Any] | None = None
        self.adapter: DriverAdapter | None = adapter_for(client) if client is not None else None

    _DEFAULTS: dict[str, Any] = {
        "serverSelectionTimeoutMS": DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
        "connectTimeoutMS": 10_000,
    }

    def _selection_timeout(self) -> float | None:
        """Seconds ``connect()`` and ``health_check()`` wait for a server: the server selection
        timeout (the client's operation timeout would otherwise replace it)."""
        value = self._options.get("serverSelectionTimeoutMS")
        return None if value is None else float(value) / 1000

    def _url_timeout_ms(self) -> float | None:
        """The ``timeoutMS`` given in the URL's query string, if any."""
        if not self.url or "?" not in self.url:
            return None
        for part in self.url.split("?", 1)[1].replace(";", "&").split("&"):
            name, _, value = part.partition("=")
            if name.lower() == "timeoutms":
                try:
                    return float(value)
                except ValueError:
                    return None
        return None

    def _url_options(self) -> set[str]:
        """Lower-cased names of the options given in the URL's query string."""
        if not self.url or "?" not in self.url:
            return set()
        query = self.url.split("?", 1)[1]
        return {part.split("=", 1)[0].lower() for part in query.replace(";", "&").split("&") if part}

    # --- lifecycle ------------------------------------------------------------
    def _build_client(self) -> Any:
        try:
            if self._driver == "motor":
                try:
                    from motor.motor_asyncio import AsyncIOMotorClient
                except ImportError as exc:
                    raise MongoConnectionError(
                        "driver='motor' needs Motor, which is not installed: "
                        "pip install 'cqrs-ddd-persistence-mongo[motor]', or use the default driver='pymongo'"
                    ) from exc

                return AsyncIOMotorClient(self.url, **self._options)
            from pymongo import AsyncMongoClient

            return AsyncMongoClient(self.url, **self._options)
        except (InvalidURI, ConfigurationError, ValueError, TypeError) as exc:
            raise MongoConnectionError(
                f"invalid MongoDB URL or option ({exc}); expected 'mongodb://host:port/?replicaSet=...'"
            ) from exc

    async def connect(self) -> MongoConnectionManager:
        """Build the client (unless one was given) and check that the server answers."""
        if self._connected:
            return self
        if self._client is None:
            self._client = self._build_client()
            self.adapter = adapter_for(self._client)
        try:
            with pymongo.timeout(self._selection_timeout()):
                await self._client.admin.command("ping")
        except PyMongoError as exc:
            if self._owns_client:
                await self._close_client()
            raise MongoConnectionError(
                f"cannot reach MongoDB at {self._redacted_url()}: {exc}. "
                "Check that the server runs and the URL, credentials and network are right."
            ) from exc
        self._connected = True
        return self

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _maybe_await(client.close())

    async def disconnect(self) -> None:
        """Close the client if this manager built it; a client passed in is left to its owner."""
        if self._owns_client:
            await self._close_client()
        self._connected = False
        self._hello = None

    def close(self) -> asyncio.Task[None]:
        """Close now, awaited or not: ``connection.close()`` and ``await connection.close()``
        both work.

        The manager lets go of its client at once (it is no longer connected); closing the
        driver client's sockets runs as a task on the running loop, which the returned task
        lets you await; the library holds that task until it ends, so a close that is not
        awaited still finishes. Called outside a running event loop it raises
        :class:`MongoConnectionError` (use ``await connection.disconnect()`` in async code).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise MongoConnectionError(
                "close() needs a running event loop: call 'await connection.close()' from async code"
            ) from None
        client = self._client if self._owns_client else None
        if self._owns_client:
            self._client = None
        self._connected = False
        self._hello = None
        return keep_until_done(loop.create_task(_maybe_await(None if client is None else client.close())))

    async def __aenter__(self) -> MongoConnectionManager:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.disconnect()

    # --- access ---------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def client(self) -> Any:
        """The driver client; built on first use when this manager owns it (the driver then
        connects with the first operation, so ``connect()`` is optional: it only checks early
        that the server answers)."""
        if self._client is None:
            if not self._owns_client:
                raise MongoConnectionError("the client passed in was closed; pass an open client=...")
            self._client = self._build_client()
            self.adapter = adapter_for(self._client)
        return self._client

    def db(self, name: str | None = None) -> Any:
        """The database ``name``, else the manager's default database."""
        name = name or self.database_name or self._default_database_from_url()
        if not name:
            raise MongoConnectionError(
                "no database name: pass database=... to MongoConnectionManager or db(name)"
            )
        return self.client[name]

    def driver(self) -> DriverAdapter:
        if self.adapter is None:
            self.adapter = adapter_for(self.client)  # builds the client on first use
        return self.adapter

    def _default_database_from_url(self) -> str | None:
        if not self.url:
            return None
        from pymongo.uri_parser import parse_uri

        try:
            return parse_uri(self.url).get("database")
        except (InvalidURI, ConfigurationError, ValueError):
            return None

    def _redacted_url(self) -> str:
        url = self.url or "<client>"
        if "@" in url and "://" in url:
            scheme, rest = url.split("://", 1)
            return f"{scheme}://***@{rest.split('@', 1)[1]}"
        return url

    def transaction_concerns(
        self, read_concern: str | None = None, write_concern: str | int | None = None
    ) -> tuple[ReadConcern | None, WriteConcern | None]:
        """The driver concern objects a transaction starts with (arguments override the
        connection's ``transaction_read_concern`` / ``transaction_write_concern``)."""
        read = read_concern if read_concern is not None else self.transaction_read_concern
        write = write_concern if write_concern is not None else self.transaction_write_concern
        try:
            return (
                None if read is None else ReadConcern(read),
                None if write is None else WriteConcern(w=write),
            )
        except (TypeError, ValueError, ConfigurationError) as exc:
            raise InvalidStoreArgument(f"invalid transaction concern ({exc}); e.g. 'snapshot' and 'majority'") from exc

    # --- server facts -----------------------------------------------------------
    async def health_check(self) -> bool:
        """True when the server answers a ping now."""
        if self._client is None:
            return False
        try:
            with pymongo.timeout(self._selection_timeout()):
                await self._client.admin.command("ping")
            return True
        except PyMongoError as exc:
            logger.warning("MongoDB health check failed: %s", exc)
            return False

    async def server_hello(self) -> dict[str, Any]:
        """The server's ``hello`` reply, fetched once per connection and cached."""
        if self._hello is None:
            try:
                self._hello = dict(await self.client.admin.command("hello"))
            except NotImplementedError:  # mongomock
                self._hello = {}
            except PyMongoError as exc:
                raise MongoConnectionError(f"'hello' failed on {self._redacted_url()}: {exc}") from exc
        return self._hello

    async def supports_transactions(self) -> bool:
        """True on a replica set member or a mongos (cached per connection)."""
        if not self.driver().supports_sessions:
            return False
        hello = await self.server_hello()
        return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
