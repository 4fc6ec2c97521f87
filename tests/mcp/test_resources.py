"""MCP resources: templates (listed and readable), job status and saved images."""

from __future__ import annotations

import json

import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import TEMPLATE_IDS, Conn, check_completed, decode_image, read_blob


async def all_resources(conn: Conn) -> list[types.Resource]:
    out: list[types.Resource] = []
    cursor = None
    for _ in range(100):
        page = await conn.session.list_resources(params=types.PaginatedRequestParams(cursor=cursor) if cursor else None)
        out += page.resources
        cursor = page.next_cursor
        if not cursor:
            return out
    raise AssertionError("resources/list pagination never ended")


async def read_text(conn: Conn, uri: str) -> str:
    res = await conn.session.read_resource(uri)
    assert len(res.contents) == 1
    item = res.contents[0]
    assert isinstance(item, types.TextResourceContents), f"{uri}: expected text, got {type(item).__name__}"
    return item.text


async def test_every_template_is_a_listed_resource(conn: Conn) -> None:
    uris = {str(r.uri) for r in await all_resources(conn)}
    for tid in TEMPLATE_IDS:
        assert f"comfyui://templates/{tid}" in uris, f"missing template resource for {tid}; have {sorted(uris)}"


@pytest.mark.parametrize("tid", TEMPLATE_IDS)
async def test_template_resource_is_json_with_the_schema(conn: Conn, tid: str) -> None:
    doc = json.loads(await read_text(conn, f"comfyui://templates/{tid}"))
    flat = json.dumps(doc)
    assert tid in flat
    for name in ("prompt", "steps", "cfg_scale", "sampler"):
        assert f'"{name}"' in flat, f"template resource of {tid} lacks parameter {name}"


async def test_job_and_image_resources(conn: Conn) -> None:
    result = await conn.call(
        "generate_image", {"template": "item-icon", "prompt": "a silver ring", "steps": 1, "wait": True}
    )
    out = await check_completed(conn, result, expect_images=1)
    pid = out["prompt_id"]
    job = json.loads(await read_text(conn, f"comfyui://jobs/{pid}"))
    assert job["prompt_id"] == pid and job["state"] == "completed", job
    status = await conn.status(pid)
    assert job["images"] == status["images"]
    image = out["images"][0]
    blob, mime = await read_blob(conn, f"comfyui://images/{pid}/{image['filename']}")
    assert mime == "image/png"
    assert decode_image(blob).size == (image["width"], image["height"])


async def test_unknown_resources_are_errors(conn: Conn) -> None:
    for uri in ("comfyui://jobs/00000000-0000-0000-0000-000000000000", "comfyui://templates/no-such-template"):
        with pytest.raises(MCPError):
            await conn.session.read_resource(uri)


async def test_image_resources_cannot_escape_the_output_folder(conn: Conn) -> None:
    result = await conn.call(
        "generate_image", {"template": "item-icon", "prompt": "a copper coin", "steps": 1, "wait": True}
    )
    pid = (await check_completed(conn, result))["prompt_id"]
    for name in ("../../../../../../etc/passwd", "..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd"):
        uri = f"comfyui://images/{pid}/{name}"
        try:
            res = await conn.session.read_resource(uri)
        except MCPError:
            continue
        leaked = b"".join(
            c.text.encode() if isinstance(c, types.TextResourceContents) else c.blob.encode() for c in res.contents
        )
        raise AssertionError(f"{uri} was served ({len(leaked)} bytes) instead of refused")
