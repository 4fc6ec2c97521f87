"""The example packs (Rust, Python, JavaScript) on both backends: the simulator (`sim`, always) and
a real ComfyUI (`real`, when `COMFYUI_REAL_URL` is set; `.ci/run` sets it).

One `comfyui-mcp serve` over stdio per backend, its templates folder holding the three example
packs built by plugins/build-example-packs.sh. Each template renders a 64x64 image in 2 steps with
the same arguments; the backend must have received the same graph from every language (up to
the template id in SaveImage's prefix), loading the first checkpoint the backend reports.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from example_packs import EXAMPLES, PACK_LOAD_ENV, comparable, served_packs
from harness import ComfyRoutes, Conn, Sim, check_completed, connect

JOB_TIMEOUT = 300
"""`timeout` argument of waiting calls: a CPU ComfyUI loading its model is slow."""
ARGS = {"prompt": "a lighthouse at dusk", "seed": 11, "width": 64, "height": 64, "steps": 2}


@pytest.fixture(scope="module")
async def xconn(backend: ComfyRoutes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    packs = await served_packs(tmp_path_factory)
    name = "sim" if isinstance(backend, Sim) else "real"
    workdir = tmp_path_factory.mktemp(f"example-packs-{name}")
    async with connect("stdio", backend, workdir, packs=packs, extra_env=PACK_LOAD_ENV) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"


async def test_every_language_renders_the_same_graph(xconn: Conn) -> None:
    installed = await xconn.sim.checkpoints()
    assert installed, "the backend reports no checkpoint"
    graphs = {}
    for lang, (_, template) in EXAMPLES.items():
        args = {"template": template, **ARGS, "wait": True, "timeout": JOB_TIMEOUT}
        result = await xconn.call("generate_image", args, timeout=JOB_TIMEOUT + 30.0)
        out = await check_completed(xconn, result, expect_images=1)
        assert (out["images"][0]["width"], out["images"][0]["height"]) == (64, 64), out["images"]
        assert out["metadata"]["checkpoint"] == installed[0], out["metadata"]
        graphs[lang] = await xconn.sim.submitted_graph(out["prompt_id"])
    for lang, graph in graphs.items():
        assert graph["1"]["inputs"]["ckpt_name"] == installed[0], graph
        assert comparable(graph) == comparable(graphs["rust"]), f"{lang}: {graph}\nvs rust: {graphs['rust']}"
