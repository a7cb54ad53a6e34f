"""One model's mapping settings, bound once (twin of ``rust/codec.rs``): ``to_doc`` is
pydantic's dump then the mapping pass, ``from_doc`` the pass then pydantic's validation."""

from __future__ import annotations

from typing import Any, Mapping

from .mapping import map_from_doc, map_to_doc


class ModelCodec:
    """``to_doc`` / ``from_doc`` for one pydantic model class (see MongoDBModelMapper)."""

    __slots__ = ("_model_cls", "_to_python", "_validate", "_dump_kwargs", "_id_field", "_field_map",
                 "_reverse_map", "_versioned", "_owned_dump")

    def __init__(
        self,
        model_cls: type,
        id_field: str,
        field_map: dict[str, str] | None,
        reverse_map: dict[str, str] | None,
        versioned: bool,
        exclude: Any,
        owned_dump: bool,
    ) -> None:
        self._model_cls = model_cls
        self._to_python = model_cls.__pydantic_serializer__.to_python  # type: ignore[attr-defined]
        self._validate = model_cls.__pydantic_validator__.validate_python  # type: ignore[attr-defined]
        self._dump_kwargs: dict[str, Any] = {} if exclude is None else {"exclude": exclude}
        self._id_field = id_field
        self._field_map = field_map
        self._reverse_map = reverse_map
        self._versioned = versioned
        self._owned_dump = owned_dump

    def to_doc(self, entity: Any) -> dict[str, Any]:
        """The document of ``entity``: an instance of exactly the model class is dumped by
        its serializer (whose fresh dict becomes the document when ``owned_dump``); any
        other (a subclass instance) by its own ``model_dump``."""
        if type(entity) is self._model_cls:
            data = self._to_python(entity, **self._dump_kwargs)
            return map_to_doc(data, self._id_field, self._field_map, self._versioned, self._owned_dump)
        data = entity.model_dump(**self._dump_kwargs)
        return map_to_doc(data, self._id_field, self._field_map, self._versioned)

    def from_doc(self, doc: Mapping[str, Any]) -> Any:
        """The entity of a stored document, validated by the model."""
        return self._validate(map_from_doc(doc, self._id_field, self._reverse_map, self._versioned))
