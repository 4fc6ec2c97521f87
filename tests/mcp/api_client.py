"""A plain HTTP client for the `/api` routes of `comfyui-mcp serve --http` (no MCP involved).

`Api` wraps httpx with the server's base URL and token; `api_base()` derives the base URL from
the `/mcp` URL the server prints. Shared by test_http_api.py and test_e2e_http_api.py.
"""

from __future__ import annotations

from typing import Any

import httpx

from harness import WAIT

TERMINAL = {"completed", "failed", "cancelled"}


def api_base(mcp_url: str) -> str:
    """`http://HOST:PORT` from `http://HOST:PORT/mcp`."""
    assert mcp_url.endswith("/mcp"), mcp_url
    return mcp_url[: -len("/mcp")]


class Api:
    """Requests to one server's `/api`, with its bearer token unless told otherwise."""

    def __init__(self, base: str, token: str | None) -> None:
        self.base = base
        self.token = token

    def headers(self, **extra: str) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        h.update(extra)
        return h

    async def request(
        self, method: str, path: str, *, timeout: float = WAIT, headers: dict[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=timeout, trust_env=False) as c:
            return await c.request(method, path, headers=headers if headers is not None else self.headers(), **kw)

    async def ok(self, method: str, path: str, **kw: Any) -> Any:
        """A request that must answer 200 with JSON; returns the JSON."""
        r = await self.request(method, path, **kw)
        assert r.status_code == 200, f"{method} {path} -> {r.status_code} {r.text[:800]}"
        assert r.headers["content-type"].startswith("application/json"), r.headers
        return r.json()

    async def error(self, status: int, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """A request that must fail with `status`; returns its `error` object (kind, message)."""
        r = await self.request(method, path, **kw)
        assert r.status_code == status, f"{method} {path}: expected {status}, got {r.status_code} {r.text[:800]}"
        assert r.headers["content-type"].startswith("application/json"), r.headers
        error = r.json()["error"]
        assert isinstance(error["kind"], str) and error["kind"], error
        assert isinstance(error["message"], str) and error["message"].strip(), error
        return error

    async def tool(self, name: str, args: dict[str, Any] | None = None, **kw: Any) -> Any:
        return await self.ok("POST", f"/api/tools/{name}", json=args or {}, **kw)

    async def job(self, prompt_id: str) -> dict[str, Any]:
        return await self.ok("GET", f"/api/jobs/{prompt_id}")
