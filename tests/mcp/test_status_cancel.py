"""get_workflow_status and cancel_workflow: states, queue positions, failures, targeted
cancellation of queued and running jobs, and cancellation of a waiting request by the client."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio

from harness import WAIT, Conn, Sim, connect, poll, structured, texts

PROMPT = "an old iron key"
TERMINAL = {"completed", "failed", "cancelled"}


async def submit(conn: Conn, **extra: Any) -> str:
    out = await conn.ok("generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 2, **extra})
    return out["prompt_id"]


async def running_job(conn: Conn, steps: int = 40) -> str:
    """Submits a slow job and waits until the simulator runs it."""
    await conn.sim.step_delay(300)
    pid = await submit(conn, steps=steps)
    await poll(conn.sim.queue_ids, lambda q: pid in q[0], f"{pid} running in the simulator")
    return pid


async def test_status_of_a_completed_job(conn: Conn) -> None:
    pid = await submit(conn)
    st = await conn.wait_state(pid, TERMINAL)
    assert st["state"] == "completed", st
    for key in ("prompt_id", "state", "progress", "queue_position", "execution_time", "images", "metadata"):
        assert key in st, f"get_workflow_status lacks {key}: {st}"
    assert st["prompt_id"] == pid and st["progress"] == 1.0
    assert st["images"] and all(i["filename"] for i in st["images"])
    assert isinstance(st["execution_time"], (int, float)) and st["execution_time"] >= 0
    assert st["metadata"]["template"] == "item-icon"
    assert st.get("error") is None


async def test_status_of_queued_and_running_jobs(conn: Conn) -> None:
    await conn.sim.hold(True)
    pid = await submit(conn)
    st = await conn.status(pid)
    assert st["state"] == "queued", st
    assert isinstance(st["queue_position"], int) and st["queue_position"] >= 0
    assert st["progress"] == 0.0
    await conn.sim.step_delay(1000)  # slow enough that polling sees it running
    await conn.sim.hold(False)
    st = await conn.wait_state(pid, {"running"} | TERMINAL)
    assert st["state"] == "running", f"job finished before it was seen running: {st}"
    assert 0.0 <= st["progress"] <= 1.0
    await conn.sim.step_delay(5)
    assert (await conn.wait_state(pid, TERMINAL))["state"] == "completed"


async def test_status_of_an_unknown_prompt_is_an_error(conn: Conn) -> None:
    await conn.err("get_workflow_status", {"prompt_id": str(uuid.uuid4())})


async def test_a_failing_node_makes_the_job_failed_with_details(new_sim: Any, tmp_path: Path) -> None:
    sim: Sim = new_sim()
    await sim.step_delay(5)
    await sim.faults({"fail_node_class": {"class": "VAEDecode", "message": "boom"}})
    async with connect("stdio", sim, tmp_path / "server") as c:
        pid = await submit(c)
        st = await c.wait_state(pid, TERMINAL)
        assert st["state"] == "failed", st
        err = st["error"]
        assert err["node_type"] == "VAEDecode" and "boom" in err["message"], err
        assert err["node_id"], err
        # Waiting on a job that fails reports the failure (as an error or as status "failed").
        result = await c.call("generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 1, "wait": True})
        if result.is_error:
            assert "boom" in texts(result), texts(result)
        else:
            out = structured(result)
            assert out["status"] == "failed", out


async def test_cancel_needs_a_prompt_id_or_interrupt(conn: Conn) -> None:
    text = await conn.err("cancel_workflow", {})
    assert "prompt_id" in text and "interrupt" in text, text


async def test_cancel_of_a_prompt_we_did_not_submit_is_an_error(conn: Conn) -> None:
    await conn.err("cancel_workflow", {"prompt_id": str(uuid.uuid4())})


async def test_cancel_a_queued_job_removes_it_from_the_queue(conn: Conn) -> None:
    await conn.sim.hold(True)
    pid = await submit(conn)
    out = await conn.ok("cancel_workflow", {"prompt_id": pid})
    assert out["cancelled"] is True and out["prompt_id"] == pid and out["message"]
    assert (await conn.status(pid))["state"] == "cancelled"
    running, pending = await conn.sim.queue_ids()
    assert pid not in running + pending
    # Release the queue and run another job to completion: the cancelled one never ran.
    await conn.sim.hold(False)
    other = await submit(conn)
    await conn.wait_state(other, TERMINAL)
    assert await conn.sim.history(pid) is None, "a cancelled queued job must never run"
    assert (await conn.status(pid))["state"] == "cancelled"


async def test_cancel_a_running_job_interrupts_exactly_that_job(conn: Conn) -> None:
    before = len(await conn.sim.interrupts())
    pid = await running_job(conn)
    out = await conn.ok("cancel_workflow", {"prompt_id": pid})
    assert out["cancelled"] is True and out["prompt_id"] == pid
    st = await conn.wait_state(pid, TERMINAL)
    assert st["state"] == "cancelled", st
    new = (await conn.sim.interrupts())[before:]
    assert new and all(i == pid for i in new), f"interrupts sent: {new} (null = global interrupt)"


async def test_interrupt_without_prompt_id_stops_the_running_job(conn: Conn) -> None:
    pid = await running_job(conn)
    out = await conn.ok("cancel_workflow", {"interrupt": True})
    assert out["cancelled"] is True, out
    st = await conn.wait_state(pid, TERMINAL)
    assert st["state"] == "cancelled", st


async def test_client_cancelling_a_waiting_call_cancels_the_job(conn: Conn) -> None:
    await conn.sim.step_delay(300)
    seen_pid: list[str] = []

    async def call_and_wait() -> None:
        await conn.call(
            "generate_image", {"template": "item-icon", "prompt": PROMPT, "steps": 40, "wait": True, "timeout": 600}
        )
        raise AssertionError("the waiting call returned although it was cancelled")

    async with anyio.create_task_group() as tg:
        tg.start_soon(call_and_wait)
        running, _ = await poll(conn.sim.queue_ids, lambda q: bool(q[0]), "the job to run in the simulator")
        seen_pid.append(running[0])
        tg.cancel_scope.cancel()  # the SDK sends notifications/cancelled for the in-flight request

    pid = seen_pid[0]
    await poll(conn.sim.queue_ids, lambda q: pid not in q[0] + q[1], f"{pid} to leave the simulator queue", WAIT)
    assert await conn.sim.history(pid) is None or (await conn.sim.history(pid))["status"]["completed"] is False
    st = await conn.wait_state(pid, TERMINAL)
    assert st["state"] == "cancelled", st
    assert pid in await conn.sim.interrupts()
