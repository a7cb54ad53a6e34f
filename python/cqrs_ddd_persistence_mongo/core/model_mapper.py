"""Entity <-> MongoDB document conversion for one pydantic model class.

Pydantic stays the serialization and validation engine (``model_dump`` /
``model_validate``); the type rules and renames are one pass of ``_accel.map_to_doc`` /
``_accel.map_from_doc`` (native, or its pure twin), and ``_accel.ModelCodec`` runs dump
and pass (pass and validation) in one call. See docs/mapping.md for the rules.
"""

from __future__ import annotations

from typing import Any, Generic, Iterable, Mapping, TypeVar

from pydantic import BaseModel

from .. import _accel

T = TypeVar("T", bound=BaseModel)

_VERSION_FIELD = "version"

def serializer_builds_fresh(model_cls: type[BaseModel]) -> bool:
    """True when the dict pydantic's serializer returns for ``model_cls`` is always one it
    has just built: no user serialization function (``model_serializer``,
    ``field_serializer``, ``PlainSerializer``, ...) anywhere in its core schema. The mapper
    then hands that dict to the mapping pass to become the document without a copy (the
    native pass changes nested containers in place only when nothing else refers to
    them). An unknown schema answers False: copies are always safe.
    """
    schema = getattr(model_cls, "__pydantic_core_schema__", None)
    if not isinstance(schema, dict):
        return False
    stack: list[Any] = [schema]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if id(node) in seen:
                continue
            seen.add(id(node))
            if "serialization" in node:
                return False
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return True


class MongoDBModelMapper(Generic[T]):
    """Maps entities of ``model_cls`` to documents and back.

    - ``id_field`` is stored as ``_id`` (any BSON-storable id: str, int, UUID, ObjectId, or a
      composite dict); a ``None`` id is left out so the driver assigns an ObjectId.
    - ``field_map`` renames model fields in the document: ``{model_field: doc_field}``.
    - ``exclude_fields`` are never written (on read they take the model's defaults).
    - a model with a ``version`` field (``versioned``) stores it as ``_version``, which
      repositories use for optimistic concurrency; a document without one reads as 0.
    """

    def __init__(
        self,
        model_cls: type[T],
        id_field: str = "id",
        field_map: Mapping[str, str] | None = None,
        exclude_fields: Iterable[str] | None = None,
    ) -> None:
        if not (isinstance(model_cls, type) and issubclass(model_cls, BaseModel)):
            raise TypeError(f"model_cls must be a pydantic model class, got {model_cls!r}")
        fields = model_cls.model_fields
        if id_field not in fields:
            raise ValueError(
                f"{model_cls.__name__} has no field {id_field!r}; pass id_field= the name of its id field"
            )
        self.model_cls: type[T] = model_cls
        self.id_field: str = id_field
        self.versioned: bool = _VERSION_FIELD in fields
        self.field_map: dict[str, str] = dict(field_map or {})
        unknown = sorted(set(self.field_map) - set(fields))
        if unknown:
            raise ValueError(f"field_map names fields {model_cls.__name__} does not have: {unknown}")
        reserved = {self.id_field} | ({_VERSION_FIELD} if self.versioned else set())
        remapped = sorted(reserved & set(self.field_map))
        if remapped:
            raise ValueError(f"field_map cannot rename {remapped}: they are stored as _id/_version")
        targets = list(self.field_map.values())
        if len(set(targets)) != len(targets):
            raise ValueError("field_map maps two fields to the same document field")
        self.exclude_fields: frozenset[str] = frozenset(exclude_fields or ())
        if self.id_field in self.exclude_fields:
            raise ValueError(f"the id field {id_field!r} cannot be excluded")
        self._reverse_map: dict[str, str] | None = (
            {doc: model for model, doc in self.field_map.items()} or None
        )
        self._forward_map: dict[str, str] | None = self.field_map or None
        self._exclude: set[str] | None = set(self.exclude_fields) or None
        # model_dump / model_validate are thin Python wrappers over pydantic-core's
        # serializer and validator; call those directly (same engine, same defaults, same
        # result) unless the model overrides the wrappers, whose behaviour then wins.
        self._direct_dump: bool = model_cls.model_dump is BaseModel.model_dump
        # the direct dump's dict can become the document itself (no copy)
        self._owned_dump: bool = self._direct_dump and serializer_builds_fresh(model_cls)
        self._direct_validate: bool = (
            getattr(model_cls.model_validate, "__func__", None) is BaseModel.model_validate.__func__  # type: ignore[attr-defined]
        )
        self._bind_codec()

    def _bind_codec(self) -> None:
        """Bind the model to a codec; the hot calls go straight to it (one native call, no
        Python frame of ours) unless the model or a mapper subclass overrides them."""
        self._codec = _accel.ModelCodec(
            self.model_cls, self.id_field, self._forward_map, self._reverse_map, self.versioned,
            self._exclude, self._owned_dump,
        )
        if self._direct_dump and type(self).to_doc is MongoDBModelMapper.to_doc:
            self.to_doc = self._codec.to_doc  # type: ignore[method-assign]
        if self._direct_validate and type(self).from_doc is MongoDBModelMapper.from_doc:
            self.from_doc = self._codec.from_doc  # type: ignore[method-assign]

    # --- pickling and copying: the codec is rebuilt, not copied ----------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_codec", "to_doc", "from_doc")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._bind_codec()

    # --- entity -> document -------------------------------------------------------
    def to_doc(self, entity: T) -> dict[str, Any]:
        """The document to store for ``entity`` (raises ``InvalidDocument`` naming the path)."""
        if self._direct_dump:
            return self._codec.to_doc(entity)
        data = entity.model_dump(exclude=self._exclude)
        return _accel.map_to_doc(data, self.id_field, self._forward_map, self.versioned)

    def to_docs(self, entities: Iterable[T]) -> list[dict[str, Any]]:
        """``to_doc`` of each entity, in order; the first bad one raises before any is returned."""
        return [self.to_doc(entity) for entity in entities]

    # --- document -> entity -------------------------------------------------------
    def from_doc(self, doc: Mapping[str, Any]) -> T:
        """The entity of a stored document, validated by the model."""
        if self._direct_validate:
            return self._codec.from_doc(doc)  # type: ignore[no-any-return]
        data = _accel.map_from_doc(doc, self.id_field, self._reverse_map, self.versioned)
        return self.model_cls.model_validate(data)

    def from_docs(self, docs: Iterable[Mapping[str, Any]]) -> list[T]:
        """``from_doc`` of each document, in order."""
        return [self.from_doc(doc) for doc in docs]

    def __repr__(self) -> str:
        return (
            f"MongoDBModelMapper({self.model_cls.__name__}, id_field={self.id_field!r}, "
            f"versioned={self.versioned})"
        )
