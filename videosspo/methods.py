"""The method registry: what each objective (`method.name`) is and what it needs from the trainer.

An entry holds its per-sample loss (`videosspo.losses`) and the `method.*` hyperparameters that loss
reads, whether it needs pairs (where its losers come from) and a reference (which), and its replay
policy. The trainer, the CLI and the alignment tools ask the entry; nothing outside this module
tests a method's name.

    sft         L = e_θ^w                                        winners only, no reference
    dpo         Diffusion-DPO: −log σ(z), z = (β/2)(Δ_l − Δ_w)   the dataset's losers, frozen θ0
    sspo        SSPO as the paper writes it: per sample the SSR   the replay pool's reference samples
                switch (ssr_mode) between SFT and −log σ(z)       the losers (SSPO_METHOD.md)
    sspo-ipo    bounded margin: −log σ(z) -> (z − τ)²            as sspo
    sspo-dpop   DPO-Positive: z − (β/2) λ max(0, Δ_w), with       as sspo
                ssr_mode off (any switch takes every Δ_w > 0 sample away from −log σ)
    sspo-lw     loser weight: z = (β/2)(γ Δ_l − Δ_w), γ < 1      as sspo
    sspo-ema    slower reference: replay snapshots are an EMA    as sspo
                of the policy (decay method.reference_decay)

Every sspo entry takes `ssr_mode` (`sign`: SePPO v1's switch) and `sft_anchor` (λ e_θ^w on every
sample, RPO-style), so combinations are config keys: `method.name: sspo-ipo` with `ssr_mode: sign`.
Why the variants exist (the paper's loss displaces the model on the synthetic world) and how they
fare: docs/alignment.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

from videosspo.config import ConfigError
from videosspo.losses import SSR_MODES, LossFn, dpo_loss, sft_loss, sspo_loss

PREFERENCE = ("beta", "sft_anchor")
SSPO = (*PREFERENCE, "ssr_mode", "sft_weight")


@dataclass(frozen=True)
class Method:
    """One objective: its loss and what the trainer must feed it."""

    loss: LossFn
    reads: tuple[str, ...]  # the `method.*` fields passed to `loss` as keywords (the rest keep its defaults)
    # where the losers come from: none (winners only), "data" (the dataset's `loser_video`: pairs), "sampled"
    # (the drawn reference generates them, `loser.*`)
    losers: Literal["none", "data", "sampled"]
    # the reference: none, "initial" (the frozen θ0), "replay" (drawn from the replay pool, `replay.*`)
    reference: Literal["none", "initial", "replay"]
    slow_reference: bool = False  # replay snapshots are an EMA of the policy (`method.reference_decay`)
    ssr_modes: tuple[str, ...] = SSR_MODES  # the `method.ssr_mode` values it works with

    @property
    def pairs(self) -> bool:
        return self.losers != "none"

    def bind(self, hyperparameters) -> LossFn:
        """`loss` with the fields `reads` of `hyperparameters` (a `MethodConfig`): fn(e_w, e_l, ref_e_w, ref_e_l)."""
        if hyperparameters.ssr_mode not in self.ssr_modes:
            raise ConfigError(
                f"method.ssr_mode={hyperparameters.ssr_mode!r} does nothing useful with method.name "
                f"{hyperparameters.name}: use one of {', '.join(self.ssr_modes)}"
            )
        return functools.partial(self.loss, **{k: getattr(hyperparameters, k) for k in self.reads})


METHODS: dict[str, Method] = {
    "sft": Method(sft_loss, (), losers="none", reference="none"),
    "dpo": Method(dpo_loss, PREFERENCE, losers="data", reference="initial"),
    "sspo": Method(sspo_loss, SSPO, losers="sampled", reference="replay"),  # the paper's formulation
    "sspo-ipo": Method(sspo_loss, (*SSPO, "margin_target"), losers="sampled", reference="replay"),
    # the switch sends every sample with Δ_w > 0 to its own branch, where the penalty would act: without it
    "sspo-dpop": Method(sspo_loss, (*SSPO, "dpop_lambda"), losers="sampled", reference="replay", ssr_modes=("off",)),
    "sspo-lw": Method(sspo_loss, (*SSPO, "loser_weight"), losers="sampled", reference="replay"),
    "sspo-ema": Method(sspo_loss, SSPO, losers="sampled", reference="replay", slow_reference=True),
}


def get_method(name: str) -> Method:
    """The entry registered under `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    return METHODS[name]
