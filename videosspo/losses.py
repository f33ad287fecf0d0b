"""Per-sample losses for SFT, Diffusion-DPO and SSPO (see SSPO_METHOD.md, "The per-sample loss").

Every loss is a pure function with one signature,

    fn(e_w, e_l, ref_e_w, ref_e_l, *, beta, ssr_mode, sft_weight=1.0, sft_anchor=0.0,
       loser_weight=1.0, dpop_lambda=0.0, margin_target=None) -> (loss[b], stats)

where ``e_w = e_θ^w``, ``e_l = e_θ^l`` are the policy's per-sample errors and ``ref_e_w``, ``ref_e_l``
the reference's (computed without grad). The trainer reduces ``loss`` (mean over the batch).

The preference (DPO) term of ``dpo`` and ``sspo`` is ψ(z) of the scaled margin (`preference`)

    z = (β/2)(γ Δ_l − Δ_w − λ max(0, Δ_w))
    ψ(z) = −log σ(z)          (Diffusion-DPO, the paper's; margin_target None)
    ψ(z) = (z − τ)²           (IPO's bounded margin, τ = margin_target: past τ the loser is pulled back)

with γ = ``loser_weight`` (1: the paper's) and λ = ``dpop_lambda`` (DPO-Positive: 0 is the paper's). The
registry of named methods that pick these (`videosspo.methods`) is what configs select.

The errors come from :func:`per_sample_error` against the model's prediction target, which the
caller computes: ``ε`` for epsilon-prediction, ``v = √ᾱ_t ε − √(1−ᾱ_t) x₀`` for v-prediction
(diffusers' ``scheduler.get_velocity``). The losses themselves do not depend on which.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import reduce
from torch import Tensor

Stats = dict[str, Tensor]
LossFn = Callable[..., tuple[Tensor, Stats]]

SSR_MODES = ("sft", "sign", "drop", "off")


def per_sample_error(pred: Tensor, target: Tensor) -> Tensor:
    """e = mean over every axis but the batch of (target − pred)², in float32.

    Works for videos ``b c f h w`` and images ``b c h w``; returns ``[b]``.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return reduce((target.float() - pred.float()) ** 2, "b ... -> b", "mean")


def _neg_logsigmoid(x: Tensor) -> Tensor:
    """−log σ(x), computed stably."""
    return -F.logsigmoid(x)


def _require(name: str, value: Tensor | None, loss: str) -> Tensor:
    if value is None:
        raise ValueError(f"loss {loss!r} needs {name}, got None")
    return value


def preference(
    delta_w: Tensor,
    delta_l: Tensor,
    *,
    beta: float,
    loser_weight: float = 1.0,
    dpop_lambda: float = 0.0,
    margin_target: float | None = None,
) -> Tensor:
    """ψ(z), z = (β/2)(γ Δ_l − Δ_w − λ max(0, Δ_w)): −log σ(z), or (z − τ)² with τ = ``margin_target``.

    γ < 1 (``loser_weight``) makes raising the policy's error on the loser a weaker way to a margin;
    λ > 0 (``dpop_lambda``, DPO-Positive) charges every rise of the winner's error over the reference's;
    τ (IPO) bounds the margin: at z = τ the gradient is 0 and beyond it the loser's error is pulled down.
    """
    z = 0.5 * beta * (loser_weight * delta_l - delta_w - dpop_lambda * F.relu(delta_w))
    return _neg_logsigmoid(z) if margin_target is None else (z - margin_target) ** 2


def _stats(loss: Tensor, e_w: Tensor, e_l: Tensor, ref_e_w: Tensor, ref_e_l: Tensor, switched: Tensor) -> Stats:
    """Detached batch means: loss, the policy's and the reference's errors on winners and losers, Δ_w, Δ_l,
    margin Δ_l − Δ_w, implicit-reward accuracy [Δ_w < Δ_l], switch fraction."""
    delta_w, delta_l = e_w - ref_e_w, e_l - ref_e_l
    return {
        "loss/mean": loss.detach().mean(),
        "loss/e_w": e_w.detach().mean(),
        "loss/e_l": e_l.detach().mean(),
        "ref/e_w": ref_e_w.detach().mean(),
        "ref/e_l": ref_e_l.detach().mean(),
        "rewards/delta_w": delta_w.detach().mean(),
        "rewards/delta_l": delta_l.detach().mean(),
        "rewards/margin": (delta_l - delta_w).detach().mean(),
        "rewards/accuracy": (delta_w < delta_l).float().mean(),
        "sspo/switch_frac": switched.float().mean(),
    }


def sft_loss(
    e_w: Tensor,
    e_l: Tensor | None,
    ref_e_w: Tensor | None,
    ref_e_l: Tensor | None,
    **hyperparameters: object,
) -> tuple[Tensor, Stats]:
    """L = e_θ^w. The loser, the reference (may be None) and every hyperparameter are ignored."""
    loss = e_w
    return loss, {"loss/mean": loss.detach().mean(), "loss/e_w": e_w.detach().mean()}


def dpo_loss(
    e_w: Tensor,
    e_l: Tensor | None,
    ref_e_w: Tensor | None,
    ref_e_l: Tensor | None,
    *,
    beta: float,
    ssr_mode: str = "off",
    sft_weight: float = 1.0,
    sft_anchor: float = 0.0,
    loser_weight: float = 1.0,
    dpop_lambda: float = 0.0,
    margin_target: float | None = None,
) -> tuple[Tensor, Stats]:
    """Diffusion-DPO: L = −log σ(−(β/2)(Δ_w − Δ_l)) + λ e_θ^w, Δ_w = e_θ^w − e_ref^w, Δ_l = e_θ^l − e_ref^l,
    λ = ``sft_anchor`` (0: Diffusion-DPO itself); ``loser_weight``, ``dpop_lambda``, ``margin_target`` shape −log σ
    (`preference`). ``ssr_mode`` and
    ``sft_weight`` are ignored.
    """
    e_l = _require("e_l", e_l, "dpo")
    ref_e_w, ref_e_l = _require("ref_e_w", ref_e_w, "dpo"), _require("ref_e_l", ref_e_l, "dpo")
    loss = (
        preference(
            e_w - ref_e_w,
            e_l - ref_e_l,
            beta=beta,
            loser_weight=loser_weight,
            dpop_lambda=dpop_lambda,
            margin_target=margin_target,
        )
        + sft_anchor * e_w
    )
    return loss, _stats(loss, e_w, e_l, ref_e_w, ref_e_l, torch.zeros_like(loss, dtype=torch.bool))


def sspo_loss(
    e_w: Tensor,
    e_l: Tensor | None,
    ref_e_w: Tensor | None,
    ref_e_l: Tensor | None,
    *,
    beta: float,
    ssr_mode: str,
    sft_weight: float = 1.0,
    sft_anchor: float = 0.0,
    loser_weight: float = 1.0,
    dpop_lambda: float = 0.0,
    margin_target: float | None = None,
) -> tuple[Tensor, Stats]:
    """SSPO: per sample, the SSR branch if e_ref^w < e_θ^w, else L_DPO (`preference`, shaped by ``loser_weight``,
    ``dpop_lambda``, ``margin_target``; their defaults are the paper's).

    SSR branch by ``ssr_mode``: ``sft`` w·e_θ^w (w = ``sft_weight``; the DPO branch's gradient in
    e_θ^w is β/4 at zero margin, so w = 1 all but drops a switched sample); ``sign`` −log σ(−(β/2)(Δ_w + Δ_l));
    ``drop`` −log σ(−(β/2)Δ_w); ``off`` never switches. Gradients flow only through the chosen branch.
    Every sample then adds λ e_θ^w, λ = ``sft_anchor`` (our choice, not in the paper; 0: SSPO itself): an
    always-on SFT anchor on the winner next to the preference term.
    """
    if ssr_mode not in SSR_MODES:
        raise ValueError(f"unknown ssr_mode {ssr_mode!r}; allowed: {', '.join(SSR_MODES)}")
    e_l = _require("e_l", e_l, "sspo")
    ref_e_w = _require("ref_e_w", ref_e_w, "sspo")
    delta_w = e_w - ref_e_w
    delta_l = e_l - _require("ref_e_l", ref_e_l, "sspo")
    dpo = preference(
        delta_w, delta_l, beta=beta, loser_weight=loser_weight, dpop_lambda=dpop_lambda, margin_target=margin_target
    )
    if ssr_mode == "off":
        switched = torch.zeros_like(dpo, dtype=torch.bool)
        loss = dpo
    else:
        switched = (ref_e_w < e_w).detach()
        ssr = {
            "sft": lambda: sft_weight * e_w,
            "sign": lambda: _neg_logsigmoid(-0.5 * beta * (delta_w + delta_l)),
            "drop": lambda: _neg_logsigmoid(-0.5 * beta * delta_w),
        }[ssr_mode]()
        loss = torch.where(switched, ssr, dpo)
    loss = loss + sft_anchor * e_w
    return loss, _stats(loss, e_w, e_l, ref_e_w, ref_e_l, switched)


LOSSES: dict[str, LossFn] = {"sft": sft_loss, "dpo": dpo_loss, "sspo": sspo_loss}


def get_loss(name: str) -> LossFn:
    """The loss function registered under ``name``."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; allowed: {', '.join(LOSSES)}")
    return LOSSES[name]
