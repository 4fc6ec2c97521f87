#!/usr/bin/env bash
# Builds this pack into a WebAssembly component: rust-example.wasm next to this script, or the
# path given as the first argument.
#
# The toolchain is Rust (1.85 or newer) with the wasm32-wasip2 target, added with rustup when
# missing; the crates (wit-bindgen, serde_json) come from crates.io as pinned in Cargo.lock.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACK=rust-example
OUT="$(realpath -m "${1:-$HERE/$PACK.wasm}")"
TARGET=wasm32-wasip2
cd "$HERE"

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$TARGET"; then
    rustup target add "$TARGET"
fi
BUILT="${CARGO_TARGET_DIR:-$HERE/target}/$TARGET/release/${PACK//-/_}.wasm"
# Panic messages embed source paths: keep this machine's out of the pack.
RUSTFLAGS="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$HERE=/src" \
    cargo build --quiet --locked --release --target "$TARGET"

mkdir -p "$(dirname "$OUT")"
cp "$BUILT" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)"
