#!/usr/bin/env bash
# Set up and run the whole suite: builds the package (native module included) into a
# virtualenv, runs the tests with the native backend, again with the pure backend,
# then the benchmark gates (ratios measured in the same run).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv-test}

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip
started=$(date +%s)
"$VPY" -m pip install -q --disable-pip-version-check ".[test]"
echo "== installed in $(( $(date +%s) - started ))s"
"$VPY" -c 'import sys, cqrs_ddd_persistence_mongo as p; print("backend:", p.BACKEND); sys.exit(p.BACKEND != "native")'

phase() { echo; echo "== $1"; }
timed() { local t0; t0=$(date +%s); "$@"; echo "-- took $(( $(date +%s) - t0 ))s"; }

phase "tests, native backend"
timed "$VPY" -m pytest tests -q -p no:cacheprovider
phase "tests, pure backend (CQRS_DDD_MONGO_PURE=1)"
CQRS_DDD_MONGO_PURE=1 timed "$VPY" -m pytest tests -q -p no:cacheprovider
phase "benchmark gates (native vs pure vs baselines, same run)"
timed "$VPY" -m pytest benches -q -p no:cacheprovider --benchmark-columns=min,median,ops --benchmark-sort=name
