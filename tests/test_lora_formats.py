"""The ComfyUI / kohya-format LoRA (`lora_comfyui.safetensors`, models/lora_formats.py), checked the way a user finds
out: diffusers' own non-diffusers converters load it into the pipeline built from the hub layout, and every LoRA
layer holds the weight the diffusers-format file gives it, with nothing left over or unmatched."""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

import pytest
import torch
from conftest import trained_lora
from diffusers import AnimateDiffPipeline, LTXPipeline, MotionAdapter, StableDiffusionPipeline, WanPipeline
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file

from models import save_adapter
from models.lora import lora_config
from models.lora_formats import COMFY_FILE, MOTION, lora_pairs, ltx, wan
from videosspo.config import ModelConfig
from videosspo.reference import Policy

SD15, ADAPTER = "stable-diffusion-v1-5/stable-diffusion-v1-5", "guoyww/animatediff-motion-adapter-v1-5-2"
HUB = {
    "sd": {"pretrained": SD15},
    "animatediff": {"pretrained": SD15, "motion_adapter": ADAPTER},
    "wan": {"pretrained": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"},
    "wan22": {"pretrained": "Wan-AI/Wan2.2-T2V-A14B-Diffusers"},
    "ltx": {"pretrained": "Lightricks/LTX-Video"},
}
RANK, ALPHA = 4, 1.0  # alpha != rank: the converters must apply alpha / rank (Wan's also rebalances 0.25 as 0.5 x 0.5)


def exported_adapter(family, hub_layout, path):
    """The family's model from its hub layout with a trained-looking LoRA (B random), exported as `train.export: adapter`."""
    cfg = ModelConfig(
        family=family, lora_rank=RANK, lora_alpha=ALPHA, **{k: str(hub_layout(v)) for k, v in HUB[family].items()}
    )
    model = trained_lora(cfg)
    adapter = Policy(model).snapshot()
    save_adapter(path, adapter, cfg)
    return adapter


def user_pipeline(family, hub_layout):
    """The pipeline as users build it from the hub."""
    if family == "animatediff":
        return AnimateDiffPipeline.from_pretrained(
            hub_layout(SD15), motion_adapter=MotionAdapter.from_pretrained(hub_layout(ADAPTER))
        )
    cls = {"sd": StableDiffusionPipeline, "wan": WanPipeline, "wan22": WanPipeline, "ltx": LTXPipeline}[family]
    return cls.from_pretrained(hub_layout(HUB[family]["pretrained"]))


@contextmanager
def no_warnings():
    """Fails on any warning diffusers or peft emit while loading (unmatched, unexpected or missing LoRA keys)."""
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    loggers = [logging.getLogger(name) for name in ("diffusers", "peft")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    messages = [
        m
        for m in [r.getMessage() for r in records] + [str(w.message) for w in caught]
        if not m.startswith("Already found a `peft_config`")
    ]  # a second adapter in one model: intended
    assert not messages, messages


def load(pipe, family, folder, **kwargs):
    """`load_lora_weights` as the family's users call it (Wan 2.2 A14B: one file per expert)."""
    if family == "wan22":
        pipe.load_lora_weights(folder / "transformer", adapter_name="high", **kwargs)
        pipe.load_lora_weights(folder / "transformer_2", adapter_name="low", load_into_transformer_2=True, **kwargs)
    else:
        pipe.load_lora_weights(folder, **kwargs)


def deltas(pipe) -> dict[str, torch.Tensor]:
    """Each LoRA layer's ΔW, summed over its active adapters (what a forward pass adds), by module name."""
    denoisers = {
        name: getattr(pipe, name)
        for name in ("unet", "transformer", "transformer_2")
        if getattr(pipe, name, None) is not None
    }
    return {
        f"{d}.{name}": sum(m.get_delta_weight(a) for a in m.active_adapters if a in m.lora_A)
        for d, denoiser in denoisers.items()
        for name, m in denoiser.named_modules()
        if isinstance(m, BaseTunerLayer)
    }


@pytest.mark.parametrize("family", list(HUB))
def test_comfyui_lora_loads_through_diffusers_converters_like_the_diffusers_file(family, hub_layout, tmp_path):
    adapter = exported_adapter(family, hub_layout, tmp_path / "model")
    reference = user_pipeline(family, hub_layout)
    with no_warnings():
        load(reference, family, tmp_path / "model")  # the diffusers-format file
    comfy = user_pipeline(family, hub_layout)
    with no_warnings():
        load(comfy, family, tmp_path / "model", weight_name=COMFY_FILE)
        if family == "animatediff":  # the kohya file holds the SD 1.5 layers; the motion LoRA rides beside it
            comfy.load_lora_weights(tmp_path / "model" / "motion_lora", adapter_name="motion")
            comfy.set_adapters(["default_0", "motion"])
    want, got = deltas(reference), deltas(comfy)
    assert len(want) == len(lora_pairs(adapter))  # control: the diffusers file adapts every trained module
    assert got.keys() == want.keys()  # none dropped, none extra
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)
    if family == "animatediff":  # the kohya file alone: the spatial layers, no motion module
        file = load_file(tmp_path / "model" / COMFY_FILE)
        assert file and not any(MOTION in k for k in file)


def test_comfyui_names_by_hand():
    """The key names and scales as ComfyUI / musubi-tuner (Wan) and diffusers' LTX converter read them."""
    down, up = torch.ones(2, 3), torch.full((5, 2), 3.0)
    cfg = lora_config(2, 1.0, ["to_q"])
    got = wan(
        {
            "blocks.7.attn2.to_out.0.lora_A.weight": down,
            "blocks.7.attn2.to_out.0.lora_B.weight": up,
            "blocks.0.ffn.net.0.proj.lora_A.weight": down,
            "blocks.0.ffn.net.0.proj.lora_B.weight": up,
        },
        cfg,
    )
    assert sorted(got) == [
        "diffusion_model.blocks.0.ffn.0.alpha",
        "diffusion_model.blocks.0.ffn.0.lora_down.weight",
        "diffusion_model.blocks.0.ffn.0.lora_up.weight",
        "diffusion_model.blocks.7.cross_attn.o.alpha",
        "diffusion_model.blocks.7.cross_attn.o.lora_down.weight",
        "diffusion_model.blocks.7.cross_attn.o.lora_up.weight",
    ]
    assert got["diffusion_model.blocks.7.cross_attn.o.alpha"].item() == 1.0
    got = ltx(
        {"transformer_blocks.1.attn1.to_k.lora_A.weight": down, "transformer_blocks.1.attn1.to_k.lora_B.weight": up},
        cfg,
    )
    assert got.keys() == {
        "diffusion_model.transformer_blocks.1.attn1.to_k.lora_A.weight",
        "diffusion_model.transformer_blocks.1.attn1.to_k.lora_B.weight",
    }
    assert torch.equal(got["diffusion_model.transformer_blocks.1.attn1.to_k.lora_B.weight"], up * 0.5)  # alpha / rank
    with pytest.raises(
        ValueError, match="condition_embedder.time_proj"
    ):  # a Wan module ComfyUI's format has no name for
        wan({"condition_embedder.time_proj.lora_A.weight": down, "condition_embedder.time_proj.lora_B.weight": up}, cfg)
