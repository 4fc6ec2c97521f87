"""A farm of two simulated machines behind one server, through the MCP SDK client: `a` has the
checkpoints `alpha` and `shared`, `b` has `beta` and `shared` and lacks the node class
`ImageInvert`. The backends come from a backends file (`COMFYUI_MCP_BACKENDS_FILE`).

- `list_models` merges the machines' files and says where each one is;
- a checkpoint only one machine has sends the job there, and the job's status names it;
- a workflow using `ImageInvert` goes to `a`; one needing `beta` and `ImageInvert` is refused,
  naming what each machine lacks;
- queued jobs of a machine that dies move to the other one under the same prompt id and
  complete there; a queued job only the dead machine could run fails naming why.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import Sim, connect, poll

SMALL = {"prompt": "a tiny test image", "width": 64, "height": 64, "steps": 2}


def invert_graph(checkpoint: str | None = None) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "farm"}},
    }
    if checkpoint:
        graph["4"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}}
    return graph


async def test_a_farm_routes_by_machine_and_moves_queued_jobs_off_a_dead_one(tmp_path: Path) -> None:
    for name in ("a", "b", "server"):
        (tmp_path / name).mkdir()
    a = Sim(tmp_path / "a", ("--checkpoints", "alpha.safetensors,shared.safetensors"))
    b = Sim(tmp_path / "b", ("--checkpoints", "beta.safetensors,shared.safetensors", "--omit-nodes", "ImageInvert"))
    backends = tmp_path / "backends.json"
    backends.write_text(json.dumps([{"name": "a", "url": a.url}, {"name": "b", "url": b.url}]))
    env = {"COMFYUI_MCP_BACKENDS_FILE": str(backends), "COMFYUI_MCP_FAILOVER_AFTER_MS": "500"}
    try:
        async with connect("stdio", b, tmp_path / "server", extra_env=env) as conn:
            models = await conn.ok("list_models", {"folder": "checkpoints"})
            folder = models["folders"][0]
            assert sorted(folder["files"]) == ["alpha.safetensors", "beta.safetensors", "shared.safetensors"], folder
            assert folder["where"] == {
                "alpha.safetensors": ["a"],
                "beta.safetensors": ["b"],
                "shared.safetensors": ["a", "b"],
            }, folder

            # Runnable where: only connected machines take work, so wait until both are.
            listed = await poll(
                lambda: conn.ok("list_workflows"),
                lambda out: {w["id"]: w.get("backends") for w in out["workflows"]}["character-portrait"] == ["a", "b"],
                "both machines to take work",
            )
            assert all(w["runnable"] is True for w in listed["workflows"]), listed["workflows"]

            for checkpoint, machine in [("beta.safetensors", "b"), ("alpha.safetensors", "a")]:
                args = {"template": "character-portrait", **SMALL, "checkpoint": checkpoint, "wait": True, "timeout": 60}
                done = await conn.ok("generate_image", args)
                assert (done["state"], done["backend"]) == ("completed", machine), done
                status = await conn.ok("get_workflow_status", {"prompt_id": done["prompt_id"]})
                assert status["backend"] == machine, status

            done = await conn.ok("generate_image", {"workflow": invert_graph(), "wait": True, "timeout": 60})
            assert (done["state"], done["backend"]) == ("completed", "a"), done
            text = await conn.err("generate_image", {"workflow": invert_graph("beta.safetensors")})
            assert text.startswith("no comfyui backend can run this graph:"), text
            assert "- a: " in text and "beta.safetensors" in text, text
            assert "- b: " in text and "imageinvert" in text, text

            # Both held: the shared-checkpoint jobs alternate; alpha-only jobs stay on a.
            await a.hold(True)
            await b.hold(True)
            shared = [
                await conn.ok("generate_image", {"template": "character-portrait", **SMALL, "checkpoint": "shared.safetensors", "seed": s})
                for s in range(4)
            ]
            stuck = await conn.ok("generate_image", {"template": "character-portrait", **SMALL, "checkpoint": "alpha.safetensors"})
            assert stuck["backend"] == "a", stuck
            on_a = [job for job in shared if job["backend"] == "a"]
            assert len(on_a) == 2, [job["backend"] for job in shared]
            await b.hold(False)
            a.stop()
            for job in on_a:
                final = await wait_for(conn, job["prompt_id"])
                assert (final["state"], final["backend"]) == ("completed", "b"), final
                assert final["parameters"]["seed"] == job["parameters"]["seed"], final
                assert any("moved from backend `a` to `b`" in w for w in final.get("warnings", [])), final
            failed = await wait_for(conn, stuck["prompt_id"])
            assert failed["state"] == "failed", failed
            message = failed["error"]["message"]
            assert message.startswith("backend `a` stopped answering (unreachable for 0.5 s) and no other backend can take the job"), message
            assert "alpha.safetensors" in message, message
    finally:
        a.stop()
        b.stop()


async def wait_for(conn: Any, prompt_id: str) -> dict[str, Any]:
    """Polls the job until it ends (it may move between machines meanwhile)."""
    import anyio

    with anyio.fail_after(60):
        while True:
            status = await conn.ok("get_workflow_status", {"prompt_id": prompt_id})
            if status["state"] in ("completed", "failed", "cancelled"):
                return status
            await anyio.sleep(0.1)
