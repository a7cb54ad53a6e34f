#!/usr/bin/env bash
# Build the pure-Python wheel and prove it installs and works where there is no Rust: a
# fresh virtualenv, a PATH without cargo/rustc, then import it and check the backend.
# Usage: bash scripts/check-pure-wheel.sh [python]   (keeps the wheel in dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wheel=$("$PY" scripts/build_pure_wheel.py --out dist)
echo "built $wheel ($(du -k "$wheel" | cut -f1) KB)"
if "$PY" -m zipfile -l "$wheel" | grep -Eq '\.(so|pyd|dylib|dll)\b'; then
  echo "the pure wheel contains a native library" >&2; exit 1
fi

# PATH without any directory holding cargo or rustc, and no Rust home to fall back on.
no_rust_path=$(tr ':' '\n' <<<"$PATH" | while read -r dir; do
  [ -n "$dir" ] && [ ! -e "$dir/cargo" ] && [ ! -e "$dir/rustc" ] && echo "$dir"; done | paste -sd: -)
run() { env -u CARGO_HOME -u RUSTUP_HOME PATH="$no_rust_path" HOME="$work" "$@"; }
if run bash -c 'command -v cargo || command -v rustc'; then
  echo "could not hide the Rust toolchain from PATH" >&2; exit 1
fi

"$PY" -m venv "$work/venv"
run "$work/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel"
run "$work/venv/bin/python" -W error::RuntimeWarning - <<'EOF' 2>/dev/null && { echo "expected the honest pure-fallback warning" >&2; exit 1; }
import cqrs_ddd_persistence_mongo
EOF
run "$work/venv/bin/python" - <<'EOF'
import importlib.metadata as md
import warnings

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import cqrs_ddd_persistence_mongo as package
    from cqrs_ddd_persistence_mongo import SpecificationBuilder, _accel

assert package.BACKEND == "pure", package.BACKEND
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
assert len(messages) == 1 and "circular import" not in messages[0], messages
print("warning:", messages[0])
spec = SpecificationBuilder().where("total", "gte", 100).build()
assert _accel.compile_filter(spec.to_dict()) == {"total": {"$gte": 100}}, _accel.compile_filter(spec.to_dict())
files = [str(f) for f in md.files("cqrs-ddd-persistence-mongo") or []]
assert any(f.endswith("licenses/LICENSE") for f in files), "LICENSE missing from the wheel"
assert "cqrs_ddd_persistence_mongo/py.typed" in files, "py.typed missing from the wheel"
assert "cqrs_ddd_mongo_demo/orders.py" in files, "the demo package is missing from the wheel"
import sys
assert "cqrs_ddd_mongo_demo" not in sys.modules, "importing the library imported the demo"
print("pure wheel OK: BACKEND =", package.BACKEND)
EOF
