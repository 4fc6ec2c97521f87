"""A farm of two real ComfyUI instances (`COMFYUI_REAL_URL` and `COMFYUI_REAL_URL_2`, both
started by `tests/real-comfyui/start.sh`; skipped unless both are set), through the MCP SDK
client:

- jobs are spread over both instances (each completes on the one its status names, equal
  capacity: two each of four submitted together);
- then the second instance is stopped (`tests/real-comfyui/stop.sh PORT`) while it runs one job
  and holds another queued: the running one fails naming the instance (no retries asked),
  the queued one moves to the first instance under the same prompt id and completes there.

This test stops the second instance: it runs last in the real tier (`.ci/run` runs it alone
after the rest of the suite).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import anyio
import pytest

from harness import REPO, RealComfyUI, connect

JOB_TIMEOUT = 600
URLS = [os.environ.get("COMFYUI_REAL_URL"), os.environ.get("COMFYUI_REAL_URL_2")]

pytestmark = pytest.mark.skipif(
    not all(URLS),
    reason="a farm of two real ComfyUIs needs COMFYUI_REAL_URL and COMFYUI_REAL_URL_2 (start both with tests/real-comfyui/start.sh PORT)",
)


async def wait_for(conn: Any, prompt_id: str, seconds: float = JOB_TIMEOUT) -> dict[str, Any]:
    with anyio.fail_after(seconds):
        while True:
            status = await conn.ok("get_workflow_status", {"prompt_id": prompt_id})
            if status["state"] in ("completed", "failed", "cancelled"):
                return status
            await anyio.sleep(0.25)


async def test_two_real_instances_share_work_and_a_dead_ones_queue_moves(tmp_path: Path) -> None:
    first, second = (u.rstrip("/") for u in URLS if u)
    backends = tmp_path / "backends.json"
    backends.write_text(json.dumps([{"name": "one", "url": first}, {"name": "two", "url": second}]))
    env = {
        "COMFYUI_MCP_BACKENDS_FILE": str(backends),
        "COMFYUI_MCP_FAILOVER_AFTER_MS": "2000",
        "COMFYUI_TIMEOUT": str(JOB_TIMEOUT),
    }
    (tmp_path / "server").mkdir()
    args = {"template": "character-portrait", "prompt": "a farm test", "width": 64, "height": 64, "steps": 2}
    async with connect("stdio", RealComfyUI(first), tmp_path / "server", extra_env=env) as conn:
        jobs = [await conn.ok("generate_image", {**args, "seed": int.from_bytes(os.urandom(4), "big")}) for _ in range(4)]
        assert sorted(job["backend"] for job in jobs) == ["one", "one", "two", "two"], jobs
        for job in jobs:
            done = await wait_for(conn, job["prompt_id"])
            assert (done["state"], done["backend"]) == ("completed", job["backend"]), done

        # Two more for `two` (one runs, one waits), then `two` dies.
        load = [await conn.ok("generate_image", {**args, "steps": 8, "seed": int.from_bytes(os.urandom(4), "big")}) for _ in range(4)]
        on_two = [job for job in load if job["backend"] == "two"]
        assert len(on_two) == 2, load
        with anyio.fail_after(JOB_TIMEOUT):
            while (await conn.ok("get_workflow_status", {"prompt_id": on_two[0]["prompt_id"]}))["state"] != "running":
                await anyio.sleep(0.1)
        port = str(urlparse(second).port)
        subprocess.run([str(REPO / "tests/real-comfyui/stop.sh"), port], check=True, capture_output=True)

        running = await wait_for(conn, on_two[0]["prompt_id"])
        assert running["state"] == "failed", running
        assert running["error"]["message"].startswith("backend `two` stopped answering"), running["error"]
        assert "pass `retries`" in running["error"]["message"], running["error"]
        queued = await wait_for(conn, on_two[1]["prompt_id"])
        assert (queued["state"], queued["backend"]) == ("completed", "one"), queued
        assert any("moved from backend `two` to `one`" in w for w in queued.get("warnings", [])), queued
        for job in load:
            if job["backend"] == "one":
                assert (await wait_for(conn, job["prompt_id"]))["state"] == "completed"
