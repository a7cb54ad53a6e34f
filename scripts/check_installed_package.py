"""Check what the installed (binary) wheel carries: the license file, the ``py.typed``
marker, complete metadata, Motor only as an extra, and a stripped native library. Exits
non-zero with the reasons.

    .venv-test/bin/python scripts/check_installed_package.py
"""

from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

DIST = "cqrs-ddd-persistence-mongo"


def problems() -> list[str]:
    found: list[str] = []
    dist = md.distribution(DIST)
    files = [str(f) for f in dist.files or []]
    if not any(f.endswith("licenses/LICENSE") for f in files):
        found.append("LICENSE is not in the wheel's .dist-info/licenses")
    if "cqrs_ddd_persistence_mongo/py.typed" not in [f.replace("\\", "/") for f in files]:
        found.append("py.typed is not in the wheel: type checkers would treat the package as untyped")
    meta = dist.metadata
    for field in ("Classifier", "Project-URL", "Author-email", "License"):
        if not meta.get_all(field):
            found.append(f"metadata field {field} is missing")
    required = [r for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r]
    if any(r.lower().startswith("motor") for r in required):
        found.append(f"motor is a required dependency ({required}); it must be the 'motor' extra")
    natives = [f for f in files if Path(f).name.startswith("_native") and f.endswith((".so", ".pyd"))]
    for native in natives:
        data = Path(dist.locate_file(native)).read_bytes()
        if data[:4] == b"\x7fELF" and b".symtab" in data:
            found.append(f"{native} is not stripped (it has a .symtab section)")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print("package:", problem, file=sys.stderr)
    if not found:
        print("package: license, py.typed, metadata, extras and stripped library OK")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
