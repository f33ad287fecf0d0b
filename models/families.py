"""The model families: how each builds, loads and calls its denoiser on `b c f h w` latents."""

from __future__ import annotations

import dataclasses
import re
import types
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    AutoencoderKLLTXVideo,
    AutoencoderKLWan,
    CogVideoXDDIMScheduler,
    CogVideoXTransformer3DModel,
    FlowMatchEulerDiscreteScheduler,
    LTXVideoTransformer3DModel,
    MotionAdapter,
    UNet2DConditionModel,
    UNet3DConditionModel,
    UNetMotionModel,
    WanTransformer3DModel,
)
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from einops import rearrange, repeat
from transformers import AutoTokenizer, T5EncoderModel, UMT5EncoderModel

from models.base import ATTENTION_PROJECTIONS, VideoDiffusionModel, clip_posterior_mode, per_clip, zero_padding
from models.experts import EXPERTS, WanExperts
from models.export import MOTION, motion_adapter, motion_only
from models.samplers import COGVIDEOX_SAMPLERS, DYNAMIC_FLOW_SAMPLERS, FLOW_SAMPLERS, flow_unipc
from models.tiny import (
    UNET_WIDTHS,
    tiny_cogvideox,
    tiny_ltx,
    tiny_motion_adapter,
    tiny_unet2d_kwargs,
    tiny_unet_kwargs,
    tiny_wan,
    tiny_wan22,
)
from videosspo.config import Config, ConfigError, ModelConfig
from videosspo.synth import COLORS, DIRECTIONS, SHAPES

FEED_FORWARD = ("ff.net.0.proj", "ff.net.2")  # diffusers' FeedForward in the DiT blocks: in (GELU) and out projections


class AnimateDiff(VideoDiffusionModel):
    """SD-1.5 2-D UNet + MotionAdapter = diffusers' `UNetMotionModel`."""

    family = "animatediff"
    owns = {"model.motion_adapter": "a MotionAdapter combined with `pretrained`'s 2-D UNet"}
    pixel_space = True
    denoiser_class = UNetMotionModel
    # The motion modules were trained on linear betas, and diffusers' AnimateDiff docs sample them so.
    schedule = {
        "beta_schedule": "linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "clip_sample": False,
        "timestep_spacing": "linspace",
        "steps_offset": 1,
    }
    sampler_class = "DDIMScheduler"
    pipeline = "AnimateDiffPipeline"
    pipeline_extras = {"motion_adapter": None}  # the unet is already a UNetMotionModel
    comfy_format = "kohya"  # the spatial layers: what loads on an SD 1.5 checkpoint (the motion LoRA: motion_lora/)

    def save_pretrained(self, path, unet=None) -> None:
        """The pipeline folder, plus its motion modules alone in `motion_adapter/` (a MotionAdapter)."""
        super().save_pretrained(path, unet)
        motion_adapter(unet or self.unet).save_pretrained(Path(path) / "motion_adapter")

    @classmethod
    def save_adapter(cls, path, adapter, lora) -> None:
        """The LoRA, plus the LoRA of the motion modules alone in `motion_lora/` (a "motion LoRA", diffusers' format;
        its config targets the motion modules only, so peft injects nothing else and warns of nothing)."""
        from models.export import LORA_FORMATS

        super().save_adapter(path, adapter, lora)
        motion = dataclasses.replace(
            lora, target_modules=rf".*{MOTION}.*\.({'|'.join(map(re.escape, cls.lora_targets))})"
        )
        LORA_FORMATS[cls.lora_format].save(Path(path) / "motion_lora", motion_only(adapter), motion, cls)

    def enable_gradient_checkpointing(self) -> None:
        """diffusers' checkpointing (resnets, spatial transformer blocks), and the motion modules too: diffusers
        0.42 keeps their activations (temporal attention over every frame) for the backward pass."""
        self.unet.enable_gradient_checkpointing()
        checkpoint_modules(m for m in self.unet.modules() if isinstance(m, AnimateDiffTransformer3D))

    def _denoise(self, x_t, t, cond):
        # UNetMotionModel folds frames into the batch itself but wants the text per frame.
        cond = repeat(cond, "b l d -> (b f) l d", f=x_t.shape[2])
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        widths = UNET_WIDTHS[(cfg or ModelConfig()).size]
        unet2d = UNet2DConditionModel(**tiny_unet2d_kwargs(in_channels, cross_attention_dim, widths))
        return UNetMotionModel.from_unet2d(unet2d, tiny_motion_adapter(widths))

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        config = UNet2DConditionModel.load_config(cfg.pretrained, subfolder="unet")
        if config.get("_class_name") == "UNetMotionModel":  # a videosspo checkpoint or a merged model
            return UNetMotionModel.from_pretrained(cfg.pretrained, subfolder="unet")
        if cfg.motion_adapter is None:
            raise ValueError(
                f"model.pretrained={cfg.pretrained!r} holds a 2-D UNet: set model.motion_adapter "
                "to a MotionAdapter directory or hub id (e.g. guoyww/animatediff-motion-adapter-v1-5-2)"
            )
        unet2d = UNet2DConditionModel.from_pretrained(cfg.pretrained, subfolder="unet")
        return UNetMotionModel.from_unet2d(unet2d, MotionAdapter.from_pretrained(cfg.motion_adapter))


class ModelScope(VideoDiffusionModel):
    """ModelScope text-to-video: diffusers' `UNet3DConditionModel` (repeats the text per frame itself)."""

    family = "modelscope"
    pixel_space = True
    denoiser_class = UNet3DConditionModel
    pipeline = "TextToVideoSDPipeline"
    lora_format = "peft"  # diffusers' UNet3DConditionModel has no LoRA loader (0.42): peft's PeftModel loads it

    def _denoise(self, x_t, t, cond):
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    def enable_gradient_checkpointing(self) -> None:
        checkpoint_blocks(self.unet)  # diffusers' UNet3DConditionModel has none (0.42)

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        widths = UNET_WIDTHS[(cfg or ModelConfig()).size]
        return UNet3DConditionModel(**tiny_unet_kwargs(in_channels, cross_attention_dim, widths, dims="3D"))


def checkpoint_blocks(unet: UNet3DConditionModel) -> None:
    """Activation checkpointing for a UNet3DConditionModel: `transformer_in` and every down, mid and
    up block keep only their inputs and recompute the rest in the backward pass."""
    checkpoint_modules((unet.transformer_in, *unet.down_blocks, unet.mid_block, *unet.up_blocks))


def checkpoint_modules(modules) -> None:
    """Each module's `forward` becomes a bound method that runs the class's forward under
    `torch.utils.checkpoint` (non-reentrant: keyword arguments, tuples of skip tensors and frozen
    inputs all work). Weights and state-dict keys are untouched, and a deep copy binds to the copy.
    """
    for block in modules:
        block.forward = types.MethodType(_checkpointed_forward, block)


def _checkpointed_forward(block, *args, **kwargs):
    forward = type(block).forward
    if not torch.is_grad_enabled():  # no backward pass to save memory for
        return forward(block, *args, **kwargs)
    return torch.utils.checkpoint.checkpoint(forward, block, *args, use_reentrant=False, **kwargs)


class StableDiffusion(VideoDiffusionModel):
    """An image UNet; frames are independent images, so f = 1 is plain text-to-image."""

    family = "sd"
    pixel_space = True
    image_model = True
    denoiser_class = UNet2DConditionModel
    pipeline = "StableDiffusionPipeline"
    comfy_format = "kohya"
    pipeline_extras = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def _denoise(self, x_t, t, cond):
        b, f = x_t.shape[0], x_t.shape[2]
        x = rearrange(x_t, "b c f h w -> (b f) c h w")
        t = repeat(t.reshape(-1).expand(b), "b -> (b f)", f=f)
        cond = repeat(cond, "b l d -> (b f) l d", f=f)
        out = self.unet(x, t, encoder_hidden_states=cond).sample
        return rearrange(out, "(b f) c h w -> b c f h w", f=f)

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        widths = UNET_WIDTHS[(cfg or ModelConfig()).size]
        return UNet2DConditionModel(**tiny_unet2d_kwargs(in_channels, cross_attention_dim, widths))


class Wan(VideoDiffusionModel):
    """Wan 2.1 (and Wan 2.2 TI2V-5B) text-to-video: `WanTransformer3DModel` on `AutoencoderKLWan`
    latents (4x time, 8x space, normalised per channel by `latents_mean` / `latents_std` as
    `WanPipeline` does), UMT5 text embeddings, flow matching with the scheduler's shift.

    The hub layout's `scheduler/` is the UniPC sampler (`flow_shift`); training uses
    `FlowMatchEulerDiscreteScheduler` with the same shift, so the training σ density and the
    sampler's σ grid agree.
    """

    family = "wan"
    denoiser = "transformer"
    denoiser_class = WanTransformer3DModel
    components = {
        "vae": AutoencoderKLWan,
        "text_encoder": UMT5EncoderModel,
        "tokenizer": AutoTokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler,
    }
    pipeline = "WanPipeline"
    comfy_format = "wan"  # per expert for Wan 2.2 A14B: transformer/ and transformer_2/ each hold one
    lora_targets = (*ATTENTION_PROJECTIONS, "ffn.net.0.proj", "ffn.net.2")
    objective = "flow_shifted"
    samplers = FLOW_SAMPLERS
    max_text_tokens = 512  # WanPipeline's max_sequence_length

    def _denoise(self, x_t, t, cond):
        return self.unet(x_t, t, encoder_hidden_states=cond).sample

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """UMT5 last hidden state `b l d`, zero past each prompt's tokens (as `WanPipeline` pads), in the denoiser's dtype."""
        tokens = self.tokenize(prompts)
        hidden = self.text_encoder(tokens.input_ids, tokens.attention_mask).last_hidden_state
        return zero_padding(hidden, tokens.attention_mask).to(self.device, self.unet.dtype)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.z_dim

    @property
    def vae_factor(self) -> int:
        return self.vae.config.scale_factor_spatial

    @property
    def temporal_factor(self) -> int:
        return self.vae.config.scale_factor_temporal

    @property
    def size_multiple(self) -> int:
        return self.vae_factor * self.denoiser_config.patch_size[1]

    def _latent_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = (
            torch.tensor(self.vae.config[k], device=like.device, dtype=like.dtype)
            for k in ("latents_mean", "latents_std")
        )
        return rearrange(mean, "c -> 1 c 1 1 1"), rearrange(std, "c -> 1 c 1 1 1")

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels `b c F h w` -> normalised latents `b c f h w`, (z − mean) / std, one clip per VAE call.

        The VAE is causal in time and caches features chunk by chunk, so its memory is bounded in F.
        """
        z = clip_posterior_mode(self.vae, pixels)
        mean, std = self._latent_stats(z)
        return (z - mean) / std

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        mean, std = self._latent_stats(latents)
        z = (latents * std + mean).to(self.vae.dtype)
        return per_clip(lambda clip: self.vae.decode(clip).sample, z).float().clamp(-1, 1)

    @classmethod
    def build_tiny(cls, cfg: ModelConfig) -> dict:
        return tiny_wan(cfg)

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        """`transformer/`; a two-expert Wan 2.2 A14B layout is refused (its `transformer` alone is the high-noise
        expert: trained on every timestep it would silently become a different model): it is `wan22`."""
        boundary = boundary_ratio(cfg.pretrained)
        if boundary is not None:
            raise ConfigError(
                f"model.pretrained={cfg.pretrained!r} is a two-expert Wan 2.2 (transformer for t >= "
                f"{boundary * 1000:g}, transformer_2 below, boundary_ratio {boundary}): set model.family: wan22"
            )
        return super().load_unet(cfg)

    def inference_scheduler_of(self):
        """What `WanPipeline` samples with, as the hub's `scheduler/` holds it: UniPC on flow-matching σ with the
        training shift (`flow_shift`; UniPC built from the Euler config would be a DDPM-schedule ε sampler)."""
        return flow_unipc(self.scheduler.config)

    @classmethod
    def training_scheduler(cls, config: dict):
        """Flow-matching Euler with the layout's shift (UniPC's `flow_shift`, or our own saved `shift`)."""
        shift = config.get("flow_shift", config.get("shift", 1.0))
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=config.get("num_train_timesteps", 1000), shift=shift)


def boundary_ratio(pretrained: str) -> float | None:
    """`boundary_ratio` of a pipeline folder's model_index.json: where a two-expert Wan 2.2 switches experts."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.load_config(pretrained).get("boundary_ratio")
    except OSError:  # no model_index.json: a bare folder of components
        return None


class Wan22(Wan):
    """Wan 2.2 A14B text-to-video (`Wan-AI/Wan2.2-T2V-A14B-Diffusers`): Wan's stack with two 14B experts
    (`models.experts.WanExperts`): `transformer` for high noise (t >= boundary_ratio · T, 875), `transformer_2`
    below. Training routes each sample by its t; `model.experts` picks what trains (`high`, `low`: LoRA in that
    expert only and σ drawn from its range of the family's density; `both`); sampling switches expert and CFG
    scale (`guidance_2`) at the boundary, as `WanPipeline` does.
    """

    family = "wan22"
    owns = {
        "model.experts": "which of its two experts trains",
        "sample.guidance_2": "the CFG scale of its low-noise expert's steps",
        "loser.guidance_2": "the CFG scale of its low-noise expert's steps",
    }
    denoiser_class = WanExperts
    unused_parameters = True  # a micro-batch whose samples all fall on one side of the boundary skips the other expert
    experts = "both"  # model.experts

    def _experts(self) -> WanExperts:
        return getattr(self.unet, "module", self.unet)

    @property
    def denoiser_config(self):
        """The experts' (shared) transformer config."""
        return self._experts().transformer.config

    @property
    def boundary_timestep(self) -> float:
        return self._experts().boundary

    @property
    def sigma_range(self) -> tuple[float, float]:
        """σ ∈ [boundary_ratio, 1) for the high-noise expert, [0, boundary_ratio) for the low-noise one, or all."""
        r = self._experts().config.boundary_ratio
        return {"both": (0.0, 1.0), "high": (r, 1.0), "low": (0.0, r)}[self.experts]

    @property
    def lora_scope(self) -> str:
        """A regular expression (peft full-matches it): the family's projections inside the trained expert(s)."""
        names = {"both": EXPERTS, "high": EXPERTS[:1], "low": EXPERTS[1:]}[self.experts]
        return rf"({'|'.join(names)})\..*\.({'|'.join(map(re.escape, self.lora_targets))})"

    def pipeline_components(self, unet) -> dict:
        return {
            "transformer": unet.transformer,
            "transformer_2": unet.transformer_2,
            "boundary_ratio": unet.config.boundary_ratio,
        }

    @classmethod
    def save_adapter(cls, path: Path, adapter: dict, lora) -> None:
        """One diffusers LoRA file per trained expert, in its folder: `pipe.load_lora_weights(path / "transformer")`,
        `pipe.load_lora_weights(path / "transformer_2", load_into_transformer_2=True)` (diffusers' Wan loader
        reads `transformer.` keys and puts them into the expert it is told)."""
        for name in EXPERTS:
            part = {k.removeprefix(f"{name}."): v for k, v in adapter.items() if k.startswith(f"{name}.")}
            if part:
                super().save_adapter(Path(path) / name, part, lora)

    @classmethod
    def load_adapter(cls, path: Path) -> dict:
        load = super().load_adapter
        return {
            f"{name}.{k}": v
            for name in EXPERTS
            if (Path(path) / name).is_dir()
            for k, v in load(Path(path) / name).items()
        }

    @classmethod
    def check_config(cls, config: Config) -> None:
        if config.model.lora_rank == 0:
            raise ConfigError(
                "model.lora_rank=0 is not allowed: > 0 for model.family: wan22 (full fine-tuning of two "
                "14B experts is not supported; e.g. 32)"
            )

    @classmethod
    def build_tiny(cls, cfg: ModelConfig) -> dict:
        return tiny_wan22(cfg)

    @classmethod
    def load_unet(cls, cfg: ModelConfig) -> WanExperts:
        """`transformer/` and `transformer_2/`, switched at model_index.json's `boundary_ratio` (of the scheduler's T)."""
        ratio = boundary_ratio(cfg.pretrained)
        if ratio is None:
            raise ConfigError(
                f"model.pretrained={cfg.pretrained!r} has one transformer (no boundary_ratio in its "
                "model_index.json): set model.family: wan"
            )
        high, low = (WanTransformer3DModel.from_pretrained(cfg.pretrained, subfolder=name) for name in EXPERTS)
        steps = FlowMatchEulerDiscreteScheduler.load_config(cfg.pretrained, subfolder="scheduler")[
            "num_train_timesteps"
        ]
        return WanExperts(
            expert=dict(high.config),
            boundary_ratio=ratio,
            num_train_timesteps=steps,
            transformer=high,
            transformer_2=low,
        )

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> Wan22:
        model = super().from_config(cfg)
        model.experts = cfg.experts
        return model


class CogVideoX(VideoDiffusionModel):
    """CogVideoX 1.0 (2b, 5b): `CogVideoXTransformer3DModel` (frames first, `b f c h w`) on
    `AutoencoderKLCogVideoX` latents (4x time, 8x space, times `scaling_factor`), T5 embeddings of
    exactly the transformer's `max_text_seq_length` tokens, unmasked, as `CogVideoXPipeline` builds them.

    Not flow matching: CogVideoX is a v-prediction diffusion model on its SNR-shifted,
    zero-terminal-SNR schedule (`CogVideoXDDIMScheduler`), so its objective is `v_prediction`
    and its sampler DDIM. The 5b model's rotary position embeddings are the pipeline's own.
    """

    family = "cogvideox"
    denoiser = "transformer"
    denoiser_class = CogVideoXTransformer3DModel
    components = {
        "vae": AutoencoderKLCogVideoX,
        "text_encoder": T5EncoderModel,
        "tokenizer": AutoTokenizer,
        "scheduler": CogVideoXDDIMScheduler,
    }
    pipeline = "CogVideoXPipeline"
    lora_targets = (*ATTENTION_PROJECTIONS, *FEED_FORWARD)
    samplers = COGVIDEOX_SAMPLERS
    noise_layout = "f c h w"  # CogVideoXPipeline.prepare_latents draws its noise frames first

    def _denoise(self, x_t, t, cond):
        x = rearrange(x_t, "b c f h w -> b f c h w")
        rotary = self._rotary_embeddings(x.shape[1], x.shape[3], x.shape[4], x.device)
        out = self.unet(hidden_states=x, encoder_hidden_states=cond, timestep=t, image_rotary_emb=rotary).sample
        return rearrange(out, "b f c h w -> b c f h w")

    def _rotary_embeddings(self, frames: int, height: int, width: int, device):
        """`CogVideoXPipeline._prepare_rotary_positional_embeddings` for latents f x h x w (None without rotary)."""
        if not self.denoiser_config.use_rotary_positional_embeddings:
            return None
        from diffusers import CogVideoXPipeline  # imported on use: pipelines pull in image processors

        view = types.SimpleNamespace(
            vae_scale_factor_spatial=self.vae_factor, transformer=getattr(self.unet, "module", self.unet)
        )
        return CogVideoXPipeline._prepare_rotary_positional_embeddings(
            view, height * self.vae_factor, width * self.vae_factor, frames, device
        )

    @property
    def text_length(self) -> int:
        """T5 prompts are exactly the transformer's `max_text_seq_length` tokens, unmasked."""
        return self.denoiser_config.max_text_seq_length

    @property
    def temporal_factor(self) -> int:
        return self.vae.config.temporal_compression_ratio

    @property
    def frame_step(self) -> int:
        """8 (frames 8k+1, as the real 49): `AutoencoderKLCogVideoX` decodes latent frames in pairs, the first three
        together, so n latent frames give 4n − 3 frames only for odd n (13 -> 49); an even n gives 4n (2 -> 8, not 5)."""
        return 2 * self.temporal_factor

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """Also refuses CogVideoX 1.5 (`patch_size_t` 2): its transformer needs an even latent frame count, which
        `CogVideoXPipeline` makes by padding latent frames that it drops before decoding; this loop does not pad."""
        shape = super().latent_shape(frames, height, width)
        pt = self.denoiser_config.get("patch_size_t")
        if pt and shape[1] % pt:
            raise ConfigError(
                f"model.family=cogvideox: this transformer patches {pt} latent frames at once (CogVideoX "
                f"1.5), but data.frames={frames} gives {shape[1]}; CogVideoX 1.5's latent padding is not "
                "supported: train CogVideoX 1.0 (THUDM/CogVideoX-2b, -5b)"
            )
        return shape

    @property
    def size_multiple(self) -> int:
        return self.vae_factor * self.denoiser_config.patch_size

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels `b c F h w` -> latents `b c f h w` times `scaling_factor`, one clip per VAE call."""
        z = clip_posterior_mode(self.vae, pixels)
        return z * self.vae.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        z = (latents / self.vae.config.scaling_factor).to(self.vae.dtype)
        return per_clip(lambda clip: self.vae.decode(clip).sample, z).float().clamp(-1, 1)

    @classmethod
    def build_tiny(cls, cfg: ModelConfig) -> dict:
        return tiny_cogvideox(cfg)


class LTXVideo(VideoDiffusionModel):
    """LTX-Video 2B (0.9.x): `LTXVideoTransformer3DModel` on `AutoencoderKLLTXVideo` latents (8x time,
    32x space, normalised per channel by the VAE's `latents_mean` / `latents_std`), T5 embeddings of
    at most 128 tokens, flow matching with σ shifted by the latent sequence length.

    Everything around the transformer is `LTXPipeline`'s own code: latents packed into tokens
    `b (f h w) c` (`_pack_latents` / `_unpack_latents`), rotary positions scaled by
    (8 / frame_rate, 32, 32), the latent normalisation, the prompt's T5 attention mask. The mask
    travels inside the protocol's `cond`: `encode_prompt` zeroes the padding positions (the T5
    encoder itself sees them, as in the pipeline) and `_denoise` masks the all-zero rows.
    """

    family = "ltx"
    denoiser = "transformer"
    denoiser_class = LTXVideoTransformer3DModel
    components = {
        "vae": AutoencoderKLLTXVideo,
        "text_encoder": T5EncoderModel,
        "tokenizer": AutoTokenizer,
        "scheduler": FlowMatchEulerDiscreteScheduler,
    }
    pipeline = "LTXPipeline"
    comfy_format = "ltx"
    sampler_class = "FlowMatchEulerDiscreteScheduler"
    lora_targets = (*ATTENTION_PROJECTIONS, *FEED_FORWARD)
    objective = "flow_shifted_logit_normal"
    samplers = DYNAMIC_FLOW_SAMPLERS
    max_text_tokens = 128  # LTXPipeline's max_sequence_length
    frame_rate = 25  # LTXPipeline's default frame_rate: the time scale of the rotary positions

    def _denoise(self, x_t, t, cond):
        from diffusers import LTXPipeline  # imported on use: pipelines pull in image processors

        f, h, w = x_t.shape[2:]
        p, pt = self.denoiser_config.patch_size, self.denoiser_config.patch_size_t
        rope_scale = (self.temporal_factor / self.frame_rate, self.vae_factor, self.vae_factor)
        out = self.unet(
            hidden_states=LTXPipeline._pack_latents(x_t, p, pt),
            encoder_hidden_states=cond,
            timestep=t,
            encoder_attention_mask=cond.ne(0).any(dim=-1),  # b l: the prompt's tokens
            num_frames=f // pt,
            height=h // p,
            width=w // p,
            rope_interpolation_scale=rope_scale,
        ).sample
        return LTXPipeline._unpack_latents(out, f // pt, h // p, w // p, p, pt)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """T5 last hidden state `b l d` as `LTXPipeline` encodes it (no mask in the encoder), zero past each
        prompt's tokens (the transformer's attention mask), in the denoiser's dtype."""
        tokens = self.tokenize(prompts)
        hidden = self.text_encoder(tokens.input_ids).last_hidden_state
        return zero_padding(hidden, tokens.attention_mask).to(self.device, self.unet.dtype)

    @property
    def vae_factor(self) -> int:
        return self.vae.spatial_compression_ratio

    @property
    def temporal_factor(self) -> int:
        return self.vae.temporal_compression_ratio

    @property
    def size_multiple(self) -> int:
        return self.vae_factor * self.denoiser_config.patch_size

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Pixels `b c F h w` -> latents `b c f h w` normalised as `LTXPipeline._normalize_latents`: (z − mean) s / std."""
        from diffusers import LTXPipeline

        vae = self.vae
        return LTXPipeline._normalize_latents(
            clip_posterior_mode(vae, pixels), vae.latents_mean, vae.latents_std, vae.config.scaling_factor
        )

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """De-normalised latents through the VAE, as `LTXPipeline` decodes at its default decode_timestep 0
        (a timestep-conditioned VAE, LTX-Video 0.9.1+, gets t = 0 and no decode noise)."""
        from diffusers import LTXPipeline

        vae = self.vae
        z = LTXPipeline._denormalize_latents(latents, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
        t = torch.zeros(1, device=z.device, dtype=vae.dtype) if vae.config.timestep_conditioning else None
        return per_clip(lambda clip: vae.decode(clip.to(vae.dtype), t).sample, z).float().clamp(-1, 1)

    @classmethod
    def build_tiny(cls, cfg: ModelConfig) -> dict:
        return tiny_ltx(cfg)


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
    owns = {
        "model.stacked_frames": "the frames its tiny model folds into channels",
        "model.stacked_coords": "coordinate channels in its tiny model's input",
    }
    pixel_space = True
    fixed_frames = True
    denoiser_class = UNet2DConditionModel
    pipeline = "StableDiffusionPipeline"  # its LoRA format: a 2-D UNet's
    tiny_options = {
        "words": ("a", "moving", *COLORS, *SHAPES, *DIRECTIONS),
        "max_tokens": 8,
        "text_layers": 0,
        "beta_schedule": "squaredcos_cap_v2",
        "timestep_spacing": "trailing",
        "clip_sample": True,
    }

    def _denoise(self, x_t, t, cond):
        b, c, f, h, w = x_t.shape
        unet = self.unet.config
        if c * f != unet.out_channels:
            raise ValueError(
                f"the stacked model takes {unet.out_channels // c} frames of {c} channels, "
                f"got {f} frames: set data.frames to {unet.out_channels // c}"
            )
        x = rearrange(x_t, "b c f h w -> b (f c) h w")
        if unet.in_channels > unet.out_channels:  # model.stacked_coords
            x = torch.cat([x, coordinates(b, h, w, x)], dim=1)
        out = self.unet(x, t, encoder_hidden_states=cond).sample
        return rearrange(out, "b (f c) h w -> b c f h w", f=f)

    @classmethod
    def check_config(cls, config: Config) -> None:
        """A tiny model's frame count is `model.stacked_frames`: every clip must have it; a loaded model fixes its own
        frames and coordinates."""
        m, data = config.model, config.data
        if m.pretrained is not None:
            if m.stacked_coords:
                raise ConfigError(
                    "model.stacked_coords=true is not allowed with model.pretrained: the loaded UNet has coordinate "
                    "channels when its in_channels exceed its out_channels by 2"
                )
            return  # the loaded UNet's channels fix the frames (checked at its first forward)
        if data.frames != m.stacked_frames:
            raise ConfigError(
                f"data.frames={data.frames} is not allowed: the stacked family's model.stacked_frames "
                f"({m.stacked_frames})"
            )
        if isinstance(data.buckets, tuple) and {b[0] for b in data.buckets} != {m.stacked_frames}:
            raise ConfigError(
                f"data.buckets={[list(b) for b in data.buckets]} is not allowed: frame counts all the "
                f"stacked family's model.stacked_frames ({m.stacked_frames})"
            )

    @classmethod
    def build_tiny_unet(cls, in_channels, cross_attention_dim, cfg=None):
        cfg = cfg or ModelConfig()
        channels = in_channels * cfg.stacked_frames
        kwargs = tiny_unet_kwargs(channels, cross_attention_dim, UNET_WIDTHS[cfg.size], attention_first=False)
        return UNet2DConditionModel(**{**kwargs, "in_channels": channels + 2 * cfg.stacked_coords})


def coordinates(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """`(b, 2, h, w)`: each pixel's x and y, from -1 (left, top) to 1 (right, bottom)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return repeat(torch.stack([x, y]), "two h w -> b two h w", b=b).to(like)


FAMILIES: dict[str, type[VideoDiffusionModel]] = {
    c.family: c for c in (AnimateDiff, ModelScope, StableDiffusion, Stacked, Wan, Wan22, CogVideoX, LTXVideo)
}
