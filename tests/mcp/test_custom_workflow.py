"""generate_image with a custom workflow instead of a template: an inline API-format graph
(`workflow`) or a file of the workflow folders (`workflow_path`), overridden by the guide's
generation parameters and `parameters`, under the same size cap, node cap, graph check and node
policy as load_workflow, answering like a template call (wait, progress, images) and recording
the origin (inline SHA-256 or the file) in the job and its provenance."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from harness import EXAMPLES_WORKFLOWS, Conn, Sim, check_completed, connect, texts

TXT2IMG: dict[str, Any] = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())
TERMINAL = {"completed", "failed", "cancelled"}


def graph() -> dict[str, Any]:
    return copy.deepcopy(TXT2IMG)


def compact_sha256(value: Any) -> str:
    """SHA-256 of `value` as compact JSON, the way the server hashes an inline workflow."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def provenance(conn: Conn, prompt_id: str) -> dict[str, Any]:
    return json.loads((conn.output_dir / prompt_id / "provenance.json").read_text())


async def error_of(conn: Conn, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The text and structured error of a failing generate_image call."""
    result = await conn.call("generate_image", args)
    assert result.is_error, f"generate_image {args} should have failed: {result.structured_content}"
    return texts(result), (result.structured_content or {}).get("error", {})


async def test_an_inline_workflow_runs_and_answers_like_a_template_call(conn: Conn) -> None:
    wf = graph()
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    result = await conn.call("generate_image", {"workflow": wf, "wait": True}, progress_callback=on_progress)
    out = await check_completed(conn, result, expect_images=1)
    for key in ("prompt_id", "status", "images", "execution_time", "metadata", "parameters"):
        assert key in out, f"the result lacks {key}: {out}"
    assert out["workflow_name"] == "`workflow` (inline)", out
    assert out["parameters_applied"] == {} and out["parameters_unmatched"] == []
    assert progress and progress == sorted(progress), f"progress notifications: {progress}"
    submitted = await conn.sim.submitted_graph(out["prompt_id"])
    assert submitted == wf, "without overrides the graph goes to ComfyUI as given"
    sha = compact_sha256(wf)
    assert out["metadata"]["workflow_sha256"] == sha, out["metadata"]
    prov = provenance(conn, out["prompt_id"])
    assert prov["origin"] == {"kind": "inline_workflow", "sha256": sha}, prov["origin"]


async def test_generation_parameters_and_parameters_override_an_inline_workflow(conn: Conn) -> None:
    args = {
        "workflow": graph(),
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "fog",
        "seed": 77,
        "steps": 3,
        "cfg_scale": 4.5,
        "sampler": "euler_ancestral",
        "width": 96,
        "height": 80,
        "batch_size": 2,
        "parameters": {"9.filename_prefix": "custom/lighthouse", "lora_strength": 1},
        "wait": True,
    }
    out = await check_completed(conn, await conn.call("generate_image", args), expect_images=2)
    assert out["parameters_unmatched"] == ["lora_strength"], out
    assert out["parameters_applied"]["seed"] == 77 and out["parameters_applied"]["9.filename_prefix"] == "custom/lighthouse"
    assert (out["metadata"]["seed"], out["metadata"]["width"], out["metadata"]["steps"]) == (77, 96, 3), out["metadata"]
    g = await conn.sim.submitted_graph(out["prompt_id"])
    ks = g["3"]["inputs"]
    assert (ks["seed"], ks["steps"], ks["cfg"], ks["sampler_name"]) == (77, 3, 4.5, "euler_ancestral"), ks
    assert ks["model"] == ["4", 0], "links are never overwritten"
    assert (g["5"]["inputs"]["width"], g["5"]["inputs"]["height"], g["5"]["inputs"]["batch_size"]) == (96, 80, 2)
    assert (g["6"]["inputs"]["text"], g["7"]["inputs"]["text"]) == ("a lighthouse at dusk", "fog")
    assert g["9"]["inputs"]["filename_prefix"] == "custom/lighthouse"


async def test_a_prompt_body_is_unwrapped_and_random_seeds_are_concrete(conn: Conn) -> None:
    out = await conn.ok("generate_image", {"workflow": {"prompt": graph(), "client_id": "x"}, "seed": -1})
    seed = out["parameters_applied"]["seed"]
    assert isinstance(seed, int) and seed >= 0, out
    st = await conn.wait_state(out["prompt_id"], TERMINAL)
    assert st["state"] == "completed", st
    assert (await conn.sim.submitted_graph(out["prompt_id"]))["3"]["inputs"]["seed"] == seed


async def test_a_workflow_path_runs_like_load_workflow(conn: Conn) -> None:
    out = await conn.ok("generate_image", {"workflow_path": "txt2img_api.json", "steps": 4, "wait": True})
    assert out["status"] == "completed", out
    assert "txt2img_api" in out["workflow_name"]
    assert out["parameters_applied"] == {"steps": 4}
    assert (await conn.sim.submitted_graph(out["prompt_id"]))["3"]["inputs"]["steps"] == 4
    prov = provenance(conn, out["prompt_id"])
    file = EXAMPLES_WORKFLOWS / "txt2img_api.json"
    assert prov["origin"]["kind"] == "workflow", prov["origin"]
    assert Path(prov["origin"]["path"]) == file.resolve()
    assert prov["origin"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "args, got",
    [
        ({}, "none was given"),
        ({"prompt": "a cat"}, "none was given"),
        ({"template": "item-icon", "workflow": TXT2IMG}, "got template and workflow"),
        ({"workflow": TXT2IMG, "workflow_path": "txt2img_api.json"}, "got workflow and workflow_path"),
        (
            {"template": "item-icon", "workflow": TXT2IMG, "workflow_path": "txt2img_api.json"},
            "got template and workflow and workflow_path",
        ),
    ],
)
async def test_exactly_one_of_template_workflow_and_workflow_path(conn: Conn, args: dict[str, Any], got: str) -> None:
    text, error = await error_of(conn, args)
    for name in ("`template`", "`workflow`", "`workflow_path`", "item-icon", got):
        assert name in text, f"{args}: the error should name {name!r}: {text}"
    assert error["kind"] == "invalid_arguments", error


async def test_argument_mistakes_of_a_custom_workflow_are_precise(conn: Conn) -> None:
    text, _ = await error_of(conn, {"workflow": "txt2img_api.json"})
    assert "`workflow` must be a JSON object" in text and "a string" in text, text
    text, _ = await error_of(conn, {"workflow": graph(), "lora": 1})
    assert "unknown argument `lora`" in text and "workflow_path" in text and "parameters" in text, text
    text, _ = await error_of(conn, {"workflow": graph(), "seed": 1, "parameters": {"seed": 2}})
    assert "`seed` is given both" in text, text
    text, _ = await error_of(conn, {"workflow": graph(), "parameters": [1]})
    assert "`parameters` must be an object" in text, text


async def test_a_bad_inline_graph_is_refused_before_comfyui_sees_it(conn: Conn) -> None:
    posts = await conn.sim.prompt_posts()
    bad = graph()
    bad["3"]["inputs"]["sampler_name"] = "fancy_sampler"
    text, error = await error_of(conn, {"workflow": bad})
    assert error["kind"] == "invalid_graph", error
    assert "3" in text and "ksampler" in text.lower() and "sampler_name" in text, text
    unknown = graph()
    unknown["8"]["class_type"] = "NoSuchDecoder"
    text, error = await error_of(conn, {"workflow": unknown})
    assert error["kind"] == "invalid_graph" and "nosuchdecoder" in text.lower(), text
    text, error = await error_of(conn, {"workflow": {"nodes": [], "links": []}})
    assert error["kind"] == "invalid_workflow" and "Export (API)" in text, text
    text, error = await error_of(conn, {"workflow": {}})
    assert error["kind"] == "invalid_workflow" and "no nodes" in text, text
    assert await conn.sim.prompt_posts() == posts, "nothing was posted to ComfyUI"


async def test_the_node_policy_applies_to_inline_workflows(conn: Conn) -> None:
    wf = graph()
    wf["10"] = {"class_type": "CheckpointSave", "inputs": {"model": ["4", 0], "clip": ["4", 1], "vae": ["4", 2], "filename_prefix": "x"}}
    text, error = await error_of(conn, {"workflow": wf})
    assert error["kind"] == "node_refused", error
    assert "CheckpointSave" in text, text


async def test_the_published_schema_offers_the_three_sources_without_top_level_combinators(conn: Conn) -> None:
    tools = {t.name: t for t in (await conn.session.list_tools()).tools}
    schema = tools["generate_image"].input_schema
    props = schema["properties"]
    assert props["workflow"]["type"] == "object" and props["workflow_path"]["type"] == "string", props
    assert props["parameters"]["type"] == "object"
    assert "template" not in schema.get("required", []), schema.get("required")
    for combinator in ("oneOf", "anyOf", "allOf"):
        assert combinator not in schema, f"{combinator} at the top level of a tool input is refused by some clients"
    assert "exactly one of template, workflow or workflow_path" in schema["description"]
    assert props["timeout"]["default"] == 120.0, "wait follows COMFYUI_TIMEOUT (default 120 s)"
    out_props = tools["generate_image"].output_schema["properties"]
    assert {"workflow_name", "parameters_applied", "parameters_unmatched"} <= set(out_props)


async def test_size_and_node_caps_hold_at_the_limit(sim: Sim, tmp_path: Path) -> None:
    wf = graph()
    size = len(json.dumps(wf, separators=(",", ":"), ensure_ascii=False).encode())
    env = {"COMFYUI_MCP_MAX_WORKFLOW_BYTES": str(size), "COMFYUI_MCP_MAX_GRAPH_NODES": str(len(wf))}
    async with connect("stdio", sim, tmp_path, extra_env=env) as conn:
        out = await conn.ok("generate_image", {"workflow": wf, "wait": True})
        assert out["status"] == "completed", "a workflow exactly at both caps runs"

        over = graph()
        over["3"]["inputs"]["sampler_name"] = "euler_"  # one byte longer
        text, error = await error_of(conn, {"workflow": over})
        assert error["kind"] == "workflow_too_large", error
        for part in (f"{size + 1} bytes", f"limit of {size} bytes", "COMFYUI_MCP_MAX_WORKFLOW_BYTES", "inline"):
            assert part in text, f"{part!r} missing: {text}"

        more = graph()  # one node more, but shorter
        more["6"]["inputs"]["text"] = more["7"]["inputs"]["text"] = more["9"]["inputs"]["filename_prefix"] = ""
        more["10"] = {"class_type": "A", "inputs": {}}
        assert len(json.dumps(more, separators=(",", ":")).encode()) <= size
        text, error = await error_of(conn, {"workflow": more})
        assert error["kind"] == "workflow_too_many_nodes", error
        for part in (f"{len(wf) + 1} nodes", f"limit of {len(wf)} nodes", "COMFYUI_MCP_MAX_GRAPH_NODES"):
            assert part in text, f"{part!r} missing: {text}"

        # The pretty-printed file is larger than the compact graph: the same cap refuses it.
        text, error = await error_of(conn, {"workflow_path": "txt2img_api.json"})
        assert error["kind"] == "workflow_too_large" and "txt2img_api.json" in text, text
