"""Model-family adapters behind one protocol (`models.base.VideoDiffusionModel`) on `b c f h w`."""

from __future__ import annotations

import json
from pathlib import Path

from models.base import MODEL_FILE, VideoDiffusionModel
from models.families import FAMILIES
from videosspo.config import ModelConfig


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
    saved = {"family": info["family"], "pretrained": str(path), "vae": "auto" if info["vae"] else "none",
             "vae_chunk_frames": info.get("vae_chunk_frames", 16)}
    cfg = ModelConfig(**{**saved, **overrides})
    return build_model(cfg)


__all__ = ["FAMILIES", "VideoDiffusionModel", "build_model", "load_model"]
