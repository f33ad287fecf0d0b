"""The trainer: owns every piece of training state, runs `sft`, `dpo` and `sspo`, saves and resumes.

One optimizer step = `optim.grad_accum` micro-batches on each of the accelerate processes. Each
micro-batch runs `Trainer.loss`, which reads top to bottom:

    losers -> noise & timesteps -> policy forward -> reference forward -> per-sample loss

The global batch is a contiguous run of the data stream, split process-major inside each
micro-step; every random draw derives from (seed, step, position in the global batch), so N
processes x A accumulation steps give the same update as one process with the same global batch.

A checkpoint is one directory, complete or absent (`videosspo.checkpoint`: written to a temporary
name, marked complete, fsynced, renamed into place; verified before resuming):
    accelerate/  model (LoRA: the adapter only), optimizer, grad scaler, RNG (accelerator.save_state;
                 under FSDP the model and optimizer are gathered whole instead: `Trainer._save_state`)
    replay/      the replay pool: snapshot steps and their digests in the run's `snapshots/` store
    losers/      the current reuse window's losers, a file per process (loser.reuse > 1); a resumed process reads all
    model/       the policy in diffusers layout (LoRA merged), or its adapter (train.export): `models.load_model`;
                 with optim.ema_decay, the moving average of its weights
    ema.safetensors  that average by parameter name (optim.ema_decay > 0)
    trainer.json step, counters, divergence, unreadable clips and each process's replacement micro-batches (all
                 processes' counts);  config.yaml  the resolved config;  COMPLETE.json  files, sizes, SHA-256
The LR schedule is (config, step): rebuilt at resume (`videosspo.resume`), nothing pickled.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import statistics
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.checkpointing import load_accelerator_state, save_accelerator_state
from accelerate.utils import (DistributedDataParallelKwargs, InitProcessGroupKwargs, ProjectConfiguration, gather_object,
                              set_seed)
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from models import FAMILIES, build_model, check_config, save_adapter
from models.lora import add_lora
from videosspo import rng
from videosspo.buckets import Buckets, check_shape, plan as plan_buckets
from videosspo.checkpoint import (CHECKPOINTS, STORE, CheckpointError, Diverged, SnapshotStore, check_space,
                                  checkpoint_bytes, commit, disk_full, first_line, latest_checkpoint, new_lineage,
                                  nonfinite, prune, resume_candidates, save_failed, stopped, store_of, tidy, verify,
                                  write_marker)
from videosspo.config import SCHEDULE_KEYS, Config, ConfigError, load_config, save_config
from videosspo.data import Unreadable, UnreadableClips, VideoDataset, collate, report_long_captions
from videosspo.ema import EMA
from videosspo.latents import LatentDataset, encoder_identity, encoders_on_cpu
from videosspo.guard import Guard, GuardStop, winner_probe
from videosspo.losses import per_sample_error
from videosspo.methods import get_method
from videosspo.objectives import density_note, get_objective
from videosspo.reference import Policy
from videosspo.replay import NodeShare, ReplayPool
from videosspo.resume import check_resume, log_changes, lr_schedule
from videosspo.runlock import RunLock
from videosspo.sampling import make_scheduler, sample_latents
from videosspo.shards import ProcessStream, ShardDataset, check_shares, is_shards
from videosspo.video import write_video

log = logging.getLogger("videosspo.trainer")

ADAPTER_FILE = "lora_adapter.safetensors"  # LoRA runs: the policy adapter inside `accelerate/`
SLOW_REFERENCE_FILE = "reference_ema.safetensors"  # sspo-ema: the moving average the replay pool snapshots
EMA_FILE = "ema.safetensors"  # optim.ema_decay > 0: the moving average of the trainable weights
FSDP_MODEL_FILE = "fsdp_model.safetensors"  # FSDP, full fine-tuning: the whole weights inside `accelerate/`
FSDP_OPTIMIZER_FILE = "fsdp_optimizer.bin"  # FSDP: the whole optimizer state by parameter name, inside `accelerate/`
ZERO_PARTITIONS = "pytorch_model/zero_pp_rank_*_optim_states.pt"  # DeepSpeed: ZeRO's optimizer state, a file per process
MAX_BAD_STEPS = 10  # consecutive non-finite gradients before the run stops (its checkpoints intact)


class StreamSampler(Sampler):
    """This process's share of the global data stream, from optimizer step `start_step` on.

    Position p of the stream is sample `epoch_order(seed, p // n)[p % n]`. Step s reads global batch
    d = s // repeat (each batch serves `repeat` consecutive steps: loser.reuse), i.e. positions
    [d*G, (d+1)*G) with G the global batch; within it micro-step m, process r takes B positions at
    d*G + (m*P + r)*B. Yields lists of (dataset index, global position). `buckets` (data.buckets): epochs of
    `buckets.order`, every global batch one bucket (videosspo.buckets). `skip`: micro-batches this process
    took before `start_step` beyond its share (replacing micro-batches whose every clip was unreadable), so
    a resumed stream continues where the interrupted one was.
    """

    def __init__(self, n: int, batch: int, accum: int, processes: int, rank: int, seed: int, start_step: int,
                 repeat: int = 1, skip: int = 0, buckets: Buckets | None = None):
        self.n, self.batch, self.accum, self.processes, self.rank, self.seed = n, batch, accum, processes, rank, seed
        self.start_step, self.repeat, self.skip, self.buckets = start_step, repeat, skip, buckets
        self._orders: dict[int, object] = {}

    @property
    def global_batch(self) -> int:
        return self.batch * self.accum * self.processes

    def index(self, p: int, q: int) -> int:
        """The dataset index at global stream position p (this process's q-th read: unused here)."""
        length = self.buckets.length(self.global_batch) if self.buckets else self.n
        epoch = p // length
        if epoch not in self._orders:
            self._orders = {epoch: self.buckets.order(self.seed, epoch, self.global_batch) if self.buckets
                            else rng.epoch_order(self.seed, epoch, self.n)}
        return int(self._orders[epoch][p % length])

    def __iter__(self):
        micro = self.start_step * self.accum + self.skip
        while True:
            step, m = divmod(micro, self.accum)
            local = step // self.repeat * self.accum + m  # this process's micro-batches in the stream before this one
            first = (local * self.processes + self.rank) * self.batch  # = d*G + (m*P + r)*B
            yield [(self.index(first + i, local * self.batch + i), first + i) for i in range(self.batch)]
            micro += 1


class ShardSampler(StreamSampler):
    """`StreamSampler` over WebDataset shards (`videosspo.shards`): the global positions (and so every seed)
    are the same, but the sample at this process's q-th read is sample q of its own shard stream."""

    def __init__(self, shard_sizes: list[int], batch: int, accum: int, processes: int, rank: int, seed: int,
                 start_step: int, repeat: int = 1, skip: int = 0):
        super().__init__(sum(shard_sizes), batch, accum, processes, rank, seed, start_step, repeat, skip)
        self.stream = ProcessStream(shard_sizes, seed, processes, rank)

    def index(self, p: int, q: int) -> int:
        return self.stream[q]

    def __len__(self):  # endless; DataLoader only needs this for its own length, never used
        return 2**62


class StreamDataset(torch.utils.data.Dataset):
    """Reads (index, position) -> sample with frame offsets seeded by the stream position."""

    def __init__(self, dataset: VideoDataset | LatentDataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        index, position = item
        sample = self.dataset.try_get(index, rng.derive_seed(self.seed, 0, position, "frames"))
        if isinstance(sample, dict):  # else `Unreadable`
            sample["position"] = position
        return sample


def collate_stream(batch):
    """`videosspo.data.collate` (pixels or cached latents) + the stream positions, and the `Unreadable` rows
    under "unreadable" (the only key when every clip of the micro-batch was unreadable)."""
    kept = [s for s in batch if isinstance(s, dict)]
    out = {"unreadable": [s for s in batch if isinstance(s, Unreadable)]}
    if kept:
        out |= collate(kept) | {"positions": [s["position"] for s in kept]}
    return out


class LoserCache:
    """The losers of the current reuse window (`reuse` steps from step w = s - s % reuse), by stream position.

    They are sampled at the window's first step and served for its other steps; a new window drops
    them. With reuse 1 nothing is kept. Each process checkpoints its own; a resumed process takes its
    positions from any process's file, so a run resumed on another process count serves the same losers.
    """

    def __init__(self, reuse: int):
        self.reuse = reuse
        self.start: int | None = None
        self.latents: dict[int, torch.Tensor] = {}
        self.saved: dict[int, torch.Tensor] = {}  # every process's losers of the checkpoint resumed, until taken

    def window(self, step: int) -> int:
        """The first step of `step`'s window (its losers are seeded by it); enters that window."""
        start = step - step % self.reuse
        if start != self.start:
            self.start, self.latents, self.saved = start, {}, {}
        return start

    def take(self, position: int) -> torch.Tensor | None:
        if position not in self.latents and position in self.saved:
            self.latents[position] = self.saved.pop(position)
        return self.latents.get(position)

    def put(self, position: int, latent: torch.Tensor) -> None:
        if self.reuse > 1:
            self.latents[position] = latent.detach().cpu()

    def save(self, path: Path) -> None:
        """One safetensors file: the latents keyed by stream position, the window start as metadata."""
        save_file({str(k): v.contiguous() for k, v in self.latents.items()}, str(path),
                  metadata={"window": json.dumps(self.start)})

    def load(self, folder: Path) -> None:
        """Every `save`d file in `folder`, one per process of the run that wrote them (none with reuse 1)."""
        for path in sorted(folder.glob("rank*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                self.saved |= {int(k): f.get_tensor(k) for k in f.keys()}
                self.start = json.loads(f.metadata()["window"])


class Watchdog:
    """Flags a step whose loss or grad norm is non-finite, or above `factor` x its running median (of
    the last `window` steps, once `warmup` are seen): a blow-up, even while its gradient is finite."""

    def __init__(self, factor: float, window: int = 50, warmup: int = 10):
        self.factor, self.warmup = factor, warmup
        self.seen = {key: collections.deque(maxlen=window) for key in ("loss", "grad_norm")}

    def check(self, stats: dict) -> str | None:
        """Why this step is anomalous, or None; finite values join the running range either way."""
        why = []
        for key, seen in self.seen.items():
            value = stats.get(key)
            if value is None:
                continue
            if not math.isfinite(value):
                why.append(f"{key} is {value}")
                continue
            median = statistics.median(seen) if seen and len(seen) >= self.warmup else math.inf
            if self.factor and abs(value) > self.factor * median:
                why.append(f"{key} {value:.4g} > {self.factor:g} x its running median {median:.4g}")
            seen.append(abs(value))
        return "; ".join(why) or None


class Lookahead:
    """An iterator whose next items can be looked at before they are taken."""

    def __init__(self, items):
        self.items, self.ahead = items, collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        return self.ahead.popleft() if self.ahead else next(self.items)

    def peek(self, n: int) -> list:
        while len(self.ahead) < n:
            self.ahead.append(next(self.items))
        return list(self.ahead)[:n]


class LoserOverlap:
    """loser.overlap: step s+1's losers sampled in a background thread while step s trains.

    The worker runs `Trainer._sample` on its own copy of the network, with the seeds and reference
    step s+1 would use; step s+1 takes a result only when its (step, reference, positions) match.
    """

    def __init__(self, trainer: "Trainer"):
        view = copy.copy(trainer.model)
        if trainer.policy.lora:  # the reference is an adapter slot: the worker needs its own network
            view.unet = copy.deepcopy(trainer.model.unet).requires_grad_(False).eval()
        self.policy = Policy(view)
        with self.policy.reference(trainer.pool, 0):  # full fine-tuning: its reference copy, built now
            pass
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="losers")
        self.pending: dict[tuple, Future] = {}

    def submit(self, trainer: "Trainer", step: int, batches: list[dict]) -> None:
        ref_index = trainer.pool.draw(trainer.config.train.seed, step)
        for batch in batches:
            if "captions" in batch:  # not a micro-batch of unreadable clips only
                key = (step, ref_index, tuple(batch["positions"]))
                self.pending[key] = self.executor.submit(trainer._sample, self.policy, batch, list(range(len(key[2]))),
                                                         step, ref_index)

    def take(self, step: int, ref_index: int, positions: list[int]) -> torch.Tensor | None:
        future = self.pending.pop((step, ref_index, tuple(positions)), None)
        return None if future is None else future.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.pending.clear()


class Trainer:
    """Builds model, data, optimizer and replay pool from a `Config`; `fit()` trains to `max_steps`."""

    def __init__(self, config: Config, accelerator: Accelerator | None = None):
        self.config = cfg = check_config(config)  # the model family's rules (models.check_config)
        self.out = Path(cfg.train.output_dir)
        self.accelerator = accelerator or Accelerator(
            gradient_accumulation_steps=cfg.optim.grad_accum, mixed_precision=cfg.train.mixed_precision,
            log_with="tensorboard", project_config=ProjectConfiguration(project_dir=str(self.out), logging_dir=str(self.out / "logs")),
            kwargs_handlers=[*_process_group(),
                             DistributedDataParallelKwargs(find_unused_parameters=FAMILIES[cfg.model.family].unused_parameters)])
        acc = self.accelerator
        # Training draws from no global RNG (videosspo.rng), but they are seeded (a library may draw) and
        # checkpointed, so a resumed run's RNG state equals an uninterrupted one's
        set_seed(cfg.train.seed)
        self.method = get_method(cfg.method.name)  # the objective's loss and what it needs (videosspo.methods)
        self.loss_fn = self.method.bind(cfg.method)
        self.step = 0
        self.counters = {"skipped_clips": 0, "nonfinite_steps": 0}  # skipped_clips: failed reads, all processes
        self.stream_skips = 0  # micro-batches this process drew to replace all-unreadable ones (StreamSampler.skip)
        self.lineage, self.parent = new_lineage(), None  # resume keeps or branches them (checkpoint.py)
        self.resumed: Path | None = None  # the checkpoint of this folder resumed from: never rewritten
        self.watchdog, self.divergence = Watchdog(cfg.train.anomaly_factor), None
        self.guard = Guard.of(cfg.train)

        self.model = build_model(cfg.model)
        for sampler, steps, spacing in {(cfg.sample.scheduler, cfg.sample.steps, None),
                                        (cfg.loser.scheduler, cfg.loser.steps, cfg.loser.spacing)}:
            make_scheduler(self.model, sampler, steps, spacing)  # a sampler that does not fit fails now, not at step 1
        encoder = encoder_identity(self.model) if cfg.data.latent_cache else None  # before any dtype cast
        if cfg.model.lora_rank:
            self.model.unet.requires_grad_(False)
            add_lora(self.model.unet, cfg.model.lora_rank, cfg.model.lora_alpha, self.model.lora_scope,
                     seed=cfg.train.seed)
        if cfg.model.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.enable_low_memory(cfg.model, acc.device, acc.distributed_type.name)  # fp8_base, blocks_to_swap
        frozen_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.mixed_precision)
        self.model.to(acc.device, frozen_dtype, keep_on_cpu=encoders_on_cpu(cfg))  # cached text: encoder on CPU
        self.model.enable_attention(cfg.model.attention)

        data_args = dict(frames=cfg.data.frames, stride=cfg.data.stride, height=cfg.data.height,
                         width=cfg.data.width, require_loser=self.method.losers == "data")
        if cfg.data.latent_cache:
            if is_shards(cfg.data.path):
                raise ConfigError(f"data.latent_cache needs a metadata folder, but data.path {cfg.data.path!r} names "
                                  f"WebDataset shards; unset data.latent_cache")
            self.data = LatentDataset(cfg.data.latent_cache, cfg.data.path, expect=encoder, **data_args)
        elif is_shards(cfg.data.path):
            self.data = ShardDataset(cfg.data.path, **data_args)
            check_shares(self.data.shard_sizes, acc.num_processes, cfg.data.path)
        else:
            self.data = VideoDataset(cfg.data.path, **data_args)
        self.unreadable = UnreadableClips(len(self.data), cfg.data.max_bad_fraction, verbose=acc.is_main_process)
        if acc.is_main_process and hasattr(self.data, "records"):  # captions the text encoder truncates: said once
            report_long_captions(self.data.records, self.model.tokenizer, self.model.text_length)
        check_shape(self.model, (cfg.data.frames, cfg.data.height, cfg.data.width))  # the family's frame / size rule
        if cfg.data.buckets:  # each row's shape, one per global batch
            self.data.buckets = plan_buckets(cfg.data, self.data, self.model)

        params = [p for p in self.model.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                           weight_decay=cfg.optim.weight_decay)
        self.lr_schedule = lr_schedule(self.optimizer, cfg.optim, cfg.train.max_steps, step=0)
        # The LR schedule is stepped by us once per optimizer step (accelerate's wrapper steps it once per
        # process, which would make N processes differ from one); its state is (config, step): rebuilt at resume.
        if acc.state.deepspeed_plugin is not None:
            _check_deepspeed(acc.state.deepspeed_plugin, cfg.optim.batch_size, cfg.optim.max_grad_norm)
        self.unet, self.optimizer = acc.prepare(self.model.unet, self.optimizer)
        self.model.unet = acc.unwrap_model(self.unet)
        self.policy_model = copy.copy(self.model)
        self.policy_model.unet = self.unet  # the (possibly DDP-wrapped) trainable forward
        self.policy = Policy(self.model, wrapped=self.unet)
        if self.policy.sharded and cfg.loser.overlap:
            raise ConfigError("loser.overlap samples in a background thread, which cannot take part in FSDP's "
                              "collectives; set loser.overlap: false with FSDP")
        self.ema = EMA(self.model.unet, cfg.optim.ema_decay) if cfg.optim.ema_decay else None
        if self.policy.lora:
            acc.register_save_state_pre_hook(self._save_adapter_only)
            acc.register_load_state_pre_hook(self._load_adapter_only)
        # DeepSpeed's engine writes its module past these hooks: with LoRA only the trainable adapter (the frozen base
        # would be GBs per checkpoint), read back non-strictly
        deepspeed_lora = self.policy.lora and acc.state.deepspeed_plugin is not None
        self._save_kwargs = {"exclude_frozen_parameters": True} if deepspeed_lora else {}
        self._load_kwargs = {"load_module_strict": False} if deepspeed_lora else {}

        replay = cfg.replay
        if self.method.reference == "initial":  # Diffusion-DPO: the frozen initial model is the reference
            replay = dataclasses.replace(replay, size=1, strategy="initial")
        # Every process holds the pool (each needs its reference): its own copy, spilling to a folder per
        # process; or, with replay.node_dir, a memory map of the node's one copy (a folder per run).
        spill_dir = Path(replay.spill_dir or self.out / "replay_spill") / f"rank{acc.process_index}"
        share = (NodeShare(Path(replay.node_dir) / _run_key(self.out), acc.is_local_main_process, acc.wait_for_everyone)
                 if replay.node_dir else None)
        self.pool = ReplayPool(size=replay.size, interval=replay.interval, strategy=replay.strategy, evict=replay.evict,
                               cpu_budget_gb=replay.cpu_budget_gb, spill_dir=spill_dir, share=share)
        if self.method.reference != "none":
            self.pool.add(0, self.policy.snapshot())
        # a slower reference (sspo-ema): snapshots of a moving average of the policy, starting at θ0
        self.slow = EMA(self.model.unet, cfg.method.reference_decay, warmup=False) if self.method.slow_reference else None
        if self.slow and self.policy.sharded:
            raise ConfigError(f"method.name {cfg.method.name} keeps an unsharded moving average: not with FSDP")
        self.losers = LoserCache(cfg.loser.reuse)
        self._fixed_prompts: dict[str, torch.Tensor] = {}  # embeddings of fixed prompts, encoded once per run
        self.overlap = LoserOverlap(self) if cfg.loser.overlap and self.method.losers == "sampled" else None

    def _save_adapter_only(self, models, weights, output_dir):
        """With LoRA a checkpoint's `accelerate/` holds the adapter (MBs), not the frozen base (GBs)."""
        weights.clear()
        adapter = self.policy.snapshot()  # every process: gathered from the shards under FSDP
        if self.accelerator.is_main_process:
            save_file(adapter, os.path.join(output_dir, ADAPTER_FILE))

    def _load_adapter_only(self, models, input_dir):
        models.clear()  # accelerate then restores optimizer, schedule and RNG; the adapter is ours
        self.policy.load_adapter(load_file(os.path.join(input_dir, ADAPTER_FILE)))

    # -- one micro-batch ---------------------------------------------------------------------------

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Mean per-sample loss of one micro-batch and its statistics."""
        cfg, model, device = self.config, self.model, self.accelerator.device
        positions = batch["positions"]
        x_w = self.latents(batch, "")
        cond = self.prompt_embeds(batch)  # losers are sampled for the real captions
        stats: dict = {}

        # 1. losers: given (dpo, paired data) or sampled by the drawn reference (sspo)
        ref_index = self.pool.draw(cfg.train.seed, self.step) if len(self.pool) else None
        x_l = None
        if self.method.losers == "data":
            x_l = self.latents(batch, "loser_")
        elif self.method.losers == "sampled":
            t0 = time.perf_counter()
            x_l = self.sample_losers(batch, ref_index, cond, x_w)
            stats["time/losers_s"] = time.perf_counter() - t0

        # 2. one timestep and one noise per sample, shared by winner and loser
        seed, objective, sched = cfg.train.seed, get_objective(model.objective), model.scheduler
        t = objective.timesteps(sched, seed, self.step, positions, seq_len=x_w[0, 0].numel(),  # f·h·w
                                sigma_range=model.sigma_range).to(device)
        noise = rng.sample_noise(x_w.shape[1:], seed, self.step, positions).to(device)
        k = 1 if x_l is None else 2  # one pass over winners, or over winners then losers (batch k*b)
        x0 = x_w if x_l is None else torch.cat([x_w, x_l])
        dropped = rng.drop_captions(cfg.data.caption_dropout, seed, self.step, positions).to(device)
        if dropped.any():  # caption dropout: the unconditional branch CFG uses keeps learning
            cond = torch.where(dropped[:, None, None], self.embed_once("").float(), cond)
        noise, t, cond = noise.repeat(k, 1, 1, 1, 1), t.repeat(k), cond.repeat(k, 1, 1)
        x_t, target = objective.noisy(sched, x0, noise, t), objective.target(sched, x0, noise, t)

        def winners_losers(e):  # [k*b] -> (e_w, e_l or None)
            return (e, None) if k == 1 else tuple(e.chunk(2))

        # 3. policy forward: winners and losers in one pass
        with self.accelerator.autocast():
            e_w, e_l = winners_losers(per_sample_error(self.policy_model.predict(x_t, t, cond), target))

        # 4. reference forward on the same inputs, no grad
        ref_w = ref_l = None
        if ref_index is not None:
            with torch.no_grad(), self.policy.reference(self.pool, ref_index) as ref, self.accelerator.autocast():
                ref_w, ref_l = winners_losers(per_sample_error(ref.predict(x_t, t, cond), target))
            stats["replay/ref_index"] = float(ref_index)
            stats["replay/ref_step"] = float(self.pool.steps[ref_index])

        # 5. per-sample loss, reduced here
        per_sample, loss_stats = self.loss_fn(e_w, e_l, ref_w, ref_l)
        stats.update({key: float(v) for key, v in loss_stats.items()})
        return per_sample.mean(), stats

    def prompt_embeds(self, batch: dict, rows: list[int] | None = None) -> torch.Tensor:
        """The text embeddings of the batch's captions (`rows` of them): cached with the latents
        (`data.latent_cache`: the text encoder never runs per step), else encoded now."""
        rows = list(range(len(batch["captions"]))) if rows is None else rows
        if "prompt_embeds" in batch:
            return batch["prompt_embeds"][rows].to(self.accelerator.device).float()
        return self.model.encode_prompt([batch["captions"][k] for k in rows]).float()

    def latents(self, batch: dict, prefix: str) -> torch.Tensor:
        """`{prefix}latents` from the cache when the batch has them, else the VAE-encoded `{prefix}pixels`."""
        device = self.accelerator.device
        if f"{prefix}latents" in batch:
            return batch[f"{prefix}latents"].to(device).float()
        return self.model.encode_video(batch[f"{prefix}pixels"].to(device)).float()

    @torch.no_grad()
    def sample_losers(self, batch: dict, ref_index: int, cond: torch.Tensor | None = None,
                      x_w: torch.Tensor | None = None) -> torch.Tensor:
        """x0^l for each caption, sampled in latent space by reference `ref_index` (never decoded).

        Seeded by (seed, window start, position); served from the window's cache when already sampled,
        or taken from the overlap worker when it sampled them during the previous step.
        """
        window = self.losers.window(self.step)
        latents: list[torch.Tensor | None] = [self.losers.take(p) for p in batch["positions"]]
        todo = [k for k, x in enumerate(latents) if x is None]
        if todo:
            ahead = self.overlap.take(self.step, ref_index, batch["positions"]) if self.overlap else None
            fresh = ahead if ahead is not None and len(todo) == len(latents) else self._sample(
                self.policy, batch, todo, window, ref_index, None if cond is None else cond[todo],
                None if x_w is None else x_w[todo])
            for k, x in zip(todo, fresh):
                latents[k] = x
                self.losers.put(batch["positions"][k], x)
        return torch.stack([x.to(self.accelerator.device) for x in latents]).float()

    @torch.no_grad()
    def _sample(self, policy: Policy, batch: dict, todo: list[int], window: int, ref_index: int,
                cond: torch.Tensor | None = None, x_w: torch.Tensor | None = None) -> torch.Tensor:
        """Losers of the batch's samples `todo`, by `policy`'s reference `ref_index` (`cond`, `x_w`: theirs, if known)."""
        cfg, lcfg = self.config, self.config.loser
        if cond is None:  # as `loss` has them
            cond = self.prompt_embeds(batch, todo)
        if lcfg.init == "winner" and x_w is None:
            x_w = self.latents({k: v[todo] if torch.is_tensor(v) else v for k, v in batch.items()}, "")
        frames, height, width = batch.get("size", (cfg.data.frames, cfg.data.height, cfg.data.width))  # the winners'
        with policy.reference(self.pool, ref_index) as ref:
            return sample_latents(
                ref, [batch["captions"][k] for k in todo], frames=frames, height=height, width=width, steps=lcfg.steps,
                guidance=lcfg.guidance, guidance_2=lcfg.guidance_2,
                scheduler=lcfg.scheduler, spacing=lcfg.spacing,
                seeds=[rng.derive_seed(cfg.train.seed, window, batch["positions"][k], "loser") for k in todo],
                cond=cond, uncond=self.negative_embedding(), init=x_w if lcfg.init == "winner" else None,
                strength=lcfg.strength)

    def negative_embedding(self) -> torch.Tensor | None:
        """The negative prompt's embedding for CFG losers (None without CFG)."""
        return self.embed_once(self.config.sample.negative_prompt) if self.config.loser.guidance > 1 else None

    def embed_once(self, prompt: str) -> torch.Tensor:
        """A fixed prompt's embedding (the negative prompt, the dropped caption ""), encoded once per run."""
        if prompt not in self._fixed_prompts:
            self._fixed_prompts[prompt] = self.model.encode_prompt([prompt])
        return self._fixed_prompts[prompt]

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self, on_step: Callable[["Trainer"], None] | None = None) -> dict:
        """Resume (`train.resume`) and train to `train.max_steps`, holding the output folder's lock throughout.

        `on_step(trainer)` runs after every optimizer step (e.g. an evaluation).
        """
        acc = self.accelerator
        with RunLock(self.out) if acc.is_main_process else contextlib.nullcontext():
            if acc.is_main_process:
                tidy(self.out)  # what a killed save or prune left behind
            acc.wait_for_everyone()
            self.resume(self.config.train.resume)
            if acc.is_main_process:  # steps logged after the resumed one (or by a run killed before its first checkpoint)
                truncate_metrics(self.out / "metrics.jsonl", self.step)
            try:
                with disk_full(self.out):  # TensorBoard, metrics.jsonl, samples: one line, checkpoints intact
                    return self._train(on_step)
            finally:
                self.pool.close()  # replay.node_dir: the node's snapshot files

    def _train(self, on_step) -> dict:
        cfg, acc = self.config, self.accelerator
        if acc.is_main_process:
            save_config(cfg, self.out / "config.yaml")
        acc.init_trackers("videosspo")
        trainable = sum(p.numel() for p in self.model.unet.parameters() if p.requires_grad)
        log.info("%s on %s (%s): %d clips, global batch %d = %d per process x %d processes x %d accumulation; "
                 "%.2fM trainable parameters%s; steps %d -> %d; outputs in %s", cfg.method.name, cfg.model.family,
                 cfg.model.pretrained or "tiny random model", len(self.data), self.global_batch, cfg.optim.batch_size,
                 acc.num_processes, cfg.optim.grad_accum, trainable / 1e6,
                 f" (LoRA rank {cfg.model.lora_rank})" if cfg.model.lora_rank else "", self.step, cfg.train.max_steps,
                 self.out)
        schedule = self.model.scheduler.config
        log.info("noise schedule: %s", ", ".join(f"{k}={schedule[k]}" for k in ("prediction_type", *SCHEDULE_KEYS)
                                                  if k in schedule))
        log.info(density_note(self.model, cfg.method.beta, math.prod(self.model.latent_shape(
            cfg.data.frames, cfg.data.height, cfg.data.width)[1:])))
        loader = self._loader()
        self.guard.attach(lambda: winner_probe(self, cfg.train.guard_winners), self.step)  # at step 0: θ0's errors
        bar = tqdm(total=cfg.train.max_steps, initial=self.step, desc=f"{cfg.method.name}", disable=not acc.is_main_process,
                   dynamic_ncols=True)
        t_start, bad_steps, history = time.perf_counter(), 0, []
        batches = Lookahead(iter(loader))
        try:  # closed on an error too, so that the error's line is a line of its own
            while self.step < cfg.train.max_steps:
                t_step = time.perf_counter()
                stats = self.optimizer_step(batches)
                self.watch(stats)
                bad_steps = 0 if math.isfinite(stats.get("grad_norm", 0.0)) else bad_steps + 1
                if bad_steps >= MAX_BAD_STEPS:
                    raise Diverged(f"{MAX_BAD_STEPS} consecutive non-finite gradients at step {self.step}; "
                                   f"lower optim.lr or method.beta, or use mixed_precision: bf16. "
                                   f"{self._divergence_note()}")
                self.step += 1
                if self.ema:
                    self.ema.update(self.step)
                if self.slow:
                    self.slow.update(self.step)
                if self.method.reference != "none" and self.pool.due(self.step):  # replay: snapshot after this update
                    with self.slow.applied() if self.slow else contextlib.nullcontext():
                        self.pool.add(self.step, self.policy.snapshot())
                stats.update({"lr": self.lr_schedule.get_last_lr()[0], "time/step_s": time.perf_counter() - t_step})
                history.append(stats["loss"])
                if self.step % cfg.train.log_every == 0:
                    self.log(stats)
                bar.set_postfix(self._short(stats), refresh=False)
                bar.update(1)
                if cfg.train.checkpoint_every and self.step % cfg.train.checkpoint_every == 0 and self.step < cfg.train.max_steps:
                    self.save_checkpoint()
                if cfg.train.sample_every and self.step % cfg.train.sample_every == 0 and self.step < cfg.train.max_steps:
                    self.write_samples()
                if on_step is not None:
                    on_step(self)
        finally:
            bar.close()
        if self.overlap:
            self.overlap.close()
        final = self.save_checkpoint()
        samples = self.write_samples()
        acc.end_training()
        summary = {"steps": self.step, "method": cfg.method.name, "family": cfg.model.family,
                   "first_loss": history[0] if history else None, "last_loss": history[-1] if history else None,
                   "seconds": round(time.perf_counter() - t_start, 2), "checkpoint": str(final),
                   "samples": [str(p) for p in samples], "global_batch": self.global_batch,
                   "distributed": f"{acc.distributed_type.value} x {acc.num_processes}",
                   "replay_steps": self.pool.steps, "divergence": self.divergence, **self.counters}
        if acc.is_main_process:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def watch(self, stats: dict) -> None:
        """At the first anomalous step (`Watchdog`) or preference-guard alarm (`videosspo.guard`, which adds
        `guard/*` to `stats`), keep the newest checkpoint written before it out of pruning; `train.guard: stop`
        ends the run at the alarm."""
        why = self.watchdog.check(stats)
        alarm = self.guard.observe(self.step + 1, stats)
        if (why or alarm) and self.divergence is None:
            kept = latest_checkpoint(self.out)
            self.divergence = {"step": self.step + 1, "why": why or alarm, "kept": kept.name if kept else None}
            if why and self.config.train.on_anomaly == "stop":
                raise stopped(self.step + 1, why, kept)
            log.warning(self._divergence_note())
        if alarm and self.guard.mode == "stop":  # one line: the step, the numbers, the kept checkpoint
            note = self._divergence_note()
            raise GuardStop(f"train.guard: stop ended the run at step {self.step + 1}"
                            f"{'' if alarm in note else ': ' + alarm}. {note}")

    def _divergence_note(self) -> str:
        root = self.out / CHECKPOINTS
        if not self.divergence:
            return f"Checkpoints in {root} are intact."
        d = self.divergence
        kept = (f"{root / d['kept']}, the last checkpoint written before it, is kept out of pruning" if d["kept"]
                else "no checkpoint was written before it")
        return f"Training turned anomalous at step {d['step']} ({d['why']}): {kept}."

    def optimizer_step(self, batches) -> dict:
        """`grad_accum` micro-batches, then clip, update, schedule. Returns averaged stats."""
        cfg, acc = self.config, self.accelerator
        sums: dict[str, float] = {}
        micro, failed = [], []
        for _ in range(cfg.optim.grad_accum):
            batch = next(batches)
            failed += batch["unreadable"]
            while "captions" not in batch:  # every clip of the micro-batch was unreadable: take the next one
                if len({bad.index for bad in failed}) == len(self.data):  # none can be read: `add` stops the run
                    break
                batch = next(batches)
                failed += batch["unreadable"]
                self.stream_skips += 1
            micro.append(batch)
        # unreadable clips of every process: each file logged once; all stop together past data.max_bad_fraction
        self.counters["skipped_clips"] += self.unreadable.add(gather_object(failed))
        if self.overlap and self._overlappable(self.step + 1):
            self.negative_embedding()  # encoded here, not raced for by the worker
            self.overlap.submit(self, self.step + 1, batches.peek(cfg.optim.grad_accum))
        for batch in micro:
            with acc.accumulate(self.unet):
                loss, stats = self.loss(batch)
                acc.backward(loss)  # always, even when non-finite: every DDP process must reduce
                if acc.sync_gradients:
                    grad_norm = acc.clip_grad_norm_(self.unet.parameters(), cfg.optim.max_grad_norm or math.inf)
                    # DeepSpeed clips and skips overflows inside its engine (its norm a float, or None); fp16's scaler
                    # skips inf steps
                    if grad_norm is None or torch.isfinite(torch.as_tensor(grad_norm)) or acc.scaler is not None:
                        self.optimizer.step()
                    else:
                        self.counters["nonfinite_steps"] += 1
                        log.warning("non-finite gradient at step %d: update skipped", self.step)
                    self.lr_schedule.step()
                    self.optimizer.zero_grad(set_to_none=True)
            stats["loss"] = loss.item()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.optim.grad_accum
        if acc.num_processes > 1:  # log the global batch's statistics, not process 0's share
            values = acc.reduce(torch.tensor(list(sums.values()), device=acc.device), reduction="mean")
            sums = dict(zip(sums, values.tolist()))
        if grad_norm is not None:
            sums["grad_norm"] = float(grad_norm)  # of the synchronised (global-batch) gradient, before clipping
        return sums

    def _overlappable(self, step: int) -> bool:
        """Step `step` samples losers whose reference is already in the pool (no snapshot comes before it)."""
        return (step < self.config.train.max_steps and step % self.config.loser.reuse == 0
                and not self.pool.due(step))

    def log(self, stats: dict) -> None:
        """TensorBoard scalars, and one JSON line per logged step in `metrics.jsonl` (easy to parse)."""
        self.accelerator.log(stats, step=self.step)
        if self.accelerator.is_main_process:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": self.step, **stats}) + "\n")

    @staticmethod
    def _short(stats: dict) -> dict:
        keys = {"loss": "loss", "sspo/switch_frac": "sw", "rewards/accuracy": "acc", "replay/ref_index": "ref"}
        return {short: f"{stats[k]:.4g}" for k, short in keys.items() if k in stats}

    @property
    def global_batch(self) -> int:
        return self.config.optim.batch_size * self.config.optim.grad_accum * self.accelerator.num_processes

    def _loader(self) -> DataLoader:
        cfg, acc = self.config, self.accelerator
        args = (cfg.optim.batch_size, cfg.optim.grad_accum, acc.num_processes, acc.process_index, cfg.train.seed, self.step)
        kwargs = dict(repeat=cfg.loser.reuse if self.method.losers == "sampled" else 1, skip=self.stream_skips)
        sampler = (ShardSampler(self.data.shard_sizes, *args, **kwargs) if isinstance(self.data, ShardDataset)
                   else StreamSampler(len(self.data), *args, **kwargs, buckets=self.data.buckets))
        # its own generator: making an iterator draws a worker seed, which would otherwise advance the global RNG
        # (checkpointed), so that a resumed run's RNG state would differ from an uninterrupted one's
        return DataLoader(StreamDataset(self.data, cfg.train.seed), batch_sampler=sampler, collate_fn=collate_stream,
                          num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0,
                          generator=torch.Generator().manual_seed(cfg.train.seed))

    # -- outputs -----------------------------------------------------------------------------------

    def inference_weights(self):
        """A context in which `self.model` holds the weights samples and exports use: the moving
        average with optim.ema_decay (the trained weights are back after it), else the trained ones."""
        return self.ema.applied() if self.ema else contextlib.nullcontext()

    def write_samples(self) -> list[Path]:
        """Videos of `train.sample_prompts` from the current policy (its EMA when on), with their prompts."""
        cfg, acc = self.config, self.accelerator
        prompts = list(cfg.train.sample_prompts)
        if not prompts:  # the same config on every process: none of them enters the collective below
            return []
        with self.inference_weights():
            whole = self.policy.state() if self.policy.sharded else None  # every process: a collective under FSDP
            if not acc.is_main_process:
                return []
            view = copy.copy(self.model)  # the unwrapped unet: sampling needs no gradient sync
            if whole is not None:  # FSDP: the unwrapped unet holds this process's shard; sample a whole copy
                view.unet = self.policy.merged_unet(whole)
            view.unet.eval()
            on_cpu = "text_encoder" in encoders_on_cpu(cfg)  # its prompts encoded once per run, not per sample event
            pixels = view.decode(sample_latents(view, prompts, frames=cfg.data.frames, height=cfg.data.height,
                                                width=cfg.data.width, steps=cfg.sample.steps,
                                                guidance=cfg.sample.guidance, guidance_2=cfg.sample.guidance_2,
                                                negative_prompt=cfg.sample.negative_prompt,
                                                scheduler=cfg.sample.scheduler, seeds=list(range(len(prompts))),
                                                cond=torch.cat([self.embed_once(p) for p in prompts]) if on_cpu else None,
                                                uncond=self.embed_once(cfg.sample.negative_prompt)
                                                if on_cpu and cfg.sample.guidance > 1 else None))
            view.unet.train()
        folder = self.out / "samples" / f"step_{self.step:06d}"
        paths = [write_video(folder / f"{i:02d}_{_slug(p)}.{cfg.train.sample_format}", video, fps=8)
                 for i, (p, video) in enumerate(zip(prompts, pixels.cpu()))]
        (folder / "prompts.txt").write_text("\n".join(f"{path.name}\t{p}" for path, p in zip(paths, prompts)) + "\n")
        return paths

    def save_checkpoint(self) -> Path:
        """Write the whole training state: complete or not at all, never at the cost of an earlier checkpoint.

        The state goes to a temporary folder, gets its completeness marker and is fsynced, then is
        renamed into place (`videosspo.checkpoint`); snapshots go to the run's store once. On any failure
        the temporary folder is removed and the error says how much space there is and is needed.
        """
        acc = self.accelerator
        final = self.out / CHECKPOINTS / f"step_{self.step:08d}"
        tmp = final.with_name(f".tmp-{final.name}")
        store = SnapshotStore(self.out / STORE)
        if any(gather_object(nonfinite(self.model.unet.named_parameters()))):  # every process's shard
            raise stopped(self.step, "non-finite weights", latest_checkpoint(self.out))
        if final == self.resumed:  # a finished run relaunched: its final checkpoint stays as written
            if acc.is_main_process:
                prune(self.out, self.config.train.keep_checkpoints, self.lineage,
                      protect=self.divergence and self.divergence["kept"])
            return final
        previous = latest_checkpoint(self.out)
        needed = (checkpoint_bytes(previous) if previous else 0) + self.pool.unstored_bytes(store)
        acc.wait_for_everyone()
        if acc.is_main_process:
            check_space(final, needed)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        stream_skips = gather_object([self.stream_skips])  # every process's, by rank
        acc.wait_for_everyone()
        try:
            self._save_state(tmp / "accelerate")  # every process: sharded states (FSDP/DeepSpeed) need all
            if self.losers.reuse > 1:  # each process's own cache: its samples are its own
                (tmp / "losers").mkdir(exist_ok=True)
                self.losers.save(tmp / "losers" / f"rank{acc.process_index}.safetensors")
            with self.inference_weights():  # every process: gathering the shards is a collective under FSDP
                whole = self.policy.state() if self.policy.sharded else None
            acc.wait_for_everyone()
            if acc.is_main_process:
                self._write_state(tmp, store, stream_skips, whole)
                commit(tmp, final)
        except Exception as e:  # any failure (torch's writer raises RuntimeError on a full disk, not OSError)
            shutil.rmtree(tmp, ignore_errors=True)
            raise save_failed(final, e, needed) from e
        if acc.is_main_process:
            prune(self.out, self.config.train.keep_checkpoints, self.lineage,
                  protect=self.divergence and self.divergence["kept"])
        acc.wait_for_everyone()
        return final

    def _save_state(self, folder: Path) -> None:
        """accelerate's part of a checkpoint (every process calls it): weights (LoRA: the adapter), optimizer,
        grad scaler, RNG.

        Under FSDP the weights and the optimizer state are gathered whole and process 0 writes them
        (`FSDP_MODEL_FILE` or the adapter, `FSDP_OPTIMIZER_FILE`); `_load_state` scatters them back, so a
        checkpoint does not depend on the sharding. accelerate's own FSDP save is not used: it offloads the
        gathered weights to CPU, which on a CPU device frees them under the state dict (SIGSEGV, torch 2.13).
        """
        acc = self.accelerator
        if not self.policy.sharded:
            acc.save_state(str(folder), **self._save_kwargs)  # LoRA: `_save_adapter_only` writes the adapter
            return
        weights, optimizer = self.policy.snapshot(), self.policy.optimizer_state(self.optimizer.optimizer)  # collectives
        folder.mkdir(parents=True, exist_ok=True)
        if acc.is_main_process:
            save_file(weights, str(folder / (ADAPTER_FILE if self.policy.lora else FSDP_MODEL_FILE)))
            torch.save(optimizer, folder / FSDP_OPTIMIZER_FILE)
        save_accelerator_state(str(folder), [], [], [], [], acc.process_index, acc.step, acc.scaler)  # RNG, scaler

    def _load_state(self, folder: Path) -> None:
        """Restore what `_save_state` wrote (every process reads the whole files; under FSDP each keeps its shard)."""
        acc = self.accelerator
        if not self.policy.sharded:
            acc.load_state(str(folder), **self._load_kwargs)
            return
        if not (folder / FSDP_OPTIMIZER_FILE).is_file():
            raise CheckpointError(f"it was not written under FSDP (no accelerate/{FSDP_OPTIMIZER_FILE}); resume it "
                                  f"with the accelerate config that wrote it")
        weights = load_file(str(folder / (ADAPTER_FILE if self.policy.lora else FSDP_MODEL_FILE)))
        if self.policy.lora:
            self.policy.load_adapter(weights)
        else:
            self.policy.load(weights)
        self.policy.load_optimizer_state(self.optimizer.optimizer, torch.load(folder / FSDP_OPTIMIZER_FILE,
                                                                              weights_only=True))
        acc.step = load_accelerator_state(str(folder), [], [], [], [], acc.process_index, acc.scaler).get("step", acc.step)

    def _write_state(self, tmp: Path, store: SnapshotStore, stream_skips: list[int], whole: dict | None) -> None:
        """The main process's part of a checkpoint: replay pool, EMA, export (of `whole`, the state dict
        gathered under FSDP), config, trainer state, marker.

        Exporting builds modules whose random init it overwrites: under `fork_rng`, so the global RNG
        (saved above by `save_state`) does not advance and a resumed run's equals an uninterrupted one's.
        """
        device = self.accelerator.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            self.pool.save(tmp, store)
            if self.ema:  # under FSDP this process's average is its shard: the whole one is in `whole`
                save_file(self.ema.state_dict(whole), str(tmp / EMA_FILE))
            if self.slow:
                save_file(self.slow.state_dict(), str(tmp / SLOW_REFERENCE_FILE))
            with self.inference_weights():
                if self.config.train.export == "adapter":
                    save_adapter(tmp / "model", self.policy.snapshot(whole), self.config.model)
                else:
                    self.model.save_pretrained(tmp / "model", unet=self.policy.merged_unet(whole))
        save_config(self.config, tmp / "config.yaml")
        state = {"step": self.step, "counters": self.counters, "divergence": self.divergence,
                 "unreadable": self.unreadable.state_dict(), "stream_skips": stream_skips,
                 "guard": self.guard.state_dict()}
        (tmp / "trainer.json").write_text(json.dumps(state, indent=2))
        snapshots = {d: store.path(d).stat().st_size for d in self.pool.digests}
        write_marker(tmp, self.lineage, self.parent, snapshots)

    def resume(self, where: str | None) -> None:
        """Restore the whole training state from `train.resume`: `latest` (the newest checkpoint that
        verifies; damaged newer ones are named and skipped) or a checkpoint folder. None starts fresh.
        Refuses what would mix two runs in one output folder (`checkpoint.resume_candidates`)."""
        candidates = resume_candidates(self.out, where)
        for tried, path in enumerate(candidates):
            try:
                info = verify(path)
                self._load(path)
            except CheckpointError as e:
                if where != "latest":
                    raise
                log.warning("cannot resume from %s: %s", path.name, e)
                continue
            if tried:
                log.warning("resumed from %s instead: the newest checkpoint that verifies", path)
            same_run = path.parent.resolve() == (self.out / CHECKPOINTS).resolve()
            self.resumed = self.out / CHECKPOINTS / path.name if same_run else None
            self.lineage, self.parent = (info["lineage"], info["parent"]) if same_run else (new_lineage(), str(path))
            log.info("resumed from %s at step %d", path, self.step)
            return
        if candidates:
            raise CheckpointError(f"no checkpoint in {self.out / CHECKPOINTS} can be resumed (each is named above); "
                                  f"start a new train.output_dir")
        if where == "latest":
            log.info("train.resume=latest but %s has no checkpoint; starting fresh", self.out / CHECKPOINTS)

    def _load(self, path: Path) -> None:
        """Load a verified checkpoint into this trainer; a failure names the checkpoint and the error."""
        acc, optim = self.accelerator, self.config.optim
        saved = load_config(path / "config.yaml")
        changes = check_resume(saved, self.config)
        state = json.loads((path / "trainer.json").read_text())  # parses: `verify` read it
        skips = state.get("stream_skips", [])  # one count per process of the run that wrote it (older: none)
        if skips:
            check_global_batch(saved, len(skips), self.config, acc.num_processes)
            if isinstance(self.data, ShardDataset) and len(skips) != acc.num_processes:
                raise ConfigError(f"cannot resume on {acc.num_processes} processes: the checkpoint's {len(skips)} "
                                  f"processes each read their own WebDataset shards of {self.config.data.path}; "
                                  f"resume with {len(skips)} processes")
        check_zero_partitions(path / "accelerate", acc.state.deepspeed_plugin is not None, acc.num_processes)
        self.stream_skips = stream_shift(skips, saved.optim.batch_size, optim.batch_size, acc.num_processes,
                                         acc.process_index)
        try:
            self._load_state(path / "accelerate")
            self.step, self.counters, self.divergence = state["step"], state["counters"], state.get("divergence")
            self.lr_schedule = lr_schedule(self.lr_schedule.optimizer, optim, self.config.train.max_steps, self.step)
            log_changes(changes, path)
            # accelerate's count of micro-batches, which decides where `accumulate` syncs: this layout's (another
            # optim.grad_accum, or a process the saving run did not have and so no count)
            acc.step = self.step * optim.grad_accum
            self.unreadable.load_state_dict(state.get("unreadable", []))
            self.guard.load_state_dict(state.get("guard", {}))
            self.pool.load(path, store_of(path))
            if self.ema and (path / EMA_FILE).is_file():
                self.ema.load_state_dict(load_file(str(path / EMA_FILE), device=str(self.accelerator.device)),
                                         write=self.policy.load if self.policy.sharded else None)
            elif self.ema:  # a checkpoint trained without EMA: the average starts at its weights
                log.warning("%s has no %s: the moving average starts at its weights", path.name, EMA_FILE)
                self.ema = EMA(self.model.unet, self.config.optim.ema_decay)
            self.losers = LoserCache(self.config.loser.reuse)
            self.losers.load(path / "losers")
            if self.slow:
                self.slow.load_state_dict(load_file(str(path / SLOW_REFERENCE_FILE), device=str(acc.device)))
        except Exception as e:  # a file that verified but does not load: name the checkpoint
            raise CheckpointError(f"{path} could not be loaded ({first_line(e)})") from e


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of steps after `step` from `metrics.jsonl`: a resumed run logs them again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
        log.info("metrics.jsonl: dropped %d lines after step %d (they are logged again)", len(lines) - len(kept), step)


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinite for a line cut short by a kill (dropped as well)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def check_global_batch(saved: Config, saved_processes: int, current: Config, processes: int) -> None:
    """Resume refuses another global batch: the data position derives from step x global batch."""
    def global_batch(optim, n: int) -> tuple[int, str]:
        return (optim.batch_size * optim.grad_accum * n,
                f"optim.batch_size {optim.batch_size} x optim.grad_accum {optim.grad_accum} x {n} processes")

    (was, was_made), (now, now_made) = global_batch(saved.optim, saved_processes), global_batch(current.optim, processes)
    if now != was:
        raise ConfigError(f"cannot resume: the global batch is {now} ({now_made}) but the checkpoint's is {was} "
                          f"({was_made}); set optim.batch_size x optim.grad_accum x processes to {was}")


def check_zero_partitions(folder: Path, deepspeed: bool, processes: int) -> None:
    """Resume refuses to mix DeepSpeed's checkpoints with others: ZeRO's optimizer state (`ZERO_PARTITIONS` in
    `folder`) is partitioned over the processes that wrote it. DeepSpeed loads neither another process count nor
    a checkpoint written without it, and its errors name no fix (every checkpoint then looks unresumable)."""
    partitions = len(list(folder.glob(ZERO_PARTITIONS)))
    if deepspeed and not partitions:
        raise ConfigError(f"cannot resume under DeepSpeed: {folder.parent} was written without it (no ZeRO optimizer "
                          f"state); resume with the accelerate config that wrote it")
    if partitions and (not deepspeed or partitions != processes):
        now = f"on {processes} DeepSpeed processes" if deepspeed else "without DeepSpeed"
        raise ConfigError(f"cannot resume {now}: the checkpoint's optimizer state is DeepSpeed ZeRO's, partitioned "
                          f"over its {partitions} processes; resume under DeepSpeed with {partitions} processes "
                          f"(accelerate launch --config_file configs/accelerate/deepspeed_zero2_8gpu.yaml "
                          f"--num_processes {partitions})")


def stream_shift(skips: list[int], saved_batch: int, batch: int, processes: int, rank: int) -> int:
    """Process `rank`'s `StreamSampler.skip` resuming a checkpoint whose processes (one count each, `saved_batch`
    samples per micro-batch) drew `skips` micro-batches to replace unreadable ones; the global batch is the same.

    The same layout keeps each process's own. Another continues only a shift alike on every process: k micro-steps
    of saved_batch x len(skips) samples are k x saved_batch x len(skips) / (batch x processes) here.
    """
    if not any(skips):  # none drawn (or a checkpoint older than the counts)
        return 0
    if len(skips) == processes and saved_batch == batch:
        return skips[rank]
    shift = skips[0] * saved_batch * len(skips)  # samples of the stream
    if len(set(skips)) > 1 or shift % (batch * processes):
        raise ConfigError(f"cannot resume on {processes} processes x optim.batch_size {batch}: the checkpoint's "
                          f"{len(skips)} processes x optim.batch_size {saved_batch} drew {skips} micro-batches to "
                          f"replace unreadable ones, a shift of the data that only that layout continues exactly; "
                          f"resume with it")
    return shift // (batch * processes)


def _check_deepspeed(plugin, batch_size: int, max_grad_norm: float) -> None:
    """DeepSpeed as the trainer uses it: ZeRO-3 is refused (its parameters are partitioned, and the replay
    snapshots, reference passes and export read whole ones; FSDP gathers them); the micro-batch is
    optim.batch_size (accelerate reads it from a prepared DataLoader, and the trainer prepares none); DeepSpeed's
    engine clips at optim.max_grad_norm (0: never), not at accelerate's 1.0 for `auto`."""
    if plugin.zero_stage == 3:
        raise ConfigError("DeepSpeed ZeRO-3 partitions the parameters that the replay snapshots, reference passes "
                          "and export read whole; use configs/accelerate/fsdp_8gpu.yaml (FSDP) or ZeRO-2")
    plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch_size
    plugin.deepspeed_config["gradient_clipping"] = max_grad_norm


def _process_group() -> list[InitProcessGroupKwargs]:
    """DeepSpeed without an accelerator (DS_ACCELERATOR=cpu) needs gloo named: accelerate finds no backend for
    a CPU launched without --cpu and counts 1 process while DeepSpeed counts them all (its batch-size check fails)."""
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    return [InitProcessGroupKwargs(backend="gloo")] if deepspeed and not torch.accelerator.is_available() else []


def _run_key(output_dir: Path) -> str:
    """A name for a run's files in shared node-local folders: its output folder, hashed."""
    return "run-" + hashlib.sha1(str(output_dir.resolve()).encode()).hexdigest()[:12]


def _slug(text: str, n: int = 60) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())[:n].strip("_")
