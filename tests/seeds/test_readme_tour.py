"""The README's tour runs as written, on the real-wire server, and prints what it claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _tour_source() -> str:
    text = README.read_text()
    block = re.search(r"<!-- tour:start -->\n```python\n(.*?)```\n<!-- tour:end -->", text, re.S)
    assert block, "README.md lost its tour block"
    return block.group(1)


async def test_readme_tour_runs(mongo_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {"__name__": "readme_tour"}
    exec(compile(_tour_source(), str(README), "exec"), namespace)
    await namespace["tour"](mongo_url)  # type: ignore[operator]
    out = capsys.readouterr().out
    assert "refused: version conflict for 'o-1'" in out
    assert "paid orders >= 100: ['o-1']" in out
    assert "published: ['OrderPlaced', 'OrderPlaced']" in out
    assert "customer c-1: 2 orders, 200 in total" in out
