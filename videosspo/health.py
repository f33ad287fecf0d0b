"""Health: whether a run is still training, and which checkpoint to keep when it stops being so.

Three watchers, checked after every optimizer step (`Health.check`): the `Watchdog` (a loss or grad norm
non-finite, or far above its running median), the preference guard (`videosspo.guard`: the model unlearning
what it generates) and `MAX_BAD_STEPS` consecutive non-finite gradients. At the first alarm the newest
checkpoint written before it is kept out of pruning (`divergence`, checkpointed); train.on_anomaly: stop and
train.guard: stop end the run there, and the bad-gradient limit always does.
"""

from __future__ import annotations

import collections
import logging
import math
import statistics
from pathlib import Path

from videosspo.checkpoint import CHECKPOINTS, Diverged, latest_checkpoint, stopped
from videosspo.config import TrainConfig
from videosspo.guard import Guard, GuardStop

log = logging.getLogger("videosspo.health")

MAX_BAD_STEPS = 10  # consecutive non-finite gradients before the run stops (its checkpoints intact)


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


class Health:
    """The watchers of one run (`train` its `TrainConfig`, `out` its output folder) and the first alarm's record."""

    def __init__(self, train: TrainConfig, out: Path):
        self.train, self.out = train, out
        self.watchdog, self.guard = Watchdog(train.anomaly_factor), Guard.of(train)
        self.divergence: dict | None = None  # the first alarm: its step, why, and the checkpoint kept
        self.bad_steps = 0  # consecutive non-finite gradients

    def check(self, step: int, stats: dict) -> None:
        """After the update that makes `step` + 1 steps: at the first anomalous step (`Watchdog`) or preference-guard
        alarm (which adds `guard/*` to `stats`), keep the newest checkpoint written before it out of pruning;
        `train.on_anomaly: stop` or `train.guard: stop` ends the run at it, as do `MAX_BAD_STEPS` non-finite
        gradients in a row."""
        why = self.watchdog.check(stats)
        alarm = self.guard.observe(step + 1, stats)
        if (why or alarm) and self.divergence is None:
            kept = latest_checkpoint(self.out)
            self.divergence = {"step": step + 1, "why": why or alarm, "kept": kept.name if kept else None}
            if why and self.train.on_anomaly == "stop":
                raise stopped(step + 1, why, kept)
            log.warning(self.note())
        if alarm and self.guard.mode == "stop":  # one line: the step, the numbers, the kept checkpoint
            note = self.note()
            raise GuardStop(
                f"train.guard: stop ended the run at step {step + 1}{'' if alarm in note else ': ' + alarm}. {note}"
            )
        self.bad_steps = 0 if math.isfinite(stats.get("grad_norm", 0.0)) else self.bad_steps + 1
        if self.bad_steps >= MAX_BAD_STEPS:
            raise Diverged(
                f"{MAX_BAD_STEPS} consecutive non-finite gradients at step {step}; "
                f"lower optim.lr or method.beta, or use mixed_precision: bf16. {self.note()}"
            )

    @property
    def kept(self) -> str | None:
        """The checkpoint kept out of pruning (the last written before the first alarm), if any."""
        return self.divergence and self.divergence["kept"]

    def note(self) -> str:
        root = self.out / CHECKPOINTS
        if not self.divergence:
            return f"Checkpoints in {root} are intact."
        d = self.divergence
        kept = (
            f"{root / d['kept']}, the last checkpoint written before it, is kept out of pruning"
            if d["kept"]
            else "no checkpoint was written before it"
        )
        return f"Training turned anomalous at step {d['step']} ({d['why']}): {kept}."
