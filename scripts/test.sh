#!/usr/bin/env bash
# Set up and run the whole suite: builds the package (native module included) into a
# virtualenv, type-checks it (mypy --strict on the package and the documentation's code
# against the installed wheel), runs the tests with the native backend, again with the pure backend (both on
# the embedded Python server), the server tests again on the stricter Rust server
# secantusd-rs, the benchmark gates on the Rust server (ratios measured in the same run),
# then checks that the pure-Python wheel installs and imports where there is no Rust, and
# builds the API reference (warnings are errors).
#
# MONGODB_URL set: every phase runs against that server instead (no Rust server is built).
# SKIP_RUST_SERVER=1: skip the Rust-server phases and run the gates on the embedded server.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv-test}

phase() { echo; echo "== $1"; }
timed() { local t0; t0=$(date +%s); "$@"; echo "-- took $(( $(date +%s) - t0 ))s"; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip
started=$(date +%s)
"$VPY" -m pip install -q --disable-pip-version-check ".[test,docs]"
echo "== installed in $(( $(date +%s) - started ))s"
"$VPY" -c 'import sys, cqrs_ddd_persistence_mongo as p; print("backend:", p.BACKEND); sys.exit(p.BACKEND != "native")'
"$VPY" scripts/check_installed_package.py

if [ -f scripts/check-rust.sh ]; then
  phase "Rust checks (scripts/check-rust.sh)"
  PYTHON="$VPY" timed bash scripts/check-rust.sh
fi

phase "types: mypy --strict on the package, the README tour and every docs/*.md python block"
timed "$VPY" scripts/check_types.py

RUST_SERVER=1
if [ -n "${MONGODB_URL:-}" ] || [ "${SKIP_RUST_SERVER:-0}" = 1 ]; then RUST_SERVER=0; fi
if [ "$RUST_SERVER" = 1 ]; then
  phase "Rust test server secantusd-rs (installed once, skipped when present)"
  t0=$(date +%s)
  SECANTUSD_RS=$(bash scripts/install-secantusd-rs.sh)
  export SECANTUSD_RS
  echo "$SECANTUSD_RS"
  echo "-- took $(( $(date +%s) - t0 ))s"
fi

# Server-side test directories (the others need no server and run once per backend above).
SERVER_TESTS=(tests/integration tests/seeds)
PYTEST=("$VPY" -m pytest -q -p no:cacheprovider)

phase "tests, native backend, ${MONGODB_URL:+MONGODB_URL}${MONGODB_URL:-embedded server}"
timed "${PYTEST[@]}" tests
phase "tests, pure backend (CQRS_DDD_MONGO_PURE=1), ${MONGODB_URL:+MONGODB_URL}${MONGODB_URL:-embedded server}"
CQRS_DDD_MONGO_PURE=1 timed "${PYTEST[@]}" tests

if [ "$RUST_SERVER" = 1 ]; then
  phase "server tests, native backend, Rust server secantusd-rs"
  CQRS_DDD_MONGO_TEST_SERVER=secantus-rs timed "${PYTEST[@]}" "${SERVER_TESTS[@]}"
  phase "server tests, pure backend, Rust server secantusd-rs"
  CQRS_DDD_MONGO_PURE=1 CQRS_DDD_MONGO_TEST_SERVER=secantus-rs timed "${PYTEST[@]}" "${SERVER_TESTS[@]}"
  GATE_SERVER=secantus-rs
else
  GATE_SERVER=embedded
fi

phase "benchmark gates (native vs pure vs baselines, same run), server: ${MONGODB_URL:+MONGODB_URL}${MONGODB_URL:-$GATE_SERVER}"
CQRS_DDD_MONGO_TEST_SERVER=$GATE_SERVER timed "${PYTEST[@]}" benches \
  --benchmark-columns=min,median,ops --benchmark-sort=name

phase "pure-Python wheel: build, install where there is no Rust, import"
timed bash scripts/check-pure-wheel.sh "$VPY"

phase "API reference from the docstrings (pdoc, warnings are errors)"
timed "$VPY" scripts/build_api_docs.py --out build/api
