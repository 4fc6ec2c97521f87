#!/usr/bin/env bash
# Builds every workflow pack in this folder for wasm32-wasip2 (release) and copies them:
#   game-assets          -> templates/game-assets.wasm
#   test-packs/<name>    -> tests/packs/<name>.wasm
#
# Usage: plugins/build-packs.sh [--fallback]   (from any directory)
#
# The ordinary path is what a pack author runs by hand:
#   rustup target add wasm32-wasip2
#   cargo build --release --target wasm32-wasip2
# If that fails (no rustup, or its target cannot be downloaded), the script falls back
# to Debian's toolchain: rustc-web/cargo-web with their std sources and wasi-libc,
# building std for the target with -Zbuild-std (installing the packages when missing).
# `--fallback` skips the ordinary path.
#
# Copies go through a temporary file and a rename, so a watcher never sees half a pack.
set -euo pipefail

PLUGINS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$PLUGINS")"
TARGET=wasm32-wasip2
OUT="${CARGO_TARGET_DIR:-$PLUGINS/target}/$TARGET/release"

# Test packs (members under test-packs/, except the `support` library).
TEST_PACKS=(endless-loop memory-hog panicker huge-output wasi-snoop noisy-logger wrong-abi clash mini mini-v2 slow-loader two-faced a-clash sleeper-agent graph-bomb text-bomb deep-recursion clock-snoop metadata-bomb bad-specs template-cap py-traceback py-import-error sloppy mini-abi2 post-hog abi3 no-postprocessor bad-example grudge)
DEBIAN_PACKAGES=(rustc-web cargo-web rust-web-src lld-22 wasi-libc)

log() { printf 'build-packs: %s\n' "$*" >&2; }

# Keep this machine's paths out of the packs (panic locations embed source paths):
# dependency sources become /cargo/..., our sources /src/...; this also makes builds
# reproducible across machines.
REMAP="--remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo --remap-path-prefix=$ROOT=/src"


ordinary_build() {
    if command -v rustup >/dev/null 2>&1; then
        if ! rustup target list --installed | grep -qx "$TARGET"; then
            log "adding the $TARGET target with rustup"
            rustup target add "$TARGET" || return 1
        fi
    fi
    command -v cargo >/dev/null 2>&1 || return 1
    log "cargo build --release --target $TARGET"
    (cd "$PLUGINS" && RUSTFLAGS="$REMAP" cargo build --release --target "$TARGET")
}

debian_build() {
    local missing=()
    for pkg in "${DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    log "fallback: Debian cargo with -Zbuild-std"
    (cd "$PLUGINS" &&
        PATH="/usr/bin:$PATH" RUSTC_BOOTSTRAP=1 RUSTFLAGS="-L /usr/lib/wasm32-wasi $REMAP" \
            /usr/bin/cargo build --release --target "$TARGET" -Zbuild-std=std,panic_abort)
}

# Copies the built crate `$1` to `$2` atomically.
install_pack() {
    local crate="$1" dest="$2"
    local built="$OUT/${crate//-/_}.wasm"
    if [[ ! -f "$built" ]]; then
        log "missing build output $built"
        exit 1
    fi
    mkdir -p "$(dirname "$dest")"
    cp "$built" "$dest.tmp"
    mv -f "$dest.tmp" "$dest"
    printf '%10d  %s\n' "$(stat -c %s "$dest")" "${dest#"$ROOT"/}"
}

if [[ "${1:-}" == "--fallback" ]]; then
    debian_build
elif ! ordinary_build; then
    log "the ordinary build failed; trying the Debian fallback"
    debian_build
fi

install_pack game-assets "$ROOT/templates/game-assets.wasm"
for pack in "${TEST_PACKS[@]}"; do
    install_pack "$pack" "$ROOT/tests/packs/$pack.wasm"
done
