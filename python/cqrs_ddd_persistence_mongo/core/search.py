"""SearchResult: a lazy, server-side search over one collection.

Filter, ordering, pagination and field selection are compiled when the search is created
(bad specifications fail at the call) and applied by the server when it runs. Read-only:
no write guarantees to state; reads see the data as of the cursor's batches (no snapshot
across batches outside a transaction session).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Generic, TypeAlias, cast

from pymongo.errors import OperationFailure
from typing_extensions import TypeVar

from .._gateway import Gateway, _Call, call, client_timeout, guarded_steps
from ..connection import DriverAdapter
from ..exceptions import InvalidSpecification, MongoQueryError
from ..query_builder import MongoQueryBuilder, find_operator
from ..specifications import OperatorRegistry, QueryOptions, Specification

#: what a search selects: a Specification, its dict form, QueryOptions, or None (everything)
Criteria: TypeAlias = Specification | dict[str, Any] | QueryOptions | None
#: the item type: the model for a repository, the raw document (the default) otherwise
T = TypeVar("T", default=dict[str, Any])

DEFAULT_BATCH_SIZE = 100
_NEAR = frozenset({"$near", "$nearSphere"})


def _identity(doc: dict[str, Any]) -> Any:
    return doc


@contextmanager
def _server_errors(collection: Any) -> Iterator[None]:
    """Turn the server's refusal of a filter into a library error that says what to check."""
    try:
        yield
    except OperationFailure as exc:
        name = getattr(collection, "name", "?")
        raise MongoQueryError(
            f"the server rejected the search on '{name}': {exc.details.get('errmsg') if exc.details else exc}; "
            "check the specification (a regex the server's engine does not support, a missing "
            "2dsphere or text index for geometry / text operators)"
        ) from exc


class SearchResult(Generic[T]):
    """``await result`` -> list, ``result.stream(batch_size=...)`` -> async iterator holding one
    batch, ``await result.first()`` -> one item or None, ``await result.count()`` -> server count.

    With selected fields (a projection) items are the raw documents: a partial document
    usually cannot be decoded into the model. Type checkers still see the model type
    there; annotate such a search as ``SearchResult[dict[str, Any]]`` (via ``cast``).
    """

    def __init__(
        self,
        collection: Any,
        filter: dict[str, Any],
        *,
        sort: list[tuple[str, int]] | None = None,
        projection: dict[str, int] | None = None,
        skip: int = 0,
        limit: int | None = None,
        session: Any = None,
        decode: Callable[[dict[str, Any]], T] | None = None,
        adapter: DriverAdapter | None = None,
        gateway: Gateway | None = None,
        timeout: float | None = None,
    ) -> None:
        self.collection = collection
        self._gateway = gateway
        self.timeout = timeout
        self.filter = filter
        self.sort = sort or []
        self.projection = projection
        self.skip = skip
        self.limit = limit
        self.session = session
        self._decode: Callable[[dict[str, Any]], T] = (
            _identity if projection is not None or decode is None else decode
        )
        self._adapter: Any = adapter or DriverAdapter

    def _cursor(self, *, limit: int | None = None, batch_size: int | None = None) -> Any:
        kwargs: dict[str, Any] = {}
        if self.sort:
            kwargs["sort"] = self.sort
        if self.skip:
            kwargs["skip"] = self.skip
        effective = limit if limit is not None else self.limit
        if effective:
            kwargs["limit"] = effective
        if batch_size:
            kwargs["batch_size"] = batch_size
        if self.session is not None:
            kwargs["session"] = self.session
        return self.collection.find(self.filter, self.projection, **kwargs)

    def _what(self) -> str:
        return f"searching '{getattr(self.collection, 'name', '?')}'"

    def _bounded(self) -> _Call:
        """The deadline and error translation around one run (or one streamed batch) of the
        search: the gateway's; without one, ``timeout`` or the client's ``timeoutMS`` as one
        deadline (a caller's ``time_limit()`` wins over both)."""
        if self._gateway is None:
            return call(None, self._what, MongoQueryError, self.timeout or client_timeout(self.collection))
        return self._gateway.call(self._what, self.timeout)

    async def to_list(self) -> list[T]:
        with self._bounded(), _server_errors(self.collection):
            docs = await self._adapter.to_list(self._cursor())
        return [self._decode(doc) for doc in docs]

    def __await__(self) -> Generator[Any, None, list[T]]:
        return self.to_list().__await__()

    async def stream(self, batch_size: int = DEFAULT_BATCH_SIZE) -> AsyncIterator[T]:
        """Yield items as the server sends them; at most one batch is held in memory."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidSpecification(f"batch_size must be an integer >= 1, got {batch_size!r}")
        cursor = self._cursor(batch_size=batch_size)
        if self._gateway is None:
            batches: Any = guarded_steps(cursor, self._bounded)
        else:
            batches = self._gateway.guarded(cursor, self._what, self.timeout)
        try:
            with _server_errors(self.collection):
                async for doc in batches:
                    yield self._decode(doc)
        finally:
            close = getattr(batches, "aclose", None) or getattr(cursor, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result

    async def first(self) -> T | None:
        """The first item in the search's order (one document fetched), or None."""
        with self._bounded(), _server_errors(self.collection):
            docs = await self._adapter.to_list(self._cursor(limit=1), 1)
        return self._decode(docs[0]) if docs else None

    async def count(self) -> int:
        """Number of matching documents, counted by the server; ignores limit/offset (a total)."""
        if find_operator(self.filter, _NEAR):
            raise InvalidSpecification(
                "count() cannot run with 'near' (MongoDB forbids $near in counts); use dwithin to count"
            )
        kwargs: dict[str, Any] = {}
        if self.session is not None:
            kwargs["session"] = self.session
        with self._bounded(), _server_errors(self.collection):
            return int(await self.collection.count_documents(self.filter, **kwargs))


def _renamed(path: Any, names: Mapping[str, str]) -> Any:
    if not isinstance(path, str):
        return path
    head, sep, rest = path.partition(".")
    new = names.get(head)
    return path if new is None else new + sep + rest


def rename_tree(
    tree: Any, names: Mapping[str, str], encode: Callable[[Any], Any] | None = None
) -> Any:
    """``tree`` with the first segment of every field path renamed (model field -> document
    field, e.g. ``id`` -> ``_id``) and, with ``encode``, every value passed through it (the
    mapper's type rules: UUID, Decimal, Enum ...); malformed parts are left for the compiler."""
    if not isinstance(tree, dict):
        return tree
    conditions = tree.get("conditions")
    if isinstance(conditions, (list, tuple)):
        return {**tree, "conditions": [rename_tree(c, names, encode) for c in conditions]}
    if "attr" in tree:
        leaf = {**tree, "attr": _renamed(tree["attr"], names)}
        if encode is not None and "val" in leaf:
            leaf["val"] = encode(leaf["val"])
        return leaf
    return tree


def _renamed_order_field(text: str, names: Mapping[str, str]) -> str:
    text = text.strip()
    sign = text[:1] if text[:1] in ("-", "+") else ""
    return sign + cast(str, _renamed(text[len(sign):], names))


def _renamed_order(item: Any, names: Mapping[str, str]) -> Any:
    if isinstance(item, str):  # one field or several, "-created_at,id"
        return ",".join(_renamed_order_field(part, names) for part in item.split(","))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return (_renamed(item[0], names), item[1])
    return item


def search_collection(
    collection: Any,
    criteria: Criteria = None,
    options: QueryOptions | None = None,
    *,
    session: Any = None,
    decode: Callable[[dict[str, Any]], T] | None = None,
    adapter: DriverAdapter | None = None,
    registry: OperatorRegistry | None = None,
    field_names: Mapping[str, str] | None = None,
    encode_value: Callable[[Any], Any] | None = None,
    gateway: Gateway | None = None,
    timeout: float | None = None,
) -> SearchResult[T]:
    """Build the :class:`SearchResult` of ``criteria`` (a Specification, a spec dict or
    QueryOptions) and ``options``; a specification in both is combined with AND.

    ``field_names`` renames model fields to document fields in conditions, ordering and
    selected fields (a repository passes ``{"id": "_id", ...}``); ``encode_value`` converts
    condition values to their stored form."""
    if isinstance(criteria, QueryOptions):
        if options is not None:
            raise InvalidSpecification("pass QueryOptions once: as criteria or as options, not both")
        criteria, options = None, criteria
    options = options or QueryOptions()
    registry = registry or options.registry
    if isinstance(criteria, dict):
        criteria = Specification.from_dict(criteria, registry=registry)
    spec = criteria
    if options.specification is not None:
        spec = options.specification if spec is None else spec & options.specification
    builder = MongoQueryBuilder(registry)
    order_by: list[Any] = list(options.order_by)
    fields: Any = options.fields
    tree: Any = spec
    if field_names or encode_value is not None:
        names = field_names or {}
        tree = rename_tree(spec.tree if isinstance(spec, Specification) else spec, names, encode_value)
        order_by = [_renamed_order(item, names) for item in order_by]
        fields = None if fields is None else [_renamed(f, names) for f in fields]
    return SearchResult(
        collection,
        builder.build_match(tree),
        sort=builder.build_sort(order_by),
        projection=builder.build_project(fields),
        skip=options.offset,
        limit=options.limit,
        session=session,
        decode=decode,
        adapter=adapter,
        gateway=gateway,
        timeout=timeout,
    )
