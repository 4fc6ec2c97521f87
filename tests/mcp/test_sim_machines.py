"""Simulated machines through the server: `comfyui-mcp simulate --checkpoints ... --loras ...
--omit-nodes ...` plays a ComfyUI install with other model files and without some node classes,
and the server sees it as it would see that install (its models, its refusals)."""

from __future__ import annotations

from pathlib import Path

from harness import Sim, connect

SMALL = {"prompt": "a tiny test image", "width": 64, "height": 64, "steps": 2}


async def test_a_machine_with_its_own_checkpoints_and_without_a_node_class(tmp_path: Path) -> None:
    sim = Sim(tmp_path, ("--checkpoints", "studio-xl.safetensors", "--loras", "ink.safetensors,pixel.safetensors", "--omit-nodes", "ImageInvert"))
    try:
        async with connect("stdio", sim, tmp_path) as conn:
            out = await conn.ok("list_models")
            folders = {f["folder"]: f for f in out["folders"]}
            assert folders["checkpoints"]["files"] == ["studio-xl.safetensors"], folders["checkpoints"]
            assert sorted(folders["loras"]["files"]) == ["ink.safetensors", "pixel.safetensors"], folders["loras"]
            # A template picks the one installed checkpoint and completes on this machine.
            done = await conn.ok("generate_image", {"template": "character-portrait", **SMALL, "wait": True, "timeout": 60})
            assert done["state"] == "completed", done
            # Naming the stock file is refused with what this machine has.
            text = await conn.err("generate_image", {"template": "character-portrait", **SMALL, "checkpoint": "tiny-random-sd15.safetensors"})
            assert "tiny-random-sd15.safetensors" in text and "studio-xl.safetensors" in text, text
            # A workflow using the omitted class is refused before it reaches ComfyUI.
            graph = {
                "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
                "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "m"}},
            }
            text = await conn.err("generate_image", {"workflow": graph})
            assert 'uses class_type "imageinvert", which this comfyui does not have' in text, text
    finally:
        sim.stop()
