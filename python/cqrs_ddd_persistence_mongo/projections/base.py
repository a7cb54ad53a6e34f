"""The Projection base: which events a projection handles, how, and what it owns.

Two handler styles, chosen per projection (a projection uses one style):

* **document handlers** ``def on_OrderPlaced(self, doc, event)``: mutate the read-model
  document the event addresses (a plain dict). The engine loads, applies and writes the
  documents itself, so it can batch: one read per collection and one coalesced write per
  document per batch. Handlers must be synchronous and must not do I/O on the read model.
* **imperative handlers** ``async def on_OrderPlaced(self, event)``: call stores
  themselves (the original library's style). The engine calls them one event at a time and saves the
  checkpoint once per batch; they must be idempotent on their own.

Handlers are found by name (``on_<EventType>``) or declared with :func:`handles`, which
also says which collection and which document id an event addresses.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from ..exceptions import ProjectionError

OnError = Literal["continue", "stop"]
KeyFn = Callable[[Any], Any]
F = TypeVar("F", bound=Callable[..., Any])

_HANDLER_PREFIX = "on_"
_MARK = "__projection_handles__"


def _aggregate_key(event: Any) -> Any:
    return event.aggregate_id


def handles(
    *event_types: str,
    collection: str | None = None,
    key: KeyFn | None = None,
) -> Callable[[F], F]:
    """Declare that the decorated method handles ``event_types``.

    For document handlers, ``collection`` names the read-model collection (default: the
    projection's first collection) and ``key(event)`` the document id (default: the
    event's ``aggregate_id``). One event type may have several document handlers, one per
    collection/document it updates.
    """
    if not event_types or not all(isinstance(t, str) and t for t in event_types):
        raise ProjectionError("@handles needs at least one event type name, e.g. @handles('OrderPlaced')")

    def mark(method: F) -> F:
        marks = list(getattr(method, _MARK, ()))
        marks.extend((event_type, collection, key) for event_type in event_types)
        setattr(method, _MARK, tuple(marks))
        return method

    return mark


@dataclass(frozen=True, slots=True)
class Route:
    """One handler of one event type: the method name, and for document handlers the
    collection and key function that address the document it mutates."""

    event_type: str
    method: str
    collection: str | None
    key: KeyFn


def _takes_only_self(fn: Callable[..., Any]) -> bool:
    """True for ``def reset(self)``: no parameter besides ``self`` (not even ``*args``)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return len(params) == 1 and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD)


def _accept_db(reset: Callable[[Any], Any]) -> Callable[..., Awaitable[None]]:
    """A ``reset(self)`` written as the original library's examples write it, callable as ``reset(db)`` too: the
    engine passes the database; a projection that keeps its data elsewhere ignores it."""

    @functools.wraps(reset)
    async def reset_with_db(self: Any, db: Any = None) -> None:
        result = reset(self)
        if inspect.isawaitable(result):
            await result

    return reset_with_db


def _style_of(cls: type, name: str, fn: Callable[..., Any]) -> str:
    params = [
        p for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) == 3:
        if inspect.iscoroutinefunction(fn):
            raise ProjectionError(
                f"{cls.__name__}.{name}(self, doc, event) is a document handler and must be a plain "
                "'def': it mutates the in-memory document; do I/O in an imperative handler instead"
            )
        return "document"
    if len(params) == 2:
        return "imperative"
    raise ProjectionError(
        f"{cls.__name__}.{name} must take (self, event) (imperative) or (self, doc, event) (document)"
    )


class Projection:
    """Base class of projections; subclass it and add handlers.

    Class attributes:

    * ``projection_name``: unique name (the checkpoint key); default: the class name of the
      first class that declares handlers (subclasses keep it: same read model).
    * ``collections``: the read-model collections the projection owns (reset and rebuilt
      with it). Document handlers default to the first one.
    * ``on_error``: after a handler failed ``max_retries + 1`` times its event is parked in
      the dead-letter collection; then ``"continue"`` with the next event or ``"stop"``.
    """

    projection_name: ClassVar[str] = ""
    collections: ClassVar[tuple[str, ...]] = ()
    on_error: ClassVar[OnError] = "continue"
    max_retries: ClassVar[int] = 2

    _routes: ClassVar[dict[str, tuple[Route, ...]]] = {}
    _style: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.projection_name:  # a subclass keeps its parent's name (same read model)
            cls.projection_name = cls.__name__
        if isinstance(cls.collections, str):
            cls.collections = (cls.collections,)
        own_reset = vars(cls).get("reset")
        if callable(own_reset) and _takes_only_self(own_reset):
            cls.reset = _accept_db(own_reset)  # type: ignore[method-assign,assignment]
        if cls.on_error not in ("continue", "stop"):
            raise ProjectionError(f"{cls.__name__}.on_error must be 'continue' or 'stop', not {cls.on_error!r}")
        cls._discover()

    @classmethod
    def _discover(cls) -> None:
        routes: dict[str, list[Route]] = {}
        styles: set[str] = set()
        seen: set[str] = set()
        for klass in cls.__mro__:
            for name, fn in vars(klass).items():
                if name in seen or not callable(fn):
                    continue
                marks = getattr(fn, _MARK, None)
                if marks is None and not (name.startswith(_HANDLER_PREFIX) and len(name) > 3):
                    continue
                seen.add(name)
                style = _style_of(cls, name, fn)
                styles.add(style)
                for event_type, collection, key in marks or ((name[len(_HANDLER_PREFIX):], None, None),):
                    routes.setdefault(event_type, []).append(
                        Route(event_type, name, collection, key or _aggregate_key)
                    )
        if len(styles) > 1:
            raise ProjectionError(
                f"{cls.__name__} mixes document handlers (self, doc, event) and imperative handlers "
                "(self, event); split it into two projections"
            )
        cls._style = styles.pop() if styles else None
        if cls._style == "document":
            for event_routes in routes.values():
                for route in event_routes:
                    if route.collection is None and not cls.collections:
                        raise ProjectionError(
                            f"{cls.__name__} has document handlers but no collections: "
                            "set collections = ('order_summaries',)"
                        )
                    if route.collection is not None and route.collection not in cls.collections:
                        raise ProjectionError(
                            f"{cls.__name__}.{route.method} writes '{route.collection}', which is not "
                            f"in {cls.__name__}.collections {cls.collections!r}"
                        )
        cls._routes = {event_type: tuple(r) for event_type, r in routes.items()}

    # --- introspection ----------------------------------------------------------------
    @property
    def handled_event_types(self) -> frozenset[str]:
        return frozenset(self._routes)

    @property
    def is_document_style(self) -> bool:
        """True when the engine can batch this projection (document handlers)."""
        return self._style == "document"

    def routes(self, event_type: str) -> tuple[Route, ...]:
        return self._routes.get(event_type, ())

    def addresses(self, event: Any) -> list[tuple[str, Any]]:
        """The (collection, document id) pairs ``event`` updates (document style)."""
        return [
            (route.collection or self.collections[0], route.key(event))
            for route in self._routes.get(event.event_type, ())
        ]

    # --- document style -----------------------------------------------------------------
    def new_document(self, collection: str, doc_id: Any, event: Any) -> dict[str, Any]:
        """The document a handler starts from when none exists yet (override for defaults)."""
        return {}

    # --- imperative style ---------------------------------------------------------------
    async def handle(self, event: Any) -> bool:
        """Run the imperative handlers of ``event``; False when the projection ignores it."""
        routes = self._routes.get(event.event_type, ())
        for route in routes:
            result = getattr(self, route.method)(event)
            if inspect.isawaitable(result):
                await result
        return bool(routes)

    async def reset(self, db: Any = None) -> None:
        """Clear the read model for a rebuild: drops every owned collection of ``db``.

        Imperative projections that keep data elsewhere override this, either as
        ``async def reset(self, db)`` or, as the original library's examples do, ``async def reset(self)`` (then
        the database the engine passes is not given to it).
        """
        if db is None:
            return
        for name in self.collections:
            await db.drop_collection(name)

    async def ensure_indexes(self, db: Any, collections: dict[str, str] | None = None) -> None:
        """Create the read model's indexes (override); ``collections`` maps owned names to
        the physical ones (a rebuild's shadow collections)."""


def qualified_name(obj: Any) -> str:
    """``module:Class`` of a projection (how worker processes and the CLI import it)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def load_projection(spec: str) -> Projection:
    """Import ``module:ProjectionClass`` and instantiate it without arguments."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ProjectionError(f"expected 'module:ProjectionClass', got {spec!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProjectionError(f"cannot import module '{module_name}' ({exc}); is it on PYTHONPATH?") from exc
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise ProjectionError(f"module '{module_name}' has no '{attr}'") from exc
    if isinstance(target, type):
        if not issubclass(target, Projection):
            raise ProjectionError(f"{spec} is not a Projection subclass")
        return target()
    if isinstance(target, Projection):
        return target
    raise ProjectionError(f"{spec} is neither a Projection subclass nor an instance")


def by_name(projections: Iterable[Projection]) -> dict[str, Projection]:
    """Index projections by name; two with the same name is a configuration error."""
    out: dict[str, Projection] = {}
    for projection in projections:
        if not isinstance(projection, Projection):
            raise ProjectionError(f"{projection!r} is not a Projection")
        if projection.projection_name in out:
            raise ProjectionError(f"two projections are named '{projection.projection_name}'")
        out[projection.projection_name] = projection
    return out
