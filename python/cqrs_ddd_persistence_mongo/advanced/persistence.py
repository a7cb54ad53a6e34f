"""Persistence bases for a CQRS dispatcher: one class per role, each a thin adapter over a store.

A dispatcher that routes commands and queries to "persistence" objects by role can use
these bases: subclass one, set its class attributes, register it. Each delegates to the
library's stores, so it inherits their checks, time bounds, error translation and, for
writes, their optimistic concurrency:

========================================  ==============================================
``MongoOperationPersistence``             ``persist(entity, uow=None) -> id`` (repository ``add``)
``MongoRetrievalPersistence``             ``retrieve(ids, uow=None) -> [entity]``
``MongoQueryPersistence``                 ``fetch(ids, uow=None) -> [dto]`` (``to_dto`` per document)
``MongoQuerySpecificationPersistence``    ``fetch(criteria, uow=None) -> SearchResult`` of DTOs
``MongoProjectionQueryPersistence``       as ``MongoQueryPersistence``, over a projection store
``MongoProjectionSpecPersistence``        as the specification variant, over a projection store
``MongoProjectionDualPersistence``        both, plus ``refresh`` / ``refresh_batch`` writes
========================================  ==============================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from .._gateway import Gateway
from ..connection import MongoConnectionManager
from ..core._session import session_of
from ..core.repository import MongoRepository
from ..core.search import SearchResult, search_collection
from ..exceptions import MongoPersistenceError, MongoQueryError
from ..roles import UnitOfWorkRole
from .projection_store import MongoProjectionStore

T_Entity = TypeVar("T_Entity")
T_Result = TypeVar("T_Result")
T_ID = TypeVar("T_ID")


class _CollectionRole:
    """Class attributes shared by the connection-based roles."""

    connection: MongoConnectionManager
    collection_name: str
    id_field: str = "id"
    database: str | None = None

    def _require(self, *names: str) -> None:
        missing = [n for n in names if getattr(self, n, None) is None]
        if missing:
            raise MongoPersistenceError(
                f"{type(self).__name__} needs the class attribute(s) {', '.join(missing)}: set them on the subclass"
            )

    def _repository(self, model_cls: type[Any]) -> MongoRepository[Any, Any]:
        """One repository per model class, built on first use."""
        self._require("connection", "collection_name")
        cache: dict[type[Any], MongoRepository[Any, Any]] = self.__dict__.setdefault("_repositories", {})
        repository = cache.get(model_cls)
        if repository is None:
            repository = cache[model_cls] = MongoRepository(
                self.connection, self.collection_name, model_cls, id_field=self.id_field, database=self.database
            )
        return repository

    def _search(
        self, criteria: Any, uow: UnitOfWorkRole | None, decode: Callable[[dict[str, Any]], T_Result]
    ) -> SearchResult[T_Result]:
        gateway = self._gateway()
        return search_collection(
            gateway.collection,
            criteria,
            session=session_of(uow),
            decode=decode,
            adapter=self.connection.driver(),
            gateway=gateway,
        )

    def _gateway(self) -> Gateway:
        """The role's collection, bounded and with driver errors translated (built on first use)."""
        self._require("connection", "collection_name")
        gateway: Gateway | None = self.__dict__.get("_role_gateway")
        if gateway is None:
            gateway = self.__dict__["_role_gateway"] = Gateway(
                self.connection, self.database, self.collection_name, MongoQueryError
            )
        return gateway


class MongoOperationPersistence(_CollectionRole, ABC, Generic[T_Entity, T_ID]):
    """Command-side writes: ``persist`` saves the aggregate through a :class:`MongoRepository`.

    Guarantee: the repository's (one atomic document write, version-checked when the model
    has a ``version``: a stale copy raises ``VersionMismatchError`` and writes nothing).
    ``events`` is accepted for interface compatibility; events travel through the event
    store or outbox, not through this call.
    """

    async def persist(self, entity: T_Entity, uow: UnitOfWorkRole | None = None, events: Sequence[Any] | None = None) -> T_ID:
        await self._repository(type(entity)).add(entity, uow=uow)
        return getattr(entity, self.id_field)  # type: ignore[no-any-return]


class MongoRetrievalPersistence(_CollectionRole, ABC, Generic[T_Entity, T_ID]):
    """Command-side reads: ``retrieve(ids)`` loads aggregates of ``model_cls`` (missing ids skipped)."""

    model_cls: type[T_Entity]

    async def retrieve(self, ids: Sequence[T_ID], uow: UnitOfWorkRole | None = None) -> list[T_Entity]:
        self._require("model_cls")
        entities: list[T_Entity] = await self._repository(self.model_cls).list_all(list(ids), uow=uow)
        return entities


class MongoQueryPersistence(_CollectionRole, ABC, Generic[T_Result, T_ID]):
    """Query-side reads by id: each stored document (``_id`` included) goes through ``to_dto``."""

    @abstractmethod
    def to_dto(self, doc: dict[str, Any]) -> T_Result:
        """A stored document as the query's result type."""

    async def fetch(self, ids: Sequence[T_ID], uow: UnitOfWorkRole | None = None) -> list[T_Result]:
        if isinstance(ids, (str, bytes)):
            raise MongoPersistenceError(f"fetch takes a list of ids, not the single id {ids!r}: use [{ids!r}]")
        if not ids:
            return []
        return await self._search({"op": "in", "attr": "_id", "val": list(ids)}, uow, self.to_dto).to_list()


class MongoQuerySpecificationPersistence(_CollectionRole, ABC, Generic[T_Result]):
    """Query-side reads by specification (a Specification, its dict form or ``QueryOptions``)."""

    @abstractmethod
    def to_dto(self, doc: dict[str, Any]) -> T_Result:
        """A stored document as the query's result type."""

    def fetch(self, criteria: Any, uow: UnitOfWorkRole | None = None) -> SearchResult[T_Result]:
        """A :class:`SearchResult`: ``await`` it for a list, or ``.stream()`` it."""
        return self._search(criteria, uow, self.to_dto)


class _ProjectionRole(ABC, Generic[T_Result]):
    """Reads of one projection collection through a :class:`MongoProjectionStore`."""

    collection: str

    def __init__(self, store: MongoProjectionStore) -> None:
        self._store = store

    @property
    def reader(self) -> MongoProjectionStore:
        return self._store

    @abstractmethod
    def to_dto(self, doc: dict[str, Any]) -> T_Result:
        """A projection document (its key under the store's ``id_field``) as a result."""


class MongoProjectionQueryPersistence(_ProjectionRole[T_Result], Generic[T_Result, T_ID]):
    """Projection reads by id, in the order of ``ids`` (missing ids skipped)."""

    async def fetch(self, ids: Sequence[T_ID], uow: UnitOfWorkRole | None = None) -> list[T_Result]:
        if isinstance(ids, (str, bytes)):
            raise MongoPersistenceError(f"fetch takes a list of ids, not the single id {ids!r}: use [{ids!r}]")
        if not ids:
            return []
        id_field = self._store.id_field
        docs = await self._store.find(self.collection, {id_field: {"$in": list(ids)}}, uow=uow)
        by_id = {doc[id_field]: doc for doc in docs}
        return [self.to_dto(by_id[i]) for i in dict.fromkeys(ids) if i in by_id]


class MongoProjectionSpecPersistence(_ProjectionRole[T_Result]):
    """Projection reads by criteria: ``build_filter`` turns them into a MongoDB filter.

    The default accepts this library's specifications (and their dict form), objects with
    ``to_mongo_filter()`` or ``to_filter_dict()``, and plain filter dicts. Every filter is
    checked by the store (no ``$where`` / ``$function``). ``fetch`` takes the criteria, or
    ``QueryOptions`` carrying a specification and pagination (default: 100 documents).
    """

    default_limit: int = 100

    def build_filter(self, criteria: Any) -> dict[str, Any]:
        from ..query_builder import MongoQueryBuilder
        from ..specifications import Specification

        if criteria is None:
            return {}
        if isinstance(criteria, Specification) or (isinstance(criteria, Mapping) and "op" in criteria):
            return MongoQueryBuilder().build_match(cast("Specification | dict[str, Any]", criteria))
        for method in ("to_mongo_filter", "to_filter_dict"):
            if callable(getattr(criteria, method, None)):
                return dict(getattr(criteria, method)())
        if isinstance(criteria, Mapping):
            return dict(criteria)
        raise MongoPersistenceError(
            f"{type(self).__name__} cannot turn a {type(criteria).__name__} into a filter: override build_filter()"
        )

    async def fetch(self, criteria: Any, uow: UnitOfWorkRole | None = None) -> list[T_Result]:
        spec, limit, offset = criteria, self.default_limit, 0
        if hasattr(criteria, "specification") and not isinstance(criteria, Mapping):
            spec = criteria.specification
            limit = getattr(criteria, "limit", None) or self.default_limit
            offset = getattr(criteria, "offset", None) or 0
        docs = await self._store.find(self.collection, self.build_filter(spec), limit=limit, skip=offset, uow=uow)
        return [self.to_dto(doc) for doc in docs]


class MongoProjectionDualPersistence(MongoProjectionQueryPersistence[T_Result, T_ID], MongoProjectionSpecPersistence[T_Result]):
    """Reads by id and by criteria, plus the writes a projection handler needs.

    ``fetch`` takes a list of ids or criteria: a sequence that is not a mapping, string or
    specification is a list of ids.
    """

    @property
    def writer(self) -> MongoProjectionStore:
        return self._store

    async def fetch(self, criteria: Any, uow: UnitOfWorkRole | None = None) -> list[T_Result]:
        if isinstance(criteria, (list, tuple)):
            return await MongoProjectionQueryPersistence.fetch(self, criteria, uow=uow)
        return await MongoProjectionSpecPersistence.fetch(self, criteria, uow=uow)

    async def refresh(
        self,
        id_: T_ID,
        data: Mapping[str, Any] | Any,
        *,
        event_position: int | None = None,
        event_id: str | None = None,
        uow: UnitOfWorkRole | None = None,
    ) -> bool:
        """Upsert one projection document (the store's guarantee: position-guarded, idempotent)."""
        if not isinstance(data, Mapping) and hasattr(data, "model_dump"):
            data = data.model_dump()
        return await self._store.upsert(
            self.collection, id_, dict(data), event_position=event_position, event_id=event_id, uow=uow
        )

    async def refresh_batch(self, docs: Sequence[Mapping[str, Any] | Any], *, id_field: str = "id", uow: UnitOfWorkRole | None = None) -> None:
        """Upsert many projection documents (the store's ``bulk_upsert`` guarantee)."""
        rows = [d.model_dump() if not isinstance(d, Mapping) and hasattr(d, "model_dump") else dict(d) for d in docs]
        await self._store.bulk_upsert(self.collection, rows, id_field=id_field, uow=uow)
