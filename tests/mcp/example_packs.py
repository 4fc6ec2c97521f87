"""The example packs (plugins/{rust,python,js}-example): building them and comparing their graphs.

`build_example_packs()` runs plugins/build-example-packs.sh, which builds each pack from source
with its own pinned toolchain into target/example-packs/ and skips a pack whose sources are
unchanged (a SHA-256 stamp), so calling it from every test module costs a second once built. The
first build on a fresh machine downloads componentize-py (PyPI), componentize-qjs (npm) and the
Rust crates (crates.io), like the test venv does.

The three packs implement the same template under different ids; `comparable()` removes the one
place the id shows in a graph (SaveImage's filename prefix), so graphs can be compared across
languages.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import anyio

from harness import REPO, base_env, binary

BUILD_SCRIPT = REPO / "plugins" / "build-example-packs.sh"
OUT_DIR = REPO / "target" / "example-packs"
BUILD_TIMEOUT = 1800
"""Seconds for building all three from nothing (toolchain downloads, a cold Rust build)."""

EXAMPLES = {
    "rust": ("rust-example", "rs-txt2img"),
    "python": ("python-example", "py-txt2img"),
    "js": ("js-example", "js-txt2img"),
}
"""language -> (pack name, template id)."""

PACK_LOAD_ENV = {"COMFYUI_MCP_PACK_LOAD_TIMEOUT_MS": "120000"}
"""Python and JS packs are 2-18 MB components: a cold compile takes seconds, longer on a loaded
CI machine than the default load budget allows. The budget is the documented setting."""


def run_script(argv: list[str], cwd: Path | None = None, extra_env: dict[str, str] | None = None) -> str:
    """Runs a build step (toolchain settings of this environment kept); fails with its output."""
    env = base_env(**(extra_env or {}))
    for key in ("CARGO_HOME", "RUSTUP_HOME", "npm_config_cache", "PIP_INDEX_URL", "PIP_CACHE_DIR"):
        value = os.environ.get(key)
        if value:
            env[key] = value
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


async def check_pack(pack: Path, cache: Path) -> str:
    """`comfyui-mcp check PACK` (offline, with the given compile cache) must pass; returns its report."""
    env = base_env(COMFYUI_MCP_CACHE_DIR=str(cache), COMFYUI_URL="http://127.0.0.1:9", **PACK_LOAD_ENV)
    with anyio.fail_after(300):
        done = await anyio.run_process([binary(), "check", str(pack)], env=env, check=False)
    report = done.stdout.decode()
    assert done.returncode == 0, f"check {pack.name} failed:\n{report}\n{done.stderr.decode()}"
    assert "all templates passed" in report, report
    return report


def build_example_packs() -> dict[str, Path]:
    """Builds (or reuses) the example packs; returns language -> .wasm path."""
    run_script([str(BUILD_SCRIPT), str(OUT_DIR)])
    packs = {lang: OUT_DIR / f"{pack}.wasm" for lang, (pack, _) in EXAMPLES.items()}
    for lang, path in packs.items():
        assert path.is_file(), f"the {lang} example pack was not built: {path}"
    return packs


async def served_packs(tmp_path_factory: Any) -> list[Path]:
    """Builds the example packs and compiles them into the session's compile cache (the one
    `harness.connect` gives its servers) with `check`, which has no start-up wait: a server's
    first scan then loads them from the cache, however loaded the machine is."""
    packs = build_example_packs()
    for pack in packs.values():
        await check_pack(pack, tmp_path_factory.getbasetemp() / "pack-cache")
    return list(packs.values())


def comparable(graph: dict[str, Any]) -> dict[str, Any]:
    """The graph with its SaveImage filename prefix (which names the template) blanked."""
    g = copy.deepcopy(graph)
    for node in g.values():
        if node.get("class_type") == "SaveImage":
            node["inputs"]["filename_prefix"] = "<template>"
    return g
