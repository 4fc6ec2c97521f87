#!/usr/bin/env bash
# Builds this pack from app.js into a WebAssembly component: js-example.wasm next to this
# script, or the path given as the first argument.
#
# The toolchain is componentize-qjs (QuickJS), pinned in package-lock.json and installed from
# npm with `npm ci` into node_modules here; the install is skipped while the lockfile is
# unchanged. Needs node (20 or newer) and npm.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACK=js-example
OUT="$(realpath -m "${1:-$HERE/$PACK.wasm}")"
cd "$HERE"

wanted="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ "$(cat node_modules/.lock.sha256 2>/dev/null)" != "$wanted" ]]; then
    npm ci --no-audit --no-fund --loglevel=error
    echo "$wanted" >node_modules/.lock.sha256
fi

mkdir -p "$(dirname "$OUT")"
# --sync: the host does not run component-model async; without it the pack fails to load.
node_modules/.bin/componentize-qjs --sync --wit wit --world workflow-pack --js app.js -o "$OUT.tmp" >/dev/null
mv -f "$OUT.tmp" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)"
