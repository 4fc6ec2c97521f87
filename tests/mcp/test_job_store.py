"""The SQLite job store through real MCP clients (the official Python SDK), on the simulator.

Covered: a server SIGKILLed mid-job and another started on the same store, which adopts the job,
completes it and serves its images; a running job adopted that way put under the next server's
execution timeout; two stdio servers at once on one store, each reading and
cancelling the other's jobs (queued: removed from ComfyUI's queue; running: interrupted), the
owner seeing the cancel; `list_jobs` filters, paging and argument errors, with the store and with
`COMFYUI_MCP_DB=off`; and a corrupt store file stopping the server at start with a message naming
the file.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from harness import (
    Conn,
    Proc,
    Sim,
    binary,
    call_over_http,
    connect,
    poll,
    prepare_workdir,
    read_blob,
    server_env,
    start_http_server,
)

SMALL = {"prompt": "a tiny test image", "width": 64, "height": 64, "steps": 2}
DB_FILE = "comfyui-mcp-jobs.sqlite3"


async def submit(conn: Conn, template: str = "item-icon") -> str:
    out = await conn.ok("generate_image", {"template": template, **SMALL})
    return out["prompt_id"]


async def killed_with_a_job(sim: Sim, tmp_path: Path, running: bool) -> str:
    """Starts a server on the store in `tmp_path`, submits a job, waits until ComfyUI holds it
    (running, or pending), SIGKILLs the server and returns the job's prompt id."""
    templates = prepare_workdir(tmp_path)
    env = server_env(sim, tmp_path, templates, COMFYUI_MCP_HTTP_TOKEN="t" * 24)
    first, url = start_http_server(env, tmp_path / "first.stderr.log")
    try:
        first.wait_for("first scan done")
        pid = (await call_over_http(url, "t" * 24, "generate_image", {"template": "item-icon", **SMALL}))["prompt_id"]
        where = 0 if running else 1
        await poll(sim.queue_ids, lambda q: pid in q[where], f"{pid} {'running' if running else 'pending'} in ComfyUI")
        os.killpg(first.proc.pid, signal.SIGKILL)
        assert first.wait_exit() == -signal.SIGKILL
    finally:
        first.stop()
    return pid


async def test_a_killed_servers_queued_job_completes_under_the_next_server(sim: Sim, tmp_path: Path) -> None:
    await sim.hold(True)
    pid = await killed_with_a_job(sim, tmp_path, running=False)
    assert (tmp_path / "out" / DB_FILE).is_file()
    await sim.hold(False)
    async with connect("stdio", sim, tmp_path) as second:
        done = await second.wait_state(pid, {"completed", "failed", "cancelled"})
        assert done["state"] == "completed", done
        assert done["images"], done
        for im in done["images"]:
            assert Path(im["path"]).is_file(), im
            data, mime = await read_blob(second, im["uri"])
            assert mime == "image/png" and data.startswith(b"\x89PNG"), im["uri"]
            # Post-processed by the pack, rebuilt by the server that adopted the job.
            assert [s["name"] for s in im["postprocess"]["steps"]], im
        assert done["postprocess_ms"] is not None, done
        assert "adopted an open job" in second.stderr()
        listed = await second.ok("list_jobs", {})
        assert pid in [j["prompt_id"] for j in listed["jobs"]]


async def test_two_servers_read_and_cancel_each_others_jobs(sim: Sim, tmp_path: Path) -> None:
    await sim.hold(True)
    async with connect("stdio", sim, tmp_path) as a, connect("stdio", sim, tmp_path) as b:
        ja, jb = await submit(a), await submit(b, "pixel-art")
        assert (await b.status(ja))["state"] == "queued"
        seen = await a.status(jb)
        assert seen["state"] == "queued" and seen["metadata"]["template"] == "pixel-art", seen
        listed = {j["prompt_id"] for j in (await a.ok("list_jobs", {}))["jobs"]}
        assert {ja, jb} <= listed
        resources = {r.uri for r in (await b.session.list_resources()).resources}
        assert f"comfyui://jobs/{ja}" in resources
        # B cancels A's queued job: removed from ComfyUI's queue; A sees it cancelled.
        out = await b.ok("cancel_workflow", {"prompt_id": ja})
        assert out["cancelled"] is True and "removed from comfyui's queue" in out["message"].lower(), out
        _, pending = await sim.queue_ids()
        assert ja not in pending
        assert (await a.wait_state(ja, {"cancelled", "failed", "completed"}))["state"] == "cancelled"
        out = await a.ok("cancel_workflow", {"prompt_id": jb})
        assert out["cancelled"] is True, out
        assert (await b.wait_state(jb, {"cancelled", "failed", "completed"}))["state"] == "cancelled"
        # A running job of A, interrupted by B.
        await sim.step_delay(300)
        await sim.hold(False)
        jr = await submit(a)
        await a.wait_state(jr, {"running"})
        out = await b.ok("cancel_workflow", {"prompt_id": jr})
        assert "interrupted" in out["message"], out
        assert jr in await sim.interrupts()
        final = await a.wait_state(jr, {"cancelled", "failed", "completed"})
        assert final["state"] == "cancelled", final
        assert (await b.status(jr))["state"] == "cancelled"
        # A second cancel is refused: the job has ended.
        assert "already" in await b.err("cancel_workflow", {"prompt_id": jr})


async def test_list_jobs_filters_and_pages(sim: Sim, tmp_path: Path) -> None:
    async with connect("stdio", sim, tmp_path) as c:
        await _check_listing(c, sim)


async def test_list_jobs_without_a_store(sim: Sim, tmp_path: Path) -> None:
    async with connect("stdio", sim, tmp_path, extra_env={"COMFYUI_MCP_DB": "off"}) as c:
        await _check_listing(c, sim)
    assert not (tmp_path / "out" / DB_FILE).exists()


async def _check_listing(c: Conn, sim: Sim) -> None:
    ids = []
    for i in range(5):
        ids.append(await submit(c, "item-icon" if i % 2 == 0 else "pixel-art"))
    for pid in ids:
        await c.wait_state(pid, {"completed"})
    await sim.hold(True)
    queued = await submit(c)
    everything = await c.ok("list_jobs", {})
    assert [j["prompt_id"] for j in everything["jobs"]][:6] == [queued, *reversed(ids)]
    icons = await c.ok("list_jobs", {"template": "pixel-art"})
    assert {j["prompt_id"] for j in icons["jobs"]} == {ids[1], ids[3]}
    only_queued = await c.ok("list_jobs", {"state": "queued"})
    assert [j["prompt_id"] for j in only_queued["jobs"]] == [queued]
    # Between two submissions: serde_json's default float parsing may be 1 ulp off an exact echo.
    before, at = (await c.status(ids[2]))["submitted_at"], (await c.status(ids[3]))["submitted_at"]
    recent = await c.ok("list_jobs", {"since": (before + at) / 2})
    assert {j["prompt_id"] for j in recent["jobs"]} == {ids[3], ids[4], queued}
    pages: list[str] = []
    cursor: Any = None
    while True:
        args: dict[str, Any] = {"limit": 2}
        if cursor:
            args["cursor"] = cursor
        page = await c.ok("list_jobs", args)
        assert page["count"] == len(page["jobs"]) <= 2
        pages.extend(j["prompt_id"] for j in page["jobs"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [queued, *reversed(ids)]
    assert "from 1 to 200" in await c.err("list_jobs", {"limit": 201})
    assert "one of queued" in await c.err("list_jobs", {"state": "finished"})
    assert "next_cursor" in await c.err("list_jobs", {"cursor": "not-a-cursor"})
    assert "unknown argument" in await c.err("list_jobs", {"page": 2})
    await c.ok("cancel_workflow", {"prompt_id": queued})
    await sim.hold(False)


async def test_a_corrupt_store_stops_the_server_naming_the_file(sim: Sim, tmp_path: Path) -> None:
    templates = prepare_workdir(tmp_path)
    db = tmp_path / "broken.sqlite3"
    garbage = b"not a database at all\n" * 200
    db.write_bytes(garbage)
    env = server_env(sim, tmp_path, templates, COMFYUI_MCP_DB=str(db))
    proc = Proc([binary(), "serve", "--http", "127.0.0.1:0"], env, tmp_path / "server.stderr.log")
    try:
        code = proc.wait_exit()
        assert code not in (None, 0), f"the server kept running over a corrupt store: {proc.tail()}"
        line = proc.wait_for("corrupt or not a SQLite database").string
        assert str(db) in line, line
    finally:
        proc.stop()
    assert db.read_bytes() == garbage


async def test_an_adopted_running_job_is_under_the_execution_timeout(sim: Sim, tmp_path: Path) -> None:
    """The next server puts a dead server's running job under its own `COMFYUI_TIMEOUT` (the clock
    starts when it sees the job running): the job is interrupted and fails typed, never runs on."""
    await sim.step_delay(60_000)  # every sampler step a minute: the job runs far past the limit
    pid = await killed_with_a_job(sim, tmp_path, running=True)
    async with connect("stdio", sim, tmp_path, extra_env={"COMFYUI_TIMEOUT": "2"}) as second:
        done = await second.wait_state(pid, {"completed", "failed", "cancelled"})
        assert done["state"] == "failed", done
        assert done["error"]["kind"] == "execution_timeout", done["error"]
        assert "Workflow execution timeout" in done["error"]["message"], done["error"]
        await poll(sim.queue_ids, lambda q: pid not in q[0] and pid not in q[1], f"{pid} gone from ComfyUI's queue")
