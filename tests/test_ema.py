"""The moving average of the trainable weights (`optim.ema_decay`): its update by hand, its place
in the training state (resume), and what the export holds."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from models import load_model
from videosspo.checkpoint import latest_checkpoint
from videosspo.ema import EMA, ema_decay
from videosspo.state import EMA_FILE
from videosspo.trainer import Trainer


def test_decay_warms_up_to_its_value():
    assert ema_decay(0.999, 1) == pytest.approx(0.1)  # diffusers' EMAModel: (1 + 0) / (10 + 0)
    assert ema_decay(0.999, 91) == pytest.approx(0.91)
    assert ema_decay(0.5, 9) == 0.5 and ema_decay(0.5, 8) == pytest.approx(8 / 17)


def test_update_against_hand_computed_values_and_only_trainable_parameters():
    net = torch.nn.Linear(1, 1)
    net.bias.requires_grad_(False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = EMA(net, decay=0.5)
    assert list(ema.average) == ["weight"]  # frozen parameters are not averaged
    for update, value in ((1, 1.0), (2, 2.0), (20, 4.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update(update)
    # d_1 = 0.1: 0.9 * 1;  d_2 = 2/11: (2/11) 0.9 + (9/11) 2 = 1.8;  d_20 = 0.5: 0.5 * 1.8 + 0.5 * 4 = 2.9
    assert ema.average["weight"].item() == pytest.approx(2.9)
    with ema.applied():
        assert net.weight.item() == pytest.approx(2.9)
    assert net.weight.item() == 4.0  # the trained weight is back, exactly
    other = EMA(net, decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.average["weight"], ema.average["weight"])
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({})


@pytest.mark.parametrize("lora,export", [(0, "merged"), (4, "adapter")])
def test_export_holds_the_average_not_the_trained_weights(tiny_config, lora, export):
    trainer = Trainer(
        tiny_config(
            **{
                "method.name": "sft",
                "optim.ema_decay": 0.9,
                "model.lora_rank": lora,
                "train.export": export,
                "train.max_steps": 3,
            }
        )
    )
    summary = trainer.fit()
    average = trainer.ema.state_dict()
    trained = {n: p.detach() for n, p in trainer.model.unet.named_parameters() if p.requires_grad}
    assert set(average) == set(trained) and (not lora or all("lora" in n for n in average))
    assert all(not torch.equal(average[n], trained[n]) for n in average)
    saved = load_file(str(latest_checkpoint(trainer.out) / EMA_FILE))
    assert all(torch.equal(saved[n], average[n]) for n in average)
    loaded = load_model(summary["checkpoint"])  # the average's network: predicts what the policy holding it does
    c, f, h, w = loaded.latent_shape(2, 16, 16)
    x, t = torch.randn(1, c, f, h, w, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    cond = loaded.encode_prompt(["a red square moving left"])
    with torch.no_grad():
        raw = trainer.model.predict(x, t, cond)
        with trainer.inference_weights():
            averaged = trainer.model.predict(x, t, cond)
        assert torch.allclose(loaded.predict(x, t, cond), averaged, atol=1e-5)
        assert not torch.allclose(loaded.predict(x, t, cond), raw, atol=1e-5)
        assert torch.equal(trainer.model.predict(x, t, cond), raw)  # the trained weights are back
