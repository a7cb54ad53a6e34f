"""What the snapshot, position and job stores share: where their collection lives, the
indexes they query by (created once, lazily), argument checks and server-error wrapping."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

from bson.errors import InvalidDocument as BsonInvalidDocument
from pymongo.errors import PyMongoError

from ..exceptions import InvalidDocument, InvalidStoreArgument, MongoPersistenceError
from ..indexes import ensure_indexes, ensure_store_indexes


class CollectionStore:
    """Base of the stores that own one collection.

    ``index_specs`` are the indexes the store's queries need. They are created on first
    use (``auto_index=True``) so a store's guarantees and speed never depend on someone
    remembering to call :meth:`ensure_indexes`; creating an existing index is a no-op.
    """

    default_collection: ClassVar[str] = ""
    index_specs: ClassVar[Sequence[Any]] = ()
    error_cls: ClassVar[type[MongoPersistenceError]] = MongoPersistenceError

    def __init__(
        self,
        connection: Any,
        database: str | None = None,
        collection: str | None = None,
        *,
        auto_index: bool = True,
    ) -> None:
        name = collection or self.default_collection
        require_name(name, "collection")
        self._connection = connection
        self._database = database
        self.collection_name = name
        self._auto_index = auto_index
        self._indexed = False

    @property
    def collection(self) -> Any:
        """The driver collection (resolved on each access: the connection may reconnect)."""
        return self._connection.db(self._database)[self.collection_name]

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes this store queries by; idempotent. Returns their names."""
        names = await ensure_indexes(self.collection, self.index_specs)
        self._indexed = True
        return names

    async def _coll(self, session: Any = None) -> Any:
        """The collection, with its indexes created on first use (inside ``session``'s
        transaction when that is the only safe place, see ``ensure_store_indexes``)."""
        if self._auto_index and not self._indexed:
            self._indexed = await ensure_store_indexes(self._connection, self.collection, self.index_specs, session)
        return self.collection

    def _errors(self, what: str) -> Any:
        """Re-raise driver errors as this store's library error, saying what failed."""
        return store_errors(self.error_cls, f"{what} in '{self.collection_name}'")


@contextmanager
def store_errors(error_cls: type[MongoPersistenceError], what: str) -> Iterator[None]:
    """Driver errors -> ``error_cls``; unencodable values -> ``InvalidDocument``."""
    try:
        yield
    except BsonInvalidDocument as exc:
        raise InvalidDocument(
            f"{what}: a value cannot be stored as BSON ({exc}); convert it first, e.g. "
            "with model_dump(mode='json') or the model mapper"
        ) from exc
    except PyMongoError as exc:
        raise error_cls(f"{what} failed: {exc}") from exc


def require_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidStoreArgument(f"{what} must be a non-empty string, got {value!r}")
    return value


def require_int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidStoreArgument(f"{what} must be an integer >= {minimum}, got {value!r}")
    return value


def require_limit(value: Any, what: str = "limit") -> int:
    return require_int(value, what, minimum=1)
