"""Type stub of the Rust module ``cqrs_ddd_persistence_mongo._native``.

Every function here has a pure twin of the same signature in ``_pure/``. Parameters that
take caller data are typed by what is accepted without error; anything else raises the
library's ``InvalidDocument`` / ``InvalidSpecification``. Checked against the built module
by ``python -m mypy.stubtest cqrs_ddd_persistence_mongo._native`` (scripts/check-rust.sh).
"""

from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any, TypeAlias, final

from pydantic import BaseModel

__all__ = [
    "validate_keys", "map_to_doc", "map_from_doc", "ModelCodec", "compile_filter", "compile_sort",
    "compile_projection", "normalize_spec", "build_upserts", "canonical_id", "decode_events",
]

_Document: TypeAlias = dict[str, Any]
"""A MongoDB document: str keys, BSON-encodable values (any depth up to 100)."""
_SpecTree: TypeAlias = Mapping[str, Any]
"""``{"attr", "op", "val"}`` leaves and ``{"op": "and"|"or"|"not", "conditions"}`` groups."""
_CustomCompiler: TypeAlias = Callable[[str, Any], Mapping[str, Any]]
_OrderItem: TypeAlias = str | tuple[str, int | str] | list[str | int]

# --- keys ---------------------------------------------------------------------
def validate_keys(doc: object) -> None: ...

# --- mapping --------------------------------------------------------------------
def map_to_doc(
    data: Mapping[str, Any],
    id_field: str,
    field_map: dict[str, str] | None,
    versioned: bool,
    owned: bool = False,
) -> _Document: ...
def map_from_doc(
    doc: Mapping[str, Any], id_field: str, reverse_map: dict[str, str] | None, versioned: bool
) -> _Document: ...
@final
class ModelCodec:
    def __new__(
        cls,
        model_cls: type[BaseModel],
        id_field: str,
        field_map: dict[str, str] | None,
        reverse_map: dict[str, str] | None,
        versioned: bool,
        exclude: set[str] | None,
        owned_dump: bool,
    ) -> ModelCodec: ...
    def to_doc(self, entity: BaseModel) -> _Document: ...
    def from_doc(self, doc: Mapping[str, Any]) -> BaseModel: ...

# --- filters --------------------------------------------------------------------
def compile_filter(spec: _SpecTree, custom: Mapping[str, _CustomCompiler] | None = None) -> _Document: ...
def compile_sort(order_by: str | Sequence[_OrderItem] | None) -> list[tuple[str, int]]: ...
def compile_projection(fields: str | Sequence[str] | None) -> dict[str, int] | None: ...
def normalize_spec(
    tree: object,
    custom: Container[str] | None = None,
    trusted: bool = False,
    spec_type: type | None = None,
) -> dict[str, Any]: ...

# --- bulk -----------------------------------------------------------------------
def build_upserts(
    docs: Sequence[Mapping[str, Any]],
    id_field: str = "id",
    position_field: str | None = ...,  # "_last_position"
    event_id_field: str | None = ...,  # "_last_event_id"
    label: str = "docs",
) -> list[tuple[_Document, _Document]]: ...
def canonical_id(key: object) -> object: ...

# --- events ---------------------------------------------------------------------
def decode_events(data: bytes) -> tuple[list[int], list[Any]]: ...
