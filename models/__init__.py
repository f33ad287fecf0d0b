"""Model-family adapters behind one protocol (`models.base.VideoDiffusionModel`) on `b c f h w`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from peft.utils import set_peft_model_state_dict

from models.base import MODEL_FILE, VideoDiffusionModel
from models.families import FAMILIES
from models.lora import POLICY, add_lora, lora_config
from videosspo.config import Config, ConfigError, ModelConfig, load_config
from videosspo.errors import PathError


def check_config(config: Config) -> Config:
    """The model family's rules on a loaded config, before anything is built: the family exists, a key another
    family owns (`owns`) keeps its default, `model.vae: none` only for a pixel-space family, and the family's own
    `check_config`. Each a one-line `ConfigError` naming the key and the fix. Returns `config`."""
    family = family_of(config.model.family)
    if config.model.vae == "none" and not family.pixel_space:
        pixel = ", ".join(name for name, f in FAMILIES.items() if f.pixel_space)
        raise ConfigError(
            f"model.vae='none' is not allowed: 'auto' for model.family={family.family} (pixel space only for {pixel})"
        )
    defaults = Config()
    for owner in FAMILIES.values():
        for key, meaning in owner.owns.items():
            value, default = _get(config, key), _get(defaults, key)
            if not issubclass(family, owner) and value != default:
                raise ConfigError(
                    f"{key}={value!r} is not allowed: {'null' if default is None else repr(default)} "
                    f"for model.family={family.family} (only model.family: {owner.family} reads it: "
                    f"{meaning})"
                )
    family.check_config(config)
    return config


def load_checked_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """`videosspo.config.load_config`, then the family's rules (`check_config`): what a command runs on."""
    return check_config(load_config(path, overrides))


def _get(config: Config, key: str):
    section, name = key.split(".")
    return getattr(getattr(config, section), name)


def family_of(name: str) -> type[VideoDiffusionModel]:
    """The family registered as `name` (`model.family`), or a ConfigError listing the families."""
    if name not in FAMILIES:
        raise ConfigError(f"model.family={name!r} is not allowed: one of {', '.join(map(repr, FAMILIES))}")
    return FAMILIES[name]


def build_model(cfg: ModelConfig) -> VideoDiffusionModel:
    """The family's model from `cfg.pretrained`, or its tiny random model when that is None."""
    return family_of(cfg.family).from_config(cfg)


def load_model(path: str | Path, **overrides) -> VideoDiffusionModel:
    """Load a directory written by `save_pretrained` (a videosspo checkpoint's `model/` or its parent)."""
    path = Path(path)
    if not (path / MODEL_FILE).is_file() and (path / "model" / MODEL_FILE).is_file():
        path = path / "model"
    if not (path / MODEL_FILE).is_file():
        raise PathError(
            f"{path} is not a videosspo model directory (no {MODEL_FILE}); "
            "pass a checkpoint folder or the model/ folder inside it"
        )
    info = json.loads((path / MODEL_FILE).read_text())
    if "base" in info:
        return _load_adapter(path, info, overrides)
    saved = {
        "family": info["family"],
        "pretrained": str(path),
        "vae": "auto" if info["vae"] else "none",
        "vae_chunk_frames": info.get("vae_chunk_frames", 16),
    }
    cfg = ModelConfig(**{**saved, **overrides})
    return build_model(cfg)


def save_adapter(path: str | Path, adapter: dict, cfg: ModelConfig) -> None:
    """Write a LoRA policy as its adapter, in the format of the family's loader, plus the base it applies to.

    MBs, not GBs. `load_model` rebuilds the base from `cfg` (a local folder, a hub id, or the seeded
    tiny model) and loads the adapter into it; diffusers users load it as README's "Use the result" shows.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    family = FAMILIES[cfg.family]
    family.save_adapter(path, adapter, lora_config(cfg.lora_rank, cfg.lora_alpha, list(family.lora_targets)))
    info = {"family": cfg.family, "vae": cfg.vae != "none", "base": dataclasses.asdict(cfg)}
    (path / MODEL_FILE).write_text(json.dumps(info, indent=2))


def _load_adapter(path: Path, info: dict, overrides: dict) -> VideoDiffusionModel:
    cfg = ModelConfig(**{**info["base"], **overrides})
    model = build_model(cfg)
    model.unet.requires_grad_(False)
    add_lora(model.unet, cfg.lora_rank, cfg.lora_alpha, model.lora_scope)
    set_peft_model_state_dict(model.unet, type(model).load_adapter(path), adapter_name=POLICY)
    return model


__all__ = [
    "FAMILIES",
    "VideoDiffusionModel",
    "build_model",
    "check_config",
    "family_of",
    "load_checked_config",
    "load_model",
    "save_adapter",
]
