"""Smoke test and timing of a running real ComfyUI with the tiny random SD1.5 checkpoint.

Checks, in order, failing (exit 1) at the first one that does not hold:
1. GET /object_info answers with every node class, and CheckpointLoaderSimple lists the checkpoint;
2. the recorded text-to-image graph (tests/transcripts/prompt_t2i_tiny.json) with a new seed is
   accepted by POST /prompt and reaches status "success" in GET /history/{id} (the "cold" run);
3. the same graph with another seed succeeds again (the "warm" run: the model is loaded);
4. each run's saved image, fetched through GET /view, is a 64x64 PNG that is not one flat colour.

Prints one line per check and the wall times (POST until /history reports success) to stdout.
Uses the Python standard library only, so any python3 >= 3.8 runs it.

Usage: python3 smoke.py BASE_URL   (e.g. http://127.0.0.1:8190, as printed by start.sh)
"""

from __future__ import annotations

import json
import random
import struct
import sys
import time
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

CHECKPOINT = "tiny-random-sd15.safetensors"
GRAPH_FILE = Path(__file__).resolve().parent.parent / "transcripts" / "prompt_t2i_tiny.json"
JOB_TIMEOUT_S = 600
POLL_INTERVAL_S = 0.1
# The recorded server (same ComfyUI) had this many node classes; fewer means a broken install.
MIN_NODE_CLASSES = 500


class SmokeError(Exception):
    """A check did not hold."""


def http_json(base: str, path: str, body: dict | None = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def http_bytes(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=60) as resp:
        return resp.read()


def check_object_info(base: str) -> None:
    info = http_json(base, "/object_info")
    if not isinstance(info, dict) or len(info) < MIN_NODE_CLASSES:
        raise SmokeError(f"/object_info has {len(info)} node classes, expected at least {MIN_NODE_CLASSES}")
    ckpts = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    if CHECKPOINT not in ckpts:
        raise SmokeError(f"CheckpointLoaderSimple lists {ckpts}, not {CHECKPOINT}")
    print(f"ok object_info: {len(info)} node classes, CheckpointLoaderSimple lists {CHECKPOINT}")


def png_size_and_flatness(png: bytes) -> tuple[int, int, bool]:
    """(width, height, is_flat) of an 8-bit PNG; flat means the pixel data has one byte value."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise SmokeError("/view did not return a PNG")
    width, height = struct.unpack(">II", png[16:24])
    pos, idat = 8, b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos : pos + 8])
        if kind == b"IDAT":
            idat += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(idat)
    row = len(raw) // height
    pixels = b"".join(raw[r * row + 1 : (r + 1) * row] for r in range(height))  # drop filter bytes
    return width, height, len(set(pixels)) <= 1


def run_job(base: str, graph: dict, seed: int, label: str) -> float:
    graph = json.loads(json.dumps(graph))
    graph["3"]["inputs"]["seed"] = seed
    t0 = time.monotonic()
    answer = http_json(base, "/prompt", {"prompt": graph, "client_id": "real-comfyui-smoke"})
    if answer.get("node_errors"):
        raise SmokeError(f"{label}: POST /prompt reported node errors {answer['node_errors']}")
    prompt_id = answer["prompt_id"]
    while True:
        entry = http_json(base, f"/history/{prompt_id}").get(prompt_id)
        status = (entry or {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            break
        if time.monotonic() - t0 > JOB_TIMEOUT_S:
            raise SmokeError(f"{label}: job {prompt_id} not finished after {JOB_TIMEOUT_S} s")
        time.sleep(POLL_INTERVAL_S)
    wall = time.monotonic() - t0
    if status.get("status_str") != "success":
        raise SmokeError(f"{label}: job {prompt_id} ended with {status}")

    image = entry["outputs"]["9"]["images"][0]
    query = urllib.parse.urlencode({k: image[k] for k in ("filename", "subfolder", "type")})
    width, height, flat = png_size_and_flatness(http_bytes(base, f"/view?{query}"))
    if (width, height) != (64, 64):
        raise SmokeError(f"{label}: image is {width}x{height}, expected 64x64")
    if flat:
        raise SmokeError(f"{label}: image is one flat colour (NaN or uninitialised weights?)")
    print(f"ok {label}: seed {seed}, {image['filename']} 64x64, {wall:.1f} s POST -> success")
    return wall


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    base = argv[0].rstrip("/")
    graph = json.loads(GRAPH_FILE.read_text())["request"]["json_body"]["prompt"]
    try:
        check_object_info(base)
        seed = random.SystemRandom().randrange(1, 2**48)
        cold = run_job(base, graph, seed, "cold")
        warm = run_job(base, graph, seed + 1, "warm")
    except (SmokeError, OSError, KeyError, ValueError) as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print(f"timing: cold {cold:.1f} s, warm {warm:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
