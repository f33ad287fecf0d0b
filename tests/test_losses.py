import math

import pytest
import torch

from videosspo.losses import LOSSES, SSR_MODES, get_loss, per_sample_error

# Hand-picked errors with beta = 2, so beta/2 = 1.
#   delta_w = [-0.5, 1.0, 0.0,  2.0]
#   delta_l = [ 1.0, -0.5, 1.0, -2.0]
#   switched (ref_e_w < e_w) = [F, T, F, T]
BETA = 2.0
E_W = [1.0, 2.0, 0.5, 3.0]
REF_E_W = [1.5, 1.0, 0.5, 1.0]
E_L = [2.0, 1.0, 3.0, 0.5]
REF_E_L = [1.0, 1.5, 2.0, 2.5]
SWITCHED = [False, True, False, True]


def softplus(y):
    """-log sigmoid(-y) = log(1 + e^y)."""
    return math.log(1.0 + math.exp(y))


def sigmoid(y):
    return 1.0 / (1.0 + math.exp(-y))


DPO = [softplus(-1.5), softplus(1.5), softplus(-1.0), softplus(4.0)]
SSR_EXPECTED = {
    "sft": [DPO[0], 2.0, DPO[2], 3.0],
    "sign": [DPO[0], softplus(0.5), DPO[2], math.log(2.0)],
    "drop": [DPO[0], softplus(1.0), DPO[2], softplus(2.0)],
    "off": DPO,
}


def inputs(requires_grad=False):
    e_w = torch.tensor(E_W, requires_grad=requires_grad)
    e_l = torch.tensor(E_L, requires_grad=requires_grad)
    return e_w, e_l, torch.tensor(REF_E_W), torch.tensor(REF_E_L)


def test_registry():
    assert set(LOSSES) == {"sft", "dpo", "sspo"}
    assert SSR_MODES == ("sft", "sign", "drop", "off")
    for name, fn in LOSSES.items():
        assert get_loss(name) is fn


def test_bad_names():
    with pytest.raises(ValueError, match=r"'ipo'.*sft, dpo, sspo"):
        get_loss("ipo")
    with pytest.raises(ValueError, match=r"'flip'.*sft, sign, drop, off"):
        get_loss("sspo")(*inputs(), beta=BETA, ssr_mode="flip")


def test_sft_values_and_stats():
    e_w = torch.tensor(E_W)
    loss, stats = get_loss("sft")(e_w, None, None, None, beta=BETA, ssr_mode="sft")
    assert torch.equal(loss, e_w)
    assert set(stats) == {"loss/mean", "loss/e_w"}
    assert stats["loss/mean"].item() == pytest.approx(6.5 / 4)
    assert stats["loss/e_w"].item() == pytest.approx(6.5 / 4)


def test_dpo_values():
    loss, _ = get_loss("dpo")(*inputs(), beta=BETA, ssr_mode="sft")
    assert loss.shape == (4,)
    assert loss.tolist() == pytest.approx(DPO, rel=1e-6)


def test_dpo_needs_loser():
    e_w, _, ref_e_w, ref_e_l = inputs()
    with pytest.raises(ValueError, match="e_l"):
        get_loss("dpo")(e_w, None, ref_e_w, ref_e_l, beta=BETA, ssr_mode="sft")


@pytest.mark.parametrize("mode", SSR_MODES)
def test_sspo_values_per_mode(mode):
    loss, stats = get_loss("sspo")(*inputs(), beta=BETA, ssr_mode=mode)
    assert loss.tolist() == pytest.approx(SSR_EXPECTED[mode], rel=1e-6)
    expected_frac = 0.0 if mode == "off" else 0.5
    assert stats["sspo/switch_frac"].item() == expected_frac


@pytest.mark.parametrize("name", ["dpo", "sspo"])
def test_stats_hand_checked(name):
    loss, stats = get_loss(name)(*inputs(requires_grad=True), beta=BETA, ssr_mode="sft")
    expected = {
        "loss/mean": sum(DPO if name == "dpo" else SSR_EXPECTED["sft"]) / 4,
        "loss/e_w": 6.5 / 4,
        "loss/e_l": 6.5 / 4,
        "ref/e_w": 4.0 / 4,
        "ref/e_l": 7.0 / 4,
        "rewards/delta_w": 2.5 / 4,  # [-0.5, 1, 0, 2]
        "rewards/delta_l": -0.5 / 4,  # [1, -0.5, 1, -2]
        "rewards/margin": -3.0 / 4,  # delta_l - delta_w = [1.5, -1.5, 1, -4]
        "rewards/accuracy": 0.5,  # delta_w < delta_l = [T, F, T, F]
        "sspo/switch_frac": 0.0 if name == "dpo" else 0.5,
    }
    assert set(stats) == set(expected)
    for key, value in expected.items():
        assert stats[key].dim() == 0 and not stats[key].requires_grad, key
        assert stats[key].item() == pytest.approx(value, rel=1e-6), key


@pytest.mark.parametrize("mode", SSR_MODES)
def test_switch_fires_exactly_when_reference_predicts_winner_better(mode):
    """Per sample, the loss equals the SSR branch iff ref_e_w < e_w (and never for 'off')."""
    torch.manual_seed(0)
    e_w, ref_e_w, e_l, ref_e_l = torch.rand(4, 64).unbind()
    ref_e_w[:8] = e_w[:8]  # ties must not switch
    dpo, _ = get_loss("dpo")(e_w, e_l, ref_e_w, ref_e_l, beta=BETA, ssr_mode=mode)
    loss, stats = get_loss("sspo")(e_w, e_l, ref_e_w, ref_e_l, beta=BETA, ssr_mode=mode)
    switched = (ref_e_w < e_w) if mode != "off" else torch.zeros(64, dtype=torch.bool)
    assert torch.equal(loss[~switched], dpo[~switched])
    if mode != "off":
        assert switched.any()
        assert not torch.allclose(loss[switched], dpo[switched])
    assert stats["sspo/switch_frac"].item() == pytest.approx(switched.float().mean().item())


@pytest.mark.parametrize("name,mode", [("dpo", "sft")] + [("sspo", m) for m in SSR_MODES])
def test_policy_equals_reference(name, mode):
    """At theta == theta_ref: loss = log 2, dL/de_w = beta/4, dL/de_l = -beta/4, no switch."""
    beta = 2000.0
    e_w = torch.tensor([0.3, 0.7, 1.1], requires_grad=True)
    e_l = torch.tensor([0.9, 0.2, 0.4], requires_grad=True)
    loss, stats = get_loss(name)(e_w, e_l, e_w.detach().clone(), e_l.detach().clone(), beta=beta, ssr_mode=mode)
    assert loss.tolist() == pytest.approx([math.log(2.0)] * 3)
    loss.sum().backward()
    assert e_w.grad.tolist() == pytest.approx([beta / 4] * 3)
    assert e_l.grad.tolist() == pytest.approx([-beta / 4] * 3)
    assert stats["sspo/switch_frac"].item() == 0.0


@pytest.mark.parametrize("mode", SSR_MODES)
def test_gradient_flows_only_through_selected_branch(mode):
    e_w, e_l, ref_e_w, ref_e_l = inputs(requires_grad=True)
    loss, _ = get_loss("sspo")(e_w, e_l, ref_e_w, ref_e_l, beta=BETA, ssr_mode=mode)
    loss.sum().backward()
    # d softplus(y)/dy = sigmoid(y); the DPO argument is y = delta_w - delta_l (beta/2 = 1).
    dpo_grad_w = [sigmoid(y) for y in (-1.5, 1.5, -1.0, 4.0)]
    expected_w = {
        "off": dpo_grad_w,
        "sft": [dpo_grad_w[0], 1.0, dpo_grad_w[2], 1.0],
        "sign": [dpo_grad_w[0], sigmoid(0.5), dpo_grad_w[2], sigmoid(0.0)],
        "drop": [dpo_grad_w[0], sigmoid(1.0), dpo_grad_w[2], sigmoid(2.0)],
    }[mode]
    expected_l = {
        "off": [-g for g in dpo_grad_w],
        "sft": [-dpo_grad_w[0], 0.0, -dpo_grad_w[2], 0.0],
        "sign": [-dpo_grad_w[0], sigmoid(0.5), -dpo_grad_w[2], sigmoid(0.0)],
        "drop": [-dpo_grad_w[0], 0.0, -dpo_grad_w[2], 0.0],
    }[mode]
    assert e_w.grad.tolist() == pytest.approx(expected_w, rel=1e-6)
    assert e_l.grad.tolist() == pytest.approx(expected_l, rel=1e-6)


@pytest.mark.parametrize("mode", SSR_MODES)
def test_large_beta_is_finite(mode):
    e_w = torch.tensor([0.0, 1.0], requires_grad=True)
    e_l = torch.tensor([1.0, 0.0], requires_grad=True)
    loss, _ = get_loss("sspo")(e_w, e_l, torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5]), beta=5000.0, ssr_mode=mode)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(e_w.grad).all() and torch.isfinite(e_l.grad).all()


@pytest.mark.parametrize("shape", [(2, 4, 3, 5, 6), (3, 4, 5, 6)])
def test_per_sample_error_matches_manual(shape):
    torch.manual_seed(0)
    pred, target = torch.randn(shape), torch.randn(shape)
    err = per_sample_error(pred, target)
    assert err.shape == (shape[0],)
    for i in range(shape[0]):
        manual = sum(
            (p - q) ** 2 for p, q in zip(pred[i].flatten().tolist(), target[i].flatten().tolist(), strict=True)
        )
        assert err[i].item() == pytest.approx(manual / pred[i].numel(), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_per_sample_error_is_float32(dtype):
    torch.manual_seed(0)
    pred, target = torch.randn(2, 4, 2, 8, 8).to(dtype), torch.randn(2, 4, 2, 8, 8).to(dtype)
    err = per_sample_error(pred, target)
    assert err.dtype == torch.float32
    torch.testing.assert_close(err, ((pred.float() - target.float()) ** 2).mean(dim=(1, 2, 3, 4)))


def test_per_sample_error_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        per_sample_error(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 1, 8, 8))


def test_sft_anchor_adds_lambda_e_w_to_every_sample_of_dpo_and_sspo():
    """L = L_SSPO + λ e_θ^w and L_DPO + λ e_θ^w on every sample, switched or not (gradient in e_w gains λ);
    SFT ignores λ."""
    e_w, e_l, ref_e_w, ref_e_l = inputs(requires_grad=True)
    loss, stats = get_loss("sspo")(e_w, e_l, ref_e_w, ref_e_l, beta=BETA, ssr_mode="sft", sft_anchor=3.0)
    assert loss.tolist() == pytest.approx([DPO[0] + 3.0, 2.0 + 6.0, DPO[2] + 1.5, 3.0 + 9.0])
    assert stats["loss/mean"].item() == pytest.approx(loss.mean().item())
    loss.sum().backward()
    assert e_w.grad.tolist() == pytest.approx([sigmoid(-1.5) + 3.0, 4.0, sigmoid(-1.0) + 3.0, 4.0], rel=1e-6)
    dpo, _ = get_loss("dpo")(*inputs(), beta=BETA, ssr_mode="sft", sft_anchor=3.0)
    assert dpo.tolist() == pytest.approx([d + 3.0 * w for d, w in zip(DPO, E_W, strict=True)], rel=1e-6)
    sft, _ = get_loss("sft")(*inputs(), beta=BETA, ssr_mode="sft", sft_anchor=3.0)
    assert sft.tolist() == E_W


def test_sft_weight_scales_only_the_switched_sft_branch():
    """L = w e_w on switched samples (values and gradient w), DPO untouched; other modes ignore w."""
    e_w, e_l, ref_e_w, ref_e_l = inputs(requires_grad=True)
    loss, _ = get_loss("sspo")(e_w, e_l, ref_e_w, ref_e_l, beta=BETA, ssr_mode="sft", sft_weight=500.0)
    assert loss.tolist() == pytest.approx([DPO[0], 1000.0, DPO[2], 1500.0])
    loss.sum().backward()
    assert e_w.grad.tolist() == pytest.approx([sigmoid(-1.5), 500.0, sigmoid(-1.0), 500.0], rel=1e-6)
    for mode in ("sign", "drop", "off"):
        weighted, _ = get_loss("sspo")(*inputs(), beta=BETA, ssr_mode=mode, sft_weight=500.0)
        assert weighted.tolist() == pytest.approx(SSR_EXPECTED[mode])
