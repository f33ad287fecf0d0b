"""Tiny random-weight folders in the exact layout of the hub repositories that `configs/` name.

Each builder writes what a download of its repository gives: the same subfolders, the
`model_index.json` written by the diffusers pipeline class itself (`save_pretrained`), the hub's
scheduler class and values, with the weights of `models.tiny` stored as the hub stores them (the
DiT families' T5 / UMT5 text encoders in bf16 shards, CogVideoX's transformer and VAE in fp16). `HUB_LAYOUTS` maps a hub id to its
builder; a new family adds its repositories there and every test that uses `hub_folder` (the
start-up test of every shipped config among them) picks them up.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXPipeline,
    DDIMScheduler,
    FlowMatchEulerDiscreteScheduler,
    LTXPipeline,
    PNDMScheduler,
    StableDiffusionPipeline,
    TextToVideoSDPipeline,
    UNet2DConditionModel,
    UniPCMultistepScheduler,
    WanPipeline,
)
from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
from transformers import CLIPConfig, CLIPImageProcessor

from models.families import ModelScope
from models.tiny import (
    COGVIDEOX_SCHEDULER,
    LTX_SCHEDULER,
    TEXT_DIM,
    tiny_cogvideox,
    tiny_components,
    tiny_ltx,
    tiny_motion_adapter,
    tiny_unet2d_kwargs,
    tiny_wan,
    tiny_wan22,
)
from videosspo.config import ModelConfig

# scheduler/scheduler_config.json of the two pipeline repositories, as shipped (SD 1.5's also holds
# `"clip_sample": false`, a key PNDM does not take but DDIM built from the file reads).
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
)
MODELSCOPE_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    num_train_timesteps=1000,
    prediction_type="epsilon",
    set_alpha_to_one=False,
    steps_offset=1,
)

# Wan-AI/Wan2.1-T2V-1.3B-Diffusers: the sampler WanPipeline uses, UniPC on flow-matching sigmas, shift 3.
WAN_SCHEDULER = dict(
    num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, solver_order=2
)
# Wan-AI/Wan2.2-T2V-A14B-Diffusers: the same, shift 3.0. diffusers' scripts/convert_wan_to_diffusers.py, which wrote
# the hub folders, sets flow_shift 16 for FLF2V, 5 for TI2V / Animate and 3.0 for every other type, Wan2.2-T2V-A14B
# included; the Wan team's own sampler (Wan2.2 wan/configs/wan_t2v_A14B.py) uses sample_shift 12.0 (docs/families.md).
WAN22_SCHEDULER = WAN_SCHEDULER


def half_sharded(path: Path, part: str, dtype: torch.dtype, shard_bytes: int = 20_000) -> None:
    """Rewrite `path/part` (a transformers model folder) as the hub ships the big text encoders: stored in `dtype`,
    in several safetensors shards with an index (CogVideoX-2b's T5: bf16, 2 shards)."""
    import transformers

    architecture = json.loads((path / part / "config.json").read_text())["architectures"][0]  # T5EncoderModel, ...
    model = getattr(transformers, architecture).from_pretrained(path / part, dtype=torch.float32)
    shutil.rmtree(path / part)
    model.to(dtype).save_pretrained(path / part, max_shard_size=shard_bytes)
    assert (path / part / "model.safetensors.index.json").is_file()


def _frozen_parts(seed: int) -> dict:
    """VAE, CLIP text encoder and tokenizer of the tiny models (latent channels 4)."""
    parts = tiny_components(ModelConfig())
    torch.manual_seed(seed)
    return {"vae": parts["vae"], "text_encoder": parts["text_encoder"], "tokenizer": parts["tokenizer"]}


def sd15_pipeline(path: Path) -> None:
    """`stable-diffusion-v1-5/stable-diffusion-v1-5`: a StableDiffusionPipeline with PNDM, safety checker included."""
    parts = _frozen_parts(seed=1)
    clip = CLIPConfig(
        text_config=dict(hidden_size=TEXT_DIM, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4),
        vision_config=dict(
            hidden_size=TEXT_DIM,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=16,
        ),
        projection_dim=TEXT_DIM,
    )
    StableDiffusionPipeline(
        **parts,
        unet=UNet2DConditionModel(**tiny_unet2d_kwargs(4, TEXT_DIM)),
        scheduler=PNDMScheduler(**SD15_SCHEDULER),
        safety_checker=StableDiffusionSafetyChecker(clip),
        feature_extractor=CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}),
    ).save_pretrained(path)
    scheduler_file = path / "scheduler" / "scheduler_config.json"
    scheduler_file.write_text(json.dumps({**json.loads(scheduler_file.read_text()), "clip_sample": False}, indent=2))


def modelscope_pipeline(path: Path) -> None:
    """`ali-vilab/text-to-video-ms-1.7b`: a TextToVideoSDPipeline (UNet3DConditionModel) with DDIM."""
    parts = _frozen_parts(seed=2)
    TextToVideoSDPipeline(
        **parts, unet=ModelScope.build_tiny_unet(4, TEXT_DIM), scheduler=DDIMScheduler(**MODELSCOPE_SCHEDULER)
    ).save_pretrained(path)


def motion_adapter(path: Path) -> None:
    """`guoyww/animatediff-motion-adapter-v1-5-2`: a MotionAdapter saved at the repository root."""
    torch.manual_seed(3)
    tiny_motion_adapter().save_pretrained(path)


def wan_pipeline(path: Path) -> None:
    """`Wan-AI/Wan2.1-T2V-1.3B-Diffusers`: a WanPipeline (transformer/, UMT5, AutoencoderKLWan) with UniPC."""
    parts = tiny_wan(ModelConfig(family="wan"))
    WanPipeline(
        transformer=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        scheduler=UniPCMultistepScheduler(**WAN_SCHEDULER),
    ).save_pretrained(path)
    half_sharded(path, "text_encoder", torch.bfloat16)  # UMT5-XXL: bf16 shards (diffusers' convert_wan_to_diffusers.py)


def wan22_a14b_pipeline(path: Path) -> None:
    """`Wan-AI/Wan2.2-T2V-A14B-Diffusers`: a WanPipeline with two experts (transformer: high noise, transformer_2: low
    noise) switched at boundary_ratio 0.875, UniPC with the shift the hub folder holds (`WAN22_SCHEDULER`)."""
    parts = tiny_wan22(ModelConfig(family="wan22"))
    experts = parts["unet"]
    WanPipeline(
        transformer=experts.transformer,
        transformer_2=experts.transformer_2,
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        boundary_ratio=experts.config.boundary_ratio,
        scheduler=UniPCMultistepScheduler(**WAN22_SCHEDULER),
    ).save_pretrained(path)
    half_sharded(path, "text_encoder", torch.bfloat16)


def cogvideox_pipeline(path: Path) -> None:
    """`THUDM/CogVideoX-2b`: a CogVideoXPipeline (transformer/, T5, AutoencoderKLCogVideoX) with CogVideoX's DDIM; the
    transformer and VAE stored in fp16, the T5 in bf16 shards (diffusers loads the first two in fp32, transformers
    the T5 in bf16)."""
    parts = tiny_cogvideox(ModelConfig(family="cogvideox"))
    CogVideoXPipeline(
        transformer=parts["unet"].to(torch.float16),
        vae=parts["vae"].to(torch.float16),
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        scheduler=CogVideoXDDIMScheduler(**COGVIDEOX_SCHEDULER),
    ).save_pretrained(path)
    half_sharded(path, "text_encoder", torch.bfloat16)  # T5-XXL: bf16, 2 shards


def ltx_pipeline(path: Path) -> None:
    """`Lightricks/LTX-Video` (LTX-Video 0.9.0, its diffusers folders): an LTXPipeline (transformer/, T5,
    AutoencoderKLLTXVideo) with FlowMatchEulerDiscreteScheduler shifted by sequence length."""
    parts = tiny_ltx(ModelConfig(family="ltx"))
    LTXPipeline(
        transformer=parts["unet"],
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        scheduler=FlowMatchEulerDiscreteScheduler(**LTX_SCHEDULER),
    ).save_pretrained(path)
    half_sharded(path, "text_encoder", torch.bfloat16)  # T5-XXL: bf16 shards


HUB_LAYOUTS: dict[str, Callable[[Path], None]] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": sd15_pipeline,
    "runwayml/stable-diffusion-v1-5": sd15_pipeline,
    "ali-vilab/text-to-video-ms-1.7b": modelscope_pipeline,
    "damo-vilab/text-to-video-ms-1.7b": modelscope_pipeline,
    "guoyww/animatediff-motion-adapter-v1-5-2": motion_adapter,
    "Wan-AI/Wan2.1-T2V-1.3B-Diffusers": wan_pipeline,
    "Wan-AI/Wan2.2-T2V-A14B-Diffusers": wan22_a14b_pipeline,
    "THUDM/CogVideoX-2b": cogvideox_pipeline,
    "Lightricks/LTX-Video": ltx_pipeline,
}


def hub_folder(hub_id: str, root: Path) -> Path:
    """The real-layout folder standing in for `hub_id` under `root` (built on first use)."""
    if hub_id not in HUB_LAYOUTS:
        raise KeyError(f"no real-layout builder for {hub_id!r}: add one to HUB_LAYOUTS in tests/hub_layouts.py")
    path = Path(root) / hub_id.replace("/", "--")
    if not path.is_dir():
        HUB_LAYOUTS[hub_id](path)
    return path


def local_model_overrides(model: ModelConfig, root: Path) -> dict:
    """`model.pretrained` / `model.motion_adapter` of a config, pointed at their real-layout folders."""
    return {
        key: str(hub_folder(getattr(model, key), root))
        for key in ("pretrained", "motion_adapter")
        if getattr(model, key) is not None
    }
