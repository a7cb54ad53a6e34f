"""Type stub of the Rust module ``cqrs_ddd_persistence_mongo._native``.

Every function here has a pure twin of the same signature in ``_pure/``.
"""

from typing import Any, Callable

# --- keys ---------------------------------------------------------------------
def validate_keys(doc: Any) -> None: ...

# --- mapping (issue 3) --------------------------------------------------------
def map_to_doc(
    data: Any, id_field: str, field_map: dict[str, str] | None, versioned: bool, owned: bool = False
) -> dict[str, Any]: ...
def map_from_doc(doc: Any, id_field: str, reverse_map: dict[str, str] | None, versioned: bool) -> dict[str, Any]: ...
class ModelCodec:
    def __init__(
        self,
        model_cls: type,
        id_field: str,
        field_map: dict[str, str] | None,
        reverse_map: dict[str, str] | None,
        versioned: bool,
        exclude: Any,
        owned_dump: bool,
    ) -> None: ...
    def to_doc(self, entity: Any) -> dict[str, Any]: ...
    def from_doc(self, doc: Any) -> Any: ...

# --- filters (issue 4) --------------------------------------------------------
def compile_filter(spec: Any, custom: dict[str, Callable[[str, Any], Any]] | None = None) -> dict[str, Any]: ...
def compile_sort(order_by: Any) -> list[tuple[str, int]]: ...
def compile_projection(fields: Any) -> dict[str, int] | None: ...

# --- bulk (issue 6) -----------------------------------------------------------
def build_upserts(
    docs: Any,
    id_field: str = "id",
    position_field: str | None = "_last_position",
    event_id_field: str | None = "_last_event_id",
    label: str = "docs",
) -> list[tuple[dict[str, Any], dict[str, Any]]]: ...
def canonical_id(key: Any) -> Any: ...
