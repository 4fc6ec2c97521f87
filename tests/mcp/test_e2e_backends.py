"""The same end-to-end assertions against two backends: the simulator (`sim`, always) and a real
ComfyUI (`real`, when `COMFYUI_REAL_URL` names an already running one, e.g. started with
tests/real-comfyui/start.sh). One `comfyui-mcp serve` over stdio per backend.

Covered: every template of the shipped pack at 64x64 (valid PNGs, one per batch item), the example
API-format workflows, monotonic progress, deleting a queued job and interrupting a running one,
and three kinds of errors (an argument, a graph our checker refuses against the live object_info,
and a graph only ComfyUI can refuse). The backends differ only in how a job is made slow (the
simulator has a step delay; on the real one a job is slow by its size); what is asserted is the same.
"""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from harness import EXAMPLES_WORKFLOWS, Conn, Sim, check_completed, poll

TERMINAL = {"completed", "failed", "cancelled"}
JOB_TIMEOUT = 300
"""`timeout` argument of waiting calls: a CPU ComfyUI loading its model is slow."""
CALL_TIMEOUT = JOB_TIMEOUT + 30.0
SIZE = 64
def is_sim(conn: Conn) -> bool:
    return isinstance(conn.sim, Sim)


async def slow_job_args(conn: Conn) -> dict[str, Any]:
    """Arguments of a job that runs for a while on this backend (several seconds on a CPU)."""
    if is_sim(conn):
        await conn.sim.step_delay(300)
        return {"width": SIZE, "height": SIZE, "steps": 40}
    return {"width": 256, "height": 256, "steps": 30}


def check_pngs(out: dict[str, Any], count: int, size: tuple[int, int]) -> None:
    """Each image of a finished job is a saved, decodable PNG of exactly `size`."""
    assert len(out["images"]) == count, out["images"]
    for im in out["images"]:
        path = Path(im["path"])
        with Image.open(path) as img:
            img.load()
            assert img.format == "PNG", f"{path} is {img.format}"
            assert img.size == size, f"{path} is {img.size}, expected {size}"


async def generate(conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
    result = await conn.call("generate_image", {**args, "wait": True, "timeout": JOB_TIMEOUT}, timeout=CALL_TIMEOUT)
    return await check_completed(conn, result)


def sample_png(size: int, mode: str = "RGB") -> str:
    """A `size` x `size` PNG as base64: a gradient, or for mode "L" a white square on black."""
    img = Image.new(mode, (size, size))
    if mode == "L":
        img.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    else:
        img.putdata([(x * 4 % 256, y * 4 % 256, 128) for y in range(size) for x in range(size)])
    out = io.BytesIO()
    img.save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_every_shipped_template_at_64x64(bconn: Conn) -> None:
    listed = await bconn.ok("list_workflows")
    ids = [w["id"] for w in listed["workflows"]]
    assert {"image-variation", "inpaint"} <= set(ids), ids
    for i, tid in enumerate(ids):
        batch = 2 if tid == "item-icon" or (i == 0 and "item-icon" not in ids) else 1
        args: dict[str, Any] = {"template": tid, "prompt": f"a small test image of {tid}"}
        if tid == "image-variation":
            args["image"] = sample_png(SIZE)
        elif tid == "inpaint":
            args |= {"image": sample_png(SIZE), "mask": sample_png(SIZE, "L")}
        else:
            args |= {"width": SIZE, "height": SIZE}
        out = await generate(bconn, {**args, "steps": 2, "batch_size": batch})
        check_pngs(out, batch, (SIZE, SIZE))
        md = out["metadata"]
        assert (md["template"], md["width"], md["height"], md["steps"], md["batch_size"]) == (
            tid,
            SIZE,
            SIZE,
            2,
            batch,
        ), md


@pytest.mark.parametrize("name", ["txt2img_api.json", "invert_api.json"])
async def test_example_workflows_complete(bconn: Conn, name: str) -> None:
    args = {"workflow_path": name, "wait": True, "timeout": JOB_TIMEOUT}
    if name == "txt2img_api.json":
        args["parameters"] = {"seed": int.from_bytes(os.urandom(4), "big")}  # never a cached re-run
    out = await bconn.ok("load_workflow", args, timeout=CALL_TIMEOUT)
    assert out["status"] == "completed", out
    st = await bconn.status(out["prompt_id"])
    assert st["state"] == "completed" and st["progress"] == 1.0, st
    assert len(st["images"]) == 1, st["images"]
    expected = json.loads((EXAMPLES_WORKFLOWS / name).read_text())
    sizes = [n["inputs"] for n in expected.values() if n["class_type"] in ("EmptyLatentImage", "EmptyImage")]
    size = (sizes[0]["width"], sizes[0]["height"])
    check_pngs(out, 1, size)


async def test_progress_only_moves_forward_to_one(bconn: Conn) -> None:
    if is_sim(bconn):
        await bconn.sim.step_delay(50)
    args = {"template": "item-icon", "prompt": "a progress bar", "width": SIZE, "height": SIZE, "steps": 20}
    pid = (await bconn.ok("generate_image", args))["prompt_id"]
    seen: list[tuple[str, float]] = []

    async def sample() -> dict[str, Any]:
        st = await bconn.status(pid)
        seen.append((st["state"], st["progress"]))
        return st

    final = await poll(sample, lambda s: s["state"] in TERMINAL, f"{pid} to finish", CALL_TIMEOUT)
    assert final["state"] == "completed", final
    values = [p for _, p in seen]
    assert all(0.0 <= p <= 1.0 for p in values), seen
    assert all(a <= b for a, b in zip(values, values[1:], strict=False)), f"progress went backwards: {seen}"
    assert values[-1] == 1.0, seen
    assert len(set(values)) >= 2, f"progress never moved (only {set(values)}): {seen}"


async def test_delete_a_queued_job_and_interrupt_a_running_one(bconn: Conn) -> None:
    slow = await slow_job_args(bconn)
    first = (await bconn.ok("generate_image", {"template": "item-icon", "prompt": "first", **slow}))["prompt_id"]
    st = await bconn.wait_state(first, {"running"} | TERMINAL, CALL_TIMEOUT)
    assert st["state"] == "running", f"the slow job finished before it was seen running: {st}"
    second = (await bconn.ok("generate_image", {"template": "item-icon", "prompt": "second", **slow}))["prompt_id"]
    assert (await bconn.status(second))["state"] == "queued"
    running, pending = await bconn.sim.queue_ids()
    assert first in running and second in pending, (running, pending)

    # The queued one: deleted from the queue, never runs.
    out = await bconn.ok("cancel_workflow", {"prompt_id": second})
    assert out["cancelled"] is True and out["prompt_id"] == second, out
    assert (await bconn.status(second))["state"] == "cancelled"
    running, pending = await bconn.sim.queue_ids()
    assert second not in running + pending, (running, pending)
    assert (await bconn.status(first))["state"] == "running", "deleting the queued job must not touch the running one"

    # The running one: interrupted.
    out = await bconn.ok("cancel_workflow", {"prompt_id": first})
    assert out["cancelled"] is True and out["prompt_id"] == first, out
    assert (await bconn.wait_state(first, TERMINAL))["state"] == "cancelled"
    await poll(bconn.sim.queue_ids, lambda q: not set(q[0] + q[1]) & {first, second}, "both jobs to leave the queue")
    hist = await bconn.sim.history(first)
    assert hist is not None and hist["status"]["completed"] is False, hist
    assert hist["status"]["messages"][-1][0] == "execution_interrupted", hist["status"]
    assert await bconn.sim.history(second) is None, "a deleted queued job must never run"
    assert (await bconn.status(second))["state"] == "cancelled"


async def test_an_invalid_parameter_names_it(bconn: Conn) -> None:
    text = await bconn.err("generate_image", {"template": "item-icon", "prompt": "x", "steps": 0})
    assert "steps" in text, text


async def test_a_wrong_enum_is_refused_by_our_checker_with_the_allowed_values(bconn: Conn) -> None:
    graph = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())
    graph["3"]["inputs"]["sampler_name"] = "euler_fancy"
    (bconn.workflows_dir / "bad-enum.json").write_text(json.dumps(graph))
    text = await bconn.err("load_workflow", {"workflow_path": "bad-enum.json"})
    for needle in ("3", "ksampler", "sampler_name", "euler_fancy", "euler_ancestral", "heun", "42 choices"):
        assert needle in text, f"the refusal should name {needle!r}: {text}"


async def test_a_missing_input_image_comes_back_with_comfyuis_own_details(bconn: Conn) -> None:
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "mcp_e2e/missing.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "e2e/missing"}},
    }
    (bconn.workflows_dir / "missing-image.json").write_text(json.dumps(graph))
    with anyio.fail_after(CALL_TIMEOUT):
        text = await bconn.err("load_workflow", {"workflow_path": "missing-image.json"})
    for needle in ("custom_validation_failed", "invalid image file: mcp_e2e/missing.png", "loadimage"):
        assert needle in text, f"ComfyUI's own refusal should carry {needle!r}: {text}"
