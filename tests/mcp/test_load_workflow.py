"""load_workflow: API-format files from the configured folders, parameter overrides (checked in
the graph ComfyUI received), path confinement, UI-format files and invalid graphs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from harness import EXAMPLES_WORKFLOWS, Conn

TERMINAL = {"completed", "failed", "cancelled"}
TXT2IMG = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())


async def run(conn: Conn, path: str, parameters: dict[str, Any] | None = None, wait: bool = True) -> dict[str, Any]:
    args: dict[str, Any] = {"workflow_path": path, "wait": wait}
    if parameters is not None:
        args["parameters"] = parameters
    out = await conn.ok("load_workflow", args)
    for key in ("prompt_id", "status", "workflow_name", "parameters_applied", "parameters_unmatched"):
        assert key in out, f"load_workflow result lacks {key}: {out}"
    if wait:
        assert out["status"] == "completed", out
    return out


async def finished(conn: Conn, prompt_id: str, images: int) -> dict[str, Any]:
    """The job's final status, which must be completed with `images` images."""
    st = await conn.wait_state(prompt_id, TERMINAL)
    assert st["state"] == "completed", st
    assert len(st["images"]) == images, st["images"]
    return st


async def test_runs_an_example_workflow_by_relative_name(conn: Conn) -> None:
    out = await run(conn, "txt2img_api.json")
    assert "txt2img_api" in out["workflow_name"]
    assert out["parameters_applied"] == {} and out["parameters_unmatched"] == []
    await finished(conn, out["prompt_id"], 1)
    graph = await conn.sim.submitted_graph(out["prompt_id"])
    assert {k: n["class_type"] for k, n in graph.items()} == {k: n["class_type"] for k, n in TXT2IMG.items()}
    assert graph["3"]["inputs"] == TXT2IMG["3"]["inputs"], "without overrides the sampler is left alone"


async def test_runs_by_absolute_path_inside_a_folder(conn: Conn) -> None:
    out = await run(conn, str(EXAMPLES_WORKFLOWS / "invert_api.json"), wait=False)
    assert out["status"] in ("queued", "running", "completed")
    await finished(conn, out["prompt_id"], 1)


async def test_overrides_reach_the_right_inputs(conn: Conn) -> None:
    params = {
        "seed": 123,
        "steps": 3,
        "cfg_scale": 5.5,
        "sampler": "euler_ancestral",
        "scheduler": "karras",
        "denoise": 0.9,
        "width": 128,
        "height": 96,
        "batch_size": 2,
        "prompt": "a red fox in the snow",
        "negative_prompt": "ugly, extra legs",
        "9.filename_prefix": "overrides/fox",
    }
    out = await run(conn, "txt2img_api.json", params)
    assert out["parameters_unmatched"] == []
    assert out["parameters_applied"] == params, out["parameters_applied"]
    await finished(conn, out["prompt_id"], 2)
    g = await conn.sim.submitted_graph(out["prompt_id"])
    ks = g["3"]["inputs"]
    assert (ks["seed"], ks["steps"], ks["cfg"], ks["sampler_name"], ks["scheduler"], ks["denoise"]) == (
        123,
        3,
        5.5,
        "euler_ancestral",
        "karras",
        0.9,
    )
    assert (g["5"]["inputs"]["width"], g["5"]["inputs"]["height"], g["5"]["inputs"]["batch_size"]) == (128, 96, 2)
    assert g["6"]["inputs"]["text"] == "a red fox in the snow", "prompt goes to the encoder wired to positive"
    assert g["7"]["inputs"]["text"] == "ugly, extra legs", "negative_prompt goes to the encoder wired to negative"
    assert g["9"]["inputs"]["filename_prefix"] == "overrides/fox"
    assert ks["model"] == ["4", 0] and ks["positive"] == ["6", 0], "links must be left alone"


async def test_overrides_that_match_nothing_are_reported(conn: Conn) -> None:
    out = await run(conn, "invert_api.json", {"seed": 5, "lora_strength": 0.5, "99.seed": 1}, wait=False)
    assert sorted(out["parameters_unmatched"]) == ["99.seed", "lora_strength", "seed"], out
    assert out["parameters_applied"] == {}
    await finished(conn, out["prompt_id"], 1)


async def test_workflows_in_the_second_folder_are_found(conn: Conn) -> None:
    (conn.workflows_dir / "mine.json").write_text(json.dumps(TXT2IMG))
    out = await run(conn, "mine.json", {"seed": 7})
    assert out["parameters_applied"] == {"seed": 7}
    await finished(conn, out["prompt_id"], 1)
    assert (await conn.sim.submitted_graph(out["prompt_id"]))["3"]["inputs"]["seed"] == 7


async def test_load_workflow_wait_timeout_returns_the_current_state(conn: Conn) -> None:
    await conn.sim.step_delay(2000)
    out = await conn.ok("load_workflow", {"workflow_path": "txt2img_api.json", "wait": True, "timeout": 1})
    assert out["status"] in ("queued", "running"), out
    await conn.ok("cancel_workflow", {"prompt_id": out["prompt_id"]})
    assert (await conn.wait_state(out["prompt_id"], TERMINAL))["state"] == "cancelled"


def allowed_folders(conn: Conn) -> list[Path]:
    return [EXAMPLES_WORKFLOWS.resolve(), conn.workflows_dir.resolve()]


async def expect_refused(conn: Conn, path: str) -> str:
    before = await conn.sim.prompt_posts()
    text = await conn.err("load_workflow", {"workflow_path": path})
    folders = allowed_folders(conn)
    assert any(str(f).lower() in text for f in folders), f"refusal of {path} should name the allowed folders: {text}"
    assert await conn.sim.prompt_posts() == before
    return text


async def test_parent_traversal_is_refused(conn: Conn) -> None:
    await expect_refused(conn, "../../etc/passwd")
    await expect_refused(conn, "../../../../../../../../etc/hostname")


async def test_absolute_path_outside_the_folders_is_refused(conn: Conn) -> None:
    outside = conn.workdir / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "wf.json").write_text(json.dumps(TXT2IMG))
    await expect_refused(conn, str(outside / "wf.json"))
    await expect_refused(conn, "/etc/passwd")


async def test_symlinks_pointing_outside_are_refused(conn: Conn) -> None:
    outside = conn.workdir / "outside-link-target"
    outside.mkdir(exist_ok=True)
    (outside / "wf.json").write_text(json.dumps(TXT2IMG))
    link = conn.workflows_dir / "link.json"
    if not link.is_symlink():
        os.symlink(outside / "wf.json", link)
    await expect_refused(conn, "link.json")
    await expect_refused(conn, str(link))
    subdir = conn.workflows_dir / "linked-dir"
    if not subdir.is_symlink():
        os.symlink(outside, subdir)
    await expect_refused(conn, "linked-dir/wf.json")


async def test_ui_format_files_are_refused_with_export_advice(conn: Conn) -> None:
    text = await conn.err("load_workflow", {"workflow_path": "ui_format_example.json"})
    assert "api" in text and "export" in text, f"should explain how to export the API format: {text}"


async def test_a_missing_file_is_an_error(conn: Conn) -> None:
    text = await conn.err("load_workflow", {"workflow_path": "no_such_workflow.json"})
    assert "no_such_workflow.json" in text


BAD_GRAPHS = {
    "bad-sampler": (("3", "sampler_name"), "KSampler", "fancy_sampler"),
    "bad-steps": (("3", "steps"), "KSampler", 0),
    "missing-input": (("5", "width"), "EmptyLatentImage", None),
}


@pytest.mark.parametrize("case", sorted(BAD_GRAPHS))
async def test_invalid_graphs_are_errors_with_comfyui_details(conn: Conn, case: str) -> None:
    (node, inp), cls, value = BAD_GRAPHS[case]
    graph = json.loads(json.dumps(TXT2IMG))
    if value is None:
        del graph[node]["inputs"][inp]
    else:
        graph[node]["inputs"][inp] = value
    (conn.workflows_dir / f"{case}.json").write_text(json.dumps(graph))
    text = await conn.err("load_workflow", {"workflow_path": f"{case}.json"})
    for needle in (node, cls.lower(), inp):
        assert needle in text, f"error for {case} should name {needle!r}: {text}"


async def test_unknown_node_class_is_an_error(conn: Conn) -> None:
    graph = json.loads(json.dumps(TXT2IMG))
    graph["8"]["class_type"] = "NoSuchDecoder"
    (conn.workflows_dir / "unknown-class.json").write_text(json.dumps(graph))
    text = await conn.err("load_workflow", {"workflow_path": "unknown-class.json"})
    assert "nosuchdecoder" in text
