"""Type-check the package and the code users copy: ``mypy --strict`` on
``python/cqrs_ddd_persistence_mongo`` and the demo package beside it, then on every ``python`` block of README.md and
docs/*.md, each block a module of its own. Exits non-zero when either run reports an error.

The snippets are checked against the package as an installed user sees it: found on the
interpreter's path (the installed wheel, or ``python/`` through ``PYTHONPATH``), so a
missing ``py.typed`` fails here as it would in a user's project.

Blocks are read the way ``python -m asyncio`` reads them: a block with a top-level
``await`` / ``async for`` / ``async with`` is checked as the body of an ``async def``.
Markers in HTML comments (invisible on the rendered page) change how blocks are checked:

* ``<!-- typecheck: skip (why) -->`` just before a block: not checked (say why);
* ``<!-- typecheck: continue -->`` just before a block: appended to the previous block of
  the same page, for a page that builds one example over several blocks;
* ``<!-- typecheck: context`` ... ``-->`` (the lines in between are Python): put in front
  of every later block of the page; for reference pages whose blocks use objects set up
  elsewhere (``connection``, ``uow``, a model), declared there with their types.

    PYTHONPATH=python python scripts/check_types.py [--keep DIR] [--snippets-only]
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "cqrs_ddd_persistence_mongo"
DEMO = ROOT / "python" / "cqrs_ddd_mongo_demo"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*$")
MARKER = re.compile(r"<!--\s*typecheck:\s*(skip|continue)\b(.*?)-->")
CONTEXT = re.compile(r"^<!--\s*typecheck:\s*context\b")


@dataclass
class Snippet:
    page: Path
    line: int  # 1-based line of the first code line
    code: str
    context: str = ""


def snippets(page: Path) -> tuple[list[Snippet], list[str]]:
    """The python blocks of ``page`` (continuations joined) and the problems found."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    problems: list[str] = []
    context = ""
    index = 0
    while index < len(lines):
        if CONTEXT.match(lines[index]):
            end = index + 1
            while end < len(lines) and lines[end].strip() != "-->":
                end += 1
            context = "\n".join(lines[index + 1 : end]) + "\n"
            index = end + 1
            continue
        if not FENCE.match(lines[index]):
            index += 1
            continue
        start = index + 1
        end = start
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        code = "\n".join(lines[start:end]) + "\n"
        before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.search(before)
        kind, reason = (marker.group(1), marker.group(2).strip(" ()")) if marker else (None, "")
        where = f"{page.relative_to(ROOT)}:{start + 1}"
        if kind == "skip" and not reason:
            problems.append(f"{where}: 'typecheck: skip' needs a reason, e.g. <!-- typecheck: skip (fragment) -->")
        if kind == "continue":
            if not found:
                problems.append(f"{where}: 'typecheck: continue' has no previous block on the page")
            else:
                previous = found[-1]
                padding = "\n" * max(0, start + 1 - previous.line - previous.code.count("\n"))
                previous.code += padding + code
        elif kind != "skip":
            found.append(Snippet(page, start + 1, code, context))
        index = end + 1
    return found, problems


def needs_event_loop(code: str) -> bool:
    """True when ``code`` awaits at top level (valid only in an asyncio REPL)."""
    try:
        compiled = compile(code, "<snippet>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError:
        return False  # mypy reports it with the page's line number
    return bool(compiled.co_flags & inspect.CO_COROUTINE)


def module_source(snippet: Snippet) -> tuple[str, int]:
    """The module mypy checks (the page's context, then the block, inside ``async def``
    when it awaits at top level) and the module line of the block's first line."""
    head = snippet.context
    body = snippet.code
    if needs_event_loop(snippet.code):
        head += "async def _snippet() -> None:\n"
        body = "".join(f"    {line}" if line.strip() else line for line in body.splitlines(keepends=True))
    return head + body, head.count("\n") + 1


def page_lines(report: str, name: str, snippet: Snippet, first: int) -> str:
    """``report`` with the module's line numbers turned into the page's."""
    page = snippet.page.relative_to(ROOT)

    def where(match: re.Match[str]) -> str:
        line = int(match.group(1))
        if line < first:
            return f"{page} (typecheck context, line {line}):"
        return f"{page}:{line - first + snippet.line}:"

    return re.sub(rf"(?m)^{re.escape(name)}\.py:(\d+):", where, report)


def module_name(snippet: Snippet) -> str:
    stem = re.sub(r"\W", "_", snippet.page.stem.lower())
    return f"snippet_{stem}_{snippet.line}"


def write_snippets(directory: Path) -> tuple[dict[str, tuple[Snippet, int]], list[str]]:
    """Write every snippet as ``directory/<module>.py`` (see :func:`module_source`)."""
    written: dict[str, tuple[Snippet, int]] = {}
    problems: list[str] = []
    for page in PAGES:
        found, page_problems = snippets(page)
        problems += page_problems
        for snippet in found:
            name = module_name(snippet)
            source, first = module_source(snippet)
            (directory / f"{name}.py").write_text(source, encoding="utf-8")
            written[name] = (snippet, first)
    return written, problems


def mypy(args: list[str], cwd: Path, cache: Path) -> tuple[int, str]:
    command = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *args]
    env = os.environ.copy()
    if env.get("PYTHONPATH"):  # the run happens elsewhere: keep relative entries pointing here
        env["PYTHONPATH"] = os.pathsep.join(str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep) if p)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env)
    return done.returncode, done.stdout + done.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the snippet modules here and keep them")
    parser.add_argument("--snippets-only", action="store_true", help="skip the package run")
    args = parser.parse_args()
    failed = False
    with tempfile.TemporaryDirectory(prefix="check-types-") as scratch:
        cache = Path(scratch) / "cache"
        if not args.snippets_only:
            code, out = mypy([str(PACKAGE), str(DEMO)], ROOT, cache)
            print(f"== mypy --strict {PACKAGE.relative_to(ROOT)} {DEMO.relative_to(ROOT)}\n{out.rstrip()}")
            failed |= code != 0
        directory = args.keep or Path(scratch) / "snippets"
        directory.mkdir(parents=True, exist_ok=True)
        written, problems = write_snippets(directory)
        for problem in problems:
            print(problem)
        failed |= bool(problems)
        code, out = mypy(sorted(f"{name}.py" for name in written), directory, cache)
        for name, (snippet, first) in written.items():  # report the page, not the scratch file
            out = page_lines(out, name, snippet, first)
        print(f"== mypy --strict on {len(written)} python blocks of README.md and docs/*.md\n{out.rstrip()}")
        failed |= code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
