"""The plain HTTP API beside /mcp (`/api/...`), driven by a plain HTTP client (httpx), on the
simulator: every route, each error status with its kind, the auth rules shared with /mcp,
the body cap at its limit, `wait` bounded by its timeout, the call limit, and a client that
disconnects mid-wait (its job is cancelled, its call slot freed). Results are compared with
what an MCP client (the official SDK) gets from the same server.
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from PIL import Image

from api_client import TERMINAL, Api, api_base
from harness import TEMPLATE_IDS, TEST_PACKS, WAIT, Conn, RealComfyUI, Sim, connect, poll

TOKEN = "test-token-0123456789"
"""The token `connect("http", ...)` starts the server with."""
BODY_LIMIT = 4096
SMALL = {"width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
async def served(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Conn, Api]]:
    """One HTTP server: an MCP session to it and the plain API of the same process."""
    workdir = tmp_path_factory.mktemp("http-api")
    extra = {"COMFYUI_MCP_MAX_REQUEST_BYTES": str(BODY_LIMIT)}
    async with connect("http", sim, workdir, token=TOKEN, extra_env=extra) as conn:
        yield conn, Api(api_base(conn.http_url), TOKEN)  # type: ignore[attr-defined]


@pytest.fixture
def api(served: tuple[Conn, Api]) -> Api:
    return served[1]


@pytest.fixture
def mcp(served: tuple[Conn, Api]) -> Conn:
    return served[0]


async def generate(api: Api, **args: Any) -> dict[str, Any]:
    body = {"tool": "generate_image", "params": {"template": "item-icon", "prompt": "a sword", **SMALL, **args}}
    return await api.ok("POST", "/api", json=body)


async def finished(api: Api, prompt_id: str) -> dict[str, Any]:
    return await poll(lambda: api.job(prompt_id), lambda s: s["state"] in TERMINAL, f"{prompt_id} to finish")


# --- routes -------------------------------------------------------------------------------


async def test_tools_lists_what_tools_list_gives(api: Api, mcp: Conn) -> None:
    listed = (await api.ok("GET", "/api/tools"))["tools"]
    over_mcp = (await mcp.session.list_tools()).tools
    assert [t["name"] for t in listed] == [t.name for t in over_mcp]
    for ours, theirs in zip(listed, over_mcp, strict=True):
        assert ours["description"] == theirs.description, ours["name"]
        assert ours["inputSchema"] == theirs.input_schema, ours["name"]
    names = {t["name"] for t in listed}
    assert {"generate_image", "list_workflows", "get_workflow_status"} <= names
    assert set(TEMPLATE_IDS) <= names, "per-template tools are listed too"


async def test_a_tool_route_answers_the_structured_content(api: Api, mcp: Conn) -> None:
    ours = await api.tool("list_workflows", {"category": "items"})
    theirs = await mcp.ok("list_workflows", {"category": "items"})
    assert ours == theirs
    assert ours["total_count"] >= 1, ours


async def test_an_empty_body_means_no_arguments(api: Api, mcp: Conn) -> None:
    ours = await api.ok("POST", "/api/tools/list_workflows", content=b"")
    assert ours == await mcp.ok("list_workflows")


async def test_generate_through_the_envelope_poll_and_fetch_the_png(api: Api, mcp: Conn) -> None:
    queued = await generate(api)
    assert queued["status"] in ("queued", "running", "completed"), queued
    pid = queued["prompt_id"]
    done = await finished(api, pid)
    assert done["state"] == "completed", done
    assert done == await mcp.status(pid), "GET /api/jobs is get_workflow_status"
    assert done["images"], done
    for im in done["images"]:
        r = await api.request("GET", f"/api/images/{pid}/{im['filename']}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert int(r.headers["content-length"]) == len(r.content) == im["bytes"]
        assert r.content == Path(im["path"]).read_bytes()
        with Image.open(io.BytesIO(r.content)) as img:
            img.load()
            assert img.format == "PNG" and img.size == (64, 64)


async def test_a_template_tool_with_wait_returns_the_images(api: Api) -> None:
    out = await api.tool("item-icon", {"prompt": "a shield", **SMALL, "wait": True, "timeout": 30})
    assert out["status"] == "completed", out
    assert out["images"] and all(im["thumbnail"].startswith("inline") for im in out["images"]), out["images"]


async def test_wait_is_bounded_by_its_timeout(api: Api, sim: Sim) -> None:
    await sim.hold(True)
    with anyio.fail_after(WAIT):
        out = await generate(api, wait=True, timeout=0.5)
    assert out["status"] == "queued", out
    await api.tool("cancel_workflow", {"prompt_id": out["prompt_id"]})


async def test_job_json_matches_mcp_for_a_failed_job(api: Api, sim: Sim) -> None:
    await sim.faults({"fail_node_class": {"class": "VAEDecode", "message": "boom"}})
    params = {"template": "item-icon", "prompt": "x", **SMALL, "wait": True, "timeout": 30}
    error = await api.error(502, "POST", "/api", json={"tool": "generate_image", "params": params})
    assert error["kind"] == "job_failed" and "boom" in error["message"], error
    assert error["details"]["status"] == "failed", error
    status = await api.job(error["details"]["prompt_id"])
    assert status["state"] == "failed" and status["error"]["message"].endswith("boom"), status


# --- errors -------------------------------------------------------------------------------


async def test_unknown_tools_are_404_listing_the_tools(api: Api) -> None:
    for method, path, body in [
        ("POST", "/api/tools/no_such_tool", {}),
        ("POST", "/api", {"tool": "no_such_tool", "params": {}}),
    ]:
        error = await api.error(404, method, path, json=body)
        assert error["kind"] == "unknown_tool", error
        assert "list_workflows" in error["details"]["tools"] and "list_workflows" in error["message"]


async def test_unknown_routes_are_404_naming_the_routes(api: Api) -> None:
    for path in ["/api/nothing", "/api/tools/", "/api/images/only-id", "/api/jobs/a/b"]:
        error = await api.error(404, "GET", path)
        assert error["kind"] == "not_found", error
        assert "GET /api/tools" in error["details"]["routes"], error


async def test_wrong_methods_are_405_with_allow(api: Api) -> None:
    for method, path, allow in [
        ("GET", "/api/tools/list_workflows", "POST"),
        ("GET", "/api", "POST"),
        ("POST", "/api/tools", "GET"),
        ("DELETE", "/api/jobs/x", "GET"),
        ("PUT", "/api/images/a/b.png", "GET"),
    ]:
        r = await api.request(method, path)
        assert r.status_code == 405, (method, path, r.status_code, r.text)
        assert r.headers["allow"] == allow
        assert r.json()["error"]["kind"] == "method_not_allowed"


async def test_bad_bodies_are_400(api: Api) -> None:
    cases: list[tuple[str, bytes, str, str]] = [
        ("/api/tools/list_workflows", b"{not json", "invalid_json", "not valid json"),
        ("/api/tools/list_workflows", b"[1, 2]", "invalid_body", "an array"),
        ("/api", b"{}", "invalid_body", "`tool` is required"),
        ("/api", b'{"tool": "list_workflows", "params": 3}', "invalid_body", "`params` must be an object"),
        ("/api", b'{"tool": "list_workflows", "extra": 1}', "invalid_body", "unknown field `extra`"),
    ]
    for path, body, kind, says in cases:
        headers = api.headers(**{"Content-Type": "application/json"})
        error = await api.error(400, "POST", path, content=body, headers=headers)
        assert error["kind"] == kind and says in error["message"].lower(), (body, error)


async def test_argument_and_app_errors_carry_their_kind_and_status(api: Api) -> None:
    error = await api.error(400, "POST", "/api/tools/list_workflows", json={"bogus": 1})
    assert error["kind"] == "invalid_arguments" and "unknown argument `bogus`" in error["message"], error
    error = await api.error(404, "POST", "/api/tools/generate_image", json={"template": "nope", "prompt": "x"})
    assert error["kind"] == "unknown_template" and "item-icon" in error["message"], error
    error = await api.error(422, "POST", "/api/tools/item-icon", json={"prompt": "x", "width": 65})
    assert error["kind"] == "invalid_parameters" and error["details"], error
    error = await api.error(404, "GET", "/api/jobs/not-a-job")
    assert error["kind"] == "unknown_job", error
    error = await api.error(400, "POST", "/api/tools/cancel_workflow", json={})
    assert error["kind"] == "invalid_request", error


def small_png_b64(size: int = 16) -> str:
    out = io.BytesIO()
    Image.new("RGB", (size, size), (10, 20, 30)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def header_bomb_b64() -> str:
    """A PNG whose header claims 100000 x 100000 pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    return base64.b64encode(png).decode()


async def test_image_arguments_are_taken_and_refused_with_their_status(api: Api, sim: Sim) -> None:
    image = small_png_b64()
    out = await api.ok("POST", "/api/tools/image-variation", json={"prompt": "x", "image": image, "steps": 1})
    done = await finished(api, out["prompt_id"])
    assert done["state"] == "completed", done
    expected = hashlib.sha256(base64.b64decode(image)).hexdigest()
    assert done["parameters"]["image"]["sha256"] == expected, done["parameters"]
    before = len(await sim.requests())
    gif = "data:image/gif;base64," + base64.b64encode(b"GIF89a\x01\x00\x01\x00" + bytes(20)).decode()
    rows = [
        (415, gif, "input_not_an_image", "the data is a GIF image"),
        (413, header_bomb_b64(), "input_too_many_pixels", "over the limit of 16777216 pixels"),
        (403, "/etc/passwd", "input_path_refused", "outside the allowed input folders"),
        (422, "data:image/png;base64,%%%%", "input_malformed", "does not decode"),
    ]
    for status, arg, kind, message in rows:
        error = await api.error(status, "POST", "/api/tools/image-variation", json={"prompt": "x", "image": arg})
        assert error["kind"] == kind and message in error["message"], error
        assert error["details"] == {"param": "image"}, error
    uploads = [r for r in (await sim.requests())[before:] if r["path"].endswith("/upload/image")]
    assert uploads == [], uploads


async def test_images_are_only_the_jobs_own(api: Api) -> None:
    done = await finished(api, (await generate(api))["prompt_id"])
    pid = done["prompt_id"]
    for name in ["other.png", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "%2E%2E"]:
        error = await api.error(404, "GET", f"/api/images/{pid}/{name}")
        assert error["kind"] == "unknown_image", error
        assert done["images"][0]["filename"] in error["message"], error
    error = await api.error(404, "GET", f"/api/images/not-a-job/{done['images'][0]['filename']}")
    assert error["kind"] == "unknown_job", error


async def test_the_body_cap_is_the_mcp_one_at_its_limit(api: Api) -> None:
    def padded(n: int) -> bytes:
        body = b'{"category": "items"}'
        return body + b" " * (n - len(body))

    r = await api.request("POST", "/api/tools/list_workflows", content=padded(BODY_LIMIT))
    assert r.status_code == 200, r.text
    error = await api.error(413, "POST", "/api/tools/list_workflows", content=padded(BODY_LIMIT + 1))
    assert error["kind"] == "body_too_large" and str(BODY_LIMIT) in error["message"], error
    assert "COMFYUI_MCP_MAX_REQUEST_BYTES" in error["message"]

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds while reading
        body = padded(BODY_LIMIT + 1)
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    error = await api.error(413, "POST", "/api/tools/list_workflows", content=chunks())
    assert error["kind"] == "body_too_large", error


# --- auth (the /mcp guard) ----------------------------------------------------------------


async def test_token_missing_or_wrong_is_401(api: Api) -> None:
    for auth in [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN]:
        headers = {} if auth is None else {"Authorization": auth}
        r = await api.request("GET", "/api/tools", headers=headers)
        assert r.status_code == 401, (auth, r.status_code, r.text)
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"]["kind"] == "unauthorized", r.text
    r = await api.request("POST", "/api", headers={}, json={"tool": "list_workflows"})
    assert r.status_code == 401


async def test_foreign_host_and_origin_are_403(api: Api) -> None:
    r = await api.request("GET", "/api/tools", headers=api.headers(Host="evil.example"))
    assert r.status_code == 403 and r.json()["error"]["kind"] == "host_refused", r.text
    r = await api.request("GET", "/api/tools", headers=api.headers(Origin="http://evil.example"))
    assert r.status_code == 403 and r.json()["error"]["kind"] == "origin_refused", r.text
    r = await api.request("GET", "/api/tools", headers=api.headers(Origin="http://localhost:3000"))
    assert r.status_code == 200, r.text


# --- servers of their own: limits, disconnects, ComfyUI down ------------------------------


@pytest.fixture
async def limited(sim: Sim, tmp_path: Path) -> AsyncIterator[Api]:
    """A server that runs one API call at a time."""
    extra = {"COMFYUI_MCP_API_MAX_CALLS": "1"}
    async with connect("http", sim, tmp_path / "limited", token=TOKEN, extra_env=extra) as conn:
        yield Api(api_base(conn.http_url), TOKEN)  # type: ignore[attr-defined]


async def test_calls_beyond_the_limit_are_503_with_retry_after(limited: Api, sim: Sim) -> None:
    await sim.hold(True)
    first: list[httpx.Response] = []

    async def waiting() -> None:
        body = {"template": "item-icon", "prompt": "x", **SMALL, "wait": True, "timeout": 30}
        first.append(await limited.request("POST", "/api/tools/generate_image", json=body))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiting)
        await poll(sim.queue_ids, lambda q: len(q[0]) + len(q[1]) == 1, "the waiting call's job to be queued")
        r = await limited.request("POST", "/api/tools/list_workflows", json={})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["kind"] == "too_many_calls" and "COMFYUI_MCP_API_MAX_CALLS" in error["message"], error
        assert error["details"]["limit"] == 1
        r = await limited.request("GET", "/api/tools")
        assert r.status_code == 200, "listing tools takes no call slot"
        await sim.hold(False)
    assert first[0].status_code == 200 and first[0].json()["status"] == "completed", first[0].text
    await limited.tool("list_workflows")


async def test_a_client_that_disconnects_mid_wait_cancels_its_job(limited: Api, sim: Sim) -> None:
    await sim.hold(True)
    body = {"template": "item-icon", "prompt": "x", **SMALL, "wait": True, "timeout": 600}
    async with anyio.create_task_group() as tg:

        async def doomed() -> None:
            await limited.request("POST", "/api/tools/generate_image", json=body, timeout=600)

        tg.start_soon(doomed)
        running, pending = await poll(sim.queue_ids, lambda q: len(q[0]) + len(q[1]) == 1, "the job to be queued")
        pid = (running + pending)[0]
        tg.cancel_scope.cancel()  # closes the client's connection mid-wait
    async def state() -> dict[str, Any]:  # the one call slot may still be taken for a moment
        r = await limited.request("GET", f"/api/jobs/{pid}")
        return r.json() if r.status_code == 200 else {"state": f"HTTP {r.status_code}", "body": r.text}

    status = await poll(state, lambda s: s["state"] in TERMINAL, f"{pid} to end", timeout=WAIT)
    assert status["state"] == "cancelled", status
    running, pending = await sim.queue_ids()
    assert pid not in running + pending
    # The call's slot came back: the one-call server takes the next call.
    await poll(
        lambda: limited.request("POST", "/api/tools/list_workflows", json={}),
        lambda r: r.status_code == 200,
        "the call slot to be free",
    )


async def test_comfyui_unreachable_is_503_with_retry_after(sim: Sim, tmp_path: Path) -> None:
    dead = Sim(tmp_path / "dead")  # a ComfyUI that was there and is not any more
    gone = RealComfyUI(dead.url)
    dead.stop()
    async with connect("http", gone, tmp_path / "server", token=TOKEN) as conn:
        api = Api(api_base(conn.http_url), TOKEN)  # type: ignore[attr-defined]
        r = await api.request("POST", "/api/tools/item-icon", json={"prompt": "x", **SMALL})
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "5"
        assert r.json()["error"]["kind"] == "comfyui_unavailable", r.text


async def test_a_busy_pack_pool_is_429_with_retry_after(sim: Sim, tmp_path: Path) -> None:
    """Pack-call permits taken (admission `busy`): 429 naming the setting, with Retry-After."""
    extra = {
        "COMFYUI_MCP_PACK_CONCURRENCY": "1",
        "COMFYUI_MCP_PACK_QUEUE_WAIT_MS": "200",
        "COMFYUI_MCP_PACK_TIMEOUT_MS": "1500",
    }
    packs = [TEST_PACKS / "sleeper-agent.wasm", TEST_PACKS / "mini.wasm"]
    async with connect("http", sim, tmp_path / "server", packs=packs, token=TOKEN, extra_env=extra) as conn:
        api = Api(api_base(conn.http_url), TOKEN)  # type: ignore[attr-defined]
        answers: list[httpx.Response] = []

        async def spin() -> None:
            body = {"tool": "generate_image", "params": {"template": "spin", "prompt": "go"}}
            answers.append(await api.request("POST", "/api", json=body))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(spin)
        busy = [r for r in answers if r.status_code == 429]
        assert busy, [(r.status_code, r.text[:200]) for r in answers]
        for r in busy:
            assert r.json()["error"]["kind"] == "busy", r.text
            assert "COMFYUI_MCP_PACK_CONCURRENCY" in r.json()["error"]["message"], r.text
            assert int(r.headers["retry-after"]) >= 1, r.headers
        others = {r.json()["error"]["kind"] for r in answers if r.status_code != 429}
        assert others <= {"pack_failed"}, others
        out = await api.ok("POST", "/api/tools/generate_image", json={"template": "solid-color", "prompt": "x"})
        assert out["prompt_id"], out


async def test_mcp_still_sees_a_failed_job_as_its_structured_content(mcp: Conn, sim: Sim) -> None:
    """The refactor behind the API keeps the MCP rendering: a failed job is isError + job JSON."""
    await sim.faults({"fail_node_class": {"class": "VAEDecode", "message": "boom"}})
    result = await mcp.call("generate_image", {"template": "item-icon", "prompt": "x", **SMALL, "wait": True})
    assert result.is_error
    assert result.structured_content is not None and result.structured_content["status"] == "failed"
    assert any(isinstance(b, types.TextContent) and "boom" in b.text for b in result.content)
