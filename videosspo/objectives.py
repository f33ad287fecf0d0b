"""Training objectives: how a clean latent x0, noise ε and a timestep become the model's input x_t
and its regression target. Each model family declares the objective it was trained with
(`VideoDiffusionModel.objective`); the losses never learn which one produced the errors.

    epsilon        x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε        target ε                      t ~ U{0, …, T−1}
    v_prediction   x_t as above                       target v = √ᾱ_t ε − √(1−ᾱ_t) x0

A new objective (e.g. flow matching's x_t = (1−σ) x0 + σ ε, target ε − x0) is one more entry in
`OBJECTIVES`, never a branch in the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from videosspo import rng


@dataclass(frozen=True)
class Objective:
    """`timesteps(scheduler, seed, step, positions)` -> t [b]; `noisy` / `target(scheduler, x0, noise, t)`."""

    name: str
    timesteps: Callable[..., Tensor]
    noisy: Callable[..., Tensor]
    target: Callable[..., Tensor]


def _uniform_discrete(scheduler, seed: int, step: int, positions: list[int]) -> Tensor:
    """t ~ U{0, …, T−1} per sample, from (seed, step, position)."""
    return rng.sample_timesteps(scheduler.config.num_train_timesteps, seed, step, positions)


def _ddpm_noisy(scheduler, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    return scheduler.add_noise(x0, noise, t)


OBJECTIVES: dict[str, Objective] = {
    "epsilon": Objective("epsilon", _uniform_discrete, _ddpm_noisy, lambda scheduler, x0, noise, t: noise),
    "v_prediction": Objective("v_prediction", _uniform_discrete, _ddpm_noisy,
                              lambda scheduler, x0, noise, t: scheduler.get_velocity(x0, noise, t)),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective {name!r} is unknown; known: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
