"""Type stub of the Rust module ``cqrs_ddd_persistence_mongo._native``.

Every function here has a pure twin of the same signature in ``_pure/``.
"""

from typing import Any

# --- keys ---------------------------------------------------------------------
def validate_keys(doc: Any) -> None: ...

# --- mapping (issue 3) --------------------------------------------------------

# --- filters (issue 4) --------------------------------------------------------

# --- bulk (issue 6) -----------------------------------------------------------
