"""Exponential moving average of the trainable weights (`optim.ema_decay`), for sampling and export.

After optimizer update n (n = 1, 2, ...) every trainable parameter's average moves towards it:

    d_n = min(decay, n / (n + 9))            # diffusers' EMAModel warm-up: (1 + k) / (10 + k), k = n - 1
    ema_n = d_n ema_{n-1} + (1 - d_n) theta_n

so early averages are not dominated by the random initial weights (d_1 = 0.1, d_91 = 0.91), and
from n = 9 d / (1 - d) on the decay is `decay`. Only trainable parameters are averaged (with LoRA
the policy adapter); the replay pool's snapshots stay the trained weights, the reference SSPO
defines. The average is part of the training state: `state_dict` is saved with each checkpoint
and restored on resume; `applied()` swaps it into the network for sampling and export.

Under FSDP each process averages its own shard of each parameter (the average is sharded like
the weights); the checkpoint holds the whole average all the same: `state_dict(whole)` reads it
from the gathered state dict, and `load_state_dict(state, write)` scatters it back through FSDP.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import torch

from videosspo.reference import FSDP_UNIT


def ema_decay(decay: float, update: int) -> float:
    """The decay used at optimizer update `update` (1-based): min(decay, update / (update + 9))."""
    return min(decay, update / (update + 9))


class EMA:
    """The moving average of `module`'s trainable parameters (fp32, on their device), by their state dict names
    (nested FSDP units' wrapper names left out)."""

    def __init__(self, module: torch.nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup  # warmup False: `decay` from the first update (a lagging copy)
        self.params = {name.replace(FSDP_UNIT, ""): p for name, p in module.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().float().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self, update: int) -> None:
        """Move the average towards the current weights after optimizer update `update` (1-based)."""
        d = ema_decay(self.decay, update) if self.warmup else self.decay
        for name, p in self.params.items():
            self.average[name].lerp_(p.detach().float(), 1 - d)  # ema + (1 - d)(theta - ema)

    def state_dict(self, whole: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The average by parameter name, on CPU (safetensors-ready). `whole`: the module's whole state dict taken
        inside `applied()`, gathered (FSDP), where this process's average is its shard alone."""
        average = self.average if whole is None else {name: whole[name] for name in self.average}
        return {name: v.detach().to("cpu", copy=True).contiguous() for name, v in average.items()}

    def load_state_dict(
        self, state: dict[str, torch.Tensor], write: Callable[[dict[str, torch.Tensor]], None] | None = None
    ) -> None:
        """Restore a `state_dict`; its names must be exactly this module's trainable parameters. `write(state)`
        (FSDP: `Policy.load`) writes whole tensors into the module, keeping this process's shards, which are read back."""
        if state.keys() != self.average.keys():
            missing, extra = self.average.keys() - state.keys(), state.keys() - self.average.keys()
            raise ValueError(
                f"EMA state does not match the trainable parameters (missing {sorted(missing)[:3]}, "
                f"unexpected {sorted(extra)[:3]})"
            )
        if write is None:
            for name, value in state.items():
                self.average[name].copy_(value)
            return
        with self.applied(), torch.no_grad():  # the trained weights are back after it
            write(state)
            for name, p in self.params.items():
                self.average[name].copy_(p)

    @contextmanager
    def applied(self):
        """The module holds the average inside the block; its trained weights are restored after it."""
        with torch.no_grad():
            trained = {name: p.detach().clone() for name, p in self.params.items()}
            for name, p in self.params.items():
                p.copy_(self.average[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(trained[name])
