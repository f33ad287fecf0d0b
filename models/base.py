"""The model-adapter protocol every family implements, on latents laid out `b c f h w`.

A `VideoDiffusionModel` bundles a denoiser (`unet`: a UNet or a diffusion transformer), an optional
VAE, a text encoder with its tokenizer and the training noise scheduler. A family declares the
classes of its diffusers layout (`denoiser`, `denoiser_class`, `components`) and how its denoiser is
called (`_denoise`); prompt encoding, the VAE, save/load are shared here and overridden only where a
family's pipeline does it differently, so the trainer and the sampler never look at the family.

An image model is the case f = 1 of the same code; a VAE that also compresses time (Wan, CogVideoX,
LTX: `temporal_factor` k) maps F = k n + 1 pixel frames to n + 1 latent frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import diffusers
import torch
from diffusers import AutoencoderKL, DDPMScheduler
from einops import rearrange
from peft import LoraConfig
from transformers import CLIPTextModel, CLIPTokenizer

from models.loading import load_components, with_schedule
from models.samplers import DDPM_SAMPLERS
from videosspo.config import Config, ConfigError, ModelConfig

log = logging.getLogger("videosspo.models")

MODEL_FILE = "videosspo_model.json"  # marks a directory saved by `save_pretrained`
ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


class VideoDiffusionModel:
    """One text-to-video diffusion model behind the protocol the trainer and sampler use.

    predict(x_t, t, cond) -> model output     x_t: b c f h w, t: [b], cond: b l d
    encode_prompt(prompts) -> cond            b l d
    encode_video(pixels) -> latents           pixels b c f h w in [-1, 1]
    decode(latents) -> pixels                 b c f h w in [-1, 1]
    """

    family: ClassVar[str]
    # The config keys only this family reads, each with what it means to it: another family refuses them set
    # (`models.check_config`). Its other rules on a config: `check_config`.
    owns: ClassVar[dict[str, str]] = {}
    pixel_space: ClassVar[bool] = False  # its denoiser also runs on pixels, with no VAE (model.vae: none)
    image_model: ClassVar[bool] = False  # frames are independent images: its clips are one frame (f = 1)
    fixed_frames: ClassVar[bool] = False  # the denoiser's weights fix the frame count (frames in its channels)
    tiny_options: ClassVar[dict] = {}  # the family's keyword arguments to `models.tiny.tiny_components`
    # The diffusers layout: the denoiser's subfolder and class, the other components' classes.
    denoiser: ClassVar[str] = "unet"
    denoiser_class: ClassVar[type]
    components: ClassVar[dict[str, type]] = {
        "vae": AutoencoderKL,
        "text_encoder": CLIPTextModel,
        "tokenizer": CLIPTokenizer,
        "scheduler": DDPMScheduler,
    }
    pipeline: ClassVar[str]  # name of the family's diffusers pipeline (its LoRA format, its hub layout)
    lora_targets: ClassVar[tuple[str, ...]] = ATTENTION_PROJECTIONS  # module-name suffixes LoRA adapts
    # The noise schedule the family was trained and is sampled with: scheduler config values over
    # the folder's `scheduler/` ({}: the folder's as shipped). `model.schedule` overrides them.
    schedule: ClassVar[dict] = {}
    # The latent samplers that apply, by name (`models.samplers`): each builds from the training scheduler's config.
    samplers: ClassVar[dict[str, Callable]] = DDPM_SAMPLERS
    # The diffusers scheduler class it samples with (None: the class of the folder's `scheduler/`).
    sampler_class: ClassVar[str | None] = None
    # Exports: the pipeline's other (empty) components; the LoRA file format (`models.export.LORA_FORMATS`).
    pipeline_extras: ClassVar[dict] = {}
    lora_format: ClassVar[str] = "diffusers"
    comfy_format: ClassVar[str | None] = None  # also written as `lora_comfyui.safetensors` (`models.lora_formats`)
    # The axis order the family's pipeline draws its initial noise in (`prepare_latents`), so that a seed gives
    # the pipeline's noise: `randn` of one layout, rearranged, is not `randn` of the other.
    noise_layout: ClassVar[str] = "c f h w"
    max_text_tokens: ClassVar[int | None] = None  # the pipeline's `max_sequence_length` (None: the tokenizer's maximum)
    # True where a training step may leave trainable parameters without a gradient (DDP must then look for them).
    unused_parameters: ClassVar[bool] = False
    block_swap = None  # the denoiser's `models.offload.BlockSwap` once `enable_low_memory` swaps blocks
    checkpoint_offload = None  # `models.offload.CheckpointOffload` with `model.offload_checkpoints`
    compute_device = None  # where `to` put the denoiser (None: never moved; the text encoder's device)

    def __init__(
        self,
        unet,
        vae,
        text_encoder,
        tokenizer,
        scheduler,
        vae_chunk_frames: int = 16,
        inference_scheduler: str = "DDIMScheduler",
        sources: dict[str, Path] | None = None,
    ):
        self.unet = unet
        self.inference_scheduler = inference_scheduler  # a diffusers class name: what exports sample with
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.scheduler = scheduler  # the training noise schedule; samplers derive from its config
        self.vae_chunk_frames = vae_chunk_frames
        # The frozen parts as loaded, which exports write bit for bit whatever `to(dtype=...)` did to them for
        # training: their folders (`sources`, a pipeline folder's `vae/`, `text_encoder/`: copied), else their
        # state, kept on CPU before the first cast (`_as_loaded`; tiny models).
        self.sources = dict(sources or {})
        self.saved_dtypes = {name: module.dtype for name, module in self._frozen().items()}
        self._as_loaded: dict[str, dict[str, torch.Tensor]] = {}
        self.text_encoder.requires_grad_(False).eval()  # frozen and deterministic (T5's dropout off)
        if self.vae is not None:
            self.vae.requires_grad_(False).eval()

    # -- the protocol ----------------------------------------------------------------------------

    def predict(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """The denoiser's output (epsilon or v, per `prediction_type`) for noisy latents `b c f h w`."""
        assert x_t.ndim == 5, f"latents must be b c f h w, got shape {tuple(x_t.shape)}"
        with self.checkpoint_offload() if self.checkpoint_offload else contextlib.nullcontext():
            return self._denoise(x_t, t, cond)

    def _denoise(self, x_t, t, cond):
        raise NotImplementedError

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """The text encoder's last hidden state `b l d` (as Stable Diffusion uses), l = `text_length`, in the
        denoiser's dtype, on its device (the encoder may run on the CPU: `to(keep_on_cpu=...)`)."""
        return self.text_encoder(self.tokenize(prompts).input_ids)[0].to(self.device, self.unet.dtype)

    def tokenize(self, prompts: list[str]):
        """Token ids and attention mask `b l` (1 on the prompt's tokens), padded or truncated to `text_length`."""
        return self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.text_length,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        ).to(self.text_encoder.device)

    @property
    def text_length(self) -> int:
        """Tokens per prompt, padded or truncated to it: the tokenizer's own maximum (CLIP: 77), capped at
        the pipeline's `max_sequence_length` where the family sets `max_text_tokens`."""
        return min(self.tokenizer.model_max_length, self.max_text_tokens or self.tokenizer.model_max_length)

    @property
    def objective(self) -> str:
        """The training objective's name in `videosspo.objectives.OBJECTIVES` (DDPM families: the prediction type)."""
        return self.scheduler.config.prediction_type

    @property
    def sigma_range(self) -> tuple[float, float]:
        """The noise levels σ = t / T that training draws, [lo, hi): all of them (a two-expert model may train one)."""
        return (0.0, 1.0)

    @property
    def boundary_timestep(self) -> float | None:
        """The timestep where sampling switches to the second denoiser and `guidance_2` (None: one denoiser)."""
        return None

    @property
    def lora_scope(self) -> list[str] | str:
        """peft's `target_modules` for the policy's LoRA: the family's `lora_targets` suffixes, anywhere."""
        return list(self.lora_targets)

    def pipeline_components(self, unet) -> dict:
        """The pipeline's denoiser argument(s) for denoiser `unet`, for a merged export."""
        return {self.denoiser: unet}

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels if self.vae is not None else 3

    @property
    def denoiser_config(self):
        """The denoiser's diffusers config, through a DDP wrapper too."""
        return getattr(self.unet, "module", self.unet).config

    @property
    def vae_factor(self) -> int:
        """Spatial compression of the VAE (1 in pixel space)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1) if self.vae is not None else 1

    @property
    def temporal_factor(self) -> int:
        """Temporal compression of the VAE: 1 for per-frame VAEs, k for F = k n + 1 -> n + 1 latent frames."""
        return 1

    @property
    def frame_step(self) -> int:
        """Clips have frame_step k + 1 frames (the temporal factor, or a multiple where the VAE needs it)."""
        return self.temporal_factor

    @property
    def size_multiple(self) -> int:
        """Pixel height and width must be multiples of this (the VAE factor, times a DiT's patch size)."""
        return self.vae_factor

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """`(c, f, h, w)` of the latents for clips of this size; f = 1 + (frames − 1) / temporal_factor.

        The rules come from the loaded VAE's and denoiser's configs (the real models' factors, not constants);
        a size they refuse is a `ConfigError` (one line, exit 2).
        """
        k, m, tf = self.vae_factor, self.size_multiple, self.frame_step
        if height % m or width % m:
            raise ConfigError(
                f"data.height/width {height}x{width} must be multiples of {m} for model.family="
                f"{self.family} (VAE factor {k}{', times the patch size' if m != k else ''})"
            )
        if (frames - 1) % tf:
            raise ConfigError(
                f"data.frames={frames} is invalid for model.family={self.family}: its VAE compresses "
                f"time {self.temporal_factor}x, so frames must be {tf}k+1 "
                f"(e.g. {tf + 1}, {4 * tf + 1}, {8 * tf + 1})"
            )
        return (self.latent_channels, 1 + (frames - 1) // self.temporal_factor, height // k, width // k)

    @torch.no_grad()
    def encode_video(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels `b c f h w` in [-1, 1] -> scaled latents, `vae_chunk_frames` frames per VAE call.

        Takes the posterior mean (the mode): deterministic, so a cached latent equals a fresh one.
        """
        if self.vae is None:
            return pixels
        b = pixels.shape[0]
        frames = rearrange(pixels, "b c f h w -> (b f) c h w").to(self.vae.dtype)
        latents = torch.cat(
            [self.vae.encode(chunk).latent_dist.mode() for chunk in frames.split(self.vae_chunk_frames)]
        )
        latents = latents * self.vae.config.scaling_factor
        return rearrange(latents, "(b f) c h w -> b c f h w", b=b)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents `b c f h w` -> pixels in [-1, 1], chunked over frames like `encode_video`."""
        if self.vae is None:
            return latents.clamp(-1, 1)
        b = latents.shape[0]
        z = rearrange(latents, "b c f h w -> (b f) c h w") / self.vae.config.scaling_factor
        frames = torch.cat(
            [self.vae.decode(chunk.to(self.vae.dtype)).sample for chunk in z.split(self.vae_chunk_frames)]
        )
        return rearrange(frames, "(b f) c h w -> b c f h w", b=b).float().clamp(-1, 1)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Where latents, noise and text embeddings live: the denoiser's device (`to`)."""
        return self.compute_device or self.text_encoder.device

    def to(self, device=None, dtype=None, keep_on_cpu: tuple[str, ...] = ()) -> VideoDiffusionModel:
        """Move every module but those named in `keep_on_cpu` ("text_encoder", "vae": a run that never needs them on
        the accelerator, `encoders_on_cpu`); `dtype` applies to the frozen parts (trainable weights stay fp32)."""
        if device is not None:
            self.compute_device = torch.device(device)
        for name, module in (("unet", self.unet), ("vae", self.vae), ("text_encoder", self.text_encoder)):
            if module is not None:
                module.to("cpu" if name in keep_on_cpu else device)
        for name, module in self._frozen().items():
            if dtype is not None and dtype != module.dtype:
                if name not in self.sources and name not in self._as_loaded:
                    self._as_loaded[name] = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
                module.to(dtype=dtype)
        return self

    def _frozen(self) -> dict[str, torch.nn.Module]:
        return {
            name: module
            for name, module in (("vae", self.vae), ("text_encoder", self.text_encoder))
            if module is not None
        }

    def enable_gradient_checkpointing(self) -> None:
        """Recompute the denoiser's activations in the backward pass instead of storing them."""
        self.unet.enable_gradient_checkpointing()

    def enable_low_memory(self, cfg: ModelConfig, device, distributed: str = "NO") -> None:
        """`model.fp8_base` (models/fp8.py), `model.blocks_to_swap` and `model.offload_checkpoints` (models/offload.py)
        on the denoiser: after LoRA and checkpointing are added and before the model moves to `device`. `distributed`:
        accelerate's DistributedType name; sharding (FSDP, DeepSpeed) owns where the weights live and what dtype
        they have, so fp8 and block swap are refused under it."""
        from models.fp8 import enable_fp8_storage
        from models.offload import CheckpointOffload, enable_block_swap

        for on, key in ((cfg.fp8_base, "model.fp8_base"), (cfg.blocks_to_swap, "model.blocks_to_swap")):
            if on and distributed in ("FSDP", "DEEPSPEED"):
                raise ConfigError(
                    f"{key}={getattr(cfg, key[6:])} cannot run under {distributed}, which shards the "
                    f"weights and sets their dtype itself; unset {key} or launch without {distributed}"
                )
        if cfg.blocks_to_swap and distributed == "MULTI_GPU":
            raise ConfigError(
                f"model.blocks_to_swap={cfg.blocks_to_swap} cannot run under DDP, which needs every "
                "weight on the process's GPU; unset it or launch one process"
            )
        if cfg.fp8_base:
            layers = enable_fp8_storage(self.unet)
            log.info("fp8_base: %d frozen layers of the denoiser stored in float8_e4m3fn", layers)
        if cfg.blocks_to_swap:
            self.block_swap = enable_block_swap(self.unet, cfg.blocks_to_swap, device)
        if cfg.offload_checkpoints:
            self.checkpoint_offload = CheckpointOffload(self.unet)

    def enable_vae_tiling(self) -> None:
        """Encode/decode in overlapping spatial tiles (diffusers' `enable_tiling`): bounded memory at high resolution."""
        if self.vae is not None:
            self.vae.enable_tiling()

    def enable_attention(self, backend: str = "auto") -> str:
        """xformers when asked (or `auto` on CUDA with xformers importable), else torch SDPA."""
        want_xformers = backend == "xformers" or (backend == "auto" and self.unet.device.type == "cuda")
        if want_xformers:
            try:
                import xformers  # noqa: F401

                self.unet.enable_xformers_memory_efficient_attention()
                return "xformers"
            except Exception as e:  # absent, or built for another CUDA/torch
                if backend == "xformers":
                    raise RuntimeError(f"model.attention=xformers but xformers is unusable: {e}") from e
                log.info("xformers unavailable (%s); using torch SDPA", e)
        return "sdpa"

    def save_pretrained(self, path: str | Path, unet=None) -> None:
        """Write the family's diffusers pipeline folder plus `videosspo_model.json` (a merged export).

        `<family pipeline>.from_pretrained(path)` generates directly (`models.export`); the frozen
        parts are written exactly as loaded (`models.export.frozen_as_loaded`), the scheduler is the
        family's inference scheduler with the training schedule. A pixel-space model (no VAE) has no pipeline: its components
        alone. `unet` overrides the denoiser written (the trainer passes the LoRA-merged one).
        """
        from models.export import frozen_as_loaded, save_pipeline

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        unet = unet or self.unet
        with frozen_as_loaded(self):
            if self.vae is not None:
                save_pipeline(self, unet, path)
            else:
                unet.save_pretrained(path / self.denoiser, safe_serialization=True)
                self.text_encoder.save_pretrained(path / "text_encoder", safe_serialization=True)
                self.tokenizer.save_pretrained(path / "tokenizer")
                self.inference_scheduler_of().save_pretrained(path / "scheduler")
        info = {"family": self.family, "vae": self.vae is not None, "vae_chunk_frames": self.vae_chunk_frames}
        (path / MODEL_FILE).write_text(json.dumps(info, indent=2))

    def inference_scheduler_of(self):
        """The scheduler a pipeline samples with: `inference_scheduler`'s class on the training schedule."""
        return getattr(diffusers, self.inference_scheduler).from_config(self.scheduler.config)

    @classmethod
    def save_adapter(cls, path: Path, adapter: dict, lora: LoraConfig) -> None:
        """The LoRA `adapter` (peft state dict of the denoiser) in the format of the family's loader, and in the
        ComfyUI / kohya format where the family has one (`comfy_format`)."""
        from models.export import LORA_FORMATS
        from models.lora_formats import save_comfy

        LORA_FORMATS[cls.lora_format].save(path, adapter, lora, cls)
        if cls.comfy_format:
            save_comfy(path, adapter, lora, cls.comfy_format)

    @classmethod
    def load_adapter(cls, path: Path) -> dict:
        from models.export import LORA_FORMATS

        return LORA_FORMATS[cls.lora_format].load(path, cls)

    @classmethod
    def check_config(cls, config: Config) -> None:
        """The family's own rules on a whole `videosspo.config.Config` (a `ConfigError` naming the key and the fix);
        run by `models.check_config` when the config is loaded, before anything is built."""

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def build_tiny(cls, cfg: ModelConfig) -> dict:
        """The tiny random-weight components (`unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler`)."""
        from models.tiny import tiny_components

        parts = tiny_components(cfg, **cls.tiny_options)
        parts["unet"] = cls.build_tiny_unet(parts.pop("in_channels"), parts["text_encoder"].config.hidden_size, cfg)
        return parts

    @classmethod
    def build_tiny_unet(cls, in_channels: int, cross_attention_dim: int, cfg: ModelConfig | None = None):
        raise NotImplementedError

    @classmethod
    def load_unet(cls, cfg: ModelConfig):
        return cls.denoiser_class.from_pretrained(cfg.pretrained, subfolder=cls.denoiser)

    @classmethod
    def training_scheduler(cls, config: dict):
        """The training scheduler from the layout's `scheduler/` config."""
        return cls.components["scheduler"].from_config(config)

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> VideoDiffusionModel:
        """Build from `cfg.pretrained` (local dir or hub id), or the tiny random model when None."""
        if cfg.pretrained is None:
            parts = cls.build_tiny(cfg)
        else:
            parts = load_components(cfg, cls.components, cls.training_scheduler)
            parts["unet"] = cls.load_unet(cfg)
        # A videosspo export already holds the schedule it was trained with; a base folder gets the family's.
        exported = cfg.pretrained is not None and (Path(cfg.pretrained) / MODEL_FILE).is_file()
        parts["scheduler"] = cls.training_scheduler(
            with_schedule(parts["scheduler"].config, {} if exported else cls.schedule, cfg.schedule)
        )
        parts["inference_scheduler"] = cls.sampler_class or parts.get("inference_scheduler", "DDIMScheduler")
        model = cls(**parts, vae_chunk_frames=cfg.vae_chunk_frames)
        if cfg.vae_tiling:
            model.enable_vae_tiling()
        return model


def zero_padding(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Text embeddings `b l d` with the positions past each prompt's tokens (mask `b l` = 0) set to zero."""
    return hidden * rearrange(mask, "b l -> b l 1").to(hidden.dtype)


def per_clip(fn, x: torch.Tensor) -> torch.Tensor:
    """`fn` on one clip (batch entry) at a time, concatenated: how video VAEs that compress time
    bound their memory (they are causal in time and cache features chunk by chunk inside a clip)."""
    return torch.cat([fn(clip) for clip in x.split(1)])


def clip_posterior_mode(vae, pixels: torch.Tensor) -> torch.Tensor:
    """A video VAE's posterior mean (deterministic) for pixels `b c F h w`, one clip per VAE call."""
    return per_clip(lambda clip: vae.encode(clip.to(vae.dtype)).latent_dist.mode(), pixels)
