"""What the snapshot, position and job stores share: where their collection lives, the
indexes they query by (created once, lazily), argument checks and server-error wrapping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from .._gateway import INT64_MAX, Gateway, _Call, check_name
from ..exceptions import InvalidStoreArgument, MongoPersistenceError
from ..roles import ConnectionRole


class CollectionStore:
    """Base of the stores that own one collection (reached through a :class:`Gateway`).

    ``index_specs`` are the indexes the store's queries need: create them at startup with
    :meth:`ensure_indexes`. A write also creates them on first use (``auto_index=True``)
    where that cannot meet an open transaction (see ``Gateway.prepare_indexes``); reads
    never create anything.
    """

    default_collection: ClassVar[str] = ""
    index_specs: ClassVar[Sequence[Any]] = ()
    error_cls: ClassVar[type[MongoPersistenceError]] = MongoPersistenceError

    def __init__(
        self,
        connection: ConnectionRole,
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
        self._gateway = Gateway(connection, database, name, self.error_cls)
        self._auto_index = auto_index
        self._indexed = False
        self._created_in: set[Any] = set()

    @property
    def collection(self) -> Any:
        """The driver collection (resolved again when the connection's client changes)."""
        return self._gateway.collection

    async def ensure_indexes(self) -> list[str]:
        """Create the indexes this store queries by; idempotent. Returns their names."""
        names = await self._gateway.create_indexes(self.index_specs)
        self._indexed = True
        return names

    async def _coll(self, session: Any = None) -> Any:
        """The collection for a write, with its indexes created on first use where safe."""
        if self._auto_index and not self._indexed:
            self._indexed = await self._gateway.prepare_indexes(self.index_specs, session, self._created_in)
        return self._gateway.collection

    def _errors(self, what: str) -> _Call:
        """Bound the call and turn driver errors into this store's library error."""
        return self._gateway.call(f"{what} in '{self.collection_name}'")


#: a non-empty string (the gateway's one name check)
require_name = check_name


def require_int(value: Any, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value > INT64_MAX:
        raise InvalidStoreArgument(f"{what} must be an integer between {minimum} and 2**63-1, got {value!r}")
    return value


def require_limit(value: Any, what: str = "limit") -> int:
    return require_int(value, what, minimum=1)
