"""The demo is a top-level package beside the library: importing any module of the library
never loads it; the command line loads it only when asked for the demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PYTHON = Path(__file__).resolve().parents[2] / "python"

IMPORT_EVERY_LIBRARY_MODULE = """
import pkgutil, sys
import cqrs_ddd_persistence_mongo as library
for module in pkgutil.walk_packages(library.__path__, library.__name__ + "."):
    if module.name.endswith(("__main__",)):
        continue
    __import__(module.name)
from cqrs_ddd_persistence_mongo.cli import build_parser
build_parser().parse_args(["demo"])
loaded = sorted(name for name in sys.modules if "demo" in name)
print(len([m for m in sys.modules if m.startswith("cqrs_ddd_persistence_mongo.")]), loaded)
"""


def test_importing_the_library_never_imports_the_demo() -> None:
    env = {**os.environ, "PYTHONPATH": str(PYTHON)}
    result = subprocess.run([sys.executable, "-c", IMPORT_EVERY_LIBRARY_MODULE], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.split(" ", 1)
    assert int(count) > 40 and loaded.strip() == "[]", result.stdout


def test_the_demo_is_not_inside_the_library() -> None:
    import cqrs_ddd_mongo_demo
    import cqrs_ddd_persistence_mongo

    assert not (Path(cqrs_ddd_persistence_mongo.__file__).parent / "_demo").exists()
    assert Path(cqrs_ddd_mongo_demo.__file__).parent.parent == Path(cqrs_ddd_persistence_mongo.__file__).parent.parent
