#!/usr/bin/env bash
# Builds the example packs from source, each with its own build.sh and pinned toolchain:
#   rust-example    (wit-bindgen, wasm32-wasip2)      -> OUT/rust-example.wasm
#   python-example  (componentize-py, in .venv)       -> OUT/python-example.wasm
#   js-example      (componentize-qjs, npm ci)        -> OUT/js-example.wasm
# OUT is the first argument, default <repo>/target/example-packs (ignored by git; the built
# packs are never committed).
#
# A pack whose sources are unchanged is not rebuilt: OUT/<pack>.wasm.sha256 holds the SHA-256
# of its files (toolchain pins included) and of wit/v1/workflow.wit. None of the three toolchains
# builds byte-reproducibly, so the stamp is what keeps repeated runs (CI, then the tests) cheap.
set -euo pipefail

PLUGINS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$PLUGINS")"
OUT="$(realpath -m "${1:-$ROOT/target/example-packs}")"
EXAMPLES=(rust-example python-example js-example)

log() { printf 'build-example-packs: %s\n' "$*" >&2; }

# SHA-256 over the pack's own files (not its toolchain folders or outputs) and the WIT.
sources_hash() {
    local dir="$1"
    {
        (cd "$dir" && find . \( -name .venv -o -name node_modules -o -name target -o -name __pycache__ \) -prune \
            -o -type f ! -name '*.wasm' ! -name '*.wasm.tmp' -print | LC_ALL=C sort | xargs sha256sum)
        sha256sum <"$ROOT/wit/v1/workflow.wit"
    } | sha256sum | cut -d' ' -f1
}

mkdir -p "$OUT"
for pack in "${EXAMPLES[@]}"; do
    wasm="$OUT/$pack.wasm"
    wanted="$(sources_hash "$PLUGINS/$pack")"
    if [[ -f "$wasm" && "$(cat "$wasm.sha256" 2>/dev/null)" == "$wanted" ]]; then
        log "$pack is up to date"
        continue
    fi
    log "building $pack"
    started=$(date +%s)
    rm -f "$wasm.sha256"
    "$PLUGINS/$pack/build.sh" "$wasm"
    echo "$wanted" >"$wasm.sha256"
    log "$pack built in $(($(date +%s) - started)) s"
done
