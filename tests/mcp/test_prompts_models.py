"""MCP prompts (one per template), the list_models tool, comfyui://models/<folder> resources and the
"Missing model file" error, seen from the official Python SDK over stdio and streamable HTTP.

Prompts: listed per template with the template's required parameters plus an optional `style`;
`prompts/get` writes the tool call (the template's tool and generate_image), folds the style into
the prompt text and shows the other settings with defaults and ranges; an unknown prompt, a missing
required argument and an argument over the size cap are JSON-RPC errors naming what exists, what is
missing or the limit; dropping a pack into the templates folder sends
notifications/prompts/list_changed and the new template's prompt appears.

Models: list_models lists every folder the simulator's ComfyUI reports (its two checkpoints), one
folder, an unknown folder (an error listing the folders) and a cap (`COMFYUI_MCP_MAX_LISTED_MODELS`);
the same lists are resources. A workflow naming a checkpoint ComfyUI does not have is a
"Missing model file" error naming the installed ones, closest first, capped by
`COMFYUI_MCP_MISSING_MODEL_CHOICES`.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import AsyncIterator
from typing import Any

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import EXAMPLES_WORKFLOWS, TEMPLATE_IDS, TEMPLATES, TEST_PACKS, Conn, RealComfyUI, Sim, connect, poll

INVALID_PARAMS = -32602
SIM_CHECKPOINTS = ["random-sd15-full.safetensors", "tiny-random-sd15.safetensors"]
PROMPT_CAP = 4096
"""The documented default of COMFYUI_MCP_MAX_PROMPT_ARGUMENT_BYTES."""


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prompt_text(result: types.GetPromptResult) -> str:
    assert len(result.messages) == 1, result.messages
    message = result.messages[0]
    assert message.role == "user", message
    assert isinstance(message.content, types.TextContent), message.content
    return message.content.text


def call_arguments(text: str) -> dict[str, Any]:
    """The JSON object of arguments the prompt message tells the agent to send."""
    start = text.index("{\n")
    end = text.index("\n}", start) + 2
    return json.loads(text[start:end])


async def get_error(conn: Conn, name: str, arguments: dict[str, str] | None) -> MCPError:
    with pytest.raises(MCPError) as caught:
        await conn.session.get_prompt(name, arguments)
    return caught.value


# ---------------------------------------------------------------- prompts


async def test_prompts_capability_with_list_changed(conn: Conn) -> None:
    caps = conn.session.server_capabilities
    assert caps is not None and caps.prompts is not None, caps
    assert caps.prompts.list_changed is True, caps.prompts


async def test_one_prompt_per_template_with_required_parameters_and_style(conn: Conn) -> None:
    prompts = {p.name: p for p in (await conn.session.list_prompts()).prompts}
    assert set(TEMPLATE_IDS) <= set(prompts), sorted(prompts)
    for tid in TEMPLATE_IDS:
        args = {a.name: a for a in prompts[tid].arguments or []}
        assert args["prompt"].required is True, args
        assert args["style"].required is False, args
        assert prompts[tid].description and tid in prompts[tid].description


async def test_get_writes_the_call_with_the_style_folded_into_the_prompt(conn: Conn) -> None:
    result = await conn.session.get_prompt("pixel-art", {"prompt": "a red potion", "style": "16-bit, NES palette"})
    text = prompt_text(result)
    assert call_arguments(text) == {"prompt": "a red potion, 16-bit, NES palette"}, text
    assert "`pixel-art`" in text and "generate_image" in text and '"template": "pixel-art"' in text, text
    for setting in ("steps", "cfg_scale", "width", "seed"):
        assert f"- {setting} (" in text, f"{setting} missing from the settings: {text}"
    assert "default" in text and "from 1 to 150" in text, text


async def test_the_written_call_runs(conn: Conn) -> None:
    text = prompt_text(await conn.session.get_prompt("item-icon", {"prompt": "a key"}))
    args = call_arguments(text)
    out = await conn.ok("item-icon", {**args, "width": 64, "height": 64, "steps": 1, "wait": True})
    assert out["status"] == "completed", out


async def test_unknown_prompt_names_the_ones_that_exist(conn: Conn) -> None:
    e = await get_error(conn, "no-such-template", {"prompt": "x"})
    assert e.error.code == INVALID_PARAMS, e.error
    assert "unknown prompt `no-such-template`" in e.error.message, e.error.message
    for tid in TEMPLATE_IDS:
        assert tid in e.error.message, e.error.message


async def test_missing_required_argument_is_named(conn: Conn) -> None:
    e = await get_error(conn, "character-portrait", {"style": "oil painting"})
    assert e.error.code == INVALID_PARAMS, e.error
    assert "missing required argument(s): `prompt`" in e.error.message, e.error.message
    e = await get_error(conn, "character-portrait", {"prompt": "x", "colour": "red"})
    assert "unknown argument `colour`" in e.error.message and "style" in e.error.message, e.error.message


async def test_argument_values_are_capped(conn: Conn) -> None:
    at_cap = "a" * PROMPT_CAP
    text = prompt_text(await conn.session.get_prompt("item-icon", {"prompt": at_cap}))
    assert call_arguments(text)["prompt"] == at_cap
    e = await get_error(conn, "item-icon", {"prompt": at_cap + "a"})
    assert e.error.code == INVALID_PARAMS, e.error
    message = e.error.message
    assert f"{PROMPT_CAP + 1} bytes, over the limit of {PROMPT_CAP} bytes" in message, message
    assert "COMFYUI_MCP_MAX_PROMPT_ARGUMENT_BYTES" in message, message
    assert len(message) < 1000, message


@pytest.fixture(params=["stdio", "http"])
async def hot(request: pytest.FixtureRequest, sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    workdir = tmp_path_factory.mktemp(f"prompts-hot-{request.param}")
    async with connect(request.param, sim, workdir, packs=[TEMPLATES / "game-assets.wasm"]) as c:
        yield c
    assert not c.stream_errors, c.stream_errors


async def test_prompts_follow_hot_reload_with_list_changed(hot: Conn) -> None:
    def changes() -> int:
        return sum(1 for n in hot.notifications if isinstance(n, types.PromptListChangedNotification))

    async def names() -> set[str]:
        return {p.name for p in (await hot.session.list_prompts()).prompts}

    assert "solid-color" not in await names()
    before = changes()
    tmp = hot.templates_dir / ".mini.wasm.partial"
    shutil.copyfile(TEST_PACKS / "mini.wasm", tmp)
    tmp.replace(hot.templates_dir / "mini.wasm")

    async def count() -> int:
        return changes()

    await poll(count, lambda n: n > before, "notifications/prompts/list_changed after adding mini.wasm")
    await poll(names, lambda n: "solid-color" in n, "the solid-color prompt")
    # The mini pack's prompt is optional: the style alone becomes the prompt text.
    text = prompt_text(await hot.session.get_prompt("solid-color", {"style": "teal"}))
    assert call_arguments(text) == {"prompt": "teal"} and "`solid-color`" in text, text

    before = changes()
    (hot.templates_dir / "mini.wasm").unlink()
    await poll(count, lambda n: n > before, "notifications/prompts/list_changed after removing mini.wasm")
    await poll(names, lambda n: "solid-color" not in n, "the solid-color prompt to disappear")


# ---------------------------------------------------------------- models


async def test_list_models_lists_every_folder_with_counts(conn: Conn) -> None:
    out = await conn.ok("list_models")
    folders = {f["folder"]: f for f in out["folders"]}
    assert {"checkpoints", "loras", "vae", "upscale_models", "embeddings", "controlnet"} <= set(folders), sorted(folders)
    ckpt = folders["checkpoints"]
    assert sorted(ckpt["files"]) == SIM_CHECKPOINTS and ckpt["count"] == 2 and ckpt["omitted"] == 0, ckpt
    assert ckpt["uri"] == "comfyui://models/checkpoints"
    assert out["max_per_folder"] == 500, out


async def test_list_models_of_one_folder_and_an_unknown_one(conn: Conn) -> None:
    out = await conn.ok("list_models", {"folder": "checkpoints"})
    assert [f["folder"] for f in out["folders"]] == ["checkpoints"], out
    text = await conn.err("list_models", {"folder": "checkpointz"})
    assert "no model folder `checkpointz`" in text, text
    for folder in ("checkpoints", "loras", "vae"):
        assert folder in text, text
    result = await conn.call("list_models", {"folder": "checkpointz"})
    assert (result.structured_content or {})["error"]["kind"] == "unknown_model_folder", result.structured_content


async def test_models_are_resources(conn: Conn) -> None:
    async def listed() -> set[str]:
        return {str(r.uri) for r in (await conn.session.list_resources()).resources}

    # Listed from the model files last fetched (the live self-test or a call fetches them).
    await conn.ok("list_models")
    await poll(listed, lambda uris: "comfyui://models/checkpoints" in uris, "the checkpoints resource")
    templates = {t.uri_template for t in (await conn.session.list_resource_templates()).resource_templates}
    assert "comfyui://models/{folder}" in templates, templates
    res = await conn.session.read_resource("comfyui://models/checkpoints")
    item = res.contents[0]
    assert isinstance(item, types.TextResourceContents)
    assert sorted(json.loads(item.text)["files"]) == SIM_CHECKPOINTS
    with pytest.raises(MCPError) as caught:
        await conn.session.read_resource("comfyui://models/nope")
    assert "checkpoints" in caught.value.error.message, caught.value.error.message


async def test_list_models_cap_counts_what_was_left_out(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("models-cap")
    async with connect("stdio", sim, workdir, extra_env={"COMFYUI_MCP_MAX_LISTED_MODELS": "1"}) as c:
        out = await c.ok("list_models", {"folder": "checkpoints"})
        ckpt = out["folders"][0]
        assert (len(ckpt["files"]), ckpt["count"], ckpt["omitted"], out["max_per_folder"]) == (1, 2, 1, 1), out
        assert ckpt["files"][0] in SIM_CHECKPOINTS


async def test_list_models_when_comfyui_is_unreachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    gone = RealComfyUI(f"http://127.0.0.1:{free_port()}")
    workdir = tmp_path_factory.mktemp("models-unreachable")
    async with connect("stdio", gone, workdir) as c:
        result = await c.call("list_models")
        assert result.is_error, result
        error = (result.structured_content or {})["error"]
        assert error["kind"] == "comfyui_unavailable", error
        assert gone.url in error["message"], error


def wrong_checkpoint_workflow(conn: Conn, name: str, ckpt: str) -> str:
    graph = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())
    graph["4"]["inputs"]["ckpt_name"] = ckpt
    (conn.workflows_dir / f"{name}.json").write_text(json.dumps(graph))
    return f"{name}.json"


async def test_a_missing_checkpoint_names_the_installed_ones_closest_first(conn: Conn) -> None:
    path = wrong_checkpoint_workflow(conn, "wrong-ckpt", "tiny-random.safetensors")
    result = await conn.call("load_workflow", {"workflow_path": path})
    assert result.is_error, result
    error = (result.structured_content or {})["error"]
    assert error["kind"] == "missing_model", error
    message = error["message"]
    assert message.startswith("Missing model file"), message
    first, second = (message.index(name) for name in ("tiny-random-sd15.safetensors", "random-sd15-full.safetensors"))
    assert "closest first" in message and first < second, message
    missing = error["details"]["missing_models"]
    assert [(m["node_id"], m["input"], m["folder"], m["requested"]) for m in missing] == [
        ("4", "ckpt_name", "checkpoints", "tiny-random.safetensors")
    ], missing
    assert missing[0]["installed"][0] == "tiny-random-sd15.safetensors" and missing[0]["installed_count"] == 2
    assert error["details"]["cause"]["kind"] == "invalid_graph", error["details"]


async def test_missing_model_choices_are_capped(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> None:
    workdir = tmp_path_factory.mktemp("missing-cap")
    async with connect("stdio", sim, workdir, extra_env={"COMFYUI_MCP_MISSING_MODEL_CHOICES": "1"}) as c:
        path = wrong_checkpoint_workflow(c, "wrong-ckpt-cap", "random-full.safetensors")
        result = await c.call("load_workflow", {"workflow_path": path})
        missing = (result.structured_content or {})["error"]["details"]["missing_models"][0]
        assert missing["installed"] == ["random-sd15-full.safetensors"] and missing["installed_count"] == 2, missing
        assert "(2 files)" in (result.structured_content or {})["error"]["message"]


async def test_a_wrong_checkpoint_argument_names_the_installed_ones(conn: Conn) -> None:
    text = await conn.err("generate_image", {"template": "item-icon", "prompt": "a key", "checkpoint": "nope.ckpt"})
    assert "nope.ckpt" in text, text
    for name in SIM_CHECKPOINTS:
        assert name in text, text
