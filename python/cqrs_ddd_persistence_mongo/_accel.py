"""THE backend switch: binds each hot-path function to the Rust module or its pure twin.

``CQRS_DDD_MONGO_PURE=1`` forces the pure backend. A missing or broken native module
falls back to pure with one warning that says why. No other module knows which
backend is bound; they call the names below.
"""

from __future__ import annotations

import os
import warnings
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ._pure import bulk as _pure_bulk
from ._pure import codec as _pure_codec
from ._pure import events as _pure_events
from ._pure import filters as _pure_filters
from ._pure import keys as _pure_keys
from ._pure import mapping as _pure_mapping
from ._pure import specs as _pure_specs

# name -> pure twin. Every native function has exactly one entry here.
_TWINS: dict[str, Callable[..., Any]] = {
    # keys
    "validate_keys": _pure_keys.validate_keys,
    # mapping (issue 3)
    "map_to_doc": _pure_mapping.map_to_doc,
    "map_from_doc": _pure_mapping.map_from_doc,
    "ModelCodec": _pure_codec.ModelCodec,
    # filters (issue 4)
    "compile_filter": _pure_filters.compile_filter,
    "compile_sort": _pure_filters.compile_sort,
    "compile_projection": _pure_filters.compile_projection,
    "normalize_spec": _pure_specs.normalize_spec,
    # bulk (issue 6)
    "build_upserts": _pure_bulk.build_upserts,
    "canonical_id": _pure_bulk.canonical_id,
    # event decoding
    "decode_events": _pure_events.decode_events,
}

_TRUTHY = {"1", "true", "yes", "on"}


def _pure_forced() -> bool:
    return os.environ.get("CQRS_DDD_MONGO_PURE", "").strip().lower() in _TRUTHY


def _native_library_present() -> bool:
    """Whether a ``_native`` extension file sits in the package (importable or not)."""
    here = Path(__file__).parent
    return any((here / f"_native{suffix}").exists() for suffix in EXTENSION_SUFFIXES)


def _load_native() -> tuple[ModuleType | None, str | None]:
    """Return (module, None) or (None, reason)."""
    try:
        from . import _native
    except ImportError as exc:
        if not _native_library_present():
            return None, "this installation has no native module (a pure-Python wheel, or a source tree not built)"
        return None, f"the native module could not be imported ({exc})"
    missing = sorted(name for name in _TWINS if not hasattr(_native, name))
    if missing:
        return None, f"the native module is out of date (missing {', '.join(missing)}); rebuild it"
    return _native, None


def _select() -> tuple[str, dict[str, Callable[..., Any]]]:
    if _pure_forced():
        return "pure", dict(_TWINS)
    native, reason = _load_native()
    if native is None:
        warnings.warn(
            f"cqrs_ddd_persistence_mongo: using the pure-Python backend because {reason}. "
            "Results are identical, only slower; for the native one install a platform wheel, "
            "or build from source with a Rust toolchain (pip install --force-reinstall --no-binary "
            "cqrs-ddd-persistence-mongo cqrs-ddd-persistence-mongo).",
            RuntimeWarning,
            stacklevel=3,
        )
        return "pure", dict(_TWINS)
    return "native", {name: getattr(native, name) for name in _TWINS}


BACKEND, _BOUND = _select()


def pure_twin(name: str) -> Callable[..., Any]:
    """The pure implementation of ``name`` (for parity tests and benchmarks)."""
    return _TWINS[name]


def native_function(name: str) -> Callable[..., Any] | None:
    """The native implementation of ``name``, or None when the module is unavailable."""
    native, _ = _load_native()
    return None if native is None else getattr(native, name)


validate_keys: Callable[[Any], None] = _BOUND["validate_keys"]

# mapping (issue 3)
map_to_doc: Callable[..., dict[str, Any]] = _BOUND["map_to_doc"]
map_from_doc: Callable[..., dict[str, Any]] = _BOUND["map_from_doc"]
ModelCodec: type[_pure_codec.ModelCodec] = _BOUND["ModelCodec"]  # type: ignore[assignment]
"""A model's to_doc / from_doc bound once (twin of ``rust/codec.rs``)."""

# filters (issue 4)
compile_filter: Callable[..., dict[str, Any]] = _BOUND["compile_filter"]
compile_sort: Callable[[Any], list[tuple[str, int]]] = _BOUND["compile_sort"]
compile_projection: Callable[[Any], dict[str, int] | None] = _BOUND["compile_projection"]
normalize_spec: Callable[..., dict[str, Any]] = _BOUND["normalize_spec"]
"""A validated copy of a specification tree (twin of ``rust/filters/intake.rs``)."""

# bulk (issue 6)
build_upserts: Callable[..., list[tuple[dict[str, Any], dict[str, Any]]]] = _BOUND["build_upserts"]
"""Projection upsert statements ``[(filter, update), ...]`` (twin of ``rust/bulk.rs``)."""

canonical_id: Callable[[Any], Any] = _BOUND["canonical_id"]
"""The ``_id`` stored for a key (composite dict keys in sorted field order)."""

# event decoding
decode_events: Callable[[bytes], tuple[list[Any], list[Any]]] = _BOUND["decode_events"]
"""(positions, StoredEvents or None for hole markers) of one raw batch of event documents
(twin of ``rust/events.rs``)."""
