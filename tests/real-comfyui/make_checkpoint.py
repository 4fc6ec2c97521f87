"""Writes a random-weight, SD1.5-layout checkpoint that a real ComfyUI loads as SD15 (EPS).

Nothing is downloaded: the three parts are built from ComfyUI's and transformers' own model
classes and filled with seeded random numbers, so the file runs the standard text-to-image graph
(noise in, noise out) fast on a CPU.

Invariants of the written file:
- original SD1.x single-file key layout: ``model.diffusion_model.*`` (UNet),
  ``first_stage_model.*`` (VAE), ``cond_stage_model.transformer.text_model.*`` (CLIP-L);
- UNet: the SD1.5 config (context_dim 768, model_channels 320, 8 heads, conv-in/out transformer
  projections, no adm or temporal layers) cut to channel_mult [1, 2] with one res block per level
  and a transformer at every level; CLIP-L text encoder and SD VAE at their full sizes;
- every tensor is written explicitly (ComfyUI's ops leave weights uninitialised), deterministic
  for a given seed and torch version, finite in fp16, stored as fp16;
- ComfyUI's own model detection recognises the UNet as ``SD15`` (checked before writing).

Usage: python make_checkpoint.py --comfyui <ComfyUI folder> --out <file.safetensors> [--seed N]
Run it with the Python of the venv that has ComfyUI's requirements installed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger("make_checkpoint")

# SD1.5 UNet config as ComfyUI's model detection derives it, with the depth cut to two levels.
UNET_CONFIG = {
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 320,
    "channel_mult": [1, 2],
    "num_res_blocks": [1, 1],
    "transformer_depth": [1, 1],
    "transformer_depth_output": [1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "num_heads": 8,
    "num_head_channels": -1,
    "context_dim": 768,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": False,
    "legacy": False,
    "adm_in_channels": None,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "use_checkpoint": False,
}

# The SD VAE (as in ComfyUI's comfy/sd.py for SD1.x checkpoints).
VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
VAE_EMBED_DIM = 4

# CLIP ViT-L/14 text encoder, as used by SD1.x.
CLIP_L_CONFIG = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "projection_dim": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "bos_token_id": 49406,
    "eos_token_id": 49407,
    "pad_token_id": 1,
}

INIT_STD = 0.02


class CheckpointError(Exception):
    """The generated weights do not have the promised properties."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui", required=True, type=Path, help="ComfyUI folder (has main.py and comfy/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the .safetensors file")
    parser.add_argument("--seed", type=int, default=20251125, help="torch seed (default: %(default)s)")
    return parser.parse_args(argv)


def import_comfy(comfyui_dir: Path) -> None:
    """Makes ComfyUI's packages importable, on CPU, without parsing this script's arguments."""
    if not (comfyui_dir / "comfy" / "model_detection.py").is_file():
        raise CheckpointError(f"{comfyui_dir} is not a ComfyUI folder (no comfy/model_detection.py)")
    sys.path.insert(0, str(comfyui_dir))
    import comfy.cli_args

    # comfy.model_management probes for a GPU at import time unless told to use the CPU.
    comfy.cli_args.args.cpu = True


def fill_explicitly(module) -> None:
    """Writes every parameter and floating buffer: normal(0, INIT_STD), norm layers as identity."""
    import torch

    with torch.no_grad():
        for p in module.parameters():
            torch.nn.init.normal_(p, mean=0.0, std=INIT_STD)
        for b in module.buffers():
            if b.is_floating_point():
                torch.nn.init.normal_(b, mean=0.0, std=INIT_STD)
        for m in module.modules():
            if isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                if m.weight is not None:
                    torch.nn.init.ones_(m.weight)
                if m.bias is not None:
                    torch.nn.init.zeros_(m.bias)


def build_unet():
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    return UNetModel(**UNET_CONFIG)


def build_vae():
    from comfy.ldm.models.autoencoder import AutoencoderKL

    return AutoencoderKL(ddconfig=dict(VAE_DDCONFIG), embed_dim=VAE_EMBED_DIM)


def build_clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**CLIP_L_CONFIG))


def prefixed_fp16(module, prefix: str, strip: str = "") -> dict:
    """The module's state dict with `strip` removed from and `prefix` put before each key,
    floating tensors as contiguous fp16."""
    import torch

    out = {}
    for key, tensor in module.state_dict().items():
        key = key.removeprefix(strip)
        t = tensor.detach()
        if t.is_floating_point():
            t = t.to(torch.float16)
            if not torch.isfinite(t).all():
                raise CheckpointError(f"{prefix}{key} is not finite in fp16; every tensor must be filled")
        out[prefix + key] = t.contiguous()
    return out


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def check_detected_as_sd15(state_dict: dict) -> None:
    """Runs ComfyUI's own detection on the UNet keys; the checkpoint is useless unless it says SD15."""
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet(state_dict, "model.diffusion_model.")
    name = type(config).__name__ if config is not None else None
    if name != "SD15":
        raise CheckpointError(f"ComfyUI detects the UNet as {name!r}, expected 'SD15'")
    log.info("ComfyUI detects the UNet as %s", name)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[make_checkpoint] %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    import_comfy(args.comfyui)

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(args.seed)
    state_dict: dict = {}
    # transformers 4 names CLIPTextModel keys "text_model.*", transformers 5 drops that level.
    for prefix, strip, build in (
        ("model.diffusion_model.", "", build_unet),
        ("cond_stage_model.transformer.text_model.", "text_model.", build_clip),
        ("first_stage_model.", "", build_vae),
    ):
        module = build().to(torch.float32)
        fill_explicitly(module)
        log.info("%-40s %11d parameters", prefix, count_params(module))
        state_dict.update(prefixed_fp16(module, prefix, strip))
        del module

    for key in (
        "cond_stage_model.transformer.text_model.final_layer_norm.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    ):
        if key not in state_dict:
            raise CheckpointError(f"{key} is missing: CLIP keys must be cond_stage_model.transformer.text_model.*")
    check_detected_as_sd15(state_dict)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(args.out), metadata={"format": "pt"})
    size_mb = args.out.stat().st_size / 1e6
    log.info("wrote %s: %d tensors, %.0f MB", args.out, len(state_dict), size_mb)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except CheckpointError as err:
        log.error("%s", err)
        sys.exit(1)
