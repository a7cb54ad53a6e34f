#!/usr/bin/env bash
# Rust checks of the native module: unit tests, lints, formatting, and the typed stub
# against the built module. Run from anywhere; uses PYTHON (default: the active python).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
PYO3_PYTHON="$("$PYTHON" -c 'import sys; print(sys.executable)')"  # absolute: cargo runs build scripts elsewhere
export PYO3_PYTHON
# the unit tests link libpython (no extension-module feature) and import the package
LIBDIR="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"
SITE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
export LD_LIBRARY_PATH="${LIBDIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD/python:${SITE}${PYTHONPATH:+:$PYTHONPATH}"

echo "== cargo fmt --check"
cargo fmt --check
echo "== cargo clippy -- -D warnings"
cargo clippy --all-targets -- -D warnings
echo "== cargo test --no-default-features"
cargo test --no-default-features
echo "== stubtest (the typed stub against the built module)"
# the installed package when there is one (CI), else the source tree with a built _native
if env -u PYTHONPATH "$PYTHON" -c 'import cqrs_ddd_persistence_mongo._native' 2>/dev/null; then
  env -u PYTHONPATH "$PYTHON" -m mypy.stubtest cqrs_ddd_persistence_mongo._native
else
  "$PYTHON" -m mypy.stubtest cqrs_ddd_persistence_mongo._native
fi
