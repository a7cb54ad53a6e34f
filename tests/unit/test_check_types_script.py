"""scripts/check_types.py reads the documentation's code as documented: asyncio-REPL blocks
become ``async def`` bodies, markers skip / continue / give context, and mypy's line
numbers are reported as the page's."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_types.py"


@pytest.fixture(scope="module")
def check_types() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_types", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_types"] = module  # dataclasses resolve annotations through it
    spec.loader.exec_module(module)
    return module


PAGE = """# A page

<!-- typecheck: context (names the blocks use)
connection: object
-->
```python
x = 1
```

<!-- typecheck: continue -->
```python
await thing(x)
```

<!-- typecheck: skip (a fragment) -->
```python
this is not python
```

<!-- typecheck: skip -->
```python
y = 2
```
"""


@pytest.fixture
def page_at(tmp_path: Path, check_types: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """Write a page in a scratch repository root and return its path."""
    monkeypatch.setattr(check_types, "ROOT", tmp_path)

    def write(text: str) -> Path:
        page = tmp_path / "page.md"
        page.write_text(text)
        return page

    return write


def test_markers(page_at: Callable[[str], Path], check_types: ModuleType) -> None:
    found, problems = check_types.snippets(page_at(PAGE))
    assert problems == ["page.md:22: 'typecheck: skip' needs a reason, e.g. <!-- typecheck: skip (fragment) -->"]
    assert [(s.line, s.code) for s in found] == [(7, "x = 1\n\n\n\n\nawait thing(x)\n")]
    assert found[0].context == "connection: object\n"


def test_event_loop_blocks_become_async_def_and_lines_map_back(
    page_at: Callable[[str], Path], check_types: ModuleType
) -> None:
    (snippet,), _ = check_types.snippets(page_at(PAGE))
    source, first = check_types.module_source(snippet)
    assert source.splitlines() == [
        "connection: object",
        "async def _snippet() -> None:",
        "    x = 1",
        "", "", "", "",
        "    await thing(x)",
    ]
    assert first == 3
    report = "m.py:8: error: Name \"thing\" is not defined\nm.py:1: error: in the context\n"
    assert check_types.page_lines(report, "m", snippet, first) == (
        "page.md:12: error: Name \"thing\" is not defined\n"
        "page.md (typecheck context, line 1): error: in the context\n"
    )


def test_plain_blocks_stay_module_level(page_at: Callable[[str], Path], check_types: ModuleType) -> None:
    (snippet,), _ = check_types.snippets(page_at("```python\nimport os\n```\n"))
    assert check_types.module_source(snippet) == ("import os\n", 1)
