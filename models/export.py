"""What a run exports, in the forms diffusers users load (README: "Use the result").

    merged    a pipeline folder: `<family pipeline>.from_pretrained(path)` generates directly
              (model_index.json, unet/, the frozen parts in the dtype they were loaded in, the
              family's inference scheduler carrying the training schedule)
    adapter   the LoRA alone, in the format of the family's loader: diffusers' for
              `pipe.load_lora_weights(path)` (SD 1.5, AnimateDiff), peft's for
              `PeftModel.from_pretrained(pipe.unet, path)` (ModelScope: diffusers has no LoRA
              loader for UNet3DConditionModel)
    AnimateDiff also writes the motion modules alone: `motion_adapter/` (a MotionAdapter, merged)
    or `motion_lora/` (the LoRA of the motion modules, adapter), which plug into any SD 1.5 base.

Both carry `videosspo_model.json`, so `models.load_model(path)` reads them too.
"""

from __future__ import annotations

import functools
import shutil
from contextlib import contextmanager
from pathlib import Path

import diffusers
from diffusers import MotionAdapter, UNetMotionModel
from peft import LoraConfig
from safetensors.torch import load_file, save_file

MOTION = "motion_modules"


class DiffusersLora:
    """`pytorch_lora_weights.safetensors`: keys `unet.` / `transformer.` + peft names, the LoraConfig as
    metadata. Written by the pipeline class's own `save_lora_weights`; what `pipe.load_lora_weights` reads."""

    file = "pytorch_lora_weights.safetensors"

    @classmethod
    def save(cls, path: Path, adapter: dict, config: LoraConfig, family) -> None:
        getattr(diffusers, family.pipeline).save_lora_weights(
            path,
            weight_name=cls.file,
            **{f"{family.denoiser}_lora_layers": adapter, f"{family.denoiser}_lora_adapter_metadata": config.to_dict()},
        )

    @classmethod
    def load(cls, path: Path, family) -> dict:
        return {k.removeprefix(f"{family.denoiser}."): v for k, v in load_file(str(path / cls.file)).items()}


class PeftLora:
    """`adapter_config.json` + `adapter_model.safetensors` (keys `base_model.model.<module>...`): peft's
    own layout, what `PeftModel.from_pretrained(unet, path)` reads."""

    file = "adapter_model.safetensors"
    prefix = "base_model.model."

    @classmethod
    def save(cls, path: Path, adapter: dict, config: LoraConfig, family) -> None:
        config.save_pretrained(str(path))
        save_file({cls.prefix + k: v.contiguous() for k, v in adapter.items()}, str(path / cls.file))

    @classmethod
    def load(cls, path: Path, family) -> dict:
        return {k.removeprefix(cls.prefix): v for k, v in load_file(str(path / cls.file)).items()}


LORA_FORMATS = {"diffusers": DiffusersLora, "peft": PeftLora}


@contextmanager
def frozen_as_loaded(model):
    """Inside, `model`'s frozen parts save exactly as they were loaded, whatever a bf16/fp16 run did to them.

    A part loaded from a folder (`model.sources`) saves as a copy of that folder: the same files, bytes and dtype
    (a sharded half-precision T5 stays so; nothing is written twice). A part without one (a tiny model) holds its
    `_as_loaded` state, in its loaded dtype, while it saves, then is cast back: the training copy is unchanged.
    """
    swapped = {}
    try:
        for name, module in model._frozen().items():
            if name in model.sources:
                module.save_pretrained = functools.partial(_copy_folder, model.sources[name])  # shadows the method
            elif name in model._as_loaded:
                swapped[name] = module.dtype
                module.to(dtype=model.saved_dtypes[name]).load_state_dict(model._as_loaded[name])
        yield
    finally:
        for name, module in model._frozen().items():
            module.__dict__.pop("save_pretrained", None)
            if name in swapped:
                module.to(dtype=swapped[name])


def _copy_folder(source: Path, target, **_) -> None:
    """`source`'s files into `target` (a hub cache's links resolved to their files)."""
    target = Path(target)
    if target.resolve() != Path(source).resolve():
        shutil.copytree(source, target, dirs_exist_ok=True)


def save_pipeline(model, unet, path: Path) -> None:
    """`model` with denoiser `unet` as the family's diffusers pipeline folder (`save_pretrained`)."""
    scheduler = model.inference_scheduler_of()
    parts = {"vae": model.vae, "text_encoder": model.text_encoder, "tokenizer": model.tokenizer}
    pipeline = getattr(diffusers, model.pipeline)(
        **parts, **model.pipeline_components(unet), scheduler=scheduler, **model.pipeline_extras
    )
    pipeline.save_pretrained(path, safe_serialization=True)


def motion_adapter(unet: UNetMotionModel) -> MotionAdapter:
    """The motion modules of a UNetMotionModel as the MotionAdapter they came from (config mapped back)."""
    c = unet.config
    adapter = MotionAdapter(
        block_out_channels=c.block_out_channels,
        motion_layers_per_block=c.layers_per_block,
        motion_transformer_layers_per_block=c.temporal_transformer_layers_per_block,
        motion_mid_block_layers_per_block=c.mid_block_layers,
        motion_transformer_layers_per_mid_block=c.temporal_transformer_layers_per_mid_block,
        motion_num_attention_heads=c.motion_num_attention_heads,
        motion_norm_num_groups=c.norm_num_groups,
        motion_max_seq_length=c.motion_max_seq_length,
        use_motion_mid_block=c.use_motion_mid_block,
    )
    state = {k: v for k, v in unet.state_dict().items() if MOTION in k}
    adapter.load_state_dict(state)  # strict: every motion weight has its place, and nothing else
    return adapter


def motion_only(adapter: dict) -> dict:
    """The LoRA entries of the motion modules (AnimateDiff's "motion LoRA")."""
    return {k: v for k, v in adapter.items() if MOTION in k}
