"""A comfyui-mcp workflow pack written in Python: one text-to-image template.

The pack is the class `Templates` below, the export `comfyui:workflow/templates` of the WIT world
`workflow-pack` (`wit/workflow.wit`). componentize-py turns this file into a WebAssembly component
(`build.sh`); the host runs every call in a fresh sandbox with no files, no network and fixed
clocks, so:

- every module is imported here, at the top: an import inside a function fails at run time
  (`ModuleNotFoundError`), because the component has no files to import from;
- `build` is a pure function of its parameters and of `host.models`: equal inputs give
  byte-identical graphs;
- errors reach users as `Err(BuildError_...)`; anything else raised is turned into
  `BuildError_Failed` with its message, so users never see a bare trap.

comfyui-mcp's example packs (plugins/*-example) build this same template in Python, JavaScript and
Rust: same parameters, same graph for the same inputs.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host
from wit_world.imports.types import (
    BuildError_Failed,
    BuildError_InvalidParams,
    BuildError_UnknownTemplate,
    FieldError,
    PackInfo,
    ParamSpec,
    TemplateInfo,
    Value_Integer,
    Value_Number,
    Value_Text,
    ValueKind,
)

PACK_NAME = "python-example"
TEMPLATE_ID = "py-txt2img"
VERSION = "0.1.0"
CHECKPOINTS = "checkpoints"
MAX_SEED = 2**53 - 1


def spec(name, kind, description, default=None, minimum=None, maximum=None, multiple_of=None, required=False):
    """One parameter declaration; the host enforces kind, range and multiple before `build`."""
    return ParamSpec(
        name=name,
        kind=kind,
        description=description,
        required=required,
        default=default,
        minimum=minimum,
        maximum=maximum,
        multiple_of=multiple_of,
        choices=[],
        aliases=[],
    )


PARAMS = [
    spec("prompt", ValueKind.TEXT, "What to draw.", required=True),
    spec("negative_prompt", ValueKind.TEXT, "What to avoid.", default=Value_Text("blurry, low quality")),
    spec("width", ValueKind.INTEGER, "Image width in pixels.", Value_Integer(512), 64, 2048, 8),
    spec("height", ValueKind.INTEGER, "Image height in pixels.", Value_Integer(512), 64, 2048, 8),
    spec("steps", ValueKind.INTEGER, "Sampling steps.", Value_Integer(20), 1, 150),
    spec("cfg_scale", ValueKind.NUMBER, "How closely to follow the prompt.", Value_Number(7.0), 1, 30),
    spec("seed", ValueKind.INTEGER, "Random seed for reproducible results; -1 = random.", Value_Integer(-1), -1, MAX_SEED),
    spec("checkpoint", ValueKind.TEXT, "Checkpoint file; default: the first one ComfyUI has."),
]

TEMPLATE = TemplateInfo(
    id=TEMPLATE_ID,
    name="Text to image (Python)",
    description="Plain SD1.5 text-to-image with core ComfyUI nodes, from a pack written in Python.",
    category="examples",
    tags=["txt2img", "python"],
    default_width=512,
    default_height=512,
    params=PARAMS,
)


def choose_checkpoint(requested, installed):
    """The caller's checkpoint if ComfyUI has it (or lists none), else the first installed one."""
    if requested is not None:
        if not installed or requested in installed:
            return requested
        message = f"checkpoint `{requested}` is not installed in ComfyUI; installed: {', '.join(installed)}"
        raise Err(BuildError_InvalidParams([FieldError("checkpoint", message)]))
    if not installed:
        raise Err(BuildError_Failed("no checkpoint installed in ComfyUI (models/checkpoints is empty); install one or pass `checkpoint`"))
    return installed[0]


def graph(p, checkpoint):
    """The ComfyUI API-format graph for the settings `p` (a dict of the parameters)."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": p["prompt"], "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": p["negative_prompt"], "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": p["width"], "height": p["height"], "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": p["seed"],
                "steps": p["steps"],
                "cfg": p["cfg_scale"],
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": f"comfyui-mcp/{TEMPLATE_ID}"}},
    }


def build_graph(params):
    """Checks what the host cannot (a blank prompt), picks the checkpoint, returns the JSON text."""
    p = {param.name: param.value.value for param in params}
    if not p["prompt"].strip():
        raise Err(BuildError_InvalidParams([FieldError("prompt", "the prompt is blank; describe what to draw")]))
    checkpoint = choose_checkpoint(p.get("checkpoint"), host.models(CHECKPOINTS))
    host.log(host.Level.DEBUG, f"building {TEMPLATE_ID}: {p['width']}x{p['height']} steps={p['steps']} seed={p['seed']} checkpoint={checkpoint}")
    return json.dumps(graph(p, checkpoint), separators=(",", ":"))


class Templates(exports.Templates):
    def info(self):
        return PackInfo(name=PACK_NAME, version=VERSION, description="An example pack written in Python: one text-to-image template.")

    def list(self):
        return [TEMPLATE]

    def build(self, id, params):
        if id != TEMPLATE_ID:
            raise Err(BuildError_UnknownTemplate(id))
        try:
            return build_graph(params)
        except Err:
            raise
        except Exception as e:  # a bug in the pack: tell the user what it was
            raise Err(BuildError_Failed(f"{type(e).__name__}: {e}")) from e
