"""Pack budgets seen from an independent MCP client: `initialize` is answered while a slow
pack loads, other packs serve meanwhile and appear with `notifications/tools/list_changed`,
and a server whose pack-call permits are taken answers with a clear `busy` error that names
the setting to raise.

Every wait is bounded and nothing asserts on timings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from harness import TEST_PACKS, WAIT, Conn, Sim, binary, connect, poll, prepare_workdir, server_env, texts

SLOW = TEST_PACKS / "slow-loader.wasm"
MINI = TEST_PACKS / "mini.wasm"
SLEEPER = TEST_PACKS / "sleeper-agent.wasm"


async def tool_names(conn: Conn) -> set[str]:
    return {t.name for t in (await conn.session.list_tools()).tools}


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_a_slow_pack_loads_in_the_background_while_others_serve(
    transport: str, sim: Sim, tmp_path: Path
) -> None:
    # The harness waits for the end of the first scan; the log shows the order of loads.
    async with connect(transport, sim, tmp_path / "server", packs=[SLOW, MINI]) as c:
        names = await poll(lambda: tool_names(c), lambda n: "slow-39" in n, "slow-loader's tools")
        assert "solid-color" in names, sorted(names)
        log = c.stderr()
        mini_loaded = next(i for i, line in enumerate(log.splitlines()) if "pack loaded" in line and "mini" in line)
        slow_loaded = next(
            i for i, line in enumerate(log.splitlines()) if "pack loaded" in line and "slow-loader" in line
        )
        assert mini_loaded < slow_loaded, "mini was held back by the slow pack"
        out = await c.ok("generate_image", {"template": "solid-color", "prompt": "x", "wait": True})
        assert out["status"] == "completed", out


async def test_initialize_is_answered_before_a_slow_pack_has_loaded(sim: Sim, tmp_path: Path) -> None:
    workdir = tmp_path / "server"
    env = server_env(sim, workdir, prepare_workdir(workdir, [SLOW, MINI]))
    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        seen.append(message)

    log = workdir / "server.stderr.log"
    with open(log, "w", encoding="utf-8") as errlog:
        params = StdioServerParameters(command=binary(), args=["serve"], env=env)
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=WAIT, message_handler=on_message) as s:
                with anyio.fail_after(WAIT):
                    await s.initialize()
                first = {t.name for t in (await s.list_tools()).tools}
                assert "slow-00" not in first, "initialize waited for the slow pack"
                # Each pack appears on its own, announced with list_changed.
                names = await poll(
                    lambda: _names(s), lambda n: "solid-color" in n and "slow-39" in n, "both packs"
                )
                assert {"solid-color", "slow-00"} <= names
                await poll(
                    lambda: _value(seen),
                    lambda ms: any(isinstance(m, types.ToolListChangedNotification) for m in ms),
                    "notifications/tools/list_changed",
                )


async def _names(session: Any) -> set[str]:
    return {t.name for t in (await session.list_tools()).tools}


async def _value(value: Any) -> Any:
    return value


async def test_a_busy_server_answers_busy_naming_the_setting(sim: Sim, tmp_path: Path) -> None:
    extra = {
        "COMFYUI_MCP_PACK_CONCURRENCY": "1",
        "COMFYUI_MCP_PACK_QUEUE_WAIT_MS": "200",
        "COMFYUI_MCP_PACK_TIMEOUT_MS": "1500",
    }
    async with connect("stdio", sim, tmp_path / "server", packs=[SLEEPER, MINI], extra_env=extra) as c:
        results: list[Any] = []

        async def spin() -> None:
            results.append(await c.call("generate_image", {"template": "spin", "prompt": "go"}))

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(spin)
        kinds = []
        for r in results:
            assert r.is_error, "a spinning call never builds a graph"
            assert r.structured_content is not None, texts(r)
            kinds.append(r.structured_content["error"]["kind"])
            if kinds[-1] == "busy":
                assert "COMFYUI_MCP_PACK_CONCURRENCY" in texts(r), texts(r)
        assert "busy" in kinds and set(kinds) <= {"busy", "pack_failed"}, kinds
        # The server goes on: a good call after the storm completes.
        out = await c.ok("generate_image", {"template": "solid-color", "prompt": "x", "wait": True})
        assert out["status"] == "completed", out
