#!/usr/bin/env bash
# Install the Rust MongoDB-wire test server `secantusd-rs` (crate secantus-mdb) when it is
# missing: the stricter of the two servers the integration tests and benchmark gates run on.
# Prints the binary's path. Skips everything when the pinned version is already installed.
set -euo pipefail

CRATE=secantus-mdb
VERSION=0.5.3-beta.196
BIN="${CARGO_HOME:-$HOME/.cargo}/bin/secantusd-rs"

installed() {
  [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "secantusd-rs $VERSION"
}

if ! installed; then
  if ! command -v cmake >/dev/null; then
    echo "== installing cmake (needed to build $CRATE)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq cmake >&2
  fi
  echo "== building $CRATE $VERSION (about 8 minutes on 2 cores, once)" >&2
  # --ignore-rust-version: this version declares a newer rust-version than it needs.
  cargo install "$CRATE" --version "$VERSION" --ignore-rust-version >&2
fi
[ -x "$BIN" ] || { echo "$CRATE installed but $BIN is missing" >&2; exit 1; }
echo "$BIN"
