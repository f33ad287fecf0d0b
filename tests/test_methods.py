"""The method registry (videosspo.methods): entries, bound hyperparameters, and the sspo variants' losses by hand."""

import math
from typing import get_args, get_type_hints

import pytest
import torch
from test_losses import BETA, SSR_EXPECTED, inputs, softplus

from videosspo.config import ConfigError, MethodConfig, load_config
from videosspo.methods import METHODS, get_method
from videosspo.trainer import Trainer

# The inputs of test_losses with beta/2 = 1: delta_w = [-0.5, 1, 0, 2], delta_l = [1, -0.5, 1, -2],
# switched (ref_e_w < e_w) = [F, T, F, T]; e_w = [1, 2, 0.5, 3].
E_W_SWITCHED = {1: 2.0, 3: 3.0}


def bound(name, **hyper):
    return get_method(name).bind(MethodConfig(name=name, beta=BETA, **hyper))


def with_switch(dpo_branch):
    """ssr_mode sft: the switched samples' loss is e_w."""
    return [E_W_SWITCHED.get(i, v) for i, v in enumerate(dpo_branch)]


def test_entries_say_what_the_trainer_must_feed_them():
    assert (METHODS["sft"].losers, METHODS["sft"].reference, METHODS["sft"].pairs) == ("none", "none", False)
    assert (METHODS["dpo"].losers, METHODS["dpo"].reference) == ("data", "initial")
    for name in ("sspo", "sspo-ipo", "sspo-dpop", "sspo-lw", "sspo-ema"):
        assert (METHODS[name].losers, METHODS[name].reference) == ("sampled", "replay"), name
    assert [n for n, m in METHODS.items() if m.slow_reference] == ["sspo-ema"]
    with pytest.raises(ConfigError, match="method.ssr_mode='sft' does nothing useful with method.name sspo-dpop"):
        bound("sspo-dpop", ssr_mode="sft")  # the switch takes every sample the penalty would charge
    assert set(get_args(get_type_hints(MethodConfig)["name"])) == set(METHODS)  # config.py's list is the registry's
    with pytest.raises(ConfigError, match="method.name='ipo' is not allowed: one of 'sft', 'dpo', 'sspo'"):
        load_config(None, {"method": {"name": "ipo"}})


@pytest.mark.parametrize("mode", ["sft", "sign", "drop", "off"])
def test_sspo_is_the_papers_loss_whatever_the_variants_fields_say(mode):
    """`sspo` reads none of the variants' fields: the paper's formulation stays under its own name."""
    loss, _ = bound("sspo", ssr_mode=mode, margin_target=0.3, dpop_lambda=9.0, loser_weight=0.1)(*inputs())
    assert loss.tolist() == pytest.approx(SSR_EXPECTED[mode], rel=1e-6)


def test_bounded_margin_is_squared_distance_to_the_target():
    """sspo-ipo, tau = 1: z = delta_l - delta_w = [1.5, -1.5, 1, -4]; (z - 1)^2 = [0.25, 6.25, 0, 25]."""
    loss, _ = bound("sspo-ipo", ssr_mode="off", margin_target=1.0)(*inputs())
    assert loss.tolist() == pytest.approx([0.25, 6.25, 0.0, 25.0], rel=1e-6)
    loss, _ = bound("sspo-ipo", ssr_mode="sft", margin_target=1.0)(*inputs())
    assert loss.tolist() == pytest.approx(with_switch([0.25, 6.25, 0.0, 25.0]), rel=1e-6)


def test_bounded_margin_pulls_the_loser_back_past_the_target():
    """Past z = tau the gradient lowers the policy's error on the loser instead of raising it (logistic: always up)."""
    e_w, e_l = torch.tensor([1.0], requires_grad=True), torch.tensor([3.0], requires_grad=True)
    ref_w, ref_l = torch.tensor([1.0]), torch.tensor([1.0])  # z = (beta/2)(2 - 0) = 2 > tau = 1
    for name, sign in (("sspo-ipo", 1.0), ("sspo", -1.0)):
        loss, _ = bound(name, ssr_mode="off", margin_target=1.0)(e_w, e_l, ref_w, ref_l)
        (grad,) = torch.autograd.grad(loss.sum(), e_l)
        assert math.copysign(1.0, grad.item()) == sign, name  # descent moves e_l against the gradient


def test_dpo_positive_charges_a_winner_error_above_the_reference():
    """sspo-dpop, lambda = 2: z = delta_l - delta_w - 2 max(0, delta_w) = [1.5, -3.5, 1, -8]."""
    loss, _ = bound("sspo-dpop", ssr_mode="off", dpop_lambda=2.0)(*inputs())
    assert loss.tolist() == pytest.approx([softplus(-1.5), softplus(3.5), softplus(-1.0), softplus(8.0)], rel=1e-6)


def test_loser_weight_scales_the_loser_term_only():
    """sspo-lw, gamma = 0.5: z = 0.5 delta_l - delta_w = [1, -1.25, 0.5, -3]."""
    loss, _ = bound("sspo-lw", ssr_mode="sft", loser_weight=0.5)(*inputs())
    expected = [softplus(-1.0), softplus(1.25), softplus(-0.5), softplus(3.0)]
    assert loss.tolist() == pytest.approx(with_switch(expected), rel=1e-6)


def test_slow_reference_snapshots_the_moving_average(tiny_config):
    """sspo-ema: the replay snapshot after step 1 is d theta_0 + (1 - d) theta_1 (no warm-up), not theta_1."""
    trainer = Trainer(tiny_config(**{"method.name": "sspo-ema", "method.reference_decay": 0.75, "train.max_steps": 1}))
    trainer.fit()
    theta0, snap = trainer.pool.get(0), trainer.pool.get(1)
    theta1 = trainer.model.unet.state_dict()
    moved = [k for k in theta0 if theta0[k].is_floating_point() and not torch.equal(theta0[k], theta1[k].cpu())]
    assert moved
    for k in moved:
        torch.testing.assert_close(snap[k], 0.75 * theta0[k] + 0.25 * theta1[k].cpu(), rtol=1e-5, atol=1e-7)
