"""Build the API reference (HTML) from the docstrings with pdoc; any warning fails the build.

    python scripts/build_api_docs.py [--out build/api]

Needs the ``docs`` extra (``pip install '.[docs]'``). Documents the public API (the
package root's ``__all__``) and the subpackages users import from.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path

PACKAGE = "cqrs_ddd_persistence_mongo"
MODULES = [
    PACKAGE,
    f"{PACKAGE}.domain",
    f"{PACKAGE}.specifications",
    f"{PACKAGE}.core",
    f"{PACKAGE}.advanced",
    f"{PACKAGE}.connection",
    f"{PACKAGE}.exceptions",
    f"{PACKAGE}.indexes",
    f"{PACKAGE}.operators",
    f"{PACKAGE}.projections",
    f"{PACKAGE}.observability",
    f"{PACKAGE}.roles",
    f"{PACKAGE}.sharding",
    f"{PACKAGE}.upgrade",
    f"{PACKAGE}.projections.generations",
]


def build(out: Path) -> list[str]:
    """Render every module into ``out``; return the warnings raised while doing it."""
    import pdoc

    # Names a module loads lazily (module __getattr__) are bound first, so pdoc sees them.
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            vars(module).setdefault(name, getattr(module, name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*MODULES, output_directory=out)
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/api"))
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"API reference: {len(problems)} warning(s), treated as errors", file=sys.stderr)
        return 1
    print(f"API reference: {len(list(args.out.rglob('*.html')))} pages in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
