"""pytest fixtures for the end-to-end MCP suite.

- `sim`: one simulator process per test module, reset (fast, fault-free, idle) before each test.
- `conn`: one `comfyui-mcp serve` per module and transport, parametrised over stdio and
  streamable HTTP; tests using it run once per transport.
- `new_sim`: starts extra simulators; tests start extra servers with `async with connect(...)`.
- `backend` / `bconn`: the end-to-end backend tier (`test_e2e_*.py`): parametrised over the
  simulator (`sim`, always) and a real ComfyUI (`real`, when `COMFYUI_REAL_URL` is set); `bconn` is
  one stdio server per module and backend.

All async tests and fixtures run on anyio's pytest plugin (auto mode, asyncio backend), which keeps
fixture setup, the tests and fixture teardown in one task, so the SDK's task groups and
cancel scopes stay valid across them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import os

import pytest

from harness import ComfyRoutes, Conn, RealComfyUI, Sim, connect


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Any:
    s = Sim(tmp_path_factory.mktemp("sim"))
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
async def _fresh_sim(sim: Sim) -> None:
    await sim.reset()


@pytest.fixture(scope="module", params=["stdio", "http"])
async def conn(
    request: pytest.FixtureRequest, sim: Sim, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Conn]:
    workdir = tmp_path_factory.mktemp(f"{request.module.__name__}-{request.param}")
    async with connect(request.param, sim, workdir) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors (non-JSON-RPC output?): {c.stream_errors}"


@pytest.fixture
def new_sim(tmp_path: Path) -> Any:
    """Starts extra simulators (for sticky faults); all are stopped at the end of the test."""
    started: list[Sim] = []

    def start() -> Sim:
        s = Sim(tmp_path / f"sim{len(started)}")
        started.append(s)
        return s

    try:
        yield start
    finally:
        for s in started:
            s.stop()


REAL_SKIP = (
    "real ComfyUI backend: COMFYUI_REAL_URL is not set; start one with "
    "`tests/real-comfyui/start.sh PORT` and set COMFYUI_REAL_URL=http://127.0.0.1:PORT"
)


@pytest.fixture(scope="module", params=["sim", "real"])
def backend(request: pytest.FixtureRequest, sim: Sim) -> ComfyRoutes:
    if request.param == "sim":
        return sim
    url = os.environ.get("COMFYUI_REAL_URL")
    if not url:
        pytest.skip(REAL_SKIP)
    return RealComfyUI(url)


@pytest.fixture(scope="module")
async def bconn(backend: ComfyRoutes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    name = "sim" if isinstance(backend, Sim) else "real"
    async with connect("stdio", backend, tmp_path_factory.mktemp(f"backend-{name}")) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"
