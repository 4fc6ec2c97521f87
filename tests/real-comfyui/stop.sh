#!/usr/bin/env bash
# Stops a ComfyUI started by start.sh: SIGTERM to its process group, SIGKILL after 20 s.
# Only the pid recorded in <cache>/run/PORT/comfyui.pid is touched, and only while that pid is
# still a ComfyUI main.py leading its own process group (a reused pid is left alone).
#
# Usage: tests/real-comfyui/stop.sh [PORT]   (without PORT: every instance start.sh recorded)
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

stop_one() {
    local pid_file="$1" pid
    pid="$(cat "$pid_file" 2>/dev/null || true)"
    if ! rc_is_our_comfyui "$pid"; then
        rc_log "no running ComfyUI for $pid_file"
        rm -f "$pid_file"
        return 0
    fi
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
        rc_alive "$pid" || break
        sleep 0.5
    done
    if rc_alive "$pid"; then
        rc_log "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pid_file"
    rc_log "stopped pid $pid"
}

if [ $# -ge 1 ]; then
    [[ "$1" =~ ^[0-9]+$ ]] || rc_die "usage: stop.sh [PORT] (got '$1')"
    stop_one "$(rc_run_dir "$1")/comfyui.pid"
else
    shopt -s nullglob
    for f in "$RC_CACHE"/run/*/comfyui.pid; do
        stop_one "$f"
    done
fi
