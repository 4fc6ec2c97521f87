"""A minimal comfyui-mcp client using the official MCP Python SDK over stdio.

It starts `comfyui-mcp serve` as a child process, lists the workflow templates, generates
an image from one (default `item-icon`; waiting for it to finish) and prints where the images
were saved.

Usage:
    python -m venv .venv && .venv/bin/pip install -r tests/mcp/requirements.txt
    COMFYUI_URL=http://127.0.0.1:8188 .venv/bin/python examples/client.py "glowing blue potion"

No ComfyUI at hand? Start the built-in simulator in another terminal and point at it:
    comfyui-mcp simulate --port 8188

Environment: COMFYUI_MCP_BIN (default: `comfyui-mcp` on PATH), COMFYUI_URL,
COMFYUI_OUTPUT_DIR (default ./generated_images), COMFYUI_TEMPLATES_DIR (default ./templates),
COMFYUI_MCP_TEMPLATE (the template to run, default item-icon; e.g. your own pack's).
"""

from __future__ import annotations

import asyncio
import os
import sys

from mcp import ClientSession, StdioServerParameters, stdio_client


async def main(prompt: str) -> int:
    server = StdioServerParameters(
        command=os.environ.get("COMFYUI_MCP_BIN", "comfyui-mcp"),
        args=["serve"],
        env={
            "COMFYUI_URL": os.environ.get("COMFYUI_URL", "http://127.0.0.1:8188"),
            "COMFYUI_OUTPUT_DIR": os.environ.get("COMFYUI_OUTPUT_DIR", "./generated_images"),
            "COMFYUI_TEMPLATES_DIR": os.environ.get("COMFYUI_TEMPLATES_DIR", "./templates"),
        },
    )
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

            # The server answers at once and loads packs in the background (a large pack compiles
            # for seconds the first time): wait until the template is listed, at most a minute.
            template = os.environ.get("COMFYUI_MCP_TEMPLATE", "item-icon")
            for _ in range(120):
                listing = await session.call_tool("list_workflows", {})
                if any(wf["id"] == template for wf in listing.structured_content["workflows"]):
                    break
                await asyncio.sleep(0.5)
            for wf in listing.structured_content["workflows"]:
                size = f"{wf['default_width']}x{wf['default_height']}"
                print(f"{wf['id']:<22} {size:<10} {wf['description']}")

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                print(f"  progress {progress:g}/{total:g}" if total else f"  progress {progress:g}", file=sys.stderr)

            result = await session.call_tool(
                "generate_image",
                {"template": template, "prompt": prompt, "wait": True, "timeout": 600},
                progress_callback=on_progress,
            )
            if result.is_error:
                print("generation failed:", *(b.text for b in result.content if b.type == "text"), file=sys.stderr)
                return 1
            out = result.structured_content
            print(f"prompt {out['prompt_id']}: {out['status']} (seed {out['metadata']['seed']})")
            for image in out["images"]:
                print(f"  saved {image['path']} ({image['width']}x{image['height']})")
            return 0 if out["status"] == "completed" else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or "glowing blue health potion")))
