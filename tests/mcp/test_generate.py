"""generate_image and the per-template tools: queued and waited results, images, thumbnails,
resource links, progress notifications, wait timeouts and argument errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness import TEMPLATE_IDS, Conn, Sim, check_completed, connect, is_prompt_post, poll

PROMPT = "a glowing blue health potion"


def ksampler(graph: dict[str, Any]) -> dict[str, Any]:
    nodes = [n for n in graph.values() if n["class_type"] == "KSampler"]
    assert len(nodes) == 1, f"expected one KSampler in {graph}"
    return nodes[0]["inputs"]


async def test_without_wait_the_job_is_queued_with_concrete_metadata(conn: Conn) -> None:
    # Hold the queue so "queued" is the job's true state when the server answers (no race).
    await conn.sim.hold(True)
    out = await conn.ok("generate_image", {"template": "character-portrait", "prompt": PROMPT, "steps": 2})
    await conn.sim.hold(False)
    assert out["status"] == "queued"
    assert out["images"] == [] and out["execution_time"] == 0.0
    assert isinstance(out["prompt_id"], str) and out["prompt_id"]
    md = out["metadata"]
    assert isinstance(md["seed"], int) and md["seed"] >= 0, md
    assert (md["width"], md["height"], md["steps"], md["batch_size"]) == (512, 512, 2, 1)
    assert (md["cfg_scale"], md["denoise"]) == (7.0, 1.0)
    assert (md["sampler"], md["scheduler"]) == ("euler", "normal")
    assert md["template"] == "character-portrait"
    assert md["checkpoint"] in await conn.sim.checkpoints(), md["checkpoint"]
    done = await conn.wait_state(out["prompt_id"], {"completed"})
    graph = await conn.sim.submitted_graph(out["prompt_id"])
    assert ksampler(graph)["seed"] == md["seed"], "metadata.seed must be the seed ComfyUI got"
    assert done["metadata"]["seed"] == md["seed"]


async def test_explicit_seed_and_random_seed(conn: Conn) -> None:
    fixed = await conn.ok("generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 1, "seed": 12345})
    assert fixed["metadata"]["seed"] == 12345
    random = await conn.ok("generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 1, "seed": -1})
    assert random["metadata"]["seed"] >= 0, "seed -1 must be made concrete"
    for out in (fixed, random):
        await conn.wait_state(out["prompt_id"], {"completed"})
        assert ksampler(await conn.sim.submitted_graph(out["prompt_id"]))["seed"] == out["metadata"]["seed"]


async def test_wait_returns_images_thumbnails_and_resource_links(conn: Conn) -> None:
    args = {"template": "item-icon", "prompt": PROMPT, "steps": 2, "batch_size": 2, "wait": True}
    result = await conn.call("generate_image", args)
    out = await check_completed(conn, result, expect_images=2)
    assert out["metadata"]["batch_size"] == 2
    assert out["execution_time"] >= 0.0
    assert all((im["width"], im["height"]) == (512, 512) for im in out["images"])
    status = await conn.status(out["prompt_id"])
    assert status["state"] == "completed" and status["progress"] == 1.0
    assert [i["filename"] for i in status["images"]] == [i["filename"] for i in out["images"]]
    assert status["metadata"] == out["metadata"]


async def test_large_outputs_get_thumbnails_of_at_most_512_pixels(conn: Conn) -> None:
    args = {"template": "environment-texture", "prompt": "mossy cobblestone", "steps": 1, "wait": True}
    out = await check_completed(conn, await conn.call("generate_image", args), expect_images=1)
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (1024, 1024)
    assert (out["metadata"]["width"], out["metadata"]["height"]) == (1024, 1024)


async def test_pixel_art_saves_at_its_default_size(conn: Conn) -> None:
    args = {"template": "pixel-art", "prompt": "knight with a red cape", "steps": 1, "wait": True}
    out = await check_completed(conn, await conn.call("generate_image", args), expect_images=1)
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (256, 256)


@pytest.mark.parametrize("tid", TEMPLATE_IDS)
async def test_template_tools_generate_with_the_template(conn: Conn, tid: str) -> None:
    await conn.sim.hold(True)
    out = await conn.ok(tid, {"prompt": PROMPT, "steps": 1, "width": 64, "height": 64})
    await conn.sim.hold(False)
    assert out["status"] == "queued"
    assert out["metadata"]["template"] == tid
    assert (out["metadata"]["width"], out["metadata"]["height"]) == (64, 64)
    await conn.wait_state(out["prompt_id"], {"completed"})


async def test_template_tool_with_wait(conn: Conn) -> None:
    result = await conn.call("item-icon", {"prompt": PROMPT, "steps": 1, "wait": True})
    out = await check_completed(conn, result, expect_images=1)
    assert out["metadata"]["template"] == "item-icon"


async def test_sampler_alias_reaches_comfyui_as_a_real_sampler(conn: Conn) -> None:
    args = {"template": "item-icon", "prompt": PROMPT, "steps": 1, "sampler": "dpm++", "wait": True}
    out = await check_completed(conn, await conn.call("generate_image", args))
    sampler = ksampler(await conn.sim.submitted_graph(out["prompt_id"]))["sampler_name"]
    assert sampler != "dpm++" and sampler.startswith("dpmpp"), sampler


async def test_wait_timeout_returns_the_current_state_not_an_error(conn: Conn) -> None:
    await conn.sim.step_delay(2000)
    args = {"template": "item-icon", "prompt": PROMPT, "steps": 2, "wait": True, "timeout": 1}
    result = await conn.call("generate_image", args)
    assert not result.is_error, f"a wait timeout is not an error: {result.content}"
    out = result.structured_content
    assert out["status"] in ("queued", "running"), out
    assert out["prompt_id"]
    await conn.ok("cancel_workflow", {"prompt_id": out["prompt_id"]})
    await conn.wait_state(out["prompt_id"], {"cancelled"})


async def test_progress_notifications_increase_up_to_the_total(conn: Conn) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    args = {"template": "item-icon", "prompt": PROMPT, "steps": 5, "wait": True}
    result = await conn.call("generate_image", args, progress_callback=on_progress)
    await check_completed(conn, result)
    # Callbacks run as tasks spawned in receive order; let the last ones run.
    await poll(
        lambda: _now(seen), lambda s: bool(s) and s[-1][1] is not None and s[-1][0] == s[-1][1], "final progress", 10
    )
    progress = [p for p, _ in seen]
    assert all(a < b for a, b in zip(progress, progress[1:], strict=False)), f"progress not strictly increasing: {seen}"
    totals = {t for _, t in seen}
    assert len(totals) == 1 and None not in totals, f"inconsistent totals: {seen}"
    assert progress[-1] == totals.pop()


async def _now(value: Any) -> Any:
    return list(value)


ARG_ERRORS = [
    (
        "unknown-template",
        {"template": "no-such-template", "prompt": PROMPT},
        ["no-such-template", "character-portrait", "pixel-art"],
    ),
    ("steps-0", {"template": "item-icon", "prompt": PROMPT, "steps": 0}, ["steps"]),
    ("steps-151", {"template": "item-icon", "prompt": PROMPT, "steps": 151}, ["steps", "150"]),
    ("width-513", {"template": "item-icon", "prompt": PROMPT, "width": 513}, ["width", "8"]),
    ("cfg-31", {"template": "item-icon", "prompt": PROMPT, "cfg_scale": 31}, ["cfg_scale", "30"]),
    ("batch-5", {"template": "item-icon", "prompt": PROMPT, "batch_size": 5}, ["batch_size", "4"]),
    ("sampler-fancy", {"template": "item-icon", "prompt": PROMPT, "sampler": "fancy"}, ["sampler", "fancy", "euler"]),
    ("unknown-param", {"template": "item-icon", "prompt": PROMPT, "colour": "red"}, ["colour"]),
    ("missing-prompt", {"template": "item-icon"}, ["prompt"]),
    ("timeout-3601", {"template": "item-icon", "prompt": PROMPT, "timeout": 3601}, ["timeout", "3600"]),
]


@pytest.mark.parametrize("args,needles", [pytest.param(a, n, id=i) for i, a, n in ARG_ERRORS])
async def test_bad_arguments_are_tool_errors_naming_the_problem(
    conn: Conn, args: dict[str, Any], needles: list[str]
) -> None:
    before = await conn.sim.prompt_posts()
    text = await conn.err("generate_image", args)
    for needle in needles:
        assert needle.lower() in text, f"error for {args} should mention {needle!r}: {text}"
    assert await conn.sim.prompt_posts() == before, "a rejected call must not submit anything to ComfyUI"


async def test_template_tool_rejects_bad_arguments(conn: Conn) -> None:
    text = await conn.err("pixel-art", {"prompt": PROMPT, "steps": 151})
    assert "steps" in text and "150" in text
    assert "prompt" in await conn.err("pixel-art", {"steps": 2})


async def test_comfyui_api_key_is_sent_to_comfyui(new_sim: Any, tmp_path: Path) -> None:
    sim: Sim = new_sim()
    await sim.step_delay(5)
    async with connect("stdio", sim, tmp_path / "server", extra_env={"COMFYUI_API_KEY": "sekrit-key"}) as c:
        out = await c.ok("generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 1, "wait": True})
        assert out["status"] == "completed"
    reqs = await sim.requests()
    assert any(is_prompt_post(r) for r in reqs)
    missing = [r for r in reqs if r.get("authorization") != "Bearer sekrit-key"]
    assert not missing, f"requests to ComfyUI without the API key: {missing}"
