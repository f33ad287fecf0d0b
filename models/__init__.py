"""Model-family adapters behind one protocol (`models.base.VideoDiffusionModel`) on `b c f h w`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import diffusers
from peft.utils import set_peft_model_state_dict
from safetensors.torch import load_file

from models.base import MODEL_FILE, VideoDiffusionModel
from models.families import FAMILIES
from videosspo.config import ModelConfig

ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"  # diffusers' LoRA file name: `load_lora_weights` finds it


def build_model(cfg: ModelConfig) -> VideoDiffusionModel:
    """The family's model from `cfg.pretrained`, or its tiny random model when that is None."""
    if cfg.family not in FAMILIES:
        raise ValueError(f"model.family={cfg.family!r} is unknown; families: {', '.join(FAMILIES)}")
    return FAMILIES[cfg.family].from_config(cfg)


def load_model(path: str | Path, **overrides) -> VideoDiffusionModel:
    """Load a directory written by `save_pretrained` (a videosspo checkpoint's `model/` or its parent)."""
    path = Path(path)
    if not (path / MODEL_FILE).is_file() and (path / "model" / MODEL_FILE).is_file():
        path = path / "model"
    if not (path / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a videosspo model directory (no {MODEL_FILE}); "
                                "pass a checkpoint folder or the model/ folder inside it")
    info = json.loads((path / MODEL_FILE).read_text())
    if "base" in info:
        return _load_adapter(path, info, overrides)
    saved = {"family": info["family"], "pretrained": str(path), "vae": "auto" if info["vae"] else "none",
             "vae_chunk_frames": info.get("vae_chunk_frames", 16)}
    cfg = ModelConfig(**{**saved, **overrides})
    return build_model(cfg)


def save_adapter(path: str | Path, adapter: dict, cfg: ModelConfig) -> None:
    """Write a LoRA policy as its adapter weights plus the base it applies to (MBs, not GBs).

    The weights are in diffusers' LoRA format (the family pipeline's `save_lora_weights`: keys
    `unet.` / `transformer.` + peft names, rank and alpha in the metadata), so
    `WanPipeline.from_pretrained(base).load_lora_weights(path)` (or the family's pipeline) applies
    them too; `load_model` rebuilds the base from `cfg` (a local folder, a hub id, or the seeded
    tiny model) and loads the adapter into it.
    """
    from videosspo.reference import lora_config

    family = FAMILIES[cfg.family]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    metadata = lora_config(cfg.lora_rank, cfg.lora_alpha, family.lora_targets).to_dict()
    pipeline = getattr(diffusers, family.pipeline)  # imported on use: pipelines pull in image processors
    pipeline.save_lora_weights(path, **{f"{family.denoiser}_lora_layers": adapter,
                                        f"{family.denoiser}_lora_adapter_metadata": metadata},
                               weight_name=ADAPTER_WEIGHTS)
    info = {"family": cfg.family, "vae": cfg.vae != "none", "base": dataclasses.asdict(cfg)}
    (path / MODEL_FILE).write_text(json.dumps(info, indent=2))


def _load_adapter(path: Path, info: dict, overrides: dict) -> VideoDiffusionModel:
    from videosspo.reference import POLICY, add_lora

    cfg = ModelConfig(**{**info["base"], **overrides})
    model = build_model(cfg)
    model.unet.requires_grad_(False)
    add_lora(model.unet, cfg.lora_rank, cfg.lora_alpha, model.lora_targets)
    prefix = f"{model.denoiser}."
    adapter = {k.removeprefix(prefix): v for k, v in load_file(str(path / ADAPTER_WEIGHTS)).items()}
    set_peft_model_state_dict(model.unet, adapter, adapter_name=POLICY)
    return model


__all__ = ["FAMILIES", "VideoDiffusionModel", "build_model", "load_model", "save_adapter"]
