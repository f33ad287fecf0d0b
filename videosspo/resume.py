"""What the flags given to a resume may change, key by key (docs/checkpoints.md, "Flags given on resume").

A checkpoint restores the whole training state; the config that resumes it then decides:

- `REFUSED`: the architecture and the shape of the data, buckets included (the weights, the replay pool
  and the window's losers are of that shape): a difference is one line, exit 2, before anything trains.
- The optimizer's hyperparameters and the LR schedule (optim.lr, weight_decay, betas, schedule,
  warmup_steps; train.max_steps, which ends the schedule) are written into the restored optimizer,
  and the schedule is rebuilt at the checkpoint's step (`lr_schedule`): its state is (config, step),
  so nothing else needs saving, and an unchanged config continues bit for bit.
- Every other key (logging, checkpoint cadence, method.beta, loser settings, ...) is read from the
  config as the run goes.

Each difference that is not refused is logged in one line at resume.
"""

from __future__ import annotations

import logging

import torch
from diffusers.optimization import get_scheduler
from torch.optim.lr_scheduler import LambdaLR

from videosspo.config import Config, ConfigError, OptimConfig

log = logging.getLogger("videosspo.resume")

# Keys that must match between a checkpoint and the config that resumes it.
REFUSED = (
    "model.family",
    "model.pretrained",
    "model.motion_adapter",
    "model.vae",
    "model.lora_rank",
    "model.lora_alpha",
    "model.experts",
    "model.stacked_frames",
    "model.stacked_coords",
    "model.size",
    "model.schedule",
    "model.prediction_type",
    "method.name",
    "replay.size",
    "replay.strategy",
    "replay.interval",
    "data.frames",
    "data.height",
    "data.width",
    "data.buckets",
)
# Keys that may differ and say nothing about the run itself.
UNLOGGED = ("train.resume", "train.output_dir")


def check_resume(saved: Config, current: Config) -> list[str]:
    """ConfigError naming the first `REFUSED` key that differs; else the differing keys as 'key: old -> new'."""
    a, b = saved.to_dict(), current.to_dict()
    changes = []
    for section in a:
        for name in a[section]:
            key, old, new = f"{section}.{name}", a[section][name], b[section][name]
            if old == new or key in UNLOGGED:
                continue
            if key in REFUSED:
                raise ConfigError(
                    f"cannot resume with {key}={new!r}: the checkpoint was trained with {old!r}, and "
                    f"{key} fixes what its weights, replay pool and losers are; drop the flag, or "
                    f"start a new run (a new train.output_dir, no train.resume)"
                )
            changes.append(f"{key}: {old!r} -> {new!r}")
    return changes


def lr_schedule(optimizer: torch.optim.Optimizer, optim: OptimConfig, max_steps: int, step: int) -> LambdaLR:
    """The LR schedule of `optim` over `max_steps` steps, at `step`, on `optimizer` (restored or fresh): its
    learning rate, betas and weight decay are `optim`'s, so flags given on resume take effect."""
    for group in optimizer.param_groups:
        group.update(initial_lr=optim.lr, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    name = "constant_with_warmup" if optim.schedule == "constant" else optim.schedule
    return get_scheduler(
        name, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=max_steps, last_epoch=step - 1
    )  # constructing it takes one step, to `step`


def log_changes(changes: list[str], checkpoint) -> None:
    if changes:
        log.info(
            "resuming %s with %d changed settings (applied from here on): %s",
            checkpoint,
            len(changes),
            "; ".join(changes),
        )
