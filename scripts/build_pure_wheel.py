"""Build the pure-Python wheel (``py3-none-any``): the package without its native module,
and the packages ``[tool.maturin] python-packages`` ships beside it (the demo).

It installs where no platform wheel exists and no Rust toolchain is present; the package
then runs on its pure-Python backend (identical results, slower). Metadata comes from
``pyproject.toml`` so the two wheels cannot disagree. Standard library only: it runs
before anything is installed.

    python3 scripts/build_pure_wheel.py [--out dist]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
SKIPPED_DIRS = {"__pycache__"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _metadata(project: dict[str, Any], readme: str) -> str:
    """Core metadata 2.4 (the version that defines License-Expression and License-File) for
    ``project`` (the ``[project]`` table)."""
    lines = [
        "Metadata-Version: 2.4",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project['description']}",
        f"Requires-Python: {project['requires-python']}",
    ]
    license_ = project.get("license")
    if isinstance(license_, str):
        lines.append(f"License-Expression: {license_}")
    elif isinstance(license_, dict) and "text" in license_:
        lines.append(f"License: {license_['text']}")
    for path in project.get("license-files", []):
        lines.append(f"License-File: {path}")
    authors = [a for a in project.get("authors", []) if "email" in a]
    if authors:
        lines.append("Author-email: " + ", ".join(
            f"{a['name']} <{a['email']}>" if "name" in a else a["email"] for a in authors))
    names = [a["name"] for a in project.get("authors", []) if "email" not in a]
    if names:
        lines.append("Author: " + ", ".join(names))
    if project.get("keywords"):
        lines.append("Keywords: " + ",".join(project["keywords"]))
    lines += [f"Classifier: {c}" for c in project.get("classifiers", [])]
    lines += [f"Project-URL: {label}, {url}" for label, url in project.get("urls", {}).items()]
    lines += [f"Requires-Dist: {req}" for req in project.get("dependencies", [])]
    for extra, reqs in project.get("optional-dependencies", {}).items():
        lines.append(f"Provides-Extra: {extra}")
        for req in reqs:
            marker = f'extra == "{extra}"'
            lines.append(f"Requires-Dist: {req}; {marker}" if ";" not in req else f"Requires-Dist: {req} and {marker}")
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + readme


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build(out_dir: Path) -> Path:
    """Write the wheel into ``out_dir`` and return its path."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    maturin = pyproject["tool"]["maturin"]
    source = ROOT / maturin["python-source"]
    packages = [maturin["module-name"].split(".")[0], *maturin.get("python-packages", [])]
    dist = _normalized(project["name"])
    version = project["version"]
    dist_info = f"{dist}-{version}.dist-info"
    files: list[tuple[str, bytes]] = []
    for path in sorted(p for package in packages for p in (source / package).rglob("*")):
        relative = path.relative_to(source)
        if path.is_dir() or SKIPPED_DIRS & set(relative.parts) or path.suffix == ".pyc":
            continue
        if path.name.endswith(NATIVE_SUFFIXES):
            continue
        files.append((relative.as_posix(), path.read_bytes()))
    if not files:
        raise SystemExit(f"no package files under {source}")
    readme = (ROOT / project["readme"]).read_text() if isinstance(project.get("readme"), str) else ""
    files.append((f"{dist_info}/METADATA", _metadata(project, readme).encode()))
    files.append((f"{dist_info}/WHEEL", (
        "Wheel-Version: 1.0\nGenerator: scripts/build_pure_wheel.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ).encode()))
    for license_file in project.get("license-files", []):
        files.append((f"{dist_info}/licenses/{license_file}", (ROOT / license_file).read_bytes()))
    scripts = project.get("scripts", {})
    if scripts:
        entry_points = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in scripts.items())
        files.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    record_name = f"{dist_info}/RECORD"
    record = "\n".join([_record_line(n, d) for n, d in files] + [f"{record_name},,"]) + "\n"
    files.append((record_name, record.encode()))

    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default: dist)")
    args = parser.parse_args(argv)
    print(build(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
