"""Restart recovery on both backends (the simulator, and a real ComfyUI with `COMFYUI_REAL_URL`):
a server is SIGKILLed while its job runs in ComfyUI, another server is started on the same job
store, adopts the job (its owner's process is gone), reconciles it with ComfyUI's queue and
history, and completes it with its images downloaded and served.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from harness import (
    ComfyRoutes,
    Sim,
    call_over_http,
    connect,
    poll,
    prepare_workdir,
    read_blob,
    server_env,
    start_http_server,
)

JOB_TIMEOUT = 300.0
"""Bound on the job's end: a CPU ComfyUI loading its model is slow."""
TOKEN = "e2e-job-store-token-0123"


async def running_job_args(backend: ComfyRoutes) -> dict[str, Any]:
    """A job that runs for a few seconds on this backend (kept small on a CPU ComfyUI)."""
    base = {"template": "item-icon", "prompt": "a small test icon"}
    if isinstance(backend, Sim):
        await backend.step_delay(250)
        return {**base, "width": 64, "height": 64, "steps": 20}
    return {**base, "width": 128, "height": 128, "steps": 8}


async def test_sigkill_mid_job_then_the_next_server_completes_it(backend: ComfyRoutes, tmp_path: Path) -> None:
    templates = prepare_workdir(tmp_path)
    env = server_env(backend, tmp_path, templates, COMFYUI_MCP_HTTP_TOKEN=TOKEN)
    first, url = start_http_server(env, tmp_path / "first.stderr.log")
    try:
        first.wait_for("first scan done")
        args = await running_job_args(backend)
        pid = (await call_over_http(url, TOKEN, "generate_image", args))["prompt_id"]
        await poll(backend.queue_ids, lambda q: pid in q[0] or pid in q[1], f"{pid} in ComfyUI's queue", JOB_TIMEOUT)
        os.killpg(first.proc.pid, signal.SIGKILL)
        assert first.wait_exit() == -signal.SIGKILL
    finally:
        first.stop()
    async with connect("stdio", backend, tmp_path) as second:
        status = await second.status(pid)
        assert status["state"] in {"queued", "running", "completed"}, status
        done = await second.wait_state(pid, {"completed", "failed", "cancelled"}, JOB_TIMEOUT)
        assert done["state"] == "completed", done
        assert done["parameters"]["seed"] == done["metadata"]["seed"], done
        assert done["images"], done
        for im in done["images"]:
            assert Path(im["path"]).is_file(), im
            data, mime = await read_blob(second, im["uri"])
            assert mime == "image/png" and data.startswith(b"\x89PNG"), im["uri"]
        assert "adopted an open job" in second.stderr()
    if isinstance(backend, Sim):
        await backend.step_delay(10)
