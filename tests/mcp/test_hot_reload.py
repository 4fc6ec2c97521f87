"""Hot reload seen from an independent MCP client: packs copied into, replaced in and removed from
the watched templates folder change the tools, the catalog and its errors while the server runs.

Every test starts its own server (stdio and streamable HTTP) on a private templates folder that
holds only the shipped game-assets pack, then changes that folder the way a user would: a copy
to a temporary name in the same folder followed by a rename, or a plain in-place `shutil.copy`.

Invariants checked: a change is announced with `notifications/tools/list_changed`; a pack that
fails to load never replaces the working version, and its error is visible in `list_workflows`
and in `comfyui://catalog/errors`; a clash never takes an id away from the pack serving it;
a removed pack's tools disappear; calls in flight during swaps never fail.
Every wait is bounded and nothing asserts on timings.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from harness import TEMPLATES, TEST_PACKS, Conn, Sim, connect, poll, texts

GAME_ASSETS = TEMPLATES / "game-assets.wasm"
MINI = TEST_PACKS / "mini.wasm"
MINI_V2 = TEST_PACKS / "mini-v2.wasm"
CLASH = TEST_PACKS / "clash.wasm"
WRONG_ABI = TEST_PACKS / "wrong-abi.wasm"

PACK_FILE = "mini.wasm"
"""The name the mini pack is served under in the templates folder (v1 and v2 alike)."""

SOLID = {"prompt": "a flat colour", "width": 64, "height": 64}


@pytest.fixture(params=["stdio", "http"])
async def hot(
    request: pytest.FixtureRequest, sim: Sim, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Conn]:
    """A server of its own whose templates folder starts with game-assets.wasm only."""
    workdir = tmp_path_factory.mktemp(f"hot-{request.node.originalname}-{request.param}")
    async with connect(request.param, sim, workdir, packs=[GAME_ASSETS]) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"


# ---------------------------------------------------------------- helpers


def install(src: Path, templates: Path, name: str = PACK_FILE) -> None:
    """Copies `src` to a temporary name in the templates folder, then renames it into place."""
    tmp = templates / f".{name}.partial"
    shutil.copyfile(src, tmp)
    tmp.replace(templates / name)


def install_bytes(data: bytes, templates: Path, name: str = PACK_FILE) -> None:
    tmp = templates / f".{name}.partial"
    tmp.write_bytes(data)
    tmp.replace(templates / name)


def list_changed_count(conn: Conn) -> int:
    return sum(1 for n in conn.notifications if isinstance(n, types.ToolListChangedNotification))


async def tool_names(conn: Conn) -> set[str]:
    return {t.name for t in (await conn.session.list_tools()).tools}


async def workflows(conn: Conn) -> dict[str, Any]:
    return await conn.ok("list_workflows")


def pack_of(listing: dict[str, Any], template: str) -> dict[str, Any] | None:
    for w in listing["workflows"]:
        if w["id"] == template:
            return w["pack"]
    return None


def errors_for(listing: dict[str, Any], file_name: str) -> list[str]:
    return [e["error"] for e in listing["errors"] if Path(e["path"]).name == file_name]


async def resource_errors(conn: Conn) -> list[dict[str, Any]]:
    """The problems listed by the comfyui://catalog/errors resource."""
    res = await conn.session.read_resource("comfyui://catalog/errors")
    assert len(res.contents) == 1, res
    item = res.contents[0]
    assert isinstance(item, types.TextResourceContents), f"expected JSON text, got {type(item).__name__}"
    data = json.loads(item.text)
    problems = data["errors"] if isinstance(data, dict) else data
    assert isinstance(problems, list), data
    return problems


async def change_and_wait(
    conn: Conn, change: Callable[[], None], done: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Applies `change` to the folder, then waits for a list_changed notification and for
    list_workflows to satisfy `done`. Returns that listing."""
    before = list_changed_count(conn)
    change()

    async def count() -> int:
        return list_changed_count(conn)

    await poll(count, lambda n: n > before, f"notifications/tools/list_changed after: {what}")
    return await poll(lambda: workflows(conn), done, what)


async def solid_color_completes(conn: Conn) -> None:
    """The solid-color tool builds, submits and finishes a job against the simulator."""
    out = await conn.ok("solid-color", {**SOLID, "wait": True})
    assert out["status"] == "completed", out
    assert out["images"], out


async def add_mini(conn: Conn) -> dict[str, Any]:
    return await change_and_wait(
        conn,
        lambda: install(MINI, conn.templates_dir),
        lambda lw: (pack_of(lw, "solid-color") or {}).get("version") == "1.0.0",
        "mini-pack 1.0.0 serving solid-color",
    )


# ---------------------------------------------------------------- tests


async def test_a_pack_renamed_into_the_folder_appears(hot: Conn) -> None:
    assert "solid-color" not in await tool_names(hot)
    listing = await add_mini(hot)
    assert pack_of(listing, "solid-color") == {"name": "mini-pack", "version": "1.0.0"}
    assert pack_of(listing, "item-icon") is not None, "the shipped pack kept serving"
    assert listing["errors"] == [], listing["errors"]
    assert "solid-color" in await tool_names(hot)
    await solid_color_completes(hot)


async def test_a_pack_copied_in_place_appears(hot: Conn) -> None:
    listing = await change_and_wait(
        hot,
        lambda: shutil.copy(MINI, hot.templates_dir / PACK_FILE),
        lambda lw: pack_of(lw, "solid-color") is not None and not errors_for(lw, PACK_FILE),
        "solid-color after an in-place copy",
    )
    assert pack_of(listing, "solid-color") == {"name": "mini-pack", "version": "1.0.0"}
    assert "solid-color" in await tool_names(hot)
    await solid_color_completes(hot)


async def test_a_replacement_pack_takes_over(hot: Conn) -> None:
    await add_mini(hot)
    assert "gradient" not in await tool_names(hot)
    listing = await change_and_wait(
        hot,
        lambda: install(MINI_V2, hot.templates_dir),
        lambda lw: (pack_of(lw, "solid-color") or {}).get("version") == "2.0.0",
        "mini-pack 2.0.0",
    )
    assert pack_of(listing, "gradient") == {"name": "mini-pack", "version": "2.0.0"}
    assert listing["errors"] == [], listing["errors"]
    assert {"solid-color", "gradient"} <= await tool_names(hot)
    await solid_color_completes(hot)
    out = await hot.ok("gradient", {"prompt": "a ramp", "wait": True})
    assert out["status"] == "completed", out


@pytest.mark.parametrize("broken", ["truncated", "wrong-abi"])
async def test_a_broken_replacement_keeps_the_old_version_serving(hot: Conn, broken: str) -> None:
    await add_mini(hot)
    if broken == "truncated":
        data = MINI_V2.read_bytes()
        change: Callable[[], None] = lambda: install_bytes(data[: len(data) // 2], hot.templates_dir)  # noqa: E731
    else:
        change = lambda: install(WRONG_ABI, hot.templates_dir)  # noqa: E731
    listing = await change_and_wait(
        hot, change, lambda lw: bool(errors_for(lw, PACK_FILE)), f"an error for the {broken} {PACK_FILE}"
    )
    (error,) = errors_for(listing, PACK_FILE)
    assert "1.0.0 keeps serving" in error, error
    assert pack_of(listing, "solid-color") == {"name": "mini-pack", "version": "1.0.0"}
    assert pack_of(listing, "gradient") is None
    problems = [p for p in await resource_errors(hot) if Path(p["path"]).name == PACK_FILE]
    assert [p["error"] for p in problems] == [error], problems
    await solid_color_completes(hot)

    # Fixing the file clears the error and the new version takes over.
    listing = await change_and_wait(
        hot,
        lambda: install(MINI_V2, hot.templates_dir),
        lambda lw: (pack_of(lw, "solid-color") or {}).get("version") == "2.0.0",
        "mini-pack 2.0.0 after the fix",
    )
    assert listing["errors"] == [], listing["errors"]
    assert await resource_errors(hot) == []


async def test_a_clash_is_reported_and_the_incumbent_keeps_the_id(hot: Conn) -> None:
    listing = await change_and_wait(
        hot,
        lambda: install(CLASH, hot.templates_dir, "clash.wasm"),
        lambda lw: bool(errors_for(lw, "clash.wasm")),
        "a clash error for clash.wasm",
    )
    (error,) = errors_for(listing, "clash.wasm")
    assert "item-icon" in error and "clashes with" in error, error
    owner = pack_of(listing, "item-icon")
    assert owner is not None and owner["name"] != "clash-pack", owner
    assert any(Path(p["path"]).name == "clash.wasm" for p in await resource_errors(hot))

    out = await hot.ok("item-icon", {"prompt": "a wooden shield", "steps": 1, "wait": True})
    assert out["status"] == "completed", out
    graph = await hot.sim.submitted_graph(out["prompt_id"])
    prefixes = [n["inputs"].get("filename_prefix", "") for n in graph.values() if n["class_type"] == "SaveImage"]
    assert prefixes and not any("clash" in p for p in prefixes), f"clash-pack built item-icon: {prefixes}"


async def test_a_removed_pack_disappears(hot: Conn) -> None:
    await add_mini(hot)
    listing = await change_and_wait(
        hot,
        lambda: (hot.templates_dir / PACK_FILE).unlink(),
        lambda lw: pack_of(lw, "solid-color") is None,
        "solid-color gone",
    )
    assert pack_of(listing, "item-icon") is not None
    assert listing["errors"] == [], listing["errors"]
    assert "solid-color" not in await tool_names(hot)

    # Through generate_image: a tool error naming what is available.
    text = await hot.err("generate_image", {"template": "solid-color", **SOLID})
    assert "solid-color" in text and "available templates" in text and "item-icon" in text, text
    # The template's own tool no longer exists: MCP answers an unknown tool with a protocol
    # error (invalid params), which names the tools that do exist.
    with pytest.raises(MCPError) as caught:
        await hot.session.call_tool("solid-color", SOLID)
    message = str(caught.value).lower()
    assert "solid-color" in message and "item-icon" in message, message


CALLS = 1000
SWAPS = 20
CONCURRENCY = 50


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_calls_in_flight_survive_pack_swaps(
    transport: str, new_sim: Callable[[], Sim], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """1,000 solid-color calls (build + submit, no wait) with 50 in flight while mini.wasm and
    mini-v2.wasm are renamed over each other 20 times: every call succeeds."""
    # A simulator of its own that holds its queue: the jobs are submitted, never run,
    # and the simulator is discarded afterwards.
    sim = new_sim()
    await sim.hold(True)
    workdir = tmp_path_factory.mktemp(f"hot-stress-{transport}")
    async with connect(transport, sim, workdir, packs=[GAME_ASSETS, MINI]) as conn:
        with anyio.fail_after(110):
            await stress(conn)
        assert not conn.stream_errors, conn.stream_errors


async def stress(conn: Conn) -> None:
    before = list_changed_count(conn)
    failures: list[str] = []
    prompt_ids: list[str] = []
    finished = 0
    progress = anyio.Event()
    limiter = anyio.CapacityLimiter(CONCURRENCY)

    async def one(i: int) -> None:
        nonlocal finished, progress
        async with limiter:
            try:
                result = await conn.session.call_tool("solid-color", {**SOLID, "color": i}, read_timeout_seconds=60)
            except Exception as e:  # noqa: BLE001 (every failure is collected and reported)
                failures.append(f"call {i}: {type(e).__name__}: {e}")
            else:
                data = result.structured_content or {}
                if result.is_error or not data.get("prompt_id"):
                    failures.append(f"call {i}: {texts(result)[:300]}")
                else:
                    prompt_ids.append(data["prompt_id"])
        finished += 1
        progress.set()
        progress = anyio.Event()

    swaps_done = 0

    async def swapper() -> None:
        nonlocal swaps_done
        for k in range(SWAPS):
            # Spread the swaps over the stream of calls.
            while finished < k * CALLS // SWAPS:
                await progress.wait()
            install(MINI_V2 if k % 2 == 0 else MINI, conn.templates_dir)
            swaps_done += 1
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as tg:
        tg.start_soon(swapper)
        for i in range(CALLS):
            tg.start_soon(one, i)

    assert swaps_done == SWAPS
    assert not failures, f"{len(failures)} of {CALLS} calls failed during pack swaps; first: {failures[:5]}"
    assert len(prompt_ids) == CALLS and len(set(prompt_ids)) == CALLS
    # The last swap put mini.wasm (v1) back; the catalog settles on it.
    await poll(
        lambda: workflows(conn),
        lambda lw: (pack_of(lw, "solid-color") or {}).get("version") == "1.0.0" and lw["errors"] == [],
        "mini-pack 1.0.0 after the last swap",
    )
    changes = list_changed_count(conn) - before
    assert changes >= 1, "no notifications/tools/list_changed during 20 pack swaps"
    print(f"[{conn.transport}] {CALLS} calls, {SWAPS} swaps, {changes} tools/list_changed notifications")
