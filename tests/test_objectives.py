"""Training objectives against hand-computed noising and targets."""

import pytest
import torch
from diffusers import DDPMScheduler

from videosspo.objectives import OBJECTIVES, get_objective


def _sched(prediction_type):
    return DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type=prediction_type,
    )


@pytest.mark.parametrize("name", ["epsilon", "v_prediction"])
def test_noising_and_target_by_hand(name):
    sched = _sched(name)
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    t = torch.tensor([10, 700])
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1, 1)
    obj = get_objective(name)
    torch.testing.assert_close(obj.noisy(sched, x0, noise, t), abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    want = noise if name == "epsilon" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    torch.testing.assert_close(obj.target(sched, x0, noise, t), want)


def test_timesteps_cover_the_schedule_and_are_per_sample():
    sched = _sched("epsilon")
    obj = OBJECTIVES["epsilon"]
    t = obj.timesteps(sched, 0, 3, list(range(256)))
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999 and len(t.unique()) > 100
    assert torch.equal(obj.timesteps(sched, 0, 3, [5]), t[5:6])  # sample 5's draw, whatever its batch


def test_unknown_objective_names_the_known_ones():
    with pytest.raises(ValueError, match="epsilon"):
        get_objective("x0")
