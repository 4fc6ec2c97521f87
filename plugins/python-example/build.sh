#!/usr/bin/env bash
# Builds this pack from app.py into a WebAssembly component: python-example.wasm next to this
# script, or the path given as the first argument.
#
# The toolchain is componentize-py, pinned in requirements.txt and installed from PyPI into a
# virtualenv here (.venv); the install is skipped while requirements.txt is unchanged.
# Needs python3 (3.10 or newer) with venv.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACK=python-example
OUT="$(realpath -m "${1:-$HERE/$PACK.wasm}")"
cd "$HERE"

wanted="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [[ "$(cat .venv/.requirements.sha256 2>/dev/null)" != "$wanted" ]]; then
    python3 -m venv .venv
    .venv/bin/pip install --disable-pip-version-check --quiet -r requirements.txt
    echo "$wanted" >.venv/.requirements.sha256
fi

mkdir -p "$(dirname "$OUT")"
# No --stub-wasi: the host already denies WASI, and stubbed WASI makes print() trap silently.
.venv/bin/componentize-py -d wit -w workflow-pack componentize app -o "$OUT.tmp" >/dev/null
mv -f "$OUT.tmp" "$OUT"
echo "built $OUT ($(stat -c %s "$OUT") bytes)"
