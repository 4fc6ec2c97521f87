"""`comfyui-mcp new`: a project in each language, built with its own build.sh, checked, served.

The slow test follows a project's README: `new NAME --lang L`, `./build.sh` (which installs the
pinned toolchain: componentize-py from PyPI, componentize-qjs from npm, the crates and the
wasm32-wasip2 target for Rust), `cargo test` for Rust, `comfyui-mcp check NAME.wasm`, then a
server with the three new packs in its templates folder generates an image from each on the
simulator. The Rust build shares the Rust example's target folder, so its dependencies are
compiled once. The fast tests cover refusals: an existing folder, a bad name.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from example_packs import PACK_LOAD_ENV, REPO, check_pack, run_script
from harness import Sim, base_env, binary, connect, structured, texts

LANGS = {"rust": "rs", "python": "py", "js": "js"}
"""--lang -> a short tag for the pack name."""
RUST_SHARED_TARGET = {"CARGO_TARGET_DIR": str(REPO / "plugins" / "rust-example" / "target")}
"""The Rust example's target folder: the same crates, compiled once."""


def new(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary(), "new", *args], cwd=cwd, env=base_env(), capture_output=True, text=True, timeout=60, check=False
    )


async def test_new_projects_build_check_and_serve(
    sim: Sim, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.getbasetemp() / "pack-cache"
    built = []
    for lang, tag in LANGS.items():
        name = f"my-{tag}-pack"
        made = new(name, "--lang", lang, cwd=tmp_path)
        assert made.returncode == 0, made.stderr
        project = tmp_path / name
        assert f"created {name}" in made.stdout and "./build.sh" in made.stdout, made.stdout
        assert (project / "wit" / "workflow.wit").read_text() == (REPO / "wit" / "v1" / "workflow.wit").read_text()
        if lang == "rust":
            run_script(["cargo", "test", "--quiet"], cwd=project, extra_env=RUST_SHARED_TARGET)
        run_script(["./build.sh"], cwd=project, extra_env=RUST_SHARED_TARGET if lang == "rust" else None)
        pack = project / f"{name}.wasm"
        report = await check_pack(pack, cache)
        assert f"ok    {name}-txt2img (7 nodes, graph valid;" in report, report
        built.append(pack)
    async with connect(
        "stdio", sim, tmp_path_factory.mktemp("scaffold-serve"), packs=built, extra_env=PACK_LOAD_ENV
    ) as conn:
        installed = await sim.checkpoints()
        for pack in built:
            template = f"{pack.stem}-txt2img"
            result = await conn.call(
                "generate_image", {"template": template, "prompt": "a cat", "width": 64, "height": 64, "wait": True}
            )
            assert not result.is_error, f"{template}: {texts(result)}"
            out = structured(result)
            assert out["status"] == "completed" and len(out["images"]) == 1, out
            assert out["metadata"]["checkpoint"] == installed[0], out["metadata"]


async def test_new_refuses_an_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    done = new("taken", "--lang", "python", cwd=tmp_path)
    assert done.returncode != 0
    assert "already exists" in done.stderr and "never overwrites" in done.stderr, done.stderr
    assert sorted(p.name for p in (tmp_path / "taken").iterdir()) == ["keep.txt"]
    elsewhere = new("fine-name", "--lang", "js", "--dir", "taken", cwd=tmp_path)
    assert elsewhere.returncode != 0 and "already exists" in elsewhere.stderr, elsewhere.stderr


@pytest.mark.parametrize("name", ["My_Pack", "a--b", "-x", "x" * 49])
async def test_new_refuses_a_bad_name(tmp_path: Path, name: str) -> None:
    done = new("--lang", "rust", "--", name, cwd=tmp_path)
    assert done.returncode != 0
    assert f"pack name `{name}` is not valid" in done.stderr and "at most 48 bytes" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []
