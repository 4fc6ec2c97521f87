"""Custom workflows and the execution timeout (`COMFYUI_TIMEOUT`) on both backends: the simulator
(always) and a real ComfyUI (with `COMFYUI_REAL_URL`).

- An inline API-format workflow and a workflow file given to generate_image complete with valid
  PNGs.
- A job that executes longer than a small `COMFYUI_TIMEOUT` is interrupted in ComfyUI and ends
  `failed` with "Workflow execution timeout" (typed `execution_timeout`), and ComfyUI's queue is
  free afterwards.
- Time waiting in ComfyUI's queue does not count: a job that waits behind someone else's long
  job for longer than the limit, and then executes within it, completes.

The simulator's jobs are made slow with its step delay; on the real ComfyUI a job is slow by its
size and step count. Our own job's run is measured first on this machine (a CPU shared with
others) and the limit set to three times that.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from PIL import Image

from harness import EXAMPLES_WORKFLOWS, ComfyRoutes, Conn, Sim, check_completed, connect, poll, texts

TXT2IMG: dict[str, Any] = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())
TERMINAL = {"completed", "failed", "cancelled"}
JOB_TIMEOUT = 300
CALL_TIMEOUT = JOB_TIMEOUT + 30.0
SIM_STEP_MS = 100


def fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "big")  # never a cached re-run on the real ComfyUI


def workflow(size: int, steps: int) -> dict[str, Any]:
    wf = copy.deepcopy(TXT2IMG)
    wf["5"]["inputs"].update(width=size, height=size)
    wf["3"]["inputs"].update(steps=steps, seed=fresh_seed())
    return wf


def check_png(path: str, size: tuple[int, int]) -> None:
    with Image.open(Path(path)) as img:
        img.load()
        assert img.format == "PNG" and img.size == size, (path, img.format, img.size)


@asynccontextmanager
async def server(backend: ComfyRoutes, workdir: Path, limit_s: float) -> AsyncIterator[Conn]:
    async with connect("stdio", backend, workdir, extra_env={"COMFYUI_TIMEOUT": str(limit_s)}) as conn:
        yield conn


async def queue_is_free(backend: ComfyRoutes, prompt_id: str) -> None:
    """ComfyUI runs nothing and no longer holds `prompt_id` (this test's backend is its own)."""

    async def ids() -> tuple[list[str], list[str]]:
        return await backend.queue_ids()

    await poll(ids, lambda q: not q[0] and prompt_id not in q[1], f"ComfyUI's queue to let go of {prompt_id}", 60)


async def execution_seconds(conn: Conn, wf: dict[str, Any]) -> float:
    """Runs `wf` to completion and returns its execution time as reported."""
    out = await conn.ok("generate_image", {"workflow": wf, "wait": True, "timeout": JOB_TIMEOUT}, timeout=CALL_TIMEOUT)
    assert out["status"] == "completed", out
    return float(out["execution_time"])


async def test_custom_workflows_complete(bconn: Conn) -> None:
    wf = workflow(64, 2)
    result = await bconn.call("generate_image", {"workflow": wf, "wait": True, "timeout": JOB_TIMEOUT}, timeout=CALL_TIMEOUT)
    out = await check_completed(bconn, result, expect_images=1)
    check_png(out["images"][0]["path"], (64, 64))
    assert out["workflow_name"] == "`workflow` (inline)" and out["metadata"]["workflow_sha256"], out
    args = {"workflow_path": "txt2img_api.json", "seed": fresh_seed(), "wait": True, "timeout": JOB_TIMEOUT}
    out = await check_completed(bconn, await bconn.call("generate_image", args, timeout=CALL_TIMEOUT), expect_images=1)
    check_png(out["images"][0]["path"], (64, 64))


async def test_a_job_executing_past_the_timeout_is_interrupted_and_fails(backend: ComfyRoutes, tmp_path: Path) -> None:
    if isinstance(backend, Sim):
        await backend.step_delay(SIM_STEP_MS)
        limit, wf = 1.5, workflow(64, 200)  # ~20 s of simulated work
    else:
        limit, wf = 3.0, workflow(512, 200)  # minutes on a CPU
    async with server(backend, tmp_path, limit) as conn:
        tools = {t.name: t for t in (await conn.session.list_tools()).tools}
        for name in ("generate_image", "load_workflow", "item-icon"):
            assert tools[name].input_schema["properties"]["timeout"]["default"] == limit, "wait follows COMFYUI_TIMEOUT"
        started = time.monotonic()
        result = await conn.call("generate_image", {"workflow": wf, "wait": True, "timeout": JOB_TIMEOUT}, timeout=CALL_TIMEOUT)
        elapsed = time.monotonic() - started
        out = result.structured_content or {}
        assert result.is_error, f"the job should have timed out: {out}"
        assert out["status"] == "failed", out
        assert out["error"]["kind"] == "execution_timeout", out["error"]
        message = texts(result)
        for part in ("Workflow execution timeout", f"{limit:g} s", "COMFYUI_TIMEOUT"):
            assert part in message, f"{part!r} missing: {message}"
        assert elapsed < limit + 60, f"the timeout took {elapsed:.1f} s to act"
        await queue_is_free(backend, out["prompt_id"])
        st = await conn.status(out["prompt_id"])
        assert st["state"] == "failed" and st["error"]["kind"] == "execution_timeout", st
        if isinstance(backend, Sim):
            assert out["prompt_id"] in await backend.interrupts(), "the job was interrupted in ComfyUI"


async def test_time_in_the_queue_does_not_count(backend: ComfyRoutes, tmp_path: Path) -> None:
    # Our job's own run, measured warm (the loader and text encoders are cached after the
    # first run, as in ComfyUI), sets a limit three times as long.
    sim = isinstance(backend, Sim)
    if sim:
        await backend.step_delay(SIM_STEP_MS)
    steps = 20 if sim else 2
    async with server(backend, tmp_path / "probe", JOB_TIMEOUT) as probe:
        await execution_seconds(probe, workflow(64, 1))
        each = await execution_seconds(probe, workflow(64, steps))
    limit = round(max(each * 3, 1.0), 2)
    async with server(backend, tmp_path / "limited", limit) as conn:
        # Someone else's job, far longer than the limit, holds ComfyUI (not ours: never timed out).
        blocker = workflow(64, 2000) if sim else workflow(512, 400)
        posted = await backend.request("POST", "/prompt", {"prompt": blocker, "client_id": "someone-else"})
        assert posted.status_code == 200, posted.text
        blocker_id = posted.json()["prompt_id"]
        await poll(backend.queue_ids, lambda q: blocker_id in q[0], "the other job to run", 60)
        pid = (await conn.ok("generate_image", {"workflow": workflow(64, steps)}))["prompt_id"]
        await anyio.sleep(limit * 1.5)
        waiting = await conn.status(pid)
        assert waiting["state"] == "queued", f"our job should still wait behind the other one: {waiting}"
        stopped = await backend.request("POST", "/interrupt", {"prompt_id": blocker_id})
        assert stopped.status_code == 200, stopped.text
        final = await conn.wait_state(pid, TERMINAL, CALL_TIMEOUT)
        assert final["state"] == "completed", f"limit {limit} s, our job alone ~{each:.2f} s: {final}"
        waited = final["started_at"] - final["submitted_at"]
        assert waited > limit, f"it waited {waited:.1f} s in the queue, more than the limit ({limit} s)"
