"""Model files on both backends (the simulator, and a real ComfyUI when `COMFYUI_REAL_URL` is set):
list_models reports exactly the checkpoints the backend's own `GET /models/checkpoints` lists (the
real tier has one random-weight SD1.5 checkpoint), the comfyui://models/checkpoints resource agrees,
and a wrong checkpoint, as a template argument or in a workflow file, is refused naming the
installed ones (a workflow's is the "Missing model file" error, closest first).
"""

from __future__ import annotations

import json

from harness import EXAMPLES_WORKFLOWS, Conn
import mcp_types as types


async def test_list_models_reports_the_backends_checkpoints(bconn: Conn) -> None:
    installed = await bconn.sim.checkpoints()
    assert installed, "the backend should have at least one checkpoint"
    out = await bconn.ok("list_models", {"folder": "checkpoints"})
    (ckpt,) = out["folders"]
    assert sorted(ckpt["files"]) == sorted(installed) and ckpt["count"] == len(installed), (ckpt, installed)
    everything = await bconn.ok("list_models")
    assert "checkpoints" in {f["folder"] for f in everything["folders"]}, everything
    res = await bconn.session.read_resource("comfyui://models/checkpoints")
    item = res.contents[0]
    assert isinstance(item, types.TextResourceContents)
    assert sorted(json.loads(item.text)["files"]) == sorted(installed)


async def test_a_wrong_checkpoint_argument_names_the_installed_one(bconn: Conn) -> None:
    installed = await bconn.sim.checkpoints()
    text = await bconn.err(
        "generate_image", {"template": "item-icon", "prompt": "a key", "checkpoint": "no-such-model.safetensors"}
    )
    assert "no-such-model.safetensors" in text, text
    assert installed[0].lower() in text, f"the refusal should name {installed[0]!r}: {text}"


async def test_a_workflow_with_a_missing_checkpoint_is_a_missing_model_error(bconn: Conn) -> None:
    installed = await bconn.sim.checkpoints()
    graph = json.loads((EXAMPLES_WORKFLOWS / "txt2img_api.json").read_text())
    graph["4"]["inputs"]["ckpt_name"] = "no-such-model.safetensors"
    (bconn.workflows_dir / "missing-ckpt.json").write_text(json.dumps(graph))
    result = await bconn.call("load_workflow", {"workflow_path": "missing-ckpt.json"})
    assert result.is_error, result
    error = (result.structured_content or {})["error"]
    assert error["kind"] == "missing_model", error
    assert error["message"].startswith("Missing model file"), error["message"]
    (missing,) = error["details"]["missing_models"]
    assert missing["folder"] == "checkpoints" and missing["requested"] == "no-such-model.safetensors", missing
    assert missing["installed"] and set(missing["installed"]) <= set(installed), missing
    assert missing["installed_count"] == len(installed), missing
    for name in installed[:10]:
        assert name in error["message"], error["message"]
