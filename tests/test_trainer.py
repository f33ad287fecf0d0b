"""The trainer end to end on tiny models: learning, invariances (accumulation, processes, resume),
the SSPO / DPO relation, the LoRA reference swap, and what happens on bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from peft.utils import set_peft_model_state_dict

from models import build_model, load_model
from models.lora import add_lora
from videosspo import rng
from videosspo.checkpoint import latest_checkpoint
from videosspo.config import ConfigError
from videosspo.losses import per_sample_error
from videosspo.stream import Lookahead, stream_shift
from videosspo.trainer import Trainer


def straight_and_resumed(tiny_config, tmp_path, steps: int, **common) -> tuple[Trainer, Trainer]:
    """One run of `steps` steps, and one stopped at step `train.checkpoint_every` then resumed to `steps`."""
    straight = Trainer(tiny_config(**common, **{"train.max_steps": steps, "train.output_dir": str(tmp_path / "a")}))
    straight.fit()
    stop = common["train.checkpoint_every"]
    Trainer(tiny_config(**common, **{"train.max_steps": stop, "train.output_dir": str(tmp_path / "b")})).fit()
    resumed = Trainer(
        tiny_config(
            **common, **{"train.max_steps": steps, "train.output_dir": str(tmp_path / "b"), "train.resume": "latest"}
        )
    )
    resumed.fit()
    return straight, resumed


def unet_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.unet.state_dict().items()}


def fixed_batch(trainer, n=2) -> dict:
    batch = [trainer.data.get(i, seed=i) for i in range(n)]
    return {
        "pixels": torch.stack([b["pixels"] for b in batch]),
        "captions": [b["caption"] for b in batch],
        "indices": list(range(n)),
        "positions": list(range(n)),
        "loser_pixels": torch.stack([b["loser_pixels"] for b in batch]),
    }


def test_sft_loss_falls_on_a_fixed_batch(tiny_config):
    trainer = Trainer(tiny_config(**{"method.name": "sft", "optim.lr": 2e-3}))
    batch = fixed_batch(trainer)
    losses = []
    for _ in range(12):  # same step -> same noise and timesteps: a fixed regression problem
        loss, stats = trainer.loss(batch)
        trainer.accelerator.backward(loss)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
        losses.append(loss.item())
        assert stats["loss/e_w"] == pytest.approx(loss.item(), rel=1e-5)  # sft: loss = e_w
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize(
    "family,frames,lora,export",
    [
        ("animatediff", 2, 0, "merged"),
        ("modelscope", 2, 4, "merged"),
        ("animatediff", 2, 4, "adapter"),
        ("sd", 1, 0, "merged"),
    ],
)
def test_sspo_run_changes_weights_and_saves_a_loadable_model(tiny_config, family, frames, lora, export):
    cfg = tiny_config(
        **{"model.family": family, "data.frames": frames, "model.lora_rank": lora, "train.export": export}
    )
    trainer = Trainer(cfg)
    before = unet_state(trainer)
    summary = trainer.fit()
    after = unet_state(trainer)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed, "no weight changed"
    if lora:
        assert all("lora" in k for k in changed), "LoRA training must leave the base weights alone"
    assert summary["steps"] == 2 and summary["replay_steps"] == [0, 1, 2]
    # The saved model is the policy (LoRA merged, or base + adapter) and predicts what the trainer's policy does.
    saved = {p.name for p in (Path(summary["checkpoint"]) / "model").iterdir()}
    assert ("unet" in saved) == (export == "merged") and ("pytorch_lora_weights.safetensors" in saved) == (
        export == "adapter"
    )
    loaded = load_model(summary["checkpoint"])
    c, f, h, w = loaded.latent_shape(frames, 16, 16)
    x, t = torch.randn(1, c, f, h, w), torch.tensor([500])
    cond = loaded.encode_prompt(["a red square moving left"])
    with torch.no_grad():
        assert torch.allclose(loaded.predict(x, t, cond), trainer.model.predict(x, t, cond), atol=1e-5)
    metrics = [json.loads(line) for line in open(cfg.train.output_dir + "/metrics.jsonl")]
    assert [m["step"] for m in metrics] == [1, 2]
    for key in (
        "loss",
        "sspo/switch_frac",
        "rewards/accuracy",
        "rewards/delta_w",
        "rewards/delta_l",
        "replay/ref_index",
        "time/losers_s",
        "grad_norm",
        "lr",
    ):
        assert key in metrics[0], key
    assert len(summary["samples"]) == 1 and os.path.getsize(summary["samples"][0]) > 0


@pytest.mark.parametrize(
    "lora, losers",
    [
        (0, {}),
        (
            4,
            {
                "loser.init": "winner",
                "loser.strength": 0.5,
                "loser.scheduler": "unipc",
                "loser.guidance": 3.0,
                "optim.ema_decay": 0.9,
            },
        ),
    ],
)
def test_resume_equals_uninterrupted(tiny_config, tmp_path, lora, losers):
    """Stopped at step 2, inside the loser window [0, 3): the resumed run serves the saved losers
    (and, with LoRA, continues the adapter's moving average exactly)."""
    straight, resumed = straight_and_resumed(
        tiny_config, tmp_path, 4, **{"model.lora_rank": lora, "train.checkpoint_every": 2, "loser.reuse": 3, **losers}
    )
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert (straight.ema is None) == (resumed.ema is None) == (not lora)
    if straight.ema:
        a, b = straight.ema.state_dict(), resumed.ema.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        trained = dict(straight.model.unet.named_parameters())
        assert all("lora" in k and not torch.equal(a[k], trained[k]) for k in a)  # the adapter's average
    saved = {p.name for p in (latest_checkpoint(tmp_path / "b") / "accelerate").iterdir()}
    assert ("lora_adapter.safetensors" in saved) == bool(lora)  # LoRA: the adapter, never the frozen base
    assert ("model.safetensors" in saved) == (not lora)
    assert straight.pool.steps == resumed.pool.steps == [0, 3, 4]
    for i in range(len(straight.pool)):
        assert all(torch.equal(straight.pool.get(i)[k], resumed.pool.get(i)[k]) for k in straight.pool.get(i))
    assert straight.lr_schedule.get_last_lr() == resumed.lr_schedule.get_last_lr()


def test_resume_rejects_a_different_architecture(tiny_config, tmp_path):
    Trainer(tiny_config(**{"train.output_dir": str(tmp_path / "r")})).fit()
    other = Trainer(
        tiny_config(
            **{
                "train.output_dir": str(tmp_path / "r"),
                "model.lora_rank": 4,
                "train.resume": "latest",
                "train.max_steps": 3,
            }
        )
    )
    with pytest.raises(ValueError, match="model.lora_rank"):
        other.fit()


def grads_after_one_step(trainer) -> dict[str, torch.Tensor]:
    trainer.optimizer.step = lambda *a, **k: None  # keep the accumulated gradients for inspection
    trainer.optimizer.zero_grad = lambda *a, **k: None
    trainer.optimizer_step(Lookahead(iter(trainer.stream.loader(trainer.step))))
    return {n: p.grad.clone() for n, p in trainer.model.unet.named_parameters() if p.grad is not None}


def test_accumulation_1x2_equals_2x1(tiny_config):
    losers = {"loser.guidance": 3.0, "optim.max_grad_norm": 0}
    big = grads_after_one_step(Trainer(tiny_config(**{"optim.batch_size": 2, **losers})))
    acc = grads_after_one_step(Trainer(tiny_config(**{"optim.batch_size": 1, "optim.grad_accum": 2, **losers})))
    assert big.keys() == acc.keys() and len(big) > 0
    scale = max(g.abs().max() for g in big.values())
    assert max((big[k] - acc[k]).abs().max() for k in big) < 1e-4 * scale


def test_two_processes_equal_one(two_processes, tmp_path):
    """torchrun with 2 CPU processes x batch 1 == 1 process x batch 2, step by step (losers with CFG, reused
    over 2 steps), with the first global batch undecodable: each process replaces its micro-batch by its next
    one, as one process does, and the unreadable clips are counted over both processes."""
    one = tmp_path / "one"
    done = two_processes.one(one)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_runs(one, two_processes.baseline)
    assert json.loads((one / "summary.json").read_text())["skipped_clips"] >= 2  # rank 0 alone read one of the two


@pytest.mark.parametrize("first, then", [("2x1x1", "1x1x2"), ("1x2x1", "2x1x1")])
def test_resume_on_another_process_count(two_processes, tmp_path, first, then):
    """Checkpointed at step 1 by layout `first` (processes x batch x accumulation; inside the loser window [0, 2),
    each process having replaced its undecodable first micro-batch) and resumed by `then`, the same global batch:
    the uninterrupted 2-process run, as closely as 1 process equals 2 (the window's losers served, not resampled)."""
    run = tmp_path / "run"
    for layout, extra in ((first, ("--train.max_steps", "1")), (then, ("--train.resume", "latest"))):
        processes, batch, accum = layout.split("x")
        done = (two_processes.launch if processes == "2" else two_processes.one)(
            run, "--optim.batch_size", batch, "--optim.grad_accum", accum, *extra
        )
        assert done.returncode == 0, done.stderr[-3000:]
    assert_same_runs(run, two_processes.baseline)


def test_resume_refuses_another_global_batch(tiny_config, tmp_path):
    """The data position derives from step x global batch: another one is refused in one line naming both."""
    Trainer(tiny_config(**{"train.max_steps": 1})).fit()  # 1 process x batch 2
    other = Trainer(tiny_config(**{"optim.batch_size": 1, "train.resume": "latest"}))
    with pytest.raises(
        ConfigError,
        match=r"global batch is 1 \(optim.batch_size 1 x optim.grad_accum 1 x 1 processes\) "
        r"but the checkpoint's is 2 .*to 2$",
    ):
        other.fit()


def test_replacement_micro_batches_carry_over_to_another_layout_only_when_exact():
    """`stream_shift`: each process's own count on the same layout; elsewhere a shift alike on every process, in
    the new layout's micro-batches; an uneven or fractional one is refused."""
    assert stream_shift([1, 3], 1, 1, 2, rank=1) == 3
    assert stream_shift([2], 2, 1, 2, rank=1) == 2  # 1 x batch 2 -> 2 x batch 1: micro-steps of 2 samples both
    assert stream_shift([2, 2], 1, 1, 1, rank=0) == 4  # 2 x batch 1 -> 1 x batch 1 (accumulating 2): 4 samples
    assert stream_shift([0, 0], 1, 2, 1, rank=0) == 0
    for skips, saved_batch, batch, processes in (([1, 0], 1, 2, 1), ([1], 1, 1, 2)):
        with pytest.raises(ConfigError, match=re.escape(f"drew {skips} micro-batches")):
            stream_shift(skips, saved_batch, batch, processes, rank=0)


def assert_two_processes_equal_one(tmp_path, config: str, *overrides: str) -> None:
    """`config` + `overrides` trained 3 steps (snapshot every step, CFG losers reused over 2 steps) by 1 process x
    batch 2 and by torchrun's 2 CPU processes x batch 1: the same metrics at every step and the same weights."""
    args = [
        "--config",
        str(ROOT / config),
        "--train.max_steps",
        "3",
        "--train.checkpoint_every",
        "0",
        "--replay.interval",
        "1",
        "--replay.size",
        "3",
        "--loser.steps",
        "2",
        "--sample.steps",
        "1",
        "--optim.lr",
        "1e-4",
        "--optim.warmup_steps",
        "0",
        "--method.beta",
        "50",
        "--train.sample_prompts",
        "[a]",
        "--loser.reuse",
        "2",
        "--loser.guidance",
        "3",
        *overrides,
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(
        [sys.executable, "-m", "videosspo.train", *args, "--train.output_dir", str(one), "--optim.batch_size", "2"],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "videosspo.train",
            *args,
            "--train.output_dir",
            str(two),
            "--optim.batch_size",
            "1",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    assert_same_runs(one, two)


def assert_same_runs(one, two) -> None:
    """Runs `one` (1 process x batch 2) and `two` (2 processes x batch 1) of 3 steps: the same global batch,
    skipped clips, metrics at every step, and final weights."""
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1["global_batch"] == s2["global_batch"] == 2 and s1["skipped_clips"] == s2["skipped_clips"]
    m1, m2 = ([json.loads(line) for line in open(d / "metrics.jsonl")] for d in (one, two))
    for a, b in zip(m1, m2, strict=True):
        for key in ("loss", "loss/e_w", "rewards/delta_w", "rewards/delta_l", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-3, abs=1e-5), (a["step"], key)
    w1, w2 = (load_model(d / "checkpoints" / "step_00000003").unet.state_dict() for d in (one, two))
    assert max((w1[k] - w2[k]).abs().max() for k in w1) < 1e-4  # Adam steps are 1e-4: agree to well within one


def test_sspo_with_initial_reference_and_no_switch_equals_dpo(tiny_config):
    """SSPO(strategy initial, ssr off) == Diffusion-DPO against theta_0, given the same losers."""
    overrides = {"model.vae": "none", "replay.strategy": "initial", "method.ssr_mode": "off"}
    sspo = Trainer(tiny_config(**overrides))
    dpo = Trainer(tiny_config(**overrides, **{"method.name": "dpo"}))
    for t in (sspo, dpo):  # move both policies away from theta_0 identically
        with torch.no_grad():
            for p in t.model.unet.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    batch = fixed_batch(sspo)
    losers = sspo.losers.sample(batch, 0)
    batch["loser_pixels"] = losers  # pixel space: latents are pixels, so DPO sees the same losers
    sspo.losers.sample = lambda *a: losers
    loss_s, stats_s = sspo.loss(batch)
    loss_d, stats_d = dpo.loss(batch)
    assert loss_s.item() == pytest.approx(loss_d.item(), rel=1e-6)
    assert stats_s["rewards/delta_w"] != 0 and stats_s["rewards/delta_w"] == pytest.approx(stats_d["rewards/delta_w"])
    loss_s.backward()
    loss_d.backward()
    gs = [p.grad for p in sspo.model.unet.parameters() if p.grad is not None]
    gd = [p.grad for p in dpo.model.unet.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(gs, gd, strict=True))


def test_concatenated_forward_equals_separate_forwards(tiny_config):
    trainer = Trainer(tiny_config())
    model = trainer.model
    c, f, h, w = model.latent_shape(2, 16, 16)
    x_w, x_l = torch.randn(2, c, f, h, w), torch.randn(2, c, f, h, w)
    t = rng.sample_timesteps(1000, 0, 0, [0, 1])
    noise = rng.sample_noise((c, f, h, w), 0, 0, [0, 1])
    cond = model.encode_prompt(["a red square moving left", "a blue circle moving up"])
    with torch.no_grad():
        sched = model.scheduler
        joint = model.predict(
            sched.add_noise(torch.cat([x_w, x_l]), noise.repeat(2, 1, 1, 1, 1), t.repeat(2)),
            t.repeat(2),
            cond.repeat(2, 1, 1),
        )
        e_joint = per_sample_error(joint, noise.repeat(2, 1, 1, 1, 1))
        e_w = per_sample_error(model.predict(sched.add_noise(x_w, noise, t), t, cond), noise)
        e_l = per_sample_error(model.predict(sched.add_noise(x_l, noise, t), t, cond), noise)
    assert torch.allclose(e_joint, torch.cat([e_w, e_l]), atol=1e-5)


def test_lora_reference_equals_a_separately_built_model(tiny_config):
    cfg = tiny_config(**{"model.lora_rank": 4, "train.max_steps": 3})
    trainer = Trainer(cfg)
    trainer.fit()
    assert trainer.pool.steps == [0, 2, 3]
    c, f, h, w = trainer.model.latent_shape(2, 16, 16)
    x, t = torch.randn(2, c, f, h, w), torch.tensor([100, 700])
    cond = trainer.model.encode_prompt(["a", "b"])
    for index in range(len(trainer.pool)):
        with torch.no_grad(), trainer.policy.reference(trainer.pool, index) as ref:
            out_ref = ref.predict(x, t, cond)
        separate = build_model(cfg.model)  # a fresh network carrying the snapshot's adapter weights
        separate.unet.requires_grad_(False)
        add_lora(separate.unet, 4, None, separate.lora_scope)
        set_peft_model_state_dict(separate.unet, trainer.pool.get(index), adapter_name="default")
        with torch.no_grad():
            assert torch.allclose(out_ref, separate.predict(x, t, cond), atol=1e-6), index
    base = build_model(cfg.model)  # theta_0 = the base model: LoRA starts as the identity
    with torch.no_grad(), trainer.policy.reference(trainer.pool, 0) as ref:
        assert torch.allclose(ref.predict(x, t, cond), base.predict(x, t, cond), atol=1e-6)
    # the reference pass leaves the policy adapter active and trainable
    trainable = [n for n, p in trainer.model.unet.named_parameters() if p.requires_grad]
    assert trainable and all(".default." in n for n in trainable)


def test_loser_reuse_serves_one_batch_and_its_losers_for_a_window_of_steps(tiny_config, monkeypatch):
    import videosspo.losers as losers_module

    calls = []
    real = losers_module.sample_latents
    monkeypatch.setattr(losers_module, "sample_latents", lambda *a, **k: calls.append(k["seeds"]) or real(*a, **k))
    trainer = Trainer(tiny_config(**{"loser.reuse": 3, "loser.guidance": 3.0}))
    batches = iter(trainer.stream.loader(trainer.step))
    got = []
    for step in range(4):
        trainer.step = step
        batch = next(batches)
        got.append((batch["positions"], trainer.losers.sample(batch, 0)))
    assert [p for p, _ in got] == [[0, 1]] * 3 + [[2, 3]]  # the stream advances once per window
    assert torch.equal(got[0][1], got[1][1]) and torch.equal(got[0][1], got[2][1])
    loser_seeds = [[rng.derive_seed(0, w, p, "loser") for p in ps] for w, ps in ((0, [0, 1]), (3, [2, 3]))]
    assert calls == loser_seeds  # sampled at each window's first step, seeded by it
    assert (
        "" in trainer._fixed_prompts and trainer.losers.cache.start == 3 and set(trainer.losers.cache.latents) == {2, 3}
    )


def test_losers_from_the_winner_are_per_sample(tiny_config):
    """loser.init: winner: sample i's loser is the same in any batch (so N processes == 1), and it starts
    from its own winner."""
    trainer = Trainer(tiny_config(**{"loser.init": "winner", "loser.strength": 0.25, "loser.steps": 4}))
    batch = fixed_batch(trainer)
    both = trainer.losers.sample(batch, 0)
    alone = trainer.losers.sample({k: v[1:] for k, v in batch.items()}, 0)
    torch.testing.assert_close(both[1:], alone, atol=1e-5, rtol=1e-5)
    x_w = trainer.latents(batch, "")
    noise_init = Trainer(tiny_config(**{"loser.steps": 4, "train.output_dir": str(trainer.out) + "_n"}))
    far = noise_init.losers.sample(batch, 0)
    assert (both - x_w).norm() < 0.5 * (far - x_w).norm()  # one step from t = T/4 stays near the winner


@pytest.mark.parametrize("lora", [0, 4])
def test_overlapped_losers_give_the_serial_losses(tiny_config, tmp_path, lora):
    """loser.overlap samples step s+1's losers during step s; not before a snapshot step (replay.interval 2)."""
    common = {"model.lora_rank": lora, "replay.interval": 2, "train.max_steps": 4, "loser.guidance": 3.0}
    serial = Trainer(tiny_config(**common, **{"train.output_dir": str(tmp_path / "serial")}))
    serial.fit()
    overlap = Trainer(tiny_config(**common, **{"train.output_dir": str(tmp_path / "overlap"), "loser.overlap": True}))
    served = []
    real = overlap.losers.overlap.take
    overlap.losers.overlap.take = lambda *a: (lambda x: served.append(a[0] if x is not None else None) or x)(real(*a))
    overlap.fit()
    assert served == [None, 1, None, 3]  # steps 2 and 4 follow a snapshot: sampled serially
    m1, m2 = ([json.loads(line) for line in open(tmp_path / d / "metrics.jsonl")] for d in ("serial", "overlap"))
    assert [m["loss"] for m in m1] == [m["loss"] for m in m2]
    a, b = unet_state(serial), unet_state(overlap)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_negative_prompt_is_encoded_once_per_run(tiny_config, monkeypatch):
    trainer = Trainer(tiny_config(**{"loser.guidance": 3.0}))
    prompts = []
    real = trainer.model.encode_prompt
    monkeypatch.setattr(trainer.model, "encode_prompt", lambda p: prompts.extend(p) or real(p))
    batch = fixed_batch(trainer)
    for step in range(3):
        trainer.step = step
        trainer.losers.sample(batch, 0, real(batch["captions"]))
    assert prompts == [""]


def test_nonfinite_gradients_skip_the_update_then_stop(tiny_config, monkeypatch):
    trainer = Trainer(tiny_config(**{"train.max_steps": 20, "train.on_anomaly": "continue"}))
    before = unet_state(trainer)
    real_loss = trainer.loss
    monkeypatch.setattr(trainer, "loss", lambda batch: (lambda l, s: (l * float("nan"), s))(*real_loss(batch)))
    with pytest.raises(FloatingPointError, match="consecutive non-finite"):
        trainer.fit()
    assert trainer.counters["nonfinite_steps"] == 10
    assert all(torch.equal(before[k], v) for k, v in unet_state(trainer).items())


def test_corrupt_clip_is_skipped_and_counted(synth_data, tiny_config, tmp_path):
    meta = [json.loads(line) for line in open(synth_data / "metadata.jsonl")]
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    meta[0]["video"] = str(tmp_path / "broken.mp4")
    for row in meta:
        row["video"] = str(synth_data / row["video"]) if not os.path.isabs(row["video"]) else row["video"]
        row.pop("loser_video", None)
    (tmp_path / "meta.jsonl").write_text("".join(json.dumps(r) + "\n" for r in meta))
    trainer = Trainer(
        tiny_config(
            **{
                "data.path": str(tmp_path / "meta.jsonl"),
                "train.max_steps": 6,
                "method.name": "sft",
                "data.max_bad_fraction": 0.5,
            }
        )
    )  # 1 of 6 clips
    summary = trainer.fit()
    assert summary["steps"] == 6 and summary["skipped_clips"] >= 1


def test_training_from_cached_latents_equals_encoding_on_the_fly(tiny_config, tmp_path):
    from videosspo.latents import cache_latents

    plain = Trainer(tiny_config(**{"method.name": "dpo", "train.output_dir": str(tmp_path / "a")}))
    cache = cache_latents(plain.model, plain.data, tmp_path / "cache", progress=False)
    cached = Trainer(
        tiny_config(**{"method.name": "dpo", "train.output_dir": str(tmp_path / "b"), "data.latent_cache": str(cache)})
    )
    batch = next(iter(cached.stream.loader(cached.step)))
    assert "latents" in batch and "pixels" not in batch and "loser_latents" in batch
    plain.fit()
    cached.fit()
    # Latents agree to ~1e-7 (VAE batch sizes differ), so compare what the updates were computed from;
    # Adam turns float noise in near-zero gradients into full-size steps, which makes weights a poor probe.
    m1, m2 = ([json.loads(line) for line in open(tmp_path / d / "metrics.jsonl")] for d in ("a", "b"))
    for x, y in zip(m1, m2, strict=True):
        for key in ("loss", "loss/e_w", "rewards/delta_w", "rewards/delta_l", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-5), key  # deltas: differences of near-equal errors


def test_winner_and_loser_share_timestep_and_noise_in_one_forward(tiny_config, monkeypatch):
    trainer = Trainer(tiny_config(**{"method.name": "dpo", "model.vae": "none"}))
    batch = fixed_batch(trainer)
    calls = []
    real = trainer.policy.predict
    monkeypatch.setattr(trainer.policy, "predict", lambda x_t, t, cond: calls.append((x_t, t)) or real(x_t, t, cond))
    trainer.loss(batch)
    assert len(calls) == 1  # winners and losers in one pass
    x_t, t = calls[0]
    b = batch["pixels"].shape[0]
    assert torch.equal(t[:b], t[b:])
    x0 = torch.cat([batch["pixels"], batch["loser_pixels"]])  # pixel space: latents are pixels
    abar = trainer.model.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1, 1)
    noise = (x_t - abar.sqrt() * x0) / (1 - abar).sqrt()
    assert torch.allclose(noise[:b], noise[b:], atol=1e-4)
    assert torch.allclose(noise[:b], rng.sample_noise(x0.shape[1:], 0, 0, batch["positions"]), atol=1e-4)


def test_full_finetuning_reference_reloads_only_when_the_drawn_snapshot_changes(tiny_config):
    trainer = Trainer(tiny_config(**{"train.max_steps": 1}))
    trainer.fit()  # pool: theta_0 and the snapshot after step 1
    assert trainer.pool.steps == [0, 1]
    loads = []
    with trainer.policy.reference(trainer.pool, 0):
        pass
    ref_unet = trainer.policy._ref_unet
    real = ref_unet.load_state_dict
    ref_unet.load_state_dict = lambda state, *a, **k: loads.append(1) or real(state, *a, **k)
    for index in (0, 0, 1, 1, 0):
        with torch.no_grad(), trainer.policy.reference(trainer.pool, index) as ref:
            assert ref.unet is ref_unet and ref.unet is not trainer.model.unet  # a separate, frozen copy
            got = ref.unet.state_dict()
            assert all(torch.equal(got[k], v) for k, v in trainer.pool.get(index).items())
    assert len(loads) == 2  # 0 was already loaded; then 0 -> 1 and 1 -> 0
    assert not any(p.requires_grad for p in ref_unet.parameters())


def test_old_checkpoints_are_pruned_to_keep_checkpoints(tiny_config):
    trainer = Trainer(
        tiny_config(
            **{"method.name": "sft", "train.max_steps": 4, "train.checkpoint_every": 1, "train.keep_checkpoints": 2}
        )
    )
    trainer.fit()
    kept = sorted(p.name for p in (trainer.out / "checkpoints").iterdir())
    assert kept == ["step_00000003", "step_00000004"]


def test_full_finetuning_snapshots_spill_to_disk_past_the_budget_and_resume(tiny_config, tmp_path):
    straight, resumed = straight_and_resumed(
        tiny_config, tmp_path, 3, **{"replay.cpu_budget_gb": 1e-9, "train.checkpoint_every": 2}
    )  # every snapshot but theta_0 spills
    spilled = sorted(p.name for p in (tmp_path / "a" / "replay_spill" / "rank0").iterdir())
    assert spilled == ["snap_00000002.safetensors", "snap_00000003.safetensors"]  # pool [0, 2, 3]; 1 evicted
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_without_sample_prompts_writes_no_samples(tiny_config):
    """`train.sample_prompts: []` turns samples off (it crashed in the tokenizer at the end of the run)."""
    summary = Trainer(tiny_config(**{"method.name": "sft", "train.max_steps": 1, "train.sample_prompts": []})).fit()
    assert summary["samples"] == [] and summary["steps"] == 1
