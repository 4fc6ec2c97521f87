#!/usr/bin/env bash
# Starts the cached real ComfyUI (CPU) in the background on 127.0.0.1:PORT and prints its base URL
# on stdout once GET /system_stats answers. Runs setup.sh first (a no-op when already cached).
#
# Usage: tests/real-comfyui/start.sh PORT [extra ComfyUI arguments, e.g. --preview-method latent2rgb]
# Env:   COMFYUI_START_TIMEOUT seconds to wait for the server (default 120)
#
# Each start gets fresh state under <cache>/run/PORT/: input/, output/, temp/, user/, the SQLite
# database, comfyui.log and comfyui.pid. ComfyUI leads its own process group (stop.sh kills it).
# If a ComfyUI started by this script already serves PORT, its URL is printed again.
set -euo pipefail

# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

port="${1:-}"
if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    rc_die "usage: start.sh PORT [ComfyUI args...] (PORT 1-65535, got '${port}')"
fi
shift
timeout_s="${COMFYUI_START_TIMEOUT:-120}"
url="http://127.0.0.1:$port"

"$RC_HERE/setup.sh" >&2
rc_compute_paths

run_dir="$(rc_run_dir "$port")"
pid_file="$run_dir/comfyui.pid"
log_file="$run_dir/comfyui.log"

if [ -f "$pid_file" ] && rc_is_our_comfyui "$(cat "$pid_file")"; then
    if curl -sf -o /dev/null "$url/system_stats"; then
        rc_log "already running (pid $(cat "$pid_file"))"
        echo "$url"
        exit 0
    fi
    rc_die "a ComfyUI started earlier (pid $(cat "$pid_file")) holds $run_dir but does not answer; run stop.sh $port"
fi
if curl -s -o /dev/null "$url/"; then
    rc_die "something else already answers on $url; choose another port"
fi

rm -rf "$run_dir"
mkdir -p "$run_dir"/{input,output,temp,user}

t0="$(date +%s.%N)"
(
    cd "$(rc_comfyui_dir)"
    export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
    # setsid: ComfyUI becomes the leader of a new process group, so stop.sh can end all of it.
    exec setsid "$RC_VPY" main.py --cpu --listen 127.0.0.1 --port "$port" \
        --input-directory "$run_dir/input" --output-directory "$run_dir/output" \
        --temp-directory "$run_dir/temp" --user-directory "$run_dir/user" \
        --database-url "sqlite:///$run_dir/user/comfyui.db" "$@"
) >"$log_file" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pid_file"
rc_log "started pid $pid, log $log_file"

deadline=$(( $(date +%s) + timeout_s ))
until curl -sf -o /dev/null "$url/system_stats"; do
    if ! rc_alive "$pid"; then
        tail -n 30 "$log_file" >&2 || true
        rm -f "$pid_file"
        rc_die "ComfyUI exited before answering on $url (log: $log_file)"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        tail -n 30 "$log_file" >&2 || true
        "$RC_HERE/stop.sh" "$port" >&2 || true
        rc_die "ComfyUI did not answer GET $url/system_stats within ${timeout_s} s (log: $log_file)"
    fi
    sleep 0.5
done
rc_log "phase startup: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s"
echo "$url"
