"""Loading a family's frozen parts from `model.pretrained` (a local diffusers folder or a hub id).

The VAE, text encoder, tokenizer and the training scheduler with the family's schedule applied; the
denoiser is the family's own (`VideoDiffusionModel.load_unet`).
"""

from __future__ import annotations

from pathlib import Path

from videosspo.config import ModelConfig


def with_schedule(config, *overrides: dict) -> dict:
    """The scheduler `config` with `overrides` applied in order (later wins).

    diffusers drops the keys a config lists in `_use_default_values` when it loads one, so that
    list goes first: an override of a defaulted value must survive.
    """
    merged = {k: v for k, v in config.items() if k != "_use_default_values"}
    for values in overrides:
        merged.update(values)
    return merged


def load_components(cfg: ModelConfig, classes: dict[str, type], training_scheduler) -> dict:
    """VAE, text encoder, tokenizer (of the family's `classes`), training scheduler (and its shipped class)."""
    src = cfg.pretrained
    vae = None
    if cfg.vae == "auto":
        try:  # works the same for a local folder and a hub id (cached or online)
            vae = classes["vae"].from_pretrained(src, subfolder="vae")
        except OSError as e:
            raise FileNotFoundError(
                f"model.pretrained={src!r} has no loadable vae/ ({str(e).splitlines()[0]}); "
                "set model.vae: none for a pixel-space model"
            ) from e
    scheduler_config = classes["scheduler"].load_config(src, subfolder="scheduler")
    root = source_folder(src)
    return {
        "sources": {}
        if root is None
        else {
            name: root / name
            for name in ("vae", "text_encoder")
            if (root / name).is_dir() and (name != "vae" or vae is not None)
        },
        "vae": vae,
        "text_encoder": classes["text_encoder"].from_pretrained(src, subfolder="text_encoder"),
        "tokenizer": classes["tokenizer"].from_pretrained(src, subfolder="tokenizer"),
        "scheduler": training_scheduler(scheduler_config),
        "inference_scheduler": scheduler_config["_class_name"],
    }


def source_folder(pretrained: str) -> Path | None:
    """The local folder of `model.pretrained`: itself, or a hub id's snapshot in the Hugging Face cache (None if
    neither resolves: its frozen parts are then exported from memory)."""
    if Path(pretrained).is_dir():
        return Path(pretrained)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(pretrained, local_files_only=True))
    except Exception:  # not cached as a whole snapshot (or not a hub id): the in-memory path is exact too
        return None
