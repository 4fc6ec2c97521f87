"""`comfyui-mcp check --json` against a backend: when ComfyUI answers, the graphs are checked
against its own node catalog and model files (`catalog.kind == "live"`), on the simulator and on
a real ComfyUI alike; every template of the shipped pack passes there, with its cost reported.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from harness import ComfyRoutes, base_env, binary

REPO = Path(__file__).resolve().parents[2]


def run_check(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(COMFYUI_URL=url, COMFYUI_MCP_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [binary(), "check", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_check_uses_the_live_catalog_of_the_backend(backend: ComfyRoutes, tmp_path: Path) -> None:
    done = run_check(backend.url, tmp_path, "templates/game-assets.wasm", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["catalog"]["kind"] == "live", report["catalog"]
    assert backend.url.split("//", 1)[1] in report["catalog"]["detail"]
    assert len(report["templates"]) == 6
    for t in report["templates"]:
        assert t["graph_check"] == "valid", t["id"]
        assert t["errors"] == [], t["errors"]
        assert t["call"]["peak_memory_bytes"] > 0
        assert t["graph"], t["id"]


async def test_a_crash_names_its_cause_whatever_the_backend(backend: ComfyRoutes, tmp_path: Path) -> None:
    done = run_check(backend.url, tmp_path, "tests/packs/py-traceback.wasm")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "pack crashed: ValueError: width must be a multiple of 8, got 500" in done.stdout
