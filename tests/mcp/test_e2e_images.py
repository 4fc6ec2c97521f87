"""Images from clients through a real MCP client, on both backends: the simulator (`sim`, always)
and a real ComfyUI (`real`, when `COMFYUI_REAL_URL` is set).

- `image-variation` completes from each source an image argument accepts: base64 PNG, a `data:`
  URI of a JPEG, a WebP file in the server's input folder (`COMFYUI_MCP_INPUT_DIRS`) and the
  `comfyui://images/...` URI of an earlier result; it samples at the input's size, and ComfyUI
  holds exactly the client's bytes under the content-addressed name the job records
  (`comfyui-mcp/comfyui-mcp-<32 hex of SHA-256>.<ext>`, read back with ComfyUI's `GET /view`).
- `inpaint` completes from an image and a mask; the mask ComfyUI got is an 8-bit grey PNG, white
  where the mask was opaque.
- hostile inputs (a PNG bomb, a header claiming 10^10 pixels, a truncated PNG and JPEG, a GIF, a
  text file, a path outside the input folder) are refused with the cause and the limit, and
  ComfyUI has no file under the name each would have had (nor, on the simulator, any upload
  request at all).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from harness import ComfyRoutes, Conn, Sim, check_completed, connect

JOB_TIMEOUT = 300
CALL_TIMEOUT = JOB_TIMEOUT + 30.0


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inputs")


@pytest.fixture(scope="module")
async def iconn(backend: ComfyRoutes, input_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Conn]:
    name = "sim" if isinstance(backend, Sim) else "real"
    workdir = tmp_path_factory.mktemp(f"images-{name}")
    env = {"COMFYUI_MCP_INPUT_DIRS": str(input_dir)}
    async with connect("stdio", backend, workdir, extra_env=env) as c:
        yield c
    assert not c.stream_errors, f"the client saw transport errors: {c.stream_errors}"


def picture(size: tuple[int, int], seed: int = 0) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size)
    img.putdata([((x * 5 + seed) % 256, (y * 3) % 256, (x + y + seed) % 256) for y in range(h) for x in range(w)])
    return img


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload_name(data: bytes, ext: str) -> str:
    return f"comfyui-mcp/comfyui-mcp-{hashlib.sha256(data).hexdigest()[:32]}.{ext}"


async def stored_input(conn: Conn, name: str) -> bytes | None:
    """The bytes ComfyUI holds as input `name` (`subfolder/file`), or None if it has none."""
    subfolder, filename = name.split("/", 1)
    resp = await conn.sim.request("GET", f"/view?filename={filename}&subfolder={subfolder}&type=input")
    return resp.content if resp.status_code == 200 else None


async def generate(conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
    full = {"prompt": "a test asset", "steps": 2, **args, "wait": True, "timeout": JOB_TIMEOUT}
    result = await conn.call("generate_image", full, timeout=CALL_TIMEOUT)
    return await check_completed(conn, result, expect_images=1)


async def test_image_variation_from_base64_samples_at_the_inputs_size(iconn: Conn) -> None:
    data = encoded(picture((96, 64)), "PNG")
    out = await generate(iconn, {"template": "image-variation", "image": b64(data)})
    recorded = out["parameters"]["image"]
    name = upload_name(data, "png")
    assert recorded == {
        "image": name,
        "width": 96,
        "height": 64,
        "has_alpha": False,
        "sha256": hashlib.sha256(data).hexdigest(),
    }, recorded
    assert out["parameters"]["denoise"] == 0.6, out["parameters"]
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (96, 64)
    assert await stored_input(iconn, name) == data, "ComfyUI holds the client's bytes"


async def test_each_source_completes(iconn: Conn, input_dir: Path) -> None:
    jpeg = encoded(picture((64, 48), seed=1), "JPEG")
    out = await generate(iconn, {"template": "image-variation", "image": f"data:image/jpeg;base64,{b64(jpeg)}"})
    assert out["parameters"]["image"]["image"] == upload_name(jpeg, "jpg")
    assert await stored_input(iconn, upload_name(jpeg, "jpg")) == jpeg

    webp = encoded(picture((64, 96), seed=2), "WEBP")
    (input_dir / "sprites").mkdir(exist_ok=True)
    (input_dir / "sprites" / "hero.webp").write_bytes(webp)
    out = await generate(iconn, {"template": "image-variation", "image": "sprites/hero.webp"})
    assert out["parameters"]["image"]["sha256"] == hashlib.sha256(webp).hexdigest()
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (64, 96)

    earlier = out["images"][0]
    again = await generate(iconn, {"template": "image-variation", "image": earlier["uri"], "denoise": 0.3})
    assert again["parameters"]["image"]["sha256"] == hashlib.sha256(Path(earlier["path"]).read_bytes()).hexdigest()
    assert again["parameters"]["denoise"] == 0.3


async def test_inpaint_from_an_image_and_a_mask(iconn: Conn) -> None:
    image = encoded(picture((64, 64), seed=3), "PNG")
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 0, 0, 255), (16, 16, 48, 48))
    mask = encoded(layer, "PNG")
    out = await generate(iconn, {"template": "inpaint", "image": b64(image), "mask": b64(mask)})
    assert (out["images"][0]["width"], out["images"][0]["height"]) == (64, 64)
    recorded = out["parameters"]["mask"]
    assert recorded["sha256"] == hashlib.sha256(mask).hexdigest() and recorded["has_alpha"] is False, recorded
    grey_bytes = await stored_input(iconn, recorded["image"])
    assert grey_bytes is not None, "the mask was uploaded"
    grey = Image.open(io.BytesIO(grey_bytes))
    assert grey.mode == "L", grey.mode
    assert (grey.getpixel((32, 32)), grey.getpixel((2, 2))) == (255, 0)


def png_bomb() -> bytes:
    """4112 x 4112 black pixels (16,908,544, over the default cap): a few KiB of PNG."""
    return encoded(Image.new("L", (4112, 4112)), "PNG")


def header_bomb() -> bytes:
    """A PNG whose header claims 100000 x 100000 pixels, with a token image stream."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


async def test_hostile_inputs_are_refused_and_nothing_is_uploaded(iconn: Conn, input_dir: Path, tmp_path: Path) -> None:
    before = await iconn.sim.requests() if isinstance(iconn.sim, Sim) else None
    full = encoded(picture((64, 64), seed=4), "PNG")
    jpeg = encoded(picture((64, 64), seed=5), "JPEG")
    (input_dir / "notes.txt").write_text("just some notes")
    secret = tmp_path / "secret.png"
    secret.write_bytes(full)
    cases: list[tuple[str, bytes | None, str, str]] = [
        ("png bomb", png_bomb(), "4112x4112 = 16908544 pixels, over the limit of 16777216 pixels", "png"),
        ("header bomb", header_bomb(), "100000x100000 = 10000000000 pixels, over the limit", "png"),
        ("truncated png", full[:-40], "the png image does not decode", "png"),
        ("truncated jpeg", jpeg[: len(jpeg) // 2], "no end-of-image marker (the file is truncated)", "jpg"),
        ("gif", b"GIF89a\x01\x00\x01\x00" + bytes(300), "the data is a gif image", "gif"),
    ]
    for what, data, message, ext in cases:
        assert data is not None
        text = await iconn.err("generate_image", {"template": "image-variation", "prompt": "x", "image": b64(data)})
        assert "image parameter `image`" in text and message in text, f"{what}: {text}"
        assert await stored_input(iconn, upload_name(data, ext)) is None, f"{what} was uploaded"
    text = await iconn.err("generate_image", {"template": "image-variation", "prompt": "x", "image": "notes.txt"})
    assert "the data is text, not an image" in text, text
    text = await iconn.err("generate_image", {"template": "image-variation", "prompt": "x", "image": str(secret)})
    assert "outside the allowed input folders" in text and "comfyui_mcp_input_dirs" in text, text
    assert await stored_input(iconn, upload_name(full, "png")) is None
    if before is not None:
        after = await iconn.sim.requests()
        uploads = [r for r in after[len(before) :] if r["path"].endswith("/upload/image")]
        assert uploads == [], uploads
