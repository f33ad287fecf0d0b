"""The config's sections: one frozen dataclass per concern, each field documented where it is declared.

Every default lives here. `__post_init__` checks what one section can check alone (a `ConfigError` naming the key,
the value and what is allowed); `videosspo.config.Config` checks across sections, and the model family checks the
keys it owns (`models.check_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from videosspo.errors import ConfigError

# The latent samplers by name; which apply is the model family's (`VideoDiffusionModel.samplers`).
Sampler = Literal["ddim", "ddpm", "euler", "dpm++", "unipc", "dpm"]
# Scheduler config keys a run may set (`model.schedule`); diffusers' names and meanings.
SCHEDULE_KEYS = (
    "beta_schedule",
    "beta_start",
    "beta_end",
    "clip_sample",
    "timestep_spacing",
    "steps_offset",
    "set_alpha_to_one",
    "rescale_betas_zero_snr",
)


def require(cond: bool, key: str, value: Any, allowed: str) -> None:
    """A `ConfigError` "key=value is not allowed: allowed" unless `cond`."""
    if not cond:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


@dataclass(frozen=True)
class ModelConfig:
    """Which diffusion model to train, and how to build it."""

    # The model family: a name of `models.FAMILIES` (docs/families.md): its adapter builds, loads and calls the
    # denoiser, and checks the keys below that only it reads (models.check_config).
    family: str = "animatediff"
    # A local directory or hub id: a diffusers layout (unet/ or transformer/, vae/, text_encoder/,
    # tokenizer/, scheduler/) of the family's (docs/families.md lists each family's hub ids), or a videosspo
    # checkpoint.
    # None builds the family's tiny random-weight model from configs (offline tests, the demo).
    pretrained: str | None = None
    # The random-weight model's size (pretrained: null): `tiny` (tests, the demo: seconds on a CPU) or `medium`
    # (benchmarks: the family's denoiser at about 10x the compute, same text encoder, VAE and latents; models/tiny.py).
    size: Literal["tiny", "medium"] = "tiny"
    # AnimateDiff only: a MotionAdapter directory or hub id, combined with `pretrained`'s 2-D UNet.
    motion_adapter: str | None = None
    # `none`: the model works in pixel space (latents are the [-1, 1] pixels; UNet families only); `auto`: the
    # VAE of `pretrained` (or a tiny AutoencoderKL for a tiny model).
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
    # `stacked` family, tiny model only: two coordinate channels (x, y in [-1, 1]) appended to the UNet's input, so
    # its convolutions know where they are (CoordConv): a caption's direction word is a place per frame, which a
    # UNet without positions can only read off its zero padding. A loaded UNet has them when its in_channels exceed
    # its out_channels by 2.
    stacked_coords: bool = False
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
        for key in self.schedule:
            require(key in SCHEDULE_KEYS, "model.schedule", key, f"keys among {', '.join(SCHEDULE_KEYS)}")
        require(self.vae_chunk_frames >= 1, "model.vae_chunk_frames", self.vae_chunk_frames, ">= 1")
        require(self.lora_rank >= 0, "model.lora_rank", self.lora_rank, ">= 0 (0 = full fine-tuning)")
        require(
            not self.fp8_base or self.lora_rank > 0,
            "model.fp8_base",
            self.fp8_base,
            "false with full fine-tuning (model.lora_rank: 0 trains every weight, none is frozen to store in float8)",
        )
        require(self.blocks_to_swap >= 0, "model.blocks_to_swap", self.blocks_to_swap, ">= 0 (0: no block swap)")
        require(
            not self.blocks_to_swap or self.lora_rank > 0,
            "model.blocks_to_swap",
            self.blocks_to_swap,
            "0 with full fine-tuning (model.lora_rank: 0): swapped blocks hold frozen weights only",
        )
        require(
            not self.offload_checkpoints or self.gradient_checkpointing,
            "model.offload_checkpoints",
            self.offload_checkpoints,
            "false without model.gradient_checkpointing: true (it offloads what the checkpointed blocks keep)",
        )
        require(self.stacked_frames >= 1, "model.stacked_frames", self.stacked_frames, ">= 1")
        require(
            self.size == "tiny" or self.pretrained is None,
            "model.size",
            self.size,
            "'tiny' with model.pretrained set (the size is the random-weight model's)",
        )


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
    world: str = "v1"  # the alignment world's objects when `prepare` writes it: a name of videosspo.synth.WORLDS
    frames: int = 8  # frames per clip (1 = image training)
    stride: int = 1  # take every `stride`-th frame
    height: int = 32  # clip height in pixels (frames are resized to it)
    width: int = 32  # clip width in pixels
    num_workers: int = 0  # DataLoader worker processes decoding clips (0: in the training process)
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
        require(self.frames >= 1, "data.frames", self.frames, ">= 1")
        require(self.stride >= 1, "data.stride", self.stride, ">= 1")
        require(self.height >= 8 and self.width >= 8, "data.height/width", (self.height, self.width), ">= 8")
        require(self.num_workers >= 0, "data.num_workers", self.num_workers, ">= 0")
        require(self.synth_if_missing >= 0, "data.synth_if_missing", self.synth_if_missing, ">= 0")
        require(0 <= self.max_bad_fraction <= 1, "data.max_bad_fraction", self.max_bad_fraction, "in [0, 1]")
        require(0 <= self.caption_dropout < 1, "data.caption_dropout", self.caption_dropout, "in [0, 1)")
        if isinstance(self.buckets, tuple):
            require(
                len(self.buckets) > 0 and all(f >= 1 and min(h, w) >= 8 for f, h, w in self.buckets),
                "data.buckets",
                [list(b) for b in self.buckets],
                "a list of [frames, height, width] with frames >= 1, sides >= 8, or auto",
            )
            require(
                len(set(self.buckets)) == len(self.buckets),
                "data.buckets",
                [list(b) for b in self.buckets],
                "a list of distinct shapes",
            )
        require(
            self.buckets is None or self.latent_cache is None,
            "data.buckets",
            self.buckets,
            "null with data.latent_cache (the cache holds one clip shape); unset one of them",
        )


@dataclass(frozen=True)
class MethodConfig:
    """The objective: an entry of `videosspo.methods.METHODS` and the hyperparameters its loss reads.

    `sft` (e_w), `dpo` (Diffusion-DPO on paired data), `sspo` (the paper's formulation) and the sspo
    variants `sspo-ipo`, `sspo-dpop`, `sspo-lw`, `sspo-ema` (each reads one field below; docs/alignment.md).
    """

    # an entry of videosspo.methods.METHODS (tests/test_methods.py checks the two lists agree)
    name: Literal["sft", "dpo", "sspo", "sspo-ipo", "sspo-dpop", "sspo-lw", "sspo-ema"] = "sspo"
    beta: float = 2000.0  # beta of -log sigmoid(-(beta/2)(dw - dl)); absorbs T * omega(lambda_t)
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
        require(self.beta > 0, "method.beta", self.beta, "> 0")
        require(self.sft_weight > 0, "method.sft_weight", self.sft_weight, "> 0")
        require(self.sft_anchor >= 0, "method.sft_anchor", self.sft_anchor, ">= 0 (0 = no anchor)")
        require(self.margin_target > 0, "method.margin_target", self.margin_target, "> 0")
        require(self.dpop_lambda >= 0, "method.dpop_lambda", self.dpop_lambda, ">= 0")
        require(0 < self.loser_weight <= 1, "method.loser_weight", self.loser_weight, "in (0, 1]")
        require(0 < self.reference_decay < 1, "method.reference_decay", self.reference_decay, "in (0, 1)")


@dataclass(frozen=True)
class ReplayConfig:
    """Random Checkpoint Replay: the pool of policy snapshots the reference is drawn from."""

    interval: int = 30  # optimizer steps between snapshots (paper: 30)
    size: int = 7  # snapshots held, theta_0 included (paper: K = 7)
    strategy: Literal["random", "latest", "initial"] = "random"  # SSPO | SPIN-like | DITTO-like
    evict: Literal["oldest", "random"] = "oldest"  # theta_0 is never evicted
    cpu_budget_gb: float = 8.0  # per process: full fine-tuning snapshots past this spill to disk
    spill_dir: str | None = None  # default: <train.output_dir>/replay_spill (a rank<i>/ folder per process)
    # A node-local folder (e.g. /dev/shm/videosspo or a local SSD): the node's first process writes each
    # snapshot there once and every process of the node memory-maps it, so a node holds one copy of the
    # pool (in the page cache) instead of one per process; cpu_budget_gb and spill_dir then do not apply.
    # A folder per run is made inside it and removed when the run ends.
    node_dir: str | None = None

    def __post_init__(self):
        require(self.interval >= 1, "replay.interval", self.interval, ">= 1")
        require(self.size >= 1, "replay.size", self.size, ">= 1 (1 holds only theta_0)")
        require(self.cpu_budget_gb > 0, "replay.cpu_budget_gb", self.cpu_budget_gb, "> 0")


@dataclass(frozen=True)
class SampleConfig:
    """The latent sampler, for losers, periodic samples and `videosspo sample`."""

    # DDPM-trained families: ddim, ddpm, euler, dpm++, unipc; flow matching (wan): euler, unipc;
    # cogvideox: ddim; ltx: euler.
    scheduler: Sampler = "ddim"
    steps: int = 20  # sampler steps
    guidance: float = 7.5  # classifier-free guidance scale (<= 1: off)
    # wan22 only: the CFG scale of the low-noise expert's steps (WanPipeline's guidance_scale_2; None: `guidance`).
    # CFG runs when `guidance` > 1, as in WanPipeline.
    guidance_2: float | None = None
    negative_prompt: str = ""  # the prompt guidance steers away from ("" : the unconditional prediction)

    def __post_init__(self):
        require(self.steps >= 1, "sample.steps", self.steps, ">= 1")
        require(self.guidance >= 0, "sample.guidance", self.guidance, ">= 0 (<= 1 disables CFG)")
        require(self.guidance_2 is None or self.guidance_2 >= 0, "sample.guidance_2", self.guidance_2, ">= 0 or null")


@dataclass(frozen=True)
class LoserConfig:
    """How the drawn reference generates losers x0^l (kept in latent space, never decoded).

    Reference UNet passes per loser: steps x (2 with CFG, guidance > 1, else 1) x strength / reuse.
    """

    steps: int = 20  # sampler steps per loser
    guidance: float = 7.5  # classifier-free guidance scale of the losers (<= 1: off, one pass per step)
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
    strength: float = 1.0  # for init: winner, in (0, 1]
    # Sample step s+1's losers in a background thread while step s trains, on a second copy of the
    # network (+1 UNet of memory). Exact: used only when step s+1's reference is already in the pool
    # (no snapshot is taken after step s), else step s+1 samples them itself. Pays where one step
    # does not fill the machine (CPU threads; on one GPU the two share its stream).
    overlap: bool = False

    def __post_init__(self):
        require(self.steps >= 1, "loser.steps", self.steps, ">= 1")
        require(self.guidance >= 0, "loser.guidance", self.guidance, ">= 0")
        require(self.guidance_2 is None or self.guidance_2 >= 0, "loser.guidance_2", self.guidance_2, ">= 0 or null")
        require(self.reuse >= 1, "loser.reuse", self.reuse, ">= 1")
        require(0 < self.strength <= 1, "loser.strength", self.strength, "in (0, 1]")
        require(
            self.init == "winner" or self.strength == 1,
            "loser.strength",
            self.strength,
            "1 with loser.init: noise (strength only applies to loser.init: winner)",
        )
        require(
            self.init == "noise" or self.scheduler != "euler",
            "loser.scheduler",
            self.scheduler,
            "ddim, ddpm, dpm++ or unipc with loser.init: winner (euler keeps a sigma-scaled state)",
        )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up and a schedule; per-process batch and accumulation."""

    lr: float = 1e-5  # peak learning rate (after warm-up)
    weight_decay: float = 1e-2  # AdamW decoupled weight decay
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW (beta1, beta2); on the command line: --optim.betas "[0.9, 0.99]"
    schedule: Literal["constant", "linear", "cosine"] = (
        "constant"  # LR after warm-up: constant, or decaying to 0 at train.max_steps
    )
    warmup_steps: int = 0  # steps of linear LR warm-up from 0
    batch_size: int = 1  # per process; global batch = batch_size x processes x grad_accum
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    max_grad_norm: float = 1.0  # 0 disables clipping
    # Exponential moving average of the trainable weights (videosspo/ema.py; with LoRA, the adapter):
    # ema = d ema + (1 - d) theta after each update, d = min(ema_decay, n / (n + 9)) at update n.
    # Samples during training and each checkpoint's model/ use the average; the replay references and
    # the optimizer train the weights themselves. 0: off.
    ema_decay: float = 0.0

    def __post_init__(self):
        require(self.lr > 0, "optim.lr", self.lr, "> 0")
        require(self.batch_size >= 1, "optim.batch_size", self.batch_size, ">= 1")
        require(self.grad_accum >= 1, "optim.grad_accum", self.grad_accum, ">= 1")
        require(self.warmup_steps >= 0, "optim.warmup_steps", self.warmup_steps, ">= 0")
        require(self.max_grad_norm >= 0, "optim.max_grad_norm", self.max_grad_norm, ">= 0")
        require(0 <= self.ema_decay < 1, "optim.ema_decay", self.ema_decay, "in [0, 1) (0 = no EMA; e.g. 0.999)")


@dataclass(frozen=True)
class TrainConfig:
    """The run: length, seed, precision, where outputs go and how often things happen."""

    # The run folder: checkpoints/, samples/, metrics.jsonl, summary.json. Unset in a config file: runs/<file name>.
    output_dir: str = "runs/default"
    max_steps: int = 100  # optimizer steps
    seed: int = 0  # every random draw is a function of (seed, step, sample)
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # autocast precision of forward passes (weights stay fp32)
    log_every: int = 1  # steps between metrics.jsonl lines
    checkpoint_every: int = 50  # steps between checkpoints (0: only the final one)
    keep_checkpoints: int = 2  # newest N checkpoints of this run kept (0: all); see anomaly_factor
    # A step whose loss or grad norm is non-finite or above this many times its running median (last
    # 50 steps) is anomalous; the last checkpoint written before the first such step is kept out of
    # pruning and named when the run stops. 0: only non-finite values count.
    anomaly_factor: float = 100.0
    # At the first anomalous step: `stop` the run with one line naming the last good checkpoint (exit 2; continue
    # from it with another optim.lr), or `continue` training. Either way non-finite weights are never checkpointed.
    on_anomaly: Literal["stop", "continue"] = "stop"
    sample_every: int = 0  # steps between samples of sample_prompts (0: only at the end)
    # Prompts of the samples written to samples/; a list on the command line: --train.sample_prompts '["a", "b"]'
    sample_prompts: tuple[str, ...] = ("a red square moving left",)
    sample_format: Literal["mp4", "gif"] = "gif"  # file format of those samples
    resume: str | None = None  # "latest" or a checkpoint directory
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
    guard_every: int = 5  # optimizer steps between two measurements of the fixed batch of winners
    guard_winners: int = 8  # the fixed batch: the first N clips of data.path, fixed noise and timesteps
    guard_drift: float = 0.25  # winners' error over theta_0's on the fixed batch, minus 1 (last 3 measurements)
    guard_loser: float = 1.0  # policy's error on the losers over the reference's, minus 1 (last 5 steps)

    def __post_init__(self):
        require(self.max_steps >= 1, "train.max_steps", self.max_steps, ">= 1")
        require(self.log_every >= 1, "train.log_every", self.log_every, ">= 1")
        require(
            self.guard_every >= 1 and self.guard_winners >= 1,
            "train.guard_every/guard_winners",
            (self.guard_every, self.guard_winners),
            ">= 1",
        )
        for key in (
            "checkpoint_every",
            "sample_every",
            "keep_checkpoints",
            "anomaly_factor",
            "guard_drift",
            "guard_loser",
        ):
            require(getattr(self, key) >= 0, f"train.{key}", getattr(self, key), ">= 0")
