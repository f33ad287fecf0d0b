"""`Trainer.fit` behaviours a broken method would change: it learns, its checkpoints are atomic,
v-prediction trains on the velocity, and the switches users set (gradient checkpointing, bf16,
data workers, SDPA attention) change how it runs, never what it computes."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from test_trainer import fixed_batch, grads_after_one_step, unet_state

from videosspo import rng
from videosspo.checkpoint import latest_checkpoint
from videosspo.sampling import sample_latents
from videosspo.trainer import Trainer
from videosspo.video import read_video, to_uint8

SFT = {"method.name": "sft"}


def fixed_loss(trainer: Trainer, batch: dict) -> float:
    """The loss on `batch` with step 0's noise and timesteps: the same regression problem before and after."""
    step, trainer.step = trainer.step, 0
    with torch.no_grad():
        loss = trainer.loss(batch)[0].item()
    trainer.step = step
    return loss


# -- learning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_fit_lowers_the_loss_on_a_learnable_problem(tiny_config, prediction_type):
    """Eight real optimizer steps on six clips: the loss on a fixed batch falls (a step against the gradient raises it)."""
    trainer = Trainer(
        tiny_config(**SFT, **{"model.prediction_type": prediction_type, "optim.lr": 2e-3, "train.max_steps": 8})
    )
    batch = fixed_batch(trainer)
    before = fixed_loss(trainer, batch)
    trainer.fit()
    assert fixed_loss(trainer, batch) < 0.8 * before


def test_v_prediction_trains_on_the_velocity(tiny_config, monkeypatch):
    """The per-sample error is against v = √ᾱ_t ε − √(1−ᾱ_t) x0, by hand from the schedule's betas."""
    trainer = Trainer(tiny_config(**SFT, **{"model.prediction_type": "v_prediction", "model.vae": "none"}))
    batch = fixed_batch(trainer)
    calls = []
    real = trainer.policy.predict
    monkeypatch.setattr(
        trainer.policy, "predict", lambda x_t, t, cond: calls.append((x_t, t, real(x_t, t, cond))) or calls[-1][2]
    )
    loss, _ = trainer.loss(batch)
    ((x_t, t, pred),) = calls
    x0 = batch["pixels"]  # pixel space: latents are pixels
    noise = rng.sample_noise(x0.shape[1:], 0, 0, batch["positions"])
    betas = torch.linspace(0.00085, 0.012, 1000, dtype=torch.float64)  # AnimateDiff's linear schedule (tiny config)
    abar = torch.cumprod(1 - betas, 0)[t].float().view(-1, 1, 1, 1, 1)
    torch.testing.assert_close(x_t, abar.sqrt() * x0 + (1 - abar).sqrt() * noise)
    v = abar.sqrt() * noise - (1 - abar).sqrt() * x0
    assert loss.item() == pytest.approx(((v - pred) ** 2).mean().item(), rel=1e-5)
    assert loss.item() != pytest.approx(((noise - pred) ** 2).mean().item(), rel=1e-2)  # not the ε target


# -- atomic checkpoints --------------------------------------------------------------------------


def killed_while_saving(trainer: Trainer, kill_at: str) -> int:
    """Run `save_checkpoint` in a forked child that dies (no cleanup, like SIGKILL) when it calls `kill_at`."""
    pid = os.fork()
    if pid == 0:
        try:
            setattr(trainer.model, kill_at, lambda *a, **k: os._exit(17))
            trainer.state.save()
        finally:
            os._exit(1)  # never reached the kill point
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_writer_killed_between_files_leaves_the_previous_checkpoint_to_resume(tiny_config):
    trainer = Trainer(tiny_config(**SFT, **{"train.max_steps": 1}))
    trainer.fit()
    good = latest_checkpoint(trainer.out)
    trainer.step += 1
    # The model export comes after the training state (accelerate/) is on disk: files exist, the checkpoint is incomplete.
    assert killed_while_saving(trainer, "save_pretrained") == 17
    final_names = [p.name for p in (trainer.out / "checkpoints").iterdir() if re.fullmatch(r"step_\d+", p.name)]
    assert final_names == [good.name]
    resumed = Trainer(tiny_config(**SFT, **{"train.max_steps": 2}))
    resumed.state.resume("latest")
    assert resumed.step == 1 and all(
        torch.equal(a, b) for a, b in zip(unet_state(trainer).values(), unet_state(resumed).values(), strict=True)
    )


# -- switches: how it runs, not what it computes ---------------------------------------------------


@pytest.mark.parametrize("family,frames", [("animatediff", 2), ("sd", 1), ("modelscope", 2)])
def test_gradient_checkpointing_gives_the_same_gradients(tiny_config, monkeypatch, family, frames):
    calls = []
    real = torch.utils.checkpoint.checkpoint
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    common = {"model.family": family, "data.frames": frames, "optim.max_grad_norm": 0}
    plain = grads_after_one_step(Trainer(tiny_config(**common)))
    assert not calls
    checkpointed = grads_after_one_step(Trainer(tiny_config(**common, **{"model.gradient_checkpointing": True})))
    assert calls, "model.gradient_checkpointing: true recomputed nothing"
    assert plain.keys() == checkpointed.keys() and plain
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], atol=1e-6, rtol=1e-5)


def test_bf16_mixed_precision_trains_on_cpu(tiny_config, fresh_accelerate_state):
    trainer = Trainer(tiny_config(**SFT, **{"train.mixed_precision": "bf16"}))
    before = unet_state(trainer)
    summary = trainer.fit()
    assert trainer.model.text_encoder.dtype == torch.bfloat16  # frozen parts in bf16
    after = unet_state(trainer)
    assert all(v.dtype == torch.float32 for v in after.values())  # trainable weights stay fp32
    assert sum(not torch.equal(before[k], after[k]) for k in before) > 0
    assert torch.isfinite(torch.tensor([summary["first_loss"], summary["last_loss"]])).all()


def test_data_workers_give_the_same_batches_as_the_main_process(tiny_config):
    batches = {}
    for workers in (0, 2):
        trainer = Trainer(tiny_config(**{"data.num_workers": workers, "optim.batch_size": 2}))
        stream = iter(trainer.stream.loader(trainer.step))
        batches[workers] = [next(stream) for _ in range(4)]  # 8 samples: past the end of the first epoch of 6
    for a, b in zip(batches[0], batches[2], strict=True):
        assert a.keys() == b.keys() and "pixels" in a
        for key in a:
            assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key], key


def test_sdpa_attention_runs_through_torch_sdpa(tiny_config, monkeypatch):
    calls = []
    real = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or real(*a, **k))
    trainer = Trainer(tiny_config(**SFT, **{"model.attention": "sdpa", "train.max_steps": 1}))
    summary = trainer.fit()
    assert calls and summary["steps"] == 1 and torch.isfinite(torch.tensor(summary["last_loss"]))


# -- a run's outputs, by value ---------------------------------------------------------------------


def test_a_runs_metrics_and_samples_hold_what_the_trainer_computed(tiny_config):
    """metrics.jsonl's step 1 is the loss and statistics a fresh trainer computes on the loader's first
    batch; the sample GIF holds the decoded sample of the final policy (prompt 0, seed 0)."""
    cfg = tiny_config(**{"optim.lr": 1e-3})  # sspo, 2 steps, pool [0, 1, 2]
    fresh = Trainer(cfg)
    with torch.no_grad():
        loss, stats = fresh.loss(next(iter(fresh.stream.loader(fresh.step))))
    trainer = Trainer(cfg)
    summary = trainer.fit()
    metrics = [json.loads(line) for line in open(trainer.out / "metrics.jsonl")]
    assert [m["step"] for m in metrics] == [1, 2] and [m["lr"] for m in metrics] == [1e-3, 1e-3]
    assert metrics[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)
    for key in ("loss/e_w", "rewards/delta_w", "rewards/delta_l", "rewards/accuracy", "sspo/switch_frac"):
        assert metrics[0][key] == pytest.approx(stats[key], rel=1e-5, abs=1e-9), key
    assert metrics[0]["replay/ref_index"] == 0  # only theta_0 in the pool at step 0
    assert metrics[1]["replay/ref_index"] == trainer.pool.draw(cfg.train.seed, 1) and metrics[1]["replay/ref_index"] < 2
    assert all(m["sspo/switch_frac"] in (0, 0.5, 1) and m["rewards/accuracy"] in (0, 0.5, 1) for m in metrics)

    s = cfg.sample
    with torch.no_grad():
        pixels = trainer.model.decode(
            sample_latents(
                trainer.model,
                list(cfg.train.sample_prompts),
                frames=cfg.data.frames,
                height=cfg.data.height,
                width=cfg.data.width,
                steps=s.steps,
                guidance=s.guidance,
                negative_prompt=s.negative_prompt,
                scheduler=s.scheduler,
                seeds=[0],
            )
        )
    want = to_uint8(pixels[0]).astype(float)
    got = read_video(summary["samples"][0], backend="pyav").astype(float)
    assert got.shape == want.shape == (cfg.data.frames, cfg.data.height, cfg.data.width, 3)
    assert np.abs(got - want).mean() < 1  # within a grey level on average (another seed: ~40)
