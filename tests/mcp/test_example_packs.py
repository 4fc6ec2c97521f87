"""The example packs in Rust, Python and JavaScript, end to end on the simulator.

The packs are built from plugins/*-example by plugins/build-example-packs.sh (see example_packs.py),
checked with `comfyui-mcp check`, then served together from one templates folder. Each language
generates an image from the same arguments; the graphs the simulator received must agree (up to
the template id in SaveImage's prefix), take the checkpoint default from the host's model list,
and the pack's own errors (a blank prompt, a checkpoint ComfyUI lacks) must reach the user
intact and the same in every language.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from example_packs import EXAMPLES, PACK_LOAD_ENV, build_example_packs, check_pack, comparable, served_packs
from harness import Conn, Sim, connect, structured, texts

ARGS = {
    "prompt": "a red fox in the snow",
    "negative_prompt": "blurry",
    "seed": 7,
    "width": 64,
    "height": 96,
    "steps": 2,
    "cfg_scale": 6.5,
}


@pytest.fixture(scope="module")
def packs() -> dict[str, Path]:
    return build_example_packs()


@pytest.fixture(scope="module")
async def econn(sim: Sim, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    packs = await served_packs(tmp_path_factory)
    workdir = tmp_path_factory.mktemp("example-packs")
    async with connect("stdio", sim, workdir, packs=packs, extra_env=PACK_LOAD_ENV) as c:
        yield c
    assert not c.stream_errors, c.stream_errors


@pytest.mark.parametrize("lang", list(EXAMPLES))
async def test_check_passes(lang: str, packs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> None:
    report = await check_pack(packs[lang], tmp_path_factory.getbasetemp() / "pack-cache")
    pack, template = EXAMPLES[lang]
    assert f"pack {pack} 0.1.0" in report, report
    assert f"ok    {template} (7 nodes, graph valid;" in report, report


async def test_all_three_are_listed_with_the_same_parameters(econn: Conn) -> None:
    listed = await econn.ok("list_workflows")
    by_id = {w["id"]: w for w in listed["workflows"]}
    specs = []
    for pack, template in EXAMPLES.values():
        assert template in by_id, f"{template} not listed: {sorted(by_id)}"
        assert by_id[template]["pack"]["name"] == pack, by_id[template]
        specs.append(by_id[template]["parameters"])
    assert specs[0] == specs[1] == specs[2], specs
    tools = {t.name for t in (await econn.session.list_tools()).tools}
    assert {template for _, template in EXAMPLES.values()} <= tools, tools


async def test_same_arguments_give_the_same_graph_in_every_language(econn: Conn) -> None:
    installed = await econn.sim.checkpoints()
    graphs = {}
    for lang, (_, template) in EXAMPLES.items():
        result = await econn.call("generate_image", {"template": template, **ARGS, "wait": True})
        assert not result.is_error, f"{lang}: {texts(result)}"
        out = structured(result)
        assert out["status"] == "completed", out
        assert len(out["images"]) == 1 and (out["images"][0]["width"], out["images"][0]["height"]) == (64, 96), out[
            "images"
        ]
        assert out["metadata"]["seed"] == 7 and out["metadata"]["checkpoint"] == installed[0], out["metadata"]
        graphs[lang] = await econn.sim.submitted_graph(out["prompt_id"])
    rust = graphs["rust"]
    assert rust["1"]["inputs"]["ckpt_name"] == installed[0], "the default checkpoint is the first one ComfyUI reports"
    assert rust["2"]["inputs"]["text"] == ARGS["prompt"] and rust["5"]["inputs"]["cfg"] == 6.5, rust
    for lang, graph in graphs.items():
        assert comparable(graph) == comparable(rust), f"{lang} built another graph:\n{graph}\nvs rust:\n{rust}"
        assert graph["7"]["inputs"]["filename_prefix"] == f"comfyui-mcp/{EXAMPLES[lang][1]}"


@pytest.mark.parametrize("lang", list(EXAMPLES))
async def test_pack_errors_reach_the_user(econn: Conn, lang: str) -> None:
    template = EXAMPLES[lang][1]
    blank = await econn.err("generate_image", {"template": template, "prompt": "   "})
    assert "prompt" in blank and "blank" in blank, blank
    missing = await econn.err("generate_image", {"template": template, "prompt": "x", "checkpoint": "nope.safetensors"})
    installed = await econn.sim.checkpoints()
    assert "nope.safetensors" in missing and "not installed" in missing and installed[0].lower() in missing, missing
    odd = await econn.err("generate_image", {"template": template, "prompt": "x", "width": 500})
    assert "multiple of 8" in odd, odd


async def test_the_build_script_reuses_unchanged_packs(packs: dict[str, Path]) -> None:
    before = {lang: path.stat().st_mtime_ns for lang, path in packs.items()}
    build_example_packs()
    assert {lang: path.stat().st_mtime_ns for lang, path in packs.items()} == before
