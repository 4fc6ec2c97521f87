"""The plain HTTP API end to end on both backends (the simulator, and a real ComfyUI when
`COMFYUI_REAL_URL` is set): generate through `POST /api` the way the Godot example does, poll
`GET /api/jobs/{id}` until the job ends, fetch `GET /api/images/{id}/{file}` and decode the PNG.
The route strings and JSON shapes are the ones in examples/godot/comfyui_client.gd, read from
the file, so the example cannot drift from the server.
"""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from api_client import TERMINAL, Api, api_base
from harness import REPO, ComfyRoutes, connect, poll

TOKEN = "e2e-api-token-0123456789"
GODOT = REPO / "examples" / "godot" / "comfyui_client.gd"
JOB_TIMEOUT = 300.0
"""A CPU ComfyUI loading its model is slow."""


@pytest.fixture(scope="module")
async def bapi(backend: ComfyRoutes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with connect("http", backend, tmp_path_factory.mktemp("api-e2e"), token=TOKEN) as conn:
        yield Api(api_base(conn.http_url), TOKEN)  # type: ignore[attr-defined]


def godot_routes() -> dict[str, str]:
    """The route templates of the Godot example (`const ROUTE_X := "..."`)."""
    found = dict(re.findall(r'const (ROUTE_\w+) := "([^"]+)"', GODOT.read_text(encoding="utf-8")))
    assert {"ROUTE_CALL", "ROUTE_JOB", "ROUTE_IMAGE"} <= found.keys(), found
    return found


def godot_keys(pattern: str) -> set[str]:
    """The JSON keys the Godot example reads through `pattern` (a regex with one group)."""
    return set(re.findall(pattern, GODOT.read_text(encoding="utf-8")))


def godot_request_body() -> dict[str, Any]:
    """The keys of the Godot example's `POST /api` body."""
    text = GODOT.read_text(encoding="utf-8")
    assert re.search(r'"tool":\s*"generate_image"', text), "the example calls generate_image"
    assert '"params":' in text
    return {"tool": "generate_image"}


async def test_generate_poll_and_fetch_like_the_godot_example(bapi: Api) -> None:
    routes = godot_routes()
    body = {
        **godot_request_body(),
        "params": {"template": "item-icon", "prompt": "a small red potion", "width": 64, "height": 64, "steps": 1},
    }
    queued = await bapi.ok("POST", routes["ROUTE_CALL"], json=body)
    pid = queued["prompt_id"]
    assert queued["status"] in TERMINAL | {"queued", "running"}, queued
    job_path = routes["ROUTE_JOB"].replace("{prompt_id}", pid)

    async def state() -> dict[str, Any]:
        return await bapi.ok("GET", job_path)

    done = await poll(state, lambda s: s["state"] in TERMINAL, f"{pid} to end", timeout=JOB_TIMEOUT)
    assert done["state"] == "completed", done
    assert done["images"], done
    job_keys = godot_keys(r'\b(?:job|queued)\["(\w+)"\]') - {"error"}  # `error` only on failure
    assert {"prompt_id", "state", "progress", "images"} <= job_keys, job_keys
    assert job_keys <= queued.keys() and job_keys <= done.keys(), (job_keys, done.keys())
    image_keys = godot_keys(r'\["images"\]\[0\]\["(\w+)"\]')
    assert image_keys == {"filename"} and image_keys <= done["images"][0].keys(), image_keys
    for im in done["images"]:
        path = routes["ROUTE_IMAGE"].replace("{prompt_id}", pid).replace("{filename}", im["filename"])
        r = await bapi.request("GET", path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert r.content == Path(im["path"]).read_bytes()
        with Image.open(io.BytesIO(r.content)) as img:
            img.load()
            assert img.format == "PNG" and img.size == (64, 64), (img.format, img.size)


async def test_errors_from_the_backend_keep_their_kind(bapi: Api) -> None:
    error = await bapi.error(
        422, "POST", "/api", json={"tool": "item-icon", "params": {"prompt": "x", "width": 63}}
    )
    assert error["kind"] == "invalid_parameters", error
    error = await bapi.error(404, "GET", "/api/jobs/never-submitted")
    assert error["kind"] == "unknown_job", error
    error_keys = godot_keys(r'data\["error"\]\["(\w+)"\]')
    assert error_keys == {"kind", "message"} and error_keys <= error.keys(), error_keys
