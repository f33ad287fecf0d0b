"""The model families: how each builds, loads and calls its denoiser on `b c f h w` latents."""

from __future__ import annotations

import types

import torch
from diffusers import MotionAdapter, UNet2DConditionModel, UNet3DConditionModel, UNetMotionModel
from einops import rearrange, repeat

from models.base import VideoDiffusionModel
from models.tiny import CHANNELS, tiny_motion_adapter, tiny_unet2d_kwargs
from videosspo.config import ModelConfig
from videosspo.synth import COLORS, DIRECTIONS, SHAPES


class AnimateDiff(VideoDiffusionModel):
    """SD-1.5 2-D UNet + MotionAdapter = diffusers' `UNetMotionModel`."""

    family = "animatediff"

    def _denoise(self, x_t, t, cond):
        # UNetMotionModel folds frames into the batch itself but wants the text per frame.
        cond = repeat(cond, "b l d -> (b f) l d", f=x_t.shape[2])
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        unet2d = UNet2DConditionModel(**tiny_unet2d_kwargs(in_channels, cross_attention_dim))
        return UNetMotionModel.from_unet2d(unet2d, tiny_motion_adapter())

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        config = UNet2DConditionModel.load_config(cfg.pretrained, subfolder="unet")
        if config.get("_class_name") == "UNetMotionModel":  # a videosspo checkpoint or a merged model
            return UNetMotionModel.from_pretrained(cfg.pretrained, subfolder="unet")
        if cfg.motion_adapter is None:
            raise ValueError(f"model.pretrained={cfg.pretrained!r} holds a 2-D UNet: set model.motion_adapter "
                             "to a MotionAdapter directory or hub id (e.g. guoyww/animatediff-motion-adapter-v1-5-2)")
        unet2d = UNet2DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet")
        return UNetMotionModel.from_unet2d(unet2d, MotionAdapter.from_pretrained(cfg.motion_adapter))


class ModelScope(VideoDiffusionModel):
    """ModelScope text-to-video: diffusers' `UNet3DConditionModel` (repeats the text per frame itself)."""

    family = "modelscope"

    def _denoise(self, x_t, t, cond):
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    def enable_gradient_checkpointing(self) -> None:
        checkpoint_blocks(self.unet)  # diffusers' UNet3DConditionModel has none (0.42)

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        return UNet3DConditionModel(sample_size=16, in_channels=in_channels, out_channels=in_channels,
                                    block_out_channels=CHANNELS, layers_per_block=1, norm_num_groups=8,
                                    cross_attention_dim=cross_attention_dim, attention_head_dim=8,
                                    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
                                    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"))

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        return UNet3DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet")


def checkpoint_blocks(unet: UNet3DConditionModel) -> None:
    """Activation checkpointing for a UNet3DConditionModel: `transformer_in` and every down, mid and
    up block keep only their inputs and recompute the rest in the backward pass.

    Each block's `forward` becomes a bound method that runs the class's forward under
    `torch.utils.checkpoint` (non-reentrant: keyword arguments, tuples of skip tensors and frozen
    inputs all work). Weights and state-dict keys are untouched, and a deep copy binds to the copy.
    """
    for block in (unet.transformer_in, *unet.down_blocks, unet.mid_block, *unet.up_blocks):
        block.forward = types.MethodType(_checkpointed_forward, block)


def _checkpointed_forward(block, *args, **kwargs):
    forward = type(block).forward
    if not torch.is_grad_enabled():  # no backward pass to save memory for
        return forward(block, *args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, block, *args, use_reentrant=False, **kwargs)


class StableDiffusion(VideoDiffusionModel):
    """An image UNet; frames are independent images, so f = 1 is plain text-to-image."""

    family = "sd"

    def _denoise(self, x_t, t, cond):
        b, f = x_t.shape[0], x_t.shape[2]
        x = rearrange(x_t, "b c f h w -> (b f) c h w")
        t = repeat(t.reshape(-1).expand(b), "b -> (b f)", f=f)
        cond = repeat(cond, "b l d -> (b f) l d", f=f)
        out = self.unet(x, t, encoder_hidden_states=cond).sample
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        return UNet2DConditionModel(**tiny_unet2d_kwargs(in_channels, cross_attention_dim))

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        return UNet2DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet")


class Stacked(VideoDiffusionModel):
    """A 2-D UNet on the frames stacked as channels: `b c f h w -> b (f c) h w`, in pixel space.

    20-60x faster than per-frame video UNets at the synthetic world's size (BASE_MODEL_NOTES), so
    a base model worth aligning trains on CPU. Cross-attention only at the coarser resolution;
    the tiny model has whole-word tokens for the synthetic world's captions, a text encoder without
    layers (word embedding + position), and a cosine noise schedule sampled with trailing timesteps
    and x0 clipped to the pixel range.
    The frame count is fixed by the UNet's channels (`model.stacked_frames` when built tiny).
    """

    family = "stacked"
    tiny_options = {"words": ("a", "moving", *COLORS, *SHAPES, *DIRECTIONS), "max_tokens": 8, "text_layers": 0,
                    "beta_schedule": "squaredcos_cap_v2", "timestep_spacing": "trailing", "clip_sample": True}

    def _denoise(self, x_t, t, cond):
        c, f = x_t.shape[1], x_t.shape[2]
        if c * f != self.unet.config.in_channels:
            raise ValueError(f"the stacked model takes {self.unet.config.in_channels // c} frames of {c} channels, "
                             f"got {f} frames: set data.frames to {self.unet.config.in_channels // c}")
        out = self.unet(rearrange(x_t, "b c f h w -> b (f c) h w"), t, encoder_hidden_states=cond).sample
        return rearrange(out, "b (f c) h w -> b c f h w", f=f)

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        channels = in_channels * (cfg or ModelConfig()).stacked_frames
        return UNet2DConditionModel(sample_size=16, in_channels=channels, out_channels=channels,
                                    block_out_channels=CHANNELS, layers_per_block=1, norm_num_groups=8,
                                    cross_attention_dim=cross_attention_dim, attention_head_dim=8,
                                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        return UNet2DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet")


FAMILIES: dict[str, type[VideoDiffusionModel]] = {c.family: c for c in (AnimateDiff, ModelScope, StableDiffusion, Stacked)}
