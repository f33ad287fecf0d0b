"""Sampled losers (sspo): x0^l for each caption, drawn in latent space by the reference, never decoded.

A loser is seeded by (seed, window start, stream position) and comes from the first of: the current reuse
window's cache (`LoserCache`, loser.reuse), the overlap worker that sampled it during the previous step
(`LoserOverlap`, loser.overlap), or sampling now (`Losers.sample`).
"""

from __future__ import annotations

import copy
import json
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from videosspo import rng
from videosspo.config import ConfigError
from videosspo.reference import Policy
from videosspo.sampling import sample_latents

if TYPE_CHECKING:
    from videosspo.trainer import Trainer


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
        save_file(
            {str(k): v.contiguous() for k, v in self.latents.items()},
            str(path),
            metadata={"window": json.dumps(self.start)},
        )

    def load(self, folder: Path) -> None:
        """Every `save`d file in `folder`, one per process of the run that wrote them (none with reuse 1)."""
        for path in sorted(folder.glob("rank*.safetensors")):
            with safe_open(str(path), framework="pt") as f:
                self.saved |= {int(k): f.get_tensor(k) for k in f.keys()}
                self.start = json.loads(f.metadata()["window"])


class LoserOverlap:
    """loser.overlap: step s+1's losers sampled in a background thread while step s trains.

    The worker runs `Losers.sample_now` on its own copy of the network, with the seeds and reference
    step s+1 would use; step s+1 takes a result only when its (step, reference, positions) match.
    """

    def __init__(self, trainer: Trainer):
        view = copy.copy(trainer.model)
        if trainer.policy.lora:  # the reference is an adapter slot: the worker needs its own network
            view.unet = copy.deepcopy(trainer.model.unet).requires_grad_(False).eval()
        self.policy = Policy(view)
        with self.policy.reference(trainer.pool, 0):  # full fine-tuning: its reference copy, built now
            pass
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="losers")
        self.pending: dict[tuple, Future] = {}

    def submit(self, losers: Losers, step: int, ref_index: int, batches: list[dict]) -> None:
        for batch in batches:
            if "captions" in batch:  # not a micro-batch of unreadable clips only
                key = (step, ref_index, tuple(batch["positions"]))
                self.pending[key] = self.executor.submit(
                    losers.sample_now, self.policy, batch, list(range(len(key[2]))), step, ref_index
                )

    def take(self, step: int, ref_index: int, positions: list[int]) -> torch.Tensor | None:
        future = self.pending.pop((step, ref_index, tuple(positions)), None)
        return None if future is None else future.result()

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.pending.clear()


class Losers:
    """The trainer's losers: `sample` serves a micro-batch's, `ahead` starts the next step's in the background.

    Reads the trainer's config, step, replay pool and encoders when called (a benchmark may swap the config).
    """

    def __init__(self, trainer: Trainer):
        cfg = trainer.config
        self.trainer = trainer
        self.cache = LoserCache(cfg.loser.reuse)
        if trainer.policy.sharded and cfg.loser.overlap:
            raise ConfigError(
                "loser.overlap samples in a background thread, which cannot take part in FSDP's "
                "collectives; set loser.overlap: false with FSDP"
            )
        self.overlap = LoserOverlap(trainer) if cfg.loser.overlap and trainer.method.losers == "sampled" else None

    @torch.no_grad()
    def sample(
        self, batch: dict, ref_index: int, cond: torch.Tensor | None = None, x_w: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x0^l for each caption of `batch`, by reference `ref_index` (`cond`, `x_w`: the batch's, if known).

        Seeded by (seed, window start, position); served from the window's cache when already sampled,
        or taken from the overlap worker when it sampled them during the previous step.
        """
        tr = self.trainer
        window = self.cache.window(tr.step)
        latents: list[torch.Tensor | None] = [self.cache.take(p) for p in batch["positions"]]
        todo = [k for k, x in enumerate(latents) if x is None]
        if todo:
            ahead = self.overlap.take(tr.step, ref_index, batch["positions"]) if self.overlap else None
            fresh = (
                ahead
                if ahead is not None and len(todo) == len(latents)
                else self.sample_now(
                    tr.policy,
                    batch,
                    todo,
                    window,
                    ref_index,
                    None if cond is None else cond[todo],
                    None if x_w is None else x_w[todo],
                )
            )
            for k, x in zip(todo, fresh, strict=True):
                latents[k] = x
                self.cache.put(batch["positions"][k], x)
        return torch.stack([x.to(tr.accelerator.device) for x in latents]).float()

    @torch.no_grad()
    def sample_now(
        self,
        policy: Policy,
        batch: dict,
        todo: list[int],
        window: int,
        ref_index: int,
        cond: torch.Tensor | None = None,
        x_w: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Losers of the batch's samples `todo`, by `policy`'s reference `ref_index` (`cond`, `x_w`: theirs, if known)."""
        tr = self.trainer
        cfg, lcfg = tr.config, tr.config.loser
        if cond is None:  # as `loss` has them
            cond = tr.prompt_embeds(batch, todo)
        if lcfg.init == "winner" and x_w is None:
            x_w = tr.latents({k: v[todo] if torch.is_tensor(v) else v for k, v in batch.items()}, "")
        frames, height, width = batch.get("size", (cfg.data.frames, cfg.data.height, cfg.data.width))  # the winners'
        with policy.reference(tr.pool, ref_index) as ref:
            return sample_latents(
                ref,
                [batch["captions"][k] for k in todo],
                frames=frames,
                height=height,
                width=width,
                steps=lcfg.steps,
                guidance=lcfg.guidance,
                guidance_2=lcfg.guidance_2,
                scheduler=lcfg.scheduler,
                spacing=lcfg.spacing,
                seeds=[rng.derive_seed(cfg.train.seed, window, batch["positions"][k], "loser") for k in todo],
                cond=cond,
                uncond=tr.negative_embedding(),
                init=x_w if lcfg.init == "winner" else None,
                strength=lcfg.strength,
            )

    def ahead(self, step: int, batches, n: int) -> None:
        """loser.overlap: start sampling step `step`'s losers for the next `n` micro-batches of `batches` (a
        `Lookahead`), when its reference is already in the
        pool (no snapshot comes before it) and it starts a reuse window."""
        tr = self.trainer
        if not self.overlap or not (
            step < tr.config.train.max_steps and step % tr.config.loser.reuse == 0 and not tr.pool.due(step)
        ):
            return
        tr.negative_embedding()  # encoded here, not raced for by the worker
        self.overlap.submit(self, step, tr.pool.draw(tr.config.train.seed, step), batches.peek(n))

    def close(self) -> None:
        if self.overlap:
            self.overlap.close()
