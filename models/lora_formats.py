"""The LoRA in the formats ComfyUI and the other trainers exchange (docs/lora-formats.md).

`train.export: adapter` writes `lora_comfyui.safetensors` beside the diffusers file for the families
where such a format exists; each is what diffusers' own non-diffusers converter reads back, so a
file that `pipe.load_lora_weights(path, weight_name=COMFY_FILE)` loads whole is one ComfyUI loads:

    kohya  SD 1.5 UNets (sd, stacked, animatediff's spatial layers):
           `lora_unet_<module, . -> _>.lora_down.weight / .lora_up.weight / .alpha`
           (kohya's sd-scripts names SD 1.x on the diffusers UNet; `_convert_non_diffusers_lora_to_diffusers`)
    wan    Wan 2.1 / 2.2 (per expert): `diffusion_model.blocks.N.<self_attn|cross_attn>.<q|k|v|o>` and
           `.ffn.<0|2>`, each `.lora_down.weight / .lora_up.weight / .alpha` (the original Wan module
           names, as ComfyUI and musubi-tuner use; `_convert_non_diffusers_wan_lora_to_diffusers`)
    ltx    LTX-Video: `diffusion_model.<diffusers module>.lora_A.weight / .lora_B.weight`, alpha / rank
           folded into lora_B (diffusers' LTX converter only strips the prefix and refuses `.alpha` keys)

The scale is the same everywhere: ΔW = (alpha / rank) · up @ down. CogVideoX and ModelScope have
none (diffusers reads only its own format for them; ComfyUI core has neither model).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors.torch import save_file

COMFY_FILE = "lora_comfyui.safetensors"
MOTION = "motion_modules"  # AnimateDiff's temporal layers: not part of an SD 1.5 checkpoint, so not of its kohya LoRA

# diffusers' Wan block modules -> the original Wan names (ComfyUI's WanModel, musubi-tuner)
WAN_MODULES = {
    "attn1.to_q": "self_attn.q",
    "attn1.to_k": "self_attn.k",
    "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q",
    "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "ffn.net.0.proj": "ffn.0",
    "ffn.net.2": "ffn.2",
}


def lora_pairs(adapter: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """peft's `<module>.lora_A.weight` / `.lora_B.weight` -> {module: (down, up)}."""
    modules = sorted(k.removesuffix(".lora_A.weight") for k in adapter if k.endswith(".lora_A.weight"))
    extra = set(adapter) - {f"{m}.lora_{ab}.weight" for m in modules for ab in "AB"}
    if extra:
        raise ValueError(f"LoRA entries outside lora_A/lora_B pairs cannot be exported: {sorted(extra)[:3]}")
    return {m: (adapter[f"{m}.lora_A.weight"], adapter[f"{m}.lora_B.weight"]) for m in modules}


def down_up_alpha(name: str, down: torch.Tensor, up: torch.Tensor, lora: LoraConfig) -> dict[str, torch.Tensor]:
    """kohya's three entries of one module: ΔW = (alpha / rank) · up @ down."""
    return {
        f"{name}.lora_down.weight": down,
        f"{name}.lora_up.weight": up,
        f"{name}.alpha": torch.tensor(float(lora.lora_alpha)),
    }


def kohya(adapter: dict, lora: LoraConfig) -> dict[str, torch.Tensor]:
    """kohya's SD 1.x names; AnimateDiff's motion modules are left to `motion_lora/` (see module doc)."""
    out = {}
    for module, (down, up) in lora_pairs(adapter).items():
        if MOTION in module:
            continue
        out |= down_up_alpha("lora_unet_" + module.replace(".", "_"), down, up, lora)
    return out


def wan(adapter: dict, lora: LoraConfig) -> dict[str, torch.Tensor]:
    """The original Wan module names under `diffusion_model.`, kohya's down / up / alpha."""
    out = {}
    for module, (down, up) in lora_pairs(adapter).items():
        match = re.fullmatch(r"blocks\.(\d+)\.(.+)", module)
        if match is None or match[2] not in WAN_MODULES:
            raise ValueError(
                f"LoRA module {module!r} has no name in the ComfyUI Wan format (known: {', '.join(WAN_MODULES)})"
            )
        out |= down_up_alpha(f"diffusion_model.blocks.{match[1]}.{WAN_MODULES[match[2]]}", down, up, lora)
    return out


def ltx(adapter: dict, lora: LoraConfig) -> dict[str, torch.Tensor]:
    """diffusers' names under `diffusion_model.`, alpha / rank folded into lora_B (no `.alpha` key)."""
    scale = lora.lora_alpha / lora.r
    out = {}
    for module, (down, up) in lora_pairs(adapter).items():
        out |= {f"diffusion_model.{module}.lora_A.weight": down, f"diffusion_model.{module}.lora_B.weight": up * scale}
    return out


COMFY_FORMATS = {"kohya": kohya, "wan": wan, "ltx": ltx}


def save_comfy(path: Path, adapter: dict, lora: LoraConfig, fmt: str) -> None:
    """`path / COMFY_FILE`: `adapter` (peft state dict of the denoiser) in format `fmt` of `COMFY_FORMATS`."""
    if lora.rank_pattern or lora.alpha_pattern:
        raise ValueError("per-module LoRA ranks or alphas have no single .alpha: not exportable in the ComfyUI formats")
    state = {k: v.detach().to("cpu").contiguous() for k, v in COMFY_FORMATS[fmt](adapter, lora).items()}
    save_file(state, str(Path(path) / COMFY_FILE), metadata={"format": "pt", "videosspo_lora_format": fmt})
