"""Type-check the package and the code users copy: ``mypy --strict`` on
``python/cqrs_ddd_persistence_mongo``, then on every ``python`` block of README.md and
docs/*.md, each block a module of its own. Exits non-zero when either run reports an error.

The snippets are checked against the package as an installed user sees it: found on the
interpreter's path (the installed wheel, or ``python/`` through ``PYTHONPATH``), so a
missing ``py.typed`` fails here as it would in a user's project.

Two markers, an HTML comment on the line just before a block, change how it is checked:

* ``<!-- typecheck: skip (why) -->``: not checked (a fragment by design; say why);
* ``<!-- typecheck: continue -->``: appended to the previous block of the same page, for
  a page that builds one example over several blocks.

    PYTHONPATH=python python scripts/check_types.py [--keep DIR] [--snippets-only]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "python" / "cqrs_ddd_persistence_mongo"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```python[ \t]*$")
MARKER = re.compile(r"<!--\s*typecheck:\s*(skip|continue)\b(.*?)-->")


@dataclass
class Snippet:
    page: Path
    line: int  # 1-based line of the first code line
    code: str


def snippets(page: Path) -> tuple[list[Snippet], list[str]]:
    """The python blocks of ``page`` (continuations joined) and the problems found."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    problems: list[str] = []
    index = 0
    while index < len(lines):
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
            found.append(Snippet(page, start + 1, code))
        index = end + 1
    return found, problems


def module_name(snippet: Snippet) -> str:
    stem = re.sub(r"\W", "_", snippet.page.stem.lower())
    return f"snippet_{stem}_{snippet.line}"


def write_snippets(directory: Path) -> tuple[dict[str, Snippet], list[str]]:
    """Write every snippet as ``directory/<module>.py``; the first code line keeps its line
    number (blank lines in front), so mypy's line numbers are the page's."""
    written: dict[str, Snippet] = {}
    problems: list[str] = []
    for page in PAGES:
        found, page_problems = snippets(page)
        problems += page_problems
        for snippet in found:
            name = module_name(snippet)
            (directory / f"{name}.py").write_text("\n" * (snippet.line - 1) + snippet.code, encoding="utf-8")
            written[name] = snippet
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
            code, out = mypy([str(PACKAGE)], ROOT, cache)
            print(f"== mypy --strict {PACKAGE.relative_to(ROOT)}\n{out.rstrip()}")
            failed |= code != 0
        directory = args.keep or Path(scratch) / "snippets"
        directory.mkdir(parents=True, exist_ok=True)
        written, problems = write_snippets(directory)
        for problem in problems:
            print(problem)
        failed |= bool(problems)
        code, out = mypy(sorted(f"{name}.py" for name in written), directory, cache)
        for name, snippet in written.items():  # report the page, not the scratch file
            out = out.replace(f"{name}.py:", f"{snippet.page.relative_to(ROOT)}:")
        print(f"== mypy --strict on {len(written)} python blocks of README.md and docs/*.md\n{out.rstrip()}")
        failed |= code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
