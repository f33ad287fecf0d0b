"""The trainer: assembles the training rooms and runs `sft`, `dpo` and `sspo` to train.max_steps.

One optimizer step = `optim.grad_accum` micro-batches on each of the accelerate processes. Each
micro-batch runs `Trainer.loss`, which reads top to bottom:

    losers -> noise & timesteps -> policy forward -> reference forward -> per-sample loss

The global batch is a contiguous run of the data stream, split process-major inside each
micro-step; every random draw derives from (seed, step, position in the global batch), so N
processes x A accumulation steps give the same update as one process with the same global batch.

The rooms it assembles: the data stream (`videosspo.stream`), sampled losers (`videosspo.losers`), the
distributed backend (`videosspo.backend`), the training state and its checkpoints (`videosspo.state`) and
health (`videosspo.health`: watchdog, preference guard); what a run shows besides checkpoints
(`videosspo.report`: opening log lines, sample videos).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from models import build_model, check_config
from models.lora import add_lora
from videosspo import rng
from videosspo.backend import Backend, make_accelerator
from videosspo.buckets import check_shape
from videosspo.buckets import plan as plan_buckets
from videosspo.checkpoint import disk_full, tidy
from videosspo.config import Config, ConfigError, save_config
from videosspo.data import report_long_captions
from videosspo.ema import EMA
from videosspo.guard import winner_probe
from videosspo.health import Health
from videosspo.latents import encoder_identity, encoders_on_cpu
from videosspo.losers import Losers
from videosspo.losses import per_sample_error
from videosspo.methods import get_method
from videosspo.objectives import get_objective
from videosspo.replay import NodeShare, ReplayPool
from videosspo.report import log_start, write_samples
from videosspo.resume import lr_schedule
from videosspo.runlock import RunLock
from videosspo.sampling import make_scheduler
from videosspo.state import TrainingState, run_key, truncate_metrics
from videosspo.stream import Lookahead, Stream, open_dataset

log = logging.getLogger("videosspo.trainer")


class Trainer:
    """Builds model, data, optimizer and replay pool from a `Config`; `fit()` trains to `max_steps`.

    Two handles to the network: `model`, the family adapter (encoders, VAE, scheduler; `model.unet` the unwrapped
    denoiser that the optimizer, EMA and exports hold), and `policy` (`videosspo.reference.Policy`), the same
    denoiser as trained: `policy.predict` runs it through accelerate's wrapper (`policy.wrapped`: DDP, FSDP),
    `policy.reference` runs a replay snapshot, `policy.snapshot` / `state` read its weights.
    """

    def __init__(self, config: Config, accelerator: Accelerator | None = None):
        self.config = cfg = check_config(config)  # the model family's rules (models.check_config)
        self.out = Path(cfg.train.output_dir)
        self.accelerator = acc = accelerator or make_accelerator(cfg, self.out)
        self.backend = Backend(acc, cfg)  # refuses DeepSpeed settings the trainer cannot use, before any work
        # Training draws from no global RNG (videosspo.rng), but they are seeded (a library may draw) and
        # checkpointed, so a resumed run's RNG state equals an uninterrupted one's
        set_seed(cfg.train.seed)
        self.method = get_method(cfg.method.name)  # the objective's loss and what it needs (videosspo.methods)
        self.loss_fn = self.method.bind(cfg.method)
        self.step = 0
        self.counters = {"skipped_clips": 0, "nonfinite_steps": 0}  # skipped_clips: failed reads, all processes
        self.health = Health(cfg.train, self.out)
        self.state = TrainingState(self)

        self.model = build_model(cfg.model)
        for sampler, steps, spacing in {
            (cfg.sample.scheduler, cfg.sample.steps, None),
            (cfg.loser.scheduler, cfg.loser.steps, cfg.loser.spacing),
        }:
            make_scheduler(self.model, sampler, steps, spacing)  # a sampler that does not fit fails now, not at step 1
        encoder = encoder_identity(self.model) if cfg.data.latent_cache else None  # before any dtype cast
        if cfg.model.lora_rank:
            self.model.unet.requires_grad_(False)
            add_lora(
                self.model.unet, cfg.model.lora_rank, cfg.model.lora_alpha, self.model.lora_scope, seed=cfg.train.seed
            )
        if cfg.model.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.model.enable_low_memory(cfg.model, acc.device, acc.distributed_type.name)  # fp8_base, blocks_to_swap
        frozen_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.train.mixed_precision)
        self.model.to(acc.device, frozen_dtype, keep_on_cpu=encoders_on_cpu(cfg))  # cached text: encoder on CPU
        self.model.enable_attention(cfg.model.attention)

        self.data = open_dataset(cfg, acc.num_processes, require_loser=self.method.losers == "data", encoder=encoder)
        repeat = cfg.loser.reuse if self.method.losers == "sampled" else 1  # each global batch serves a reuse window
        self.stream = Stream(
            self.data,
            cfg,
            acc.num_processes,
            acc.process_index,
            repeat,
            self.backend.gather,
            verbose=acc.is_main_process,
        )
        if acc.is_main_process and hasattr(self.data, "records"):  # captions the text encoder truncates: said once
            report_long_captions(self.data.records, self.model.tokenizer, self.model.text_length)
        check_shape(self.model, (cfg.data.frames, cfg.data.height, cfg.data.width))  # the family's frame / size rule
        if cfg.data.buckets:  # each row's shape, one per global batch
            self.data.buckets = plan_buckets(cfg.data, self.data, self.model)

        params = [p for p in self.model.unet.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.optim.lr, betas=cfg.optim.betas, weight_decay=cfg.optim.weight_decay
        )
        self.lr_schedule = lr_schedule(self.optimizer, cfg.optim, cfg.train.max_steps, step=0)
        # The LR schedule is stepped by us once per optimizer step (accelerate's wrapper steps it once per
        # process, which would make N processes differ from one); its state is (config, step): rebuilt at resume.
        self.policy, self.optimizer = self.backend.prepare(self.model, self.optimizer)
        self.ema = EMA(self.model.unet, cfg.optim.ema_decay) if cfg.optim.ema_decay else None

        replay = cfg.replay
        if self.method.reference == "initial":  # Diffusion-DPO: the frozen initial model is the reference
            replay = dataclasses.replace(replay, size=1, strategy="initial")
        # Every process holds the pool (each needs its reference): its own copy, spilling to a folder per
        # process; or, with replay.node_dir, a memory map of the node's one copy (a folder per run).
        spill_dir = Path(replay.spill_dir or self.out / "replay_spill") / f"rank{acc.process_index}"
        share = (
            NodeShare(Path(replay.node_dir) / run_key(self.out), acc.is_local_main_process, acc.wait_for_everyone)
            if replay.node_dir
            else None
        )
        self.pool = ReplayPool(
            size=replay.size,
            interval=replay.interval,
            strategy=replay.strategy,
            evict=replay.evict,
            cpu_budget_gb=replay.cpu_budget_gb,
            spill_dir=spill_dir,
            share=share,
        )
        if self.method.reference != "none":
            self.pool.add(0, self.policy.snapshot())
        # a slower reference (sspo-ema): snapshots of a moving average of the policy, starting at θ0
        self.slow = (
            EMA(self.model.unet, cfg.method.reference_decay, warmup=False) if self.method.slow_reference else None
        )
        if self.slow and self.policy.sharded:
            raise ConfigError(f"method.name {cfg.method.name} keeps an unsharded moving average: not with FSDP")
        self._fixed_prompts: dict[str, torch.Tensor] = {}  # embeddings of fixed prompts, encoded once per run
        self.losers = Losers(self)

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
            x_l = self.losers.sample(batch, ref_index, cond, x_w)
            stats["time/losers_s"] = time.perf_counter() - t0

        # 2. one timestep and one noise per sample, shared by winner and loser
        seed, objective, sched = cfg.train.seed, get_objective(model.objective), model.scheduler
        t = objective.timesteps(
            sched,
            seed,
            self.step,
            positions,
            seq_len=x_w[0, 0].numel(),  # f·h·w
            sigma_range=model.sigma_range,
        ).to(device)
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
            e_w, e_l = winners_losers(per_sample_error(self.policy.predict(x_t, t, cond), target))

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

    def negative_embedding(self) -> torch.Tensor | None:
        """The negative prompt's embedding for CFG losers (None without CFG)."""
        return self.embed_once(self.config.sample.negative_prompt) if self.config.loser.guidance > 1 else None

    def embed_once(self, prompt: str) -> torch.Tensor:
        """A fixed prompt's embedding (the negative prompt, the dropped caption ""), encoded once per run."""
        if prompt not in self._fixed_prompts:
            self._fixed_prompts[prompt] = self.model.encode_prompt([prompt])
        return self._fixed_prompts[prompt]

    # -- the loop ----------------------------------------------------------------------------------

    def fit(self, on_step: Callable[[Trainer], None] | None = None) -> dict:
        """Resume (`train.resume`) and train to `train.max_steps`, holding the output folder's lock throughout.

        `on_step(trainer)` runs after every optimizer step (e.g. an evaluation).
        """
        acc = self.accelerator
        with RunLock(self.out) if acc.is_main_process else contextlib.nullcontext():
            if acc.is_main_process:
                tidy(self.out)  # what a killed save or prune left behind
            acc.wait_for_everyone()
            self.state.resume(self.config.train.resume)
            if (
                acc.is_main_process
            ):  # steps logged after the resumed one (or by a run killed before its first checkpoint)
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
        log_start(self)
        batches = Lookahead(iter(self.stream.loader(self.step)))
        self.health.guard.attach(lambda: winner_probe(self, cfg.train.guard_winners), self.step)  # step 0: θ0's errors
        bar = tqdm(
            total=cfg.train.max_steps,
            initial=self.step,
            desc=f"{cfg.method.name}",
            disable=not acc.is_main_process,
            dynamic_ncols=True,
        )
        t_start, history = time.perf_counter(), []
        try:  # closed on an error too, so that the error's line is a line of its own
            while self.step < cfg.train.max_steps:
                t_step = time.perf_counter()
                stats = self.optimizer_step(batches)
                self.health.check(self.step, stats)  # may stop the run, its last good checkpoint kept
                self.step += 1
                self._after_update()
                stats.update({"lr": self.lr_schedule.get_last_lr()[0], "time/step_s": time.perf_counter() - t_step})
                history.append(stats["loss"])
                if self.step % cfg.train.log_every == 0:
                    self.log(stats)
                bar.set_postfix(self._short(stats), refresh=False)
                bar.update(1)
                if (
                    cfg.train.checkpoint_every
                    and self.step % cfg.train.checkpoint_every == 0
                    and self.step < cfg.train.max_steps
                ):
                    self.state.save()
                if (
                    cfg.train.sample_every
                    and self.step % cfg.train.sample_every == 0
                    and self.step < cfg.train.max_steps
                ):
                    write_samples(self)
                if on_step is not None:
                    on_step(self)
        finally:
            bar.close()
        self.losers.close()
        final = self.state.save()
        samples = write_samples(self)
        acc.end_training()
        summary = {
            "steps": self.step,
            "method": cfg.method.name,
            "family": cfg.model.family,
            "first_loss": history[0] if history else None,
            "last_loss": history[-1] if history else None,
            "seconds": round(time.perf_counter() - t_start, 2),
            "checkpoint": str(final),
            "samples": [str(p) for p in samples],
            "global_batch": self.global_batch,
            "distributed": f"{acc.distributed_type.value} x {acc.num_processes}",
            "replay_steps": self.pool.steps,
            "divergence": self.health.divergence,
            **self.counters,
        }
        if acc.is_main_process:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def optimizer_step(self, batches: Lookahead) -> dict:
        """`grad_accum` micro-batches, then clip, update, schedule. Returns the global batch's averaged stats."""
        cfg, acc = self.config, self.accelerator
        # data: this step's micro-batches (all-unreadable ones replaced); the next step's losers start sampling
        micro, skipped = self.stream.take(batches, cfg.optim.grad_accum)
        self.counters["skipped_clips"] += skipped
        self.losers.ahead(self.step + 1, batches, cfg.optim.grad_accum)
        sums: dict[str, float] = {}
        for batch in micro:
            with acc.accumulate(self.policy.wrapped):
                loss, stats = self.loss(batch)
                acc.backward(loss)  # always, even when non-finite: every DDP process must reduce
                if acc.sync_gradients:  # the last micro-batch: clip, update (unless non-finite), schedule
                    grad_norm, stepped = self.backend.update()
                    if not stepped:
                        self.counters["nonfinite_steps"] += 1
                        log.warning("non-finite gradient at step %d: update skipped", self.step)
                    self.lr_schedule.step()
                    self.optimizer.zero_grad(set_to_none=True)
            stats["loss"] = loss.item()
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.optim.grad_accum
        sums = self.backend.mean(sums)  # log the global batch's statistics, not process 0's share
        if grad_norm is not None:
            sums["grad_norm"] = float(grad_norm)  # of the synchronised (global-batch) gradient, before clipping
        return sums

    def _after_update(self) -> None:
        """The moving averages follow the update; the replay pool snapshots the policy (sspo-ema: the slow
        average) when a snapshot is due."""
        if self.ema:
            self.ema.update(self.step)
        if self.slow:
            self.slow.update(self.step)
        if self.method.reference != "none" and self.pool.due(self.step):  # replay: snapshot after this update
            with self.slow.applied() if self.slow else contextlib.nullcontext():
                self.pool.add(self.step, self.policy.snapshot())

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

    # -- outputs -----------------------------------------------------------------------------------

    def inference_weights(self):
        """A context in which `self.model` holds the weights samples and exports use: the moving
        average with optim.ema_decay (the trained weights are back after it), else the trained ones."""
        return self.ema.applied() if self.ema else contextlib.nullcontext()
