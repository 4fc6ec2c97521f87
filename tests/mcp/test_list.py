"""tools/list (names, descriptions, input and output schemas) and the list_workflows tool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mcp_types as types

from harness import CORE_TOOLS, TEMPLATE_IDS, TEMPLATES, TEST_PACKS, Conn, Sim, connect
from schema_util import prop, required, resolve, types_of

DEFAULT_SIZES = {
    "character-portrait": (512, 512),
    "item-icon": (512, 512),
    "environment-texture": (1024, 1024),
    "pixel-art": (256, 256),
}


async def all_tools(conn: Conn) -> dict[str, types.Tool]:
    tools: dict[str, types.Tool] = {}
    cursor = None
    for _ in range(100):
        page = await conn.session.list_tools(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools.update({t.name: t for t in page.tools})
        cursor = page.next_cursor
        if not cursor:
            return tools
    raise AssertionError("tools/list pagination never ended")


async def test_every_tool_is_listed_with_description_and_schemas(conn: Conn) -> None:
    tools = await all_tools(conn)
    for name in CORE_TOOLS + TEMPLATE_IDS:
        assert name in tools, f"tools/list lacks {name}; has {sorted(tools)}"
        tool = tools[name]
        assert tool.description and tool.description.strip(), f"{name} has no description"
        assert resolve(tool.input_schema, tool.input_schema).get("type") == "object", f"{name} inputSchema"
        assert tool.output_schema, f"{name} has no outputSchema"
        assert resolve(tool.output_schema, tool.output_schema).get("type") == "object", f"{name} outputSchema"


async def test_generate_image_schema_declares_ranges_and_choices(conn: Conn) -> None:
    schema = (await all_tools(conn))["generate_image"].input_schema
    # template or a custom workflow: the schema requires neither, the server enforces one of them.
    assert not {"template", "prompt"} & required(schema), required(schema)
    assert "exactly one of template, workflow or workflow_path" in schema["description"]
    steps = prop(schema, "steps")
    assert "integer" in types_of(steps)
    assert (steps.get("minimum"), steps.get("maximum")) == (1, 150)
    cfg = prop(schema, "cfg_scale")
    assert "number" in types_of(cfg)
    assert (cfg.get("minimum"), cfg.get("maximum")) == (1.0, 30.0)
    batch = prop(schema, "batch_size")
    assert (batch.get("minimum"), batch.get("maximum")) == (1, 4)
    for side in ("width", "height"):
        assert prop(schema, side).get("multipleOf") == 8, f"{side} lacks multipleOf 8"
    sampler = prop(schema, "sampler")
    assert {"euler", "dpm++"} <= set(sampler.get("enum", [])), f"sampler enum: {sampler}"
    denoise = prop(schema, "denoise")
    assert (denoise.get("minimum"), denoise.get("maximum")) == (0.0, 1.0)
    assert "boolean" in types_of(prop(schema, "wait"))
    if "default" in prop(schema, "wait"):
        assert prop(schema, "wait")["default"] is False
    timeout = prop(schema, "timeout")
    assert timeout.get("maximum") == 3600
    if "default" in timeout:
        assert timeout["default"] == 120, "wait follows COMFYUI_TIMEOUT"
    for name in ("negative_prompt", "seed", "scheduler", "checkpoint"):
        prop(schema, name)


async def test_template_tools_have_the_template_schema_plus_wait_and_timeout(conn: Conn) -> None:
    tools = await all_tools(conn)
    for tid in TEMPLATE_IDS:
        schema = tools[tid].input_schema
        props = resolve(schema, schema).get("properties", {})
        assert "template" not in props, f"{tid} tool should not take a template parameter"
        assert "prompt" in required(schema), f"{tid}: prompt must be required"
        assert (prop(schema, "steps").get("minimum"), prop(schema, "steps").get("maximum")) == (1, 150)
        assert prop(schema, "width").get("multipleOf") == 8
        assert "boolean" in types_of(prop(schema, "wait"))
        assert prop(schema, "timeout").get("maximum") == 3600


def check_parameter_entries(workflow: dict[str, Any]) -> None:
    params = {p["name"]: p for p in workflow["parameters"]}
    prompt = params["prompt"]
    assert prompt["type"] == "string" and prompt["required"] is True and prompt["description"]
    steps = params["steps"]
    assert steps["type"] == "integer" and steps["required"] is False
    assert (steps.get("min"), steps.get("max"), steps.get("default")) == (1, 150, 20)
    assert params["cfg_scale"]["type"] == "number"
    assert (params["cfg_scale"].get("min"), params["cfg_scale"].get("max")) == (1.0, 30.0)
    assert params["width"].get("multiple_of") == 8
    assert "euler" in params["sampler"].get("choices", [])
    assert (params["batch_size"].get("min"), params["batch_size"].get("max")) == (1, 4)


async def test_list_workflows_lists_the_four_templates(conn: Conn) -> None:
    out = await conn.ok("list_workflows", {})
    by_id = {w["id"]: w for w in out["workflows"]}
    assert out["total_count"] == len(out["workflows"])
    assert set(TEMPLATE_IDS) <= set(by_id), f"listed: {sorted(by_id)}"
    assert out["errors"] == []
    for tid, (w, h) in DEFAULT_SIZES.items():
        wf = by_id[tid]
        assert (wf["default_width"], wf["default_height"]) == (w, h), tid
        assert wf["name"] and wf["description"] and wf["category"] and wf["tags"], tid
        assert wf["pack"]["name"] == "game-assets" and wf["pack"]["version"], wf["pack"]
        check_parameter_entries(wf)


async def test_list_workflows_filters_by_category_and_tags(conn: Conn) -> None:
    chars = await conn.ok("list_workflows", {"category": "characters"})
    assert [w["id"] for w in chars["workflows"]] == ["character-portrait"]
    assert chars["total_count"] == 1
    pixel = await conn.ok("list_workflows", {"tags": ["pixel-art"]})
    assert [w["id"] for w in pixel["workflows"]] == ["pixel-art"]
    both = await conn.ok("list_workflows", {"tags": ["icon", "ui"]})
    assert [w["id"] for w in both["workflows"]] == ["item-icon"]
    # All tags must match: no template is both an icon and an rpg portrait.
    none = await conn.ok("list_workflows", {"tags": ["icon", "rpg"]})
    assert none["workflows"] == [] and none["total_count"] == 0
    unknown = await conn.ok("list_workflows", {"category": "no-such-category"})
    assert unknown["workflows"] == []


async def test_list_workflows_reports_packs_that_fail_to_load(sim: Sim, tmp_path: Path) -> None:
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm not really a component")
    packs = sorted(TEMPLATES.glob("*.wasm")) + [broken, TEST_PACKS / "wrong-abi.wasm"]
    async with connect("stdio", sim, tmp_path / "server", packs=packs) as c:
        out = await c.ok("list_workflows", {})
        assert set(TEMPLATE_IDS) <= {w["id"] for w in out["workflows"]}, "good packs must still load"
        errors = {Path(e["path"]).name: e["error"] for e in out["errors"]}
        assert "broken.wasm" in errors and errors["broken.wasm"].strip(), out["errors"]
        assert "wrong-abi.wasm" in errors, out["errors"]
        assert "wrong-abi" not in {w["id"] for w in out["workflows"]}
