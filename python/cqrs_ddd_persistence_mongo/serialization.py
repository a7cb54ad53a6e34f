"""Deprecated one-call mapping helpers kept for code written against earlier releases.

``model_to_doc`` / ``model_from_doc`` are :class:`MongoDBModelMapper` under the old names,
with its type rules (UUIDs stored as standard binary UUIDs, ``Decimal`` becomes ``Decimal128``, a ``version``
field is stored as ``_version``). Each call warns with ``DeprecationWarning``; build one
mapper per model and reuse it instead: it is the same work without the lookup.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel

from .core.model_mapper import MongoDBModelMapper
from .exceptions import InvalidDocument

M = TypeVar("M", bound=BaseModel)


@lru_cache(maxsize=256)
def _mapper(model_cls: type[BaseModel], id_field: str) -> MongoDBModelMapper[Any]:
    try:
        return MongoDBModelMapper(model_cls, id_field=id_field)
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(str(exc)) from None


def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def model_to_doc(model: BaseModel, *, use_id_field: str = "id") -> dict[str, Any]:
    """The document of ``model`` (its ``use_id_field`` stored as ``_id``)."""
    _deprecated("model_to_doc(model)", "MongoDBModelMapper(type(model)).to_doc(model)")
    if not isinstance(model, BaseModel):
        raise InvalidDocument(f"model_to_doc takes a pydantic model, not {type(model).__name__}")
    return _mapper(type(model), use_id_field).to_doc(model)


def model_from_doc(cls: type[M], doc: Mapping[str, Any], *, id_field: str = "id") -> M:
    """The ``cls`` instance stored as ``doc`` (its ``_id`` read back into ``id_field``)."""
    _deprecated("model_from_doc(cls, doc)", "MongoDBModelMapper(cls).from_doc(doc)")
    if not isinstance(doc, Mapping):
        raise InvalidDocument(f"model_from_doc takes a document (a mapping), not {type(doc).__name__}")
    return _mapper(cls, id_field).from_doc(doc)  # type: ignore[no-any-return]
