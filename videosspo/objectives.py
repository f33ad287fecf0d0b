"""Training objectives: how a clean latent x0, noise ε and a timestep become the model's input x_t
and its regression target. Each model family declares the objective it was trained with
(`VideoDiffusionModel.objective`); the losses never learn which one produced the errors.

    epsilon        x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε        target ε                      t ~ U{0, …, T−1}
    v_prediction   x_t as above                       target v = √ᾱ_t ε − √(1−ᾱ_t) x0
    flow*          x_t = (1 − σ) x0 + σ ε             target v = ε − x0             t = σ T, σ ~ density

Flow matching follows diffusers' `FlowMatchEulerDiscreteScheduler`: σ ∈ [0, 1] is the noise level,
the model sees t = σ·T (T = `num_train_timesteps`, 1000) and predicts the velocity v = ε − x0 that
its Euler sampler integrates from σ = 1 to 0. The σ density is the family's training density:

    flow               σ ~ U(0, 1)
    flow_logit_normal  σ = sigmoid(n), n ~ N(0, 1)          (SD3's trainer)
    flow_shifted       σ = s u / (1 + (s − 1) u), u ~ U(0, 1), s = the scheduler's `shift`
                       (the map the sampler applies to its own σ grid; Wan trains with it)
    flow_shifted_logit_normal
                       σ = sigmoid(n + μ), n ~ N(0, 1), μ linear in the latent sequence length
                       L = f·h·w: base_shift at base_image_seq_len, max_shift at max_image_seq_len
                       (scheduler config; LTX-Video: 0.95 at 1024, 2.05 at 4096). The LTX-Video trainer's
                       density; σ ↦ sigmoid(logit σ + μ) is the exponential time shift
                       e^μ / (e^μ + 1/σ − 1) its dynamically shifted sampler applies to its σ grid.

Each draws one u ~ U(0, 1) per sample from (seed, step, position) (`videosspo.rng`);
logit-normal maps it through the normal quantile, so resume and N processes stay exact.

A model that trains only part of the noise levels (one expert of Wan 2.2 A14B: σ ≥ 0.875 or below)
gives `sigma_range` [lo, hi): σ is then drawn from the density truncated to it, by the inverse
transform u ↦ F(lo) + u (F(hi) − F(lo)) with F = density⁻¹ (found by bisection: every density is
increasing in u), so the density keeps its shape inside the range; DDPM objectives draw
t ~ U{lo T, …, hi T − 1}. The full range [0, 1) draws exactly what it draws without one.

β under flow matching. The per-sample error is e = mean‖v − v_θ‖². Since x0 = x_t − σ v and
ε = x_t + (1 − σ) v, the ε-error of the same prediction is (1 − σ)² e and its x0-error σ² e: the
velocity error weighs each sample like the ε-error divided by (1 − σ)², about 4x at mid noise
(σ ≈ 1/2). Diffusion-DPO's β (2000 for SSPO on ε-prediction UNets) absorbs T·ω(λ_t); to put the
same pressure on the implicit reward −(β/2)(Δ_w − Δ_l) with velocity errors, the flow configs use
β = 500 (2000 / 4). LTX-Video's density sits at high noise (median σ = sigmoid(μ), 0.84 for
65 frames at 480x704, μ = 1.65), where E[(1 − σ)²] = 0.061: β = 2000 × 0.061 ≈ 120 there.
Per family (`configs/*`): animatediff / modelscope / sd (ε) 2000, cogvideox (v-prediction,
e_v = e_ε / ᾱ_t ≈ 2x at mid noise) 1000, wan (flow) 500, ltx (flow, high noise) 120, wan22 350
(2000 E[(1 − σ)²] under its folder's shift 3.0). Every run logs E[(1 − σ)²] of the density it trains
with, from the scheduler it loaded, and the β that follows (`density_note`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor

from videosspo import rng


@dataclass(frozen=True)
class Objective:
    """`timesteps(scheduler, seed, step, positions, seq_len, sigma_range)` -> t [b]; `noisy` / `target(scheduler, x0,
    noise, t)`.

    `seq_len`: latent positions f·h·w per sample, which a sequence-length-shifted density needs;
    `sigma_range`: the noise levels σ = t / T drawn, [lo, hi) (the model's `sigma_range`).
    """

    name: str
    timesteps: Callable[..., Tensor]
    noisy: Callable[..., Tensor]
    target: Callable[..., Tensor]


FULL_RANGE = (0.0, 1.0)


def _uniform_discrete(
    scheduler,
    seed: int,
    step: int,
    positions: list[int],
    seq_len: int | None = None,
    sigma_range: tuple[float, float] = FULL_RANGE,
) -> Tensor:
    """t ~ U{lo T, …, hi T − 1} per sample, from (seed, step, position)."""
    first, end = (round(s * scheduler.config.num_train_timesteps) for s in sigma_range)
    return first + rng.sample_timesteps(end - first, seed, step, positions)


def _ddpm_noisy(scheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return scheduler.add_noise(x0, noise, t)


def dynamic_shift_mu(config, seq_len: int | None) -> float:
    """μ of a flow schedule shifted by sequence length (LTX-Video, Flux): diffusers' `calculate_shift`,
    linear from (base_image_seq_len, base_shift) to (max_image_seq_len, max_shift) of the scheduler config."""
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift  # on use: pipeline modules are heavy

    if seq_len is None:
        raise ValueError("a sequence-length-shifted σ density needs seq_len (latent f·h·w)")
    return calculate_shift(
        seq_len, config["base_image_seq_len"], config["max_image_seq_len"], config["base_shift"], config["max_shift"]
    )


# σ = density(u, scheduler config, seq_len) for u ~ U(0, 1): the flow-matching training densities.
SIGMA_DENSITIES: dict[str, Callable[[Tensor, dict, int | None], Tensor]] = {
    "uniform": lambda u, config, seq_len: u,
    "logit_normal": lambda u, config, seq_len: torch.sigmoid(torch.special.ndtri(u)),
    "shifted": lambda u, config, seq_len: config["shift"] * u / (1 + (config["shift"] - 1) * u),
    "shifted_logit_normal": lambda u, config, seq_len: torch.sigmoid(
        torch.special.ndtri(u) + dynamic_shift_mu(config, seq_len)
    ),
}


def density_inverse(density: Callable, sigma: float, config, seq_len: int | None) -> float:
    """The u in [0, 1] with density(u) = σ, by bisection (64 halvings in float64; the end points exactly)."""
    if sigma in FULL_RANGE:
        return sigma
    lo, hi = 0.0, 1.0
    for _ in range(64):
        mid = (lo + hi) / 2
        lo, hi = (
            (mid, hi) if float(density(torch.tensor(mid, dtype=torch.float64), config, seq_len)) < sigma else (lo, mid)
        )
    return (lo + hi) / 2


def _flow_timesteps(density: str) -> Callable[..., Tensor]:
    def timesteps(
        scheduler,
        seed: int,
        step: int,
        positions: list[int],
        seq_len: int | None = None,
        sigma_range: tuple[float, float] = FULL_RANGE,
    ) -> Tensor:
        """t = σ T per sample (float32), σ from the density applied to u ~ U(0, 1) of (seed, step, position),
        mapped into [F(lo), F(hi)) when the range is not the full one."""
        sigma_of = SIGMA_DENSITIES[density]
        u_lo, u_hi = (density_inverse(sigma_of, s, scheduler.config, seq_len) for s in sigma_range)
        u = u_lo + rng.sample_uniform(seed, step, positions) * (u_hi - u_lo)
        return sigma_of(u, scheduler.config, seq_len) * scheduler.config.num_train_timesteps

    return timesteps


def _sigma(scheduler, t: Tensor) -> Tensor:
    """σ = t / T, shaped to broadcast over `b ...` latents."""
    return rearrange(t.float() / scheduler.config.num_train_timesteps, "b -> b 1 1 1 1")


def _flow_noisy(scheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    sigma = _sigma(scheduler, t)
    return (1 - sigma) * x0 + sigma * noise


def _flow_target(scheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return noise - x0


# The flow-matching objectives and their σ densities (`SIGMA_DENSITIES`).
FLOW_DENSITIES = {
    "flow": "uniform",
    "flow_logit_normal": "logit_normal",
    "flow_shifted": "shifted",
    "flow_shifted_logit_normal": "shifted_logit_normal",
}

OBJECTIVES: dict[str, Objective] = {
    "epsilon": Objective("epsilon", _uniform_discrete, _ddpm_noisy, lambda scheduler, x0, noise, t: noise),
    "v_prediction": Objective(
        "v_prediction",
        _uniform_discrete,
        _ddpm_noisy,
        lambda scheduler, x0, noise, t: scheduler.get_velocity(x0, noise, t),
    ),
    **{
        name: Objective(name, _flow_timesteps(density), _flow_noisy, _flow_target)
        for name, density in FLOW_DENSITIES.items()
    },
}

DPO_BETA_EPSILON = 2000.0  # Diffusion-DPO's β on ε errors, which the flow configs' β carries over to velocity errors


def epsilon_weight(
    name: str, config, sigma_range: tuple[float, float] = FULL_RANGE, seq_len: int | None = None, points: int = 100_000
) -> float:
    """E[(1 − σ)²] over the training density of flow objective `name` (truncated to `sigma_range`, as the trainer
    draws it): the mean factor from a velocity error to the ε error of the same prediction. Midpoint rule in u."""
    sigma_of = SIGMA_DENSITIES[FLOW_DENSITIES[name]]
    u_lo, u_hi = (density_inverse(sigma_of, s, config, seq_len) for s in sigma_range)
    u = u_lo + (torch.arange(points, dtype=torch.float64) + 0.5) / points * (u_hi - u_lo)
    return float(((1 - sigma_of(u, config, seq_len)) ** 2).mean())


def density_note(model, beta: float, seq_len: int) -> str:
    """One log line: the training density's parameters as the model's scheduler holds them and, for flow matching,
    the β that carries Diffusion-DPO's 2000 on ε over to it (2000 · E[(1 − σ)²]) beside the run's."""
    name, config = model.objective, model.scheduler.config
    if name not in FLOW_DENSITIES:
        first, end = (round(s * config.num_train_timesteps) for s in model.sigma_range)
        return f"training density: t ~ U{{{first}, ..., {end - 1}}} ({name}, {config.get('beta_schedule')} betas)"
    params = {
        "shifted": f"shift {config.get('shift')}",
        "shifted_logit_normal": f"μ {dynamic_shift_mu(config, seq_len):.3f} at {seq_len} latent positions",
    }
    weight = epsilon_weight(name, config, model.sigma_range, seq_len)
    return (
        f"training density: {FLOW_DENSITIES[name]} σ ({params.get(FLOW_DENSITIES[name], 'no parameters')}, from the "
        f"model's scheduler), σ in [{model.sigma_range[0]:g}, {model.sigma_range[1]:g}): E[(1 − σ)²] = {weight:.4f}, "
        f"so β {DPO_BETA_EPSILON * weight:.0f} matches Diffusion-DPO's {DPO_BETA_EPSILON:g} on ε; method.beta = {beta:g}"
    )


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is unknown; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
