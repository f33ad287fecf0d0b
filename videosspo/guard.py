"""The preference guard (`train.guard`): says when a run is destroying what the model generates, before
an evaluation would.

The failure it watches for is likelihood displacement (docs/alignment.md): raising the policy's error
on the losers, the reference's own samples with SSPO, is the easy way to a margin, and the winners'
error drifts up with it, so the model unlearns what it generates. Two signals:

    drift = ē_θ(B) / ē_θ0(B) − 1      the policy's mean error on a fixed batch B of winners (fixed clips,
                                       noise and timesteps) against θ0's on the same batch, measured every
                                       `guard_every` steps and averaged over the last `SMOOTH` measurements
                                       (one batch of 8 jitters by ±20% under SFT): positive when the
                                       winners are predicted worse than before training
    loser = Σ e_θ^l / Σ e_ref^l − 1   over the last `WINDOW` steps: how far above the reference's own
                                       error the policy's error on the losers has been pushed

It fires once, at the first step where drift > `guard_drift` or loser > `guard_loser` (thresholds
calibrated on the study's runs, docs/alignment.md). Every step's stats get `guard/drift`,
`guard/e_fixed` (the latest measurement, unsmoothed), `guard/e_fixed_theta0` and `guard/loser`. The trainer keeps
the last checkpoint written before the alarm out of pruning; `train.guard: stop` ends the run there
(`GuardStop`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import torch

from videosspo import rng
from videosspo.data import Unreadable, collate
from videosspo.errors import UserError
from videosspo.losses import per_sample_error
from videosspo.objectives import get_objective

log = logging.getLogger("videosspo.guard")

WINDOW = 5  # steps the loser ratio is summed over
SMOOTH = 3  # measurements of the fixed batch the drift averages (15 steps at guard_every 5)
PROBE_STEP = 2**32 - 1  # the rng "step" of the fixed batch's noise and timesteps: one no training step reaches


class GuardStop(UserError):
    """`train.guard: stop` ended a run whose preference signals crossed their thresholds."""


class Guard:
    """Watches one run's statistics (see the module docstring); `observe` once per optimizer step."""

    def __init__(self, mode: str, every: int, drift: float, loser: float):
        self.mode, self.every, self.max_drift, self.max_loser = mode, every, drift, loser
        self.probe: Callable[[], list[float]] | None = None
        self.theta0: list[float] | None = None  # θ0's per-sample errors on the fixed batch
        self.fixed: collections.deque = collections.deque(maxlen=SMOOTH)  # the latest measurements of ē_θ(B)
        self.losers: collections.deque = collections.deque(maxlen=WINDOW)  # (Σ e_θ^l, Σ e_ref^l) per step
        self.fired: int | None = None

    @classmethod
    def of(cls, train) -> Guard:
        """The guard `train` (a `TrainConfig`) asks for."""
        return cls(train.guard, train.guard_every, train.guard_drift, train.guard_loser)

    def attach(self, make_probe: Callable[[], Callable[[], list[float]]], step: int) -> None:
        """Measure with `make_probe()` (the policy's per-sample errors on the fixed batch; not built when off);
        at step 0 the policy is θ0."""
        if self.mode == "off":
            return
        self.probe = probe = make_probe()
        if probe is None:
            return
        if self.theta0 is None and step == 0:
            self.theta0 = probe()
        elif self.theta0 is None:
            log.warning("train.guard: the checkpoint has no θ0 errors on the fixed winners; the drift is not watched")

    def observe(self, step: int, stats: dict) -> str | None:
        """Add `guard/*` to `stats`; the alarm's message at the first step past a threshold, else None."""
        if self.mode == "off":
            return None
        if "loss/e_l" in stats and "ref/e_l" in stats:
            self.losers.append((stats["loss/e_l"], stats["ref/e_l"]))
        if self.probe is not None and self.theta0 is not None and step % self.every == 0:
            self.fixed.append(sum(self.probe()) / len(self.theta0))
        why = []
        if self.fixed:
            e0, e_fixed = sum(self.theta0) / len(self.theta0), sum(self.fixed) / len(self.fixed)
            drift = e_fixed / e0 - 1
            stats.update({"guard/e_fixed": self.fixed[-1], "guard/e_fixed_theta0": e0, "guard/drift": drift})
            if drift > self.max_drift:
                why.append(
                    f"the winners' error on the fixed batch is {drift:+.0%} against θ0's over the last "
                    f"{len(self.fixed)} measurements ({e_fixed:.4g} vs {e0:.4g}; train.guard_drift "
                    f"{self.max_drift:g})"
                )
        if self.losers:
            loser = sum(e for e, _ in self.losers) / max(sum(r for _, r in self.losers), 1e-12) - 1
            stats["guard/loser"] = loser
            if len(self.losers) == WINDOW and loser > self.max_loser:
                why.append(
                    f"the policy's error on the losers is {loser + 1:.2g}x the reference's over the last "
                    f"{WINDOW} steps (train.guard_loser {self.max_loser:g}: the loser term dominates)"
                )
        if not why or self.fired is not None:
            return None
        self.fired = step
        return "preference guard: " + "; ".join(why)

    def state_dict(self) -> dict:
        return {"theta0": self.theta0, "fixed": list(self.fixed), "losers": list(self.losers), "fired": self.fired}

    def load_state_dict(self, state: dict) -> None:
        self.theta0, self.fired = state.get("theta0"), state.get("fired")
        self.fixed.extend(state.get("fixed", []))
        self.losers.extend(tuple(pair) for pair in state.get("losers", []))


def winner_probe(trainer, n: int) -> Callable[[], list[float]] | None:
    """The policy's per-sample errors on a fixed batch: the first `n` readable clips of the training data of the
    first one's shape (with `data.buckets`, one bucket), each with noise and timestep drawn from (seed, PROBE_STEP,
    index); no grad, eval mode, the global RNG untouched. None when none of them can be read (the data stream
    then reports the unreadable clips itself)."""
    cfg, model, seed = trainer.config, trainer.model, trainer.config.train.seed
    items = [
        item
        for i in range(min(n, len(trainer.data)))
        if not isinstance(item := trainer.data.try_get(i, rng.derive_seed(seed, PROBE_STEP, i, "frames")), Unreadable)
    ]
    batch = collate([item for item in items if item.get("size") == items[0].get("size")]) if items else None
    if batch is None:
        log.warning(
            "train.guard: none of the first %d clips of %s can be read for the fixed batch of winners; "
            "the winners' drift is not watched",
            n,
            cfg.data.path,
        )
        return None
    positions = list(range(len(batch["captions"])))
    with torch.no_grad():
        x0, cond = trainer.latents(batch, ""), trainer.prompt_embeds(batch)
    objective, sched, device = get_objective(model.objective), model.scheduler, x0.device
    t = objective.timesteps(
        sched, seed, PROBE_STEP, positions, seq_len=x0[0, 0].numel(), sigma_range=model.sigma_range
    ).to(device)
    noise = rng.sample_noise(x0.shape[1:], seed, PROBE_STEP, positions).to(device)
    x_t, target = objective.noisy(sched, x0, noise, t), objective.target(sched, x0, noise, t)

    @torch.no_grad()
    def probe() -> list[float]:
        unet = model.unet
        training = unet.training
        with torch.random.fork_rng(devices=[]), trainer.accelerator.autocast():
            unet.eval()
            try:
                return per_sample_error(trainer.policy.predict(x_t, t, cond), target).tolist()
            finally:
                unet.train(training)

    return probe
