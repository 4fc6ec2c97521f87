"""Streamable HTTP transport: bearer token, Origin and Host checks (DNS rebinding), and the
refusal to listen on a non-loopback address without a token."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from harness import WAIT, Proc, Sim, binary, connect, prepare_workdir, server_env, start_http_server

TOKEN = "http-test-token-abcdef0123456789"

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "raw-http-test", "version": "0"},
    },
}
BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def http_server(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("http-auth")
    env = server_env(sim, workdir, prepare_workdir(workdir), COMFYUI_MCP_HTTP_TOKEN=TOKEN)
    proc, url = start_http_server(env, workdir / "server.stderr.log")
    try:
        yield url
    finally:
        proc.stop()


async def post_initialize(url: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT, trust_env=False) as c:
        return await c.post(url, json=INITIALIZE, headers={**BASE_HEADERS, **headers})


def initialize_result(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC result from a JSON or an SSE answer."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for line in response.text.splitlines():
            if line.startswith("data:") and line[5:].strip():
                msg = json.loads(line[5:])
                if msg.get("id") == 1:
                    return msg["result"]
        raise AssertionError(f"no initialize answer in the event stream: {response.text[:500]}")
    return response.json()["result"]


async def test_correct_token_is_accepted(http_server: str) -> None:
    r = await post_initialize(http_server, Authorization=f"Bearer {TOKEN}")
    assert r.status_code == 200, (r.status_code, r.text)
    assert initialize_result(r)["protocolVersion"]


async def test_missing_token_is_401(http_server: str) -> None:
    r = await post_initialize(http_server)
    assert r.status_code == 401, (r.status_code, r.text)


async def test_wrong_token_is_401(http_server: str) -> None:
    for value in (f"Bearer {TOKEN}x", "Bearer wrong", f"Basic {TOKEN}", TOKEN):
        r = await post_initialize(http_server, Authorization=value)
        assert r.status_code == 401, (value, r.status_code, r.text)


async def test_foreign_origin_is_403(http_server: str) -> None:
    r = await post_initialize(http_server, Authorization=f"Bearer {TOKEN}", Origin="http://evil.example")
    assert r.status_code == 403, (r.status_code, r.text)


async def test_foreign_host_is_403(http_server: str) -> None:
    port = urlsplit(http_server).port
    for host in ("evil.example", f"evil.example:{port}"):
        r = await post_initialize(http_server, Authorization=f"Bearer {TOKEN}", Host=host)
        assert r.status_code == 403, (host, r.status_code, r.text)


async def test_sdk_client_with_token_works(sim: Sim, tmp_path: Path) -> None:
    async with connect("http", sim, tmp_path / "server", token=TOKEN) as c:
        tools = await c.session.list_tools()
        assert "generate_image" in {t.name for t in tools.tools}


async def test_loopback_without_a_configured_token_needs_no_token(sim: Sim, tmp_path: Path) -> None:
    async with connect("http", sim, tmp_path / "server", token=None) as c:
        out = await c.ok("list_workflows", {})
        assert out["total_count"] >= 4


async def test_non_loopback_bind_without_token_is_refused(sim: Sim, tmp_path: Path) -> None:
    env = server_env(sim, tmp_path, prepare_workdir(tmp_path))
    proc = Proc([binary(), "serve", "--http", "0.0.0.0:0"], env, tmp_path / "server.stderr.log")
    try:
        code = proc.wait_exit(WAIT)
        assert code is not None, "the server listened on 0.0.0.0 without COMFYUI_MCP_HTTP_TOKEN"
        assert code != 0
        proc.stop()
        assert "token" in proc.stderr_text().lower(), f"the refusal should say a token is needed: {proc.stderr_text()}"
    finally:
        proc.stop()
