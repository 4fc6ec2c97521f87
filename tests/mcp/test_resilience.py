"""The server keeps working when ComfyUI misbehaves: dropped websockets, a restart, HTTP errors."""

from __future__ import annotations

from harness import Conn, check_completed

ARGS = {"template": "item-icon", "prompt": "a wooden shield", "steps": 1}


async def test_generation_survives_dropped_websockets(conn: Conn) -> None:
    await check_completed(conn, await conn.call("generate_image", {**ARGS, "wait": True}))
    await conn.sim.faults({"drop_websockets": True})
    await check_completed(conn, await conn.call("generate_image", {**ARGS, "wait": True}))


async def test_generation_survives_a_comfyui_restart(conn: Conn) -> None:
    await check_completed(conn, await conn.call("generate_image", {**ARGS, "wait": True}))
    await conn.sim.restart()
    await check_completed(conn, await conn.call("generate_image", {**ARGS, "wait": True}))


async def test_a_comfyui_http_error_is_reported_and_the_server_goes_on(conn: Conn) -> None:
    await conn.sim.faults({"fail_http": {"count": 1, "status": 500}})
    result = await conn.call("generate_image", {**ARGS, "wait": True})
    if result.is_error:
        assert any(b.type == "text" and b.text.strip() for b in result.content)
    else:
        await check_completed(conn, result)  # retried
    await check_completed(conn, await conn.call("generate_image", {**ARGS, "wait": True}))
