"""Randomness as a pure function of (seed, step, sample index, purpose).

Every random draw of training (noise, timestep, frame offset, loser sampling) comes from a seed
derived here, never from a global RNG. So a sample gets the same randomness whichever process or
micro-batch it lands in: N processes equal one with the same global batch, and resume is exact.
"""

from __future__ import annotations

import numpy as np
import torch

PURPOSES = {"noise": 0, "timestep": 1, "frames": 2, "loser": 3, "data": 4, "sampler": 5, "caption": 6}


def derive_seed(seed: int, step: int, index: int, purpose: str) -> int:
    """A 63-bit seed mixed from the four inputs by numpy's SeedSequence (well spread, stable)."""
    state = np.random.SeedSequence([seed, step, index, PURPOSES[purpose]]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def generator(seed: int, step: int, index: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, step, index, purpose))


def sample_noise(shape, seed: int, step: int, indices: list[int]) -> torch.Tensor:
    """N(0, I) noise `[len(indices), *shape]`, sample i's from (seed, step, indices[i])."""
    return torch.stack([torch.randn(shape, generator=generator(seed, step, i, "noise")) for i in indices])


def sample_timesteps(num_train_timesteps: int, seed: int, step: int, indices: list[int]) -> torch.Tensor:
    """t ~ U{0, ..., T-1} per sample, as int64 `[len(indices)]`."""
    return torch.cat(
        [torch.randint(0, num_train_timesteps, (1,), generator=generator(seed, step, i, "timestep")) for i in indices]
    )


def sample_uniform(seed: int, step: int, indices: list[int]) -> torch.Tensor:
    """u ~ U(0, 1) per sample, as float32 `[len(indices)]` (flow matching's σ draws)."""
    return torch.cat([torch.rand(1, generator=generator(seed, step, i, "timestep")) for i in indices])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The dataset order of one epoch: a permutation of range(n) fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, PURPOSES["data"]]).permutation(n)


def drop_captions(p: float, seed: int, step: int, indices: list[int]) -> torch.Tensor:
    """Caption dropout: bool `[len(indices)]`, True where sample i's caption is dropped (u_i < p)."""
    if p == 0:
        return torch.zeros(len(indices), dtype=torch.bool)
    return torch.cat([torch.rand(1, generator=generator(seed, step, i, "caption")) for i in indices]) < p
