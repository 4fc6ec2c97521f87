"""game-assets 2.0's post-processing checked on the delivered files, on both backends: the
simulator (`sim`, always) and a real ComfyUI (`real`, when `COMFYUI_REAL_URL` is set).

One `comfyui-mcp serve` over stdio per backend, with `COMFYUI_MCP_KEEP_RAW_OUTPUTS=true` so that
ComfyUI's own output of each post-processed image stays beside it as `<name>.orig.png`: the tests
compare what the post-processor delivered with what it was given.

- `pixel-art`: the delivered PNG has at most `palette_colors` distinct colours (2, 16 by default,
  256; with and without `dither`); 1 and 257 are refused naming the parameter and its range.
- `environment-texture`: the wrap seam ratio, measured here by this file's own implementation of
  the pack's documented measure (`seam_ratio` below), is at most 1.25 (fixed seeds, 256x256).
- `item-icon`: an RGBA PNG whose corners are transparent and some of whose pixels stay opaque;
  `transparent_background: false` delivers an opaque image.
- every post-processed image lists its steps (stable names) in `images[i].postprocess.steps`, the
  job has `postprocess_ms`, and provenance.json beside the images records the same steps.
- a 1.x pack (the Rust example pack) is served beside game-assets 2.0 from one templates folder,
  and both generate.

What the backends deliver before post-processing, and so what each assertion can show:
- the simulator's sampler output is a smooth seed-derived four-corner gradient (host/simulator's
  `images.rs`): thousands of colours (so quantising is real work), a strong wrap seam by
  construction (opposite edges have different corner colours while neighbouring pixels differ by
  a step of the gradient), and no subject (the flood fill takes the part of the gradient within
  its tolerance of the border's median colour: the corners always, the far side of the gradient
  not). The raw-versus-delivered seam assertion is made on the simulator only, where it holds by
  construction.
- a real ComfyUI with the test's random-weight checkpoint gives noise-like images. White noise
  scores a seam ratio of about 1 whatever is done to it, so a larger raw ratio is not asserted
  there (the ratios are printed); the delivered one must still be seamless. A texture that tiles
  already is delivered as it is (the blend once took one of these from 1.008 to 1.253, above the
  bound: this test failed on the real backend before the pack's fix).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from example_packs import PACK_LOAD_ENV, served_packs
from harness import TEMPLATES, ComfyRoutes, Conn, Sim, check_completed, connect

JOB_TIMEOUT = 300
"""`timeout` argument of waiting calls: a CPU ComfyUI loading its model is slow."""
CALL_TIMEOUT = JOB_TIMEOUT + 30.0
SIZE = 64
SEAMLESS_MAX_RATIO = 1.25
"""The pack's documented bound: an image is seamless when its wrap seam ratio is at most this."""
KEEP_RAW = {"COMFYUI_MCP_KEEP_RAW_OUTPUTS": "true"}
GAME_ASSETS = TEMPLATES / "game-assets.wasm"


def is_sim(conn: Conn) -> bool:
    return isinstance(conn.sim, Sim)


@pytest.fixture(scope="module")
async def pconn(backend: ComfyRoutes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    name = "sim" if isinstance(backend, Sim) else "real"
    workdir = tmp_path_factory.mktemp(f"postprocess-{name}")
    async with connect("stdio", backend, workdir, packs=[GAME_ASSETS], extra_env=KEEP_RAW) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"


# --- measures, implemented here (not by calling the pack) --------------------------------------


def rgb_rows(img: Image.Image) -> list[list[tuple[int, int, int]]]:
    rgb = img.convert("RGB")
    w, h = rgb.size
    px = list(rgb.getdata())
    return [px[y * w : (y + 1) * w] for y in range(h)]


def step(a: tuple[int, int, int], b: tuple[int, int, int]) -> int:
    """Sum of absolute RGB differences of two pixels."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2])


def direction_ratio(seam: list[int], interior: list[int]) -> float:
    seam_mean = sum(seam) / max(len(seam), 1)
    interior_mean = sum(interior) / max(len(interior), 1)
    if interior_mean == 0:
        return 0.0 if seam_mean == 0 else float("inf")
    return seam_mean / interior_mean


def seam_ratio(img: Image.Image) -> float:
    """The documented wrap seam ratio: per direction (with at least 3 pixels), the mean absolute
    RGB difference across the wrap (column W-1 vs column 0; row H-1 vs row 0) over the mean
    absolute RGB difference of adjacent interior columns (rows); the larger of the two."""
    rows = rgb_rows(img)
    h, w = len(rows), len(rows[0])
    assert w >= 3 and h >= 3, f"too small to measure: {w}x{h}"
    horizontal = direction_ratio(
        [step(r[w - 1], r[0]) for r in rows],
        [step(r[x], r[x + 1]) for r in rows for x in range(w - 1)],
    )
    vertical = direction_ratio(
        [step(rows[h - 1][x], rows[0][x]) for x in range(w)],
        [step(rows[y][x], rows[y + 1][x]) for y in range(h - 1) for x in range(w)],
    )
    return max(horizontal, vertical)


async def test_the_seam_measure_itself() -> None:
    """The measure separates what tiles from what does not (so its use below can fail)."""
    n = 16
    # A horizontal ramp: neighbours differ by 3 per channel, the wrap by 45 -> ratio 15.
    ramp = Image.new("RGB", (n, n))
    ramp.putdata([(x * 3, 0, 0) for _ in range(n) for x in range(n)])
    assert seam_ratio(ramp) == pytest.approx(15.0)
    # A triangle wave tiles: the wrap step equals an interior step.
    tri = Image.new("RGB", (n, n))
    tri.putdata([(min(x, n - x) * 10, min(y, n - y) * 10, 0) for y in range(n) for x in range(n)])
    assert seam_ratio(tri) <= 1.0
    assert seam_ratio(Image.new("RGB", (n, n), (7, 7, 7))) == 0.0


def distinct_colours(img: Image.Image) -> int:
    """Distinct RGBA values (the alpha channel counts: a PNG's colour is all four)."""
    return len(set(img.convert("RGBA").getdata()))


# --- helpers ---------------------------------------------------------------------------------


async def generate(conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
    full = {"prompt": "a test asset", "width": SIZE, "height": SIZE, "steps": 2, **args}
    result = await conn.call("generate_image", {**full, "wait": True, "timeout": JOB_TIMEOUT}, timeout=CALL_TIMEOUT)
    return await check_completed(conn, result, expect_images=full.get("batch_size", 1))


def open_png(path: Path) -> Image.Image:
    img = Image.open(path)
    img.load()
    assert img.format == "PNG", f"{path} is {img.format}"
    return img


def raw_of(im: dict[str, Any]) -> Image.Image:
    """ComfyUI's own output of a post-processed image, kept beside it."""
    pp = im["postprocess"]
    raw = Path(im["path"]).with_name(pp["raw_filename"])
    assert raw.name.endswith(".orig.png") and raw.is_file(), f"raw output not kept: {raw}"
    return open_png(raw)


def step_names(im: dict[str, Any]) -> list[str]:
    return [s["name"] for s in im["postprocess"]["steps"]]


def check_recorded(out: dict[str, Any], expected_steps: list[str]) -> None:
    """Each image lists `expected_steps` (each with a detail), the job has `postprocess_ms`, and
    provenance.json beside the images records the same steps for the same files."""
    assert isinstance(out.get("postprocess_ms"), (int, float)) and out["postprocess_ms"] >= 0, out
    for im in out["images"]:
        assert "postprocess" in im, f"no postprocess record: {im}"
        assert step_names(im) == expected_steps, im["postprocess"]
        assert all(isinstance(s["detail"], str) and s["detail"] for s in im["postprocess"]["steps"]), im
    folder = Path(out["images"][0]["path"]).parent
    prov = json.loads((folder / "provenance.json").read_text())
    assert prov["prompt_id"] == out["prompt_id"], prov
    assert isinstance(prov.get("postprocess_ms"), (int, float)), prov
    recorded = {p["filename"]: [s["name"] for s in p["postprocess"]["steps"]] for p in prov["images"]}
    assert recorded == {im["filename"]: expected_steps for im in out["images"]}, prov["images"]


# --- pixel-art -------------------------------------------------------------------------------


@pytest.mark.parametrize("dither", [False, True])
@pytest.mark.parametrize("palette", [2, None, 256])
async def test_pixel_art_has_at_most_palette_colours(pconn: Conn, palette: int | None, dither: bool) -> None:
    limit = 16 if palette is None else palette  # None: the default
    args: dict[str, Any] = {"template": "pixel-art", "dither": dither}
    if palette is not None:
        args["palette_colors"] = palette
    out = await generate(pconn, args)
    assert out["parameters"]["palette_colors"] == limit, out["parameters"]
    im = out["images"][0]
    delivered = open_png(Path(im["path"]))
    assert delivered.size == (SIZE, SIZE)
    colours = distinct_colours(delivered)
    assert colours <= limit, f"{colours} colours delivered, palette_colors {limit}"
    before = distinct_colours(raw_of(im))
    if before > limit:
        # Quantising had work to do: it is reported.
        check_recorded(out, ["palette"])
    else:
        # Already within the palette: the image comes back unchanged, with no step.
        check_recorded(out, [])
        assert colours == before
    if is_sim(pconn):
        # The simulator's gradient has thousands of colours: quantising always runs here.
        assert before > 256, before


@pytest.mark.parametrize("palette", [1, 257])
async def test_pixel_art_palette_out_of_range_is_refused(pconn: Conn, palette: int) -> None:
    msg = await pconn.err(
        "generate_image", {"template": "pixel-art", "prompt": "x", "width": SIZE, "height": SIZE, "palette_colors": palette}
    )
    assert f"palette_colors: {palette} is out of range: must be between 2 and 256" in msg, msg


# --- environment-texture ---------------------------------------------------------------------


SEAM_SIZE = 256
"""Side of the seam test's textures. A real ComfyUI with a random-weight checkpoint gives
noise-like images, whose ratio is about 1 with a spread that shrinks with the seam's length
(at 64x64 random seeds gave delivered ratios of 1.03-1.24, raw 1.10-1.27)."""
SEAM_SEEDS = (1, 2, 3)
"""Fixed seeds: the same images on every run of a backend (no flaky outcome)."""


async def test_environment_texture_is_seamless(pconn: Conn) -> None:
    images = []
    for seed in SEAM_SEEDS:
        args = {"template": "environment-texture", "seed": seed, "batch_size": 2, "width": SEAM_SIZE, "height": SEAM_SIZE}
        out = await generate(pconn, args)
        check_recorded(out, ["seamless"])
        images += out["images"]
    measured = []
    for im in images:
        delivered = seam_ratio(open_png(Path(im["path"])))
        raw = seam_ratio(raw_of(im))
        measured.append((im["filename"], round(raw, 3), round(delivered, 3)))
        if is_sim(pconn):
            # By construction the simulator's gradient does not tile: the measure sees its seam.
            assert raw > 2 * SEAMLESS_MAX_RATIO, f"raw seam ratio {raw:.3f} of a non-tiling gradient"
    print("(file, raw ratio, delivered ratio):", measured)
    seamy = [m for m in measured if m[2] > SEAMLESS_MAX_RATIO]
    assert not seamy, f"delivered wrap seam ratio above {SEAMLESS_MAX_RATIO}: {seamy} (all: {measured})"
    for im, (_, raw, delivered) in zip(images, measured):
        steps = im["postprocess"]["steps"]
        if raw <= SEAMLESS_MAX_RATIO:
            # A texture that tiles already is delivered as it is.
            assert delivered == raw and steps[0]["detail"].startswith("already tiles"), (im, raw, delivered)


# --- item-icon -------------------------------------------------------------------------------


async def test_item_icon_background_becomes_transparent(pconn: Conn) -> None:
    # A fixed seed: on the simulator the image is a seed-derived gradient, and for some seeds
    # (1 of the 60 seeds 0-59 tried: 27) nothing inside the border ring is within the tolerance, which the
    # assertions below would then not be able to show. Seed 11 clears part of the inside.
    out = await generate(pconn, {"template": "item-icon", "seed": 11})
    assert out["parameters"]["transparent_background"] is True, out["parameters"]
    check_recorded(out, ["background"])
    im = out["images"][0]
    icon = open_png(Path(im["path"]))
    assert icon.mode == "RGBA", f"an icon with a transparent background is RGBA, got {icon.mode}"
    w, h = icon.size
    alpha = icon.getchannel("A")
    corners = [alpha.getpixel(p) for p in ((0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1))]
    assert corners == [0, 0, 0, 0], f"corner alphas {corners}"
    values = list(alpha.getdata())
    ring = [i for i in range(w * h) if i % w in (0, w - 1) or i // w in (0, h - 1)]
    assert all(values[i] == 0 for i in ring), "the border ring is background, so transparent"
    assert any(a == 255 for a in values), "no opaque pixel left"
    # The pack's leak guard: a fill never leaves fewer than 1/16 of the pixels visible (it
    # retries with a smaller tolerance, then keeps the central quarter).
    visible = sum(1 for a in values if a > 0)
    assert visible >= (w * h) // 16, f"only {visible} of {w * h} pixels visible"
    raw = raw_of(im)
    raw_rgba = list(raw.convert("RGBA").getdata())
    assert all(p[3] == 255 for p in raw_rgba), "ComfyUI's output is opaque: the transparency is the pack's"
    # What became transparent is what the step says: the 1-pixel border ring (always background:
    # icons have a margin) and, inside it, pixels within the step's tolerance (Chebyshev RGB
    # distance) of its background colour in ComfyUI's image. On the simulator's subject-less
    # gradient that is the part of the gradient near the border's median colour.
    detail = im["postprocess"]["steps"][0]["detail"]
    m = re.match(r"background rgb\((\d+), (\d+), (\d+)\) within (\d+) made transparent", detail)
    assert m, detail
    bg, tol = tuple(int(v) for v in m.groups()[:3]), int(m.group(4))
    inside = [i for i in range(w * h) if 0 < i % w < w - 1 and 0 < i // w < h - 1]
    cleared = [raw_rgba[i] for i in inside if values[i] == 0]
    assert cleared, "no pixel inside the border ring was cleared"
    far = [p for p in cleared if max(abs(p[c] - bg[c]) for c in range(3)) > tol]
    assert not far, f"{len(far)} cleared pixels are farther than {tol} from rgb{bg}, e.g. {far[:3]}"


async def test_item_icon_without_transparency_is_opaque(pconn: Conn) -> None:
    out = await generate(pconn, {"template": "item-icon", "transparent_background": False})
    assert out["parameters"]["transparent_background"] is False, out["parameters"]
    im = out["images"][0]
    # Nothing to do: no step (the postprocess record, if any, lists none).
    assert not im.get("postprocess", {}).get("steps"), im
    icon = open_png(Path(im["path"]))
    if icon.mode == "RGBA":
        assert all(a == 255 for a in icon.getchannel("A").getdata()), "transparent pixels without transparency"
    else:
        assert icon.mode == "RGB", icon.mode


# --- a 1.x pack beside the 2.x pack ----------------------------------------------------------


@pytest.fixture(scope="module")
async def mixed(backend: ComfyRoutes, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    packs = await served_packs(tmp_path_factory)
    rust = next(p for p in packs if p.name == "rust-example.wasm")
    name = "sim" if isinstance(backend, Sim) else "real"
    workdir = tmp_path_factory.mktemp(f"mixed-abi-{name}")
    async with connect("stdio", backend, workdir, packs=[rust, GAME_ASSETS], extra_env=PACK_LOAD_ENV) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"


async def test_a_1x_pack_works_beside_the_2x_pack(mixed: Conn) -> None:
    listed = await mixed.ok("list_workflows")
    ids = {w["id"] for w in listed["workflows"]}
    assert {"rs-txt2img", "pixel-art", "environment-texture", "item-icon"} <= ids, ids
    packs = {p.name for p in mixed.templates_dir.glob("*.wasm")}
    assert packs == {"rust-example.wasm", "game-assets.wasm"}, packs
    one = await generate(mixed, {"template": "rs-txt2img"})
    im = one["images"][0]
    # A 1.x pack has no post-processor: the image is ComfyUI's, with no steps.
    assert not im.get("postprocess", {}).get("steps"), im
    assert open_png(Path(im["path"])).size == (SIZE, SIZE)
    two = await generate(mixed, {"template": "pixel-art", "palette_colors": 4})
    check_recorded(two, ["palette"])
    assert distinct_colours(open_png(Path(two["images"][0]["path"]))) <= 4
