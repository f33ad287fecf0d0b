"""Typed configuration: one frozen dataclass per concern, loaded from YAML, validated on load.

Every default lives here, next to the field's documentation. A YAML file or a CLI override
(`--optim.lr 1e-5`) may only name fields declared below: an unknown key, a wrong type or an
impossible value raises `ConfigError` naming the key, the value and what is allowed.

Derived quantity worth spelling out:
    effective (global) batch = optim.batch_size x processes x optim.grad_accum
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from videosspo.errors import UserError


# The latent samplers of `videosspo.sampling.SCHEDULERS` (which apply depends on the training scheduler).
Sampler = Literal["ddim", "ddpm", "euler", "dpm++", "unipc", "dpm"]


class ConfigError(UserError, ValueError):
    """A configuration value is unknown, of the wrong type, or impossible; or the YAML does not parse."""


def _check(cond: bool, key: str, value: Any, allowed: str) -> None:
    if not cond:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


PIXEL_SPACE_FAMILIES = ("animatediff", "modelscope", "sd", "stacked")  # UNets that run without a VAE too (vae: none)
# Scheduler config keys a run may set (`model.schedule`); diffusers' names and meanings.
SCHEDULE_KEYS = ("beta_schedule", "beta_start", "beta_end", "clip_sample", "timestep_spacing", "steps_offset",
                 "set_alpha_to_one", "rescale_betas_zero_snr")


@dataclass(frozen=True)
class ModelConfig:
    """Which diffusion model to train, and how to build it."""

    # The model family (its adapter in models/). `animatediff`, `modelscope`: video UNets; `sd`: Stable Diffusion
    # 1.5 (one-frame clips); `stacked`: the synthetic world's 2-D UNet with frames in its channels.
    # `wan`: a flow-matching DiT (WanTransformer3DModel) on a VAE that compresses time 4x, so
    # data.frames must be 4k+1; its velocity error replaces the UNets' epsilon error in every loss.
    # `cogvideox`: a v-prediction DiT (CogVideoXTransformer3DModel), also 4k+1 frames, sampled with ddim.
    # `ltx`: LTX-Video, a flow-matching DiT (LTXVideoTransformer3DModel) whose VAE compresses time 8x and
    # space 32x: data.frames 8k+1, height and width multiples of 32; sampled with euler.
    # `wan22`: Wan 2.2 A14B (Wan-AI/Wan2.2-T2V-A14B-Diffusers), Wan with two transformer experts: `transformer`
    # for t >= boundary_ratio x 1000 (875), `transformer_2` below; LoRA only (see `experts`).
    family: Literal["animatediff", "modelscope", "sd", "stacked", "wan", "wan22", "cogvideox", "ltx"] = "animatediff"
    # A local directory or hub id: a diffusers layout (unet/ or transformer/, vae/, text_encoder/,
    # tokenizer/, scheduler/), e.g. Stable Diffusion 1.5 for `animatediff`/`sd`,
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers for `wan`, THUDM/CogVideoX-2b for `cogvideox`, Lightricks/LTX-Video
    # for `ltx`, or a videosspo checkpoint.
    # None builds the family's tiny random-weight model from configs (offline tests, the demo).
    pretrained: str | None = None
    # AnimateDiff only: a MotionAdapter directory or hub id, combined with `pretrained`'s 2-D UNet.
    motion_adapter: str | None = None
    # `none`: the model works in pixel space (latents are the [-1, 1] pixels); `auto`: the VAE of
    # `pretrained` (or a tiny AutoencoderKL for a tiny model).
    vae: Literal["auto", "none"] = "auto"
    # Frames per VAE call: encode/decode run per frame in chunks to bound memory for long clips.
    # Video VAEs that compress time (wan) run one clip per call (their causal cache bounds memory).
    vae_chunk_frames: int = 16
    # Encode/decode in overlapping spatial tiles (diffusers' enable_tiling): less memory at high resolution.
    vae_tiling: bool = False
    # Prediction target of a tiny UNet's scheduler (pretrained models and DiTs keep their own objective).
    prediction_type: Literal["epsilon", "v_prediction"] = "epsilon"
    # LoRA rank on the denoiser's attention projections (DiTs: and feed-forward layers,
    # `lora_targets` of the family); 0 trains all denoiser weights.
    lora_rank: int = 0
    lora_alpha: float | None = None  # None: alpha = rank
    # "auto": xformers when importable on CUDA, else torch SDPA; "sdpa" forces torch.
    attention: Literal["auto", "sdpa", "xformers"] = "auto"
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30% slower
    # Store the frozen denoiser weights in float8 e4m3 with a scale per output channel, up-cast per layer for
    # compute (models/fp8.py): half of bf16's bytes. LoRA only (the adapters and their optimizer state keep the
    # training dtype; the reference adapter and the loser sampler share the float8 base); exports are never float8.
    fp8_base: bool = False
    # Transformer blocks (UNets: down/mid/up blocks) kept in CPU memory (pinned on CUDA) and moved to the
    # accelerator just before their forward and backward, back after (models/offload.py): the last N blocks.
    # LoRA only; one process per model (FSDP/DeepSpeed shard the weights themselves, DDP wants every weight on its
    # GPU). Saves training memory with gradient_checkpointing (docs/low-memory.md). 0: every block stays resident.
    blocks_to_swap: int = 0
    # Keep what the checkpointed blocks save for the backward pass (their inputs) in CPU memory (pinned on CUDA),
    # copied back for the recomputation (models/offload.py): a DiT step's activations become about one block's.
    # Needs gradient_checkpointing.
    offload_checkpoints: bool = False
    # `stacked` family, tiny model only: frames folded into the 2-D UNet's channels (= data.frames).
    stacked_frames: int = 8
    # `wan22` only: which expert trains. `high` (transformer) or `low` (transformer_2): LoRA in that expert alone
    # and σ drawn from the family's density truncated to its range ([0.875, 1) or [0, 0.875)), as Wan 2.2 LoRAs
    # are trained one expert per run; `both`: LoRA in both, each sample trains the expert of its t.
    experts: Literal["both", "high", "low"] = "both"
    # Noise-schedule values over the family's own (AnimateDiff declares linear betas 0.00085-0.012,
    # linspace spacing; SD 1.5 and ModelScope keep their folder's scheduler/), e.g.
    # {beta_schedule: scaled_linear}. They set the training noise, the loser and sample samplers
    # and the exported scheduler; the resolved schedule is logged at start. Keys: SCHEDULE_KEYS.
    schedule: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check(self.motion_adapter is None or self.family == "animatediff", "model.motion_adapter",
               self.motion_adapter, "only the animatediff family takes a motion adapter")
        for key in self.schedule:
            _check(key in SCHEDULE_KEYS, "model.schedule", key, f"keys among {', '.join(SCHEDULE_KEYS)}")
        _check(self.vae_chunk_frames >= 1, "model.vae_chunk_frames", self.vae_chunk_frames, ">= 1")
        _check(self.vae == "auto" or self.family in PIXEL_SPACE_FAMILIES, "model.vae", self.vae,
               f"'auto' for model.family={self.family} (pixel space only for {', '.join(PIXEL_SPACE_FAMILIES)})")
        _check(self.lora_rank >= 0, "model.lora_rank", self.lora_rank, ">= 0 (0 = full fine-tuning)")
        _check(not self.fp8_base or self.lora_rank > 0, "model.fp8_base", self.fp8_base,
               "false with full fine-tuning (model.lora_rank: 0 trains every weight, none is frozen to store in float8)")
        _check(self.blocks_to_swap >= 0, "model.blocks_to_swap", self.blocks_to_swap, ">= 0 (0: no block swap)")
        _check(not self.blocks_to_swap or self.lora_rank > 0, "model.blocks_to_swap", self.blocks_to_swap,
               "0 with full fine-tuning (model.lora_rank: 0): swapped blocks hold frozen weights only")
        _check(not self.offload_checkpoints or self.gradient_checkpointing, "model.offload_checkpoints",
               self.offload_checkpoints, "false without model.gradient_checkpointing: true (it offloads what the "
               "checkpointed blocks keep)")
        _check(self.stacked_frames >= 1, "model.stacked_frames", self.stacked_frames, ">= 1")
        _check(self.experts == "both" or self.family == "wan22", "model.experts", self.experts,
               "'both' for a one-denoiser family (only model.family: wan22 has two experts)")


@dataclass(frozen=True)
class DataConfig:
    """Where the winning videos come from and how clips are cut from them."""

    # Metadata file (JSONL or CSV with `video`, `caption`, optional `loser_video`) or its folder; or
    # WebDataset tar shards as video2dataset writes them (KEY.mp4 + KEY.txt / KEY.json), read shard by
    # shard without unpacking: a folder of *.tar, one .tar, or a brace pattern `shards/{00000..00127}.tar`
    # (videosspo/shards.py: order, resume, at least one shard per process).
    path: str = "data/synth"
    # When `path` is missing, write a synthetic-world dataset of this many clips there first (the tiny configs
    # set 32). Applies only to a data.path the config file names: one given on the command line must exist.
    synth_if_missing: int = 0
    world: str = "v1"        # the alignment world's objects when `prepare` writes it: a name of videosspo.synth.WORLDS
    frames: int = 8          # frames per clip (1 = image training)
    stride: int = 1          # take every `stride`-th frame
    height: int = 32         # clip height in pixels (frames are resized to it)
    width: int = 32          # clip width in pixels
    num_workers: int = 0     # DataLoader worker processes decoding clips (0: in the training process)
    # A folder written by `videosspo data cache-latents` (every clip encoded once by the VAE, every caption
    # once by the text encoder). When set, training reads the cached winner (and loser) latents and caption
    # embeddings and runs neither encoder per step; the cache must match data.path, data.height/width, the
    # model's VAE and text encoder, and for VAEs that compress time data.frames/stride (checked at start).
    latent_cache: str | None = None
    # Clips that exist but do not decode are skipped (each file logged once). Past this fraction of the rows
    # unreadable the run stops, naming the worst files; it also stops when no clip at all can be read.
    max_bad_fraction: float = 0.05
    # Fraction of training captions replaced by "" (drawn per sample from (seed, step, position)), so
    # the unconditional prediction that classifier-free guidance uses keeps learning (Diffusion-DPO: 0.2).
    caption_dropout: float = 0.0
    # Buckets (videosspo/buckets.py, docs/buckets.md): clips of several frame counts and aspect ratios in one
    # run. A list of [frames, height, width] shapes (each clip takes the nearest aspect ratio among those whose
    # frames it holds), or `auto` (data.frames at about data.height x data.width pixels, one size per aspect
    # ratio in the data). Every global batch is one bucket; null: every clip at data.frames x height x width.
    buckets: tuple[tuple[int, int, int], ...] | Literal["auto"] | None = None

    def __post_init__(self):
        _check(self.frames >= 1, "data.frames", self.frames, ">= 1")
        _check(self.stride >= 1, "data.stride", self.stride, ">= 1")
        _check(self.height >= 8 and self.width >= 8, "data.height/width", (self.height, self.width), ">= 8")
        _check(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        _check(self.synth_if_missing >= 0, "data.synth_if_missing", self.synth_if_missing, ">= 0")
        _check(0 <= self.max_bad_fraction <= 1, "data.max_bad_fraction", self.max_bad_fraction, "in [0, 1]")
        _check(0 <= self.caption_dropout < 1, "data.caption_dropout", self.caption_dropout, "in [0, 1)")
        if isinstance(self.buckets, tuple):
            _check(len(self.buckets) > 0 and all(f >= 1 and min(h, w) >= 8 for f, h, w in self.buckets), "data.buckets",
                   [list(b) for b in self.buckets], "a list of [frames, height, width] with frames >= 1, sides >= 8, or auto")
            _check(len(set(self.buckets)) == len(self.buckets), "data.buckets", [list(b) for b in self.buckets],
                   "a list of distinct shapes")
        _check(self.buckets is None or self.latent_cache is None, "data.buckets", self.buckets,
               "null with data.latent_cache (the cache holds one clip shape); unset one of them")


@dataclass(frozen=True)
class MethodConfig:
    """The objective: an entry of `videosspo.methods.METHODS` and the hyperparameters its loss reads.

    `sft` (e_w), `dpo` (Diffusion-DPO on paired data), `sspo` (the paper's formulation) and the sspo
    variants `sspo-ipo`, `sspo-dpop`, `sspo-lw`, `sspo-ema` (each reads one field below; docs/alignment.md).
    """

    # an entry of videosspo.methods.METHODS (tests/test_methods.py checks the two lists agree)
    name: Literal["sft", "dpo", "sspo", "sspo-ipo", "sspo-dpop", "sspo-lw", "sspo-ema"] = "sspo"
    beta: float = 2000.0     # beta of -log sigmoid(-(beta/2)(dw - dl)); absorbs T * omega(lambda_t)
    # SSR switched branch when e_ref^w < e_theta^w: sft | sign (v1 flipper) | drop | off (always DPO).
    ssr_mode: Literal["sft", "sign", "drop", "off"] = "sft"
    # Weight w of the switched SFT branch (ssr_mode sft: L = w e_theta^w). At zero margin the DPO
    # branch's gradient in e_theta^w is beta/4 (500 at beta 2000) against w: w = beta/4 makes them comparable.
    sft_weight: float = 1.0
    # Always-on SFT anchor (our choice, not in SSPO_METHOD): dpo and sspo add lambda e_theta^w to every
    # sample's loss (L = L_SSPO + lambda e_theta^w), so the winners' error cannot drift up while the
    # preference term chases the losers. 0: the paper's loss. Comparable to the DPO branch at beta/4.
    sft_anchor: float = 0.0
    # sspo-ipo: the target tau of the bounded margin (z - tau)^2, z = (beta/2)(dl - dw) (z = 1 at a margin of
    # 2/beta); past it the loser's error is pulled back down.
    margin_target: float = 1.0
    # sspo-dpop (with ssr_mode off: any switch takes every sample with dw > 0 away from the penalty): lambda of
    # DPO-Positive's penalty, z = (beta/2)(dl - dw - lambda max(0, dw)): a winner predicted worse than by the
    # reference costs (1 + lambda) times more.
    dpop_lambda: float = 5.0
    # sspo-lw: the loser term's weight gamma, z = (beta/2)(gamma dl - dw).
    loser_weight: float = 0.5
    # sspo-ema: the decay of the moving average of the policy whose snapshots the replay pool holds
    # (no warm-up: it starts at theta_0); 0.95 lags the policy by about 20 steps.
    reference_decay: float = 0.95

    def __post_init__(self):
        _check(self.beta > 0, "method.beta", self.beta, "> 0")
        _check(self.sft_weight > 0, "method.sft_weight", self.sft_weight, "> 0")
        _check(self.sft_anchor >= 0, "method.sft_anchor", self.sft_anchor, ">= 0 (0 = no anchor)")
        _check(self.margin_target > 0, "method.margin_target", self.margin_target, "> 0")
        _check(self.dpop_lambda >= 0, "method.dpop_lambda", self.dpop_lambda, ">= 0")
        _check(0 < self.loser_weight <= 1, "method.loser_weight", self.loser_weight, "in (0, 1]")
        _check(0 < self.reference_decay < 1, "method.reference_decay", self.reference_decay, "in (0, 1)")


@dataclass(frozen=True)
class ReplayConfig:
    """Random Checkpoint Replay: the pool of policy snapshots the reference is drawn from."""

    interval: int = 30       # optimizer steps between snapshots (paper: 30)
    size: int = 7            # snapshots held, theta_0 included (paper: K = 7)
    strategy: Literal["random", "latest", "initial"] = "random"   # SSPO | SPIN-like | DITTO-like
    evict: Literal["oldest", "random"] = "oldest"                 # theta_0 is never evicted
    cpu_budget_gb: float = 8.0   # per process: full fine-tuning snapshots past this spill to disk
    spill_dir: str | None = None  # default: <train.output_dir>/replay_spill (a rank<i>/ folder per process)
    # A node-local folder (e.g. /dev/shm/videosspo or a local SSD): the node's first process writes each
    # snapshot there once and every process of the node memory-maps it, so a node holds one copy of the
    # pool (in the page cache) instead of one per process; cpu_budget_gb and spill_dir then do not apply.
    # A folder per run is made inside it and removed when the run ends.
    node_dir: str | None = None

    def __post_init__(self):
        _check(self.interval >= 1, "replay.interval", self.interval, ">= 1")
        _check(self.size >= 1, "replay.size", self.size, ">= 1 (1 holds only theta_0)")
        _check(self.cpu_budget_gb > 0, "replay.cpu_budget_gb", self.cpu_budget_gb, "> 0")


@dataclass(frozen=True)
class SampleConfig:
    """The latent sampler, for losers, periodic samples and `videosspo sample`."""

    # DDPM-trained families: ddim, ddpm, euler, dpm++, unipc; flow matching (wan): euler, unipc;
    # cogvideox: ddim; ltx: euler.
    scheduler: Sampler = "ddim"
    steps: int = 20          # sampler steps
    guidance: float = 7.5    # classifier-free guidance scale (<= 1: off)
    # wan22 only: the CFG scale of the low-noise expert's steps (WanPipeline's guidance_scale_2; None: `guidance`).
    # CFG runs when `guidance` > 1, as in WanPipeline.
    guidance_2: float | None = None
    negative_prompt: str = ""  # the prompt guidance steers away from ("" : the unconditional prediction)

    def __post_init__(self):
        _check(self.steps >= 1, "sample.steps", self.steps, ">= 1")
        _check(self.guidance >= 0, "sample.guidance", self.guidance, ">= 0 (<= 1 disables CFG)")
        _check(self.guidance_2 is None or self.guidance_2 >= 0, "sample.guidance_2", self.guidance_2, ">= 0 or null")


@dataclass(frozen=True)
class LoserConfig:
    """How the drawn reference generates losers x0^l (kept in latent space, never decoded).

    Reference UNet passes per loser: steps x (2 with CFG, guidance > 1, else 1) x strength / reuse.
    """

    steps: int = 20          # sampler steps per loser
    guidance: float = 7.5    # classifier-free guidance scale of the losers (<= 1: off, one pass per step)
    guidance_2: float | None = None  # wan22 only: as sample.guidance_2, for the losers
    # ddim | ddpm | euler | dpm++ (DPM-Solver++ 2M) | unipc; the last two are made for 4-10 steps.
    # Flow-matching families (wan): euler | unipc; cogvideox: ddim; ltx: euler.
    scheduler: Sampler = "ddim"
    # The loser sampler's timestep spacing; null: the model schedule's. `trailing` starts N steps at t = T - 1,
    # where a `leading` schedule (SD 1.5, ModelScope) starts them near T - T/N: 852 of 1000 for 6 UniPC steps.
    spacing: Literal["leading", "linspace", "trailing"] | None = None
    # A window of `reuse` optimizer steps trains on one global batch and its losers: they are sampled
    # at the window's first step (by that step's reference) and reused for the next reuse - 1 steps,
    # each step with its own noise and timestep (like DDPO's inner epochs). The data stream advances
    # once per window, so a run of max_steps steps reads max_steps / reuse batches.
    reuse: int = 1
    # `noise`: sample from x_T ~ N(0, I). `winner` (SDEdit): noise the winner to t = strength x T and
    # denoise it with the reference in round(strength x steps) steps: cheaper, and a harder negative.
    init: Literal["noise", "winner"] = "noise"
    strength: float = 1.0    # for init: winner, in (0, 1]
    # Sample step s+1's losers in a background thread while step s trains, on a second copy of the
    # network (+1 UNet of memory). Exact: used only when step s+1's reference is already in the pool
    # (no snapshot is taken after step s), else step s+1 samples them itself. Pays where one step
    # does not fill the machine (CPU threads; on one GPU the two share its stream).
    overlap: bool = False

    def __post_init__(self):
        _check(self.steps >= 1, "loser.steps", self.steps, ">= 1")
        _check(self.guidance >= 0, "loser.guidance", self.guidance, ">= 0")
        _check(self.guidance_2 is None or self.guidance_2 >= 0, "loser.guidance_2", self.guidance_2, ">= 0 or null")
        _check(self.reuse >= 1, "loser.reuse", self.reuse, ">= 1")
        _check(0 < self.strength <= 1, "loser.strength", self.strength, "in (0, 1]")
        _check(self.init == "winner" or self.strength == 1, "loser.strength", self.strength,
               "1 with loser.init: noise (strength only applies to loser.init: winner)")
        _check(self.init == "noise" or self.scheduler != "euler", "loser.scheduler", self.scheduler,
               "ddim, ddpm, dpm++ or unipc with loser.init: winner (euler keeps a sigma-scaled state)")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up and a schedule; per-process batch and accumulation."""

    lr: float = 1e-5         # peak learning rate (after warm-up)
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (beta1, beta2); on the command line: --optim.betas "[0.9, 0.99]"
    schedule: Literal["constant", "linear", "cosine"] = "constant"  # LR after warm-up: constant, or decaying to 0 at train.max_steps
    warmup_steps: int = 0    # steps of linear LR warm-up from 0
    batch_size: int = 1      # per process; global batch = batch_size x processes x grad_accum
    grad_accum: int = 1      # micro-batches accumulated per optimizer step
    max_grad_norm: float = 1.0   # 0 disables clipping
    # Exponential moving average of the trainable weights (videosspo/ema.py; with LoRA, the adapter):
    # ema = d ema + (1 - d) theta after each update, d = min(ema_decay, n / (n + 9)) at update n.
    # Samples during training and each checkpoint's model/ use the average; the replay references and
    # the optimizer train the weights themselves. 0: off.
    ema_decay: float = 0.0

    def __post_init__(self):
        _check(self.lr > 0, "optim.lr", self.lr, "> 0")
        _check(self.batch_size >= 1, "optim.batch_size", self.batch_size, ">= 1")
        _check(self.grad_accum >= 1, "optim.grad_accum", self.grad_accum, ">= 1")
        _check(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, ">= 0")
        _check(self.max_grad_norm >= 0, "optim.max_grad_norm", self.max_grad_norm, ">= 0")
        _check(0 <= self.ema_decay < 1, "optim.ema_decay", self.ema_decay, "in [0, 1) (0 = no EMA; e.g. 0.999)")


@dataclass(frozen=True)
class TrainConfig:
    """The run: length, seed, precision, where outputs go and how often things happen."""

    # The run folder: checkpoints/, samples/, metrics.jsonl, summary.json. Unset in a config file: runs/<file name>.
    output_dir: str = "runs/default"
    max_steps: int = 100     # optimizer steps
    seed: int = 0            # every random draw is a function of (seed, step, sample)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast precision of forward passes (weights stay fp32)
    log_every: int = 1       # steps between metrics.jsonl lines
    checkpoint_every: int = 50   # steps between checkpoints (0: only the final one)
    keep_checkpoints: int = 2    # newest N checkpoints of this run kept (0: all); see anomaly_factor
    # A step whose loss or grad norm is non-finite or above this many times its running median (last
    # 50 steps) is anomalous; the last checkpoint written before the first such step is kept out of
    # pruning and named when the run stops. 0: only non-finite values count.
    anomaly_factor: float = 100.0
    # At the first anomalous step: `stop` the run with one line naming the last good checkpoint (exit 2; continue
    # from it with another optim.lr), or `continue` training. Either way non-finite weights are never checkpointed.
    on_anomaly: Literal["stop", "continue"] = "stop"
    sample_every: int = 0        # steps between samples of sample_prompts (0: only at the end)
    # Prompts of the samples written to samples/; a list on the command line: --train.sample_prompts '["a", "b"]'
    sample_prompts: tuple[str, ...] = ("a red square moving left",)
    sample_format: Literal["mp4", "gif"] = "gif"  # file format of those samples
    resume: str | None = None    # "latest" or a checkpoint directory
    # `model/` in each checkpoint: `merged`, the policy as a full diffusers layout (LoRA merged in);
    # `adapter` (LoRA runs), the adapter alone plus where its base comes from: MBs instead of GBs.
    # `adapter` also writes `lora_comfyui.safetensors` where the family has a ComfyUI format (docs/lora-formats.md).
    # Both load with `models.load_model` / `videosspo sample`.
    export: Literal["merged", "adapter"] = "merged"
    # The preference guard (videosspo.guard, docs/alignment.md): every guard_every steps the policy's error
    # on a fixed batch of guard_winners winners is compared with theta_0's; it fires when that error has risen
    # more than guard_drift (relative), or the policy's error on the losers exceeds the reference's by more
    # than guard_loser (relative, over 5 steps: 1.0 = twice it). warn: a warning, and the last checkpoint before it is kept out of
    # pruning; stop: also ends the run with one line; off: nothing is computed. The thresholds are calibrated
    # on the synthetic world's study runs (docs/alignment.md, "The preference guard").
    guard: Literal["warn", "stop", "off"] = "warn"
    guard_every: int = 5         # optimizer steps between two measurements of the fixed batch of winners
    guard_winners: int = 8       # the fixed batch: the first N clips of data.path, fixed noise and timesteps
    guard_drift: float = 0.25    # winners' error over theta_0's on the fixed batch, minus 1 (last 3 measurements)
    guard_loser: float = 1.0     # policy's error on the losers over the reference's, minus 1 (last 5 steps)

    def __post_init__(self):
        _check(self.max_steps >= 1, "train.max_steps", self.max_steps, ">= 1")
        _check(self.log_every >= 1, "train.log_every", self.log_every, ">= 1")
        _check(self.guard_every >= 1 and self.guard_winners >= 1, "train.guard_every/guard_winners",
               (self.guard_every, self.guard_winners), ">= 1")
        for key in ("checkpoint_every", "sample_every", "keep_checkpoints", "anomaly_factor", "guard_drift",
                    "guard_loser"):
            _check(getattr(self, key) >= 0, f"train.{key}", getattr(self, key), ">= 0")


@dataclass(frozen=True)
class Config:
    """A whole run. YAML sections and CLI prefixes are the field names below."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    loser: LoserConfig = field(default_factory=LoserConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        _check(self.train.export == "merged" or self.model.lora_rank > 0, "train.export", self.train.export,
               "'adapter' needs LoRA training (model.lora_rank > 0); use 'merged'")
        _check(self.model.family != "stacked" or self.model.pretrained is not None
               or self.data.frames == self.model.stacked_frames, "data.frames", self.data.frames,
               f"the stacked family's model.stacked_frames ({self.model.stacked_frames})")
        _check(self.model.family != "stacked" or self.model.pretrained is not None or not isinstance(self.data.buckets, tuple)
               or {b[0] for b in self.data.buckets} == {self.model.stacked_frames}, "data.buckets", self.data.buckets,
               f"frame counts all the stacked family's model.stacked_frames ({self.model.stacked_frames})")
        _check(self.model.family != "wan22" or self.model.lora_rank > 0, "model.lora_rank", self.model.lora_rank,
               "> 0 for model.family: wan22 (full fine-tuning of two 14B experts is not supported; e.g. 32)")
        for section in ("sample", "loser"):
            value = getattr(self, section).guidance_2
            _check(value is None or self.model.family == "wan22", f"{section}.guidance_2", value,
                   "null for a one-denoiser family (the second CFG scale is Wan 2.2 A14B's low-noise expert's)")
        if self.model.vae == "none" or self.model.pretrained is None:
            return  # the VAE factor of a pretrained model is checked when the model loads
        for key in ("height", "width"):
            _check(getattr(self.data, key) % 8 == 0, f"data.{key}", getattr(self.data, key),
                   "a multiple of the VAE factor 8")
        for f, h, w in self.data.buckets if isinstance(self.data.buckets, tuple) else ():
            _check(h % 8 == 0 and w % 8 == 0, "data.buckets", [f, h, w], "sides multiples of the VAE factor 8")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Loading: YAML + overrides -> nested dict -> typed, validated dataclasses.


# The spellings YAML 1.1 turns into booleans, per value, for choices that are words (`mixed_precision: no`).
YAML_BOOL_WORDS = {False: ("no", "off", "false", "n"), True: ("yes", "on", "true", "y")}


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert a YAML/CLI value to the declared type, or raise ConfigError naming the key."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is Literal:
        if isinstance(value, bool):  # YAML 1.1 reads the words `no`, `off`, `yes`, `on` as booleans
            value = next((word for word in YAML_BOOL_WORDS[value] if word in args), value)
        _check(value in args, key, value, f"one of {', '.join(map(repr, args))}")
        return value
    if origin is dict:
        _check(isinstance(value, dict), key, value, "a mapping of keys to values")
        return {k: _coerce(f"{key}.{k}", v, args[1]) for k, v in value.items()}
    if tp is Any:
        return value
    if origin is tuple:
        _check(isinstance(value, (list, tuple)), key, value, "a list")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(items))
        _check(len(items) == len(args), key, value, f"a list of {len(args)} values")
        return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(items, args)))
    if tp is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `1e-5` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "a string")
        return value
    raise TypeError(f"unsupported config type {tp} for {key}")


def _build(cls, data: dict, prefix: str):
    _check(isinstance(data, dict), prefix, data, "a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"unknown key {prefix}.{key}; {prefix} takes: {', '.join(sorted(known))}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        tp = hints[f.name]
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, data[f.name] or {}, key)
        else:
            kwargs[f.name] = _coerce(key, data[f.name], tp)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build a validated `Config`; sections absent from `data` take their defaults."""
    hints = typing.get_type_hints(Config)
    for key in data:
        if key not in hints:
            raise ConfigError(f"unknown section {key!r}; sections: {', '.join(hints)}")
    defaults = Config()
    sections = {}
    for name, tp in hints.items():
        given = data.get(name)
        sections[name] = getattr(defaults, name) if given is None else _build(tp, given, name)
    return Config(**sections)


def parse_overrides(items: list[str]) -> dict:
    """`["--optim.lr", "1e-5", "--model.tiny=true"]` -> {"optim": {"lr": 1e-5}, ...}.

    Values are parsed as YAML scalars/lists, so `1e-5`, `true`, `[a, b]` mean what they look like.
    """
    out: dict = {}
    i = 0
    while i < len(items):
        item = items[i]
        if not item.startswith("--") or "." not in item:
            raise ConfigError(f"bad override {item!r}: use --section.key VALUE, e.g. --optim.lr 1e-5")
        if "=" in item:
            key, raw = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ConfigError(f"override {item} has no value")
            key, raw = item[2:], items[i + 1]
            i += 2
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = _parse_yaml(raw, f"--{key}")
    return out


def _parse_yaml(text: str, source: str) -> Any:
    """`yaml.safe_load`, with a syntax error reported as `source:line:column: problem`."""
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: YAML syntax error: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: YAML syntax error: {e}") from None


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | dict | None = None) -> Config:
    """YAML file (optional) + CLI overrides -> validated Config."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        data = _parse_yaml(path.read_text(), str(path)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
    if overrides:
        extra = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        data = _merge(data, extra)
    if path is not None and isinstance(data.get("train") or {}, dict) and "output_dir" not in (data.get("train") or {}):
        data = _merge(data, {"train": {"output_dir": f"runs/{path.stem}"}})  # two configs never share a run folder
    return config_from_dict(data)


def save_config(config: Config, path: str | Path) -> None:
    """Write the resolved config (every field, defaults included) as YAML."""

    def plain(node):
        if isinstance(node, dict):
            return {k: plain(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [plain(v) for v in node]
        return node

    Path(path).write_text(yaml.safe_dump(plain(config.to_dict()), sort_keys=False))
