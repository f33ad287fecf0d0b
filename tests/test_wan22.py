"""Wan 2.2 A14B (`model.family: wan22`): two experts switched at t = boundary_ratio · T. Routing by timestep,
the expert's σ range of the training density, sampling against `WanPipeline` with `guidance_scale_2`,
training one or both experts, resume, both exports loaded by `WanPipeline`, DDP with an idle expert."""

from __future__ import annotations

import copy
import json
import logging
import math

import pytest
import torch
import torch.distributed as dist
from conftest import ROOT
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, WanPipeline
from peft.tuners.tuners_utils import BaseTunerLayer
from test_dit import PROMPTS, WAN, pipeline, wan
from test_trainer import straight_and_resumed, unet_state
from torch.nn.parallel import DistributedDataParallel

from models import FAMILIES, build_model, load_model
from models.experts import WanExperts
from models.lora import add_lora
from videosspo import rng
from videosspo.config import ModelConfig, load_config
from videosspo.objectives import OBJECTIVES, epsilon_weight
from videosspo.sampling import per_sample_noise, sample_latents
from videosspo.trainer import Trainer

WAN22 = {**WAN, "model.family": "wan22", "loser.guidance": 3.0, "loser.guidance_2": 2.0}
_CACHE: dict = {}


def wan22():
    if "model" not in _CACHE:
        _CACHE["model"] = build_model(ModelConfig(family="wan22"))
    return _CACHE["model"]


def inputs(t: list[float]):
    model = wan22()
    return torch.randn(len(t), 4, 2, 4, 4), torch.tensor(t), model.encode_prompt((PROMPTS * 2)[: len(t)])


def lora_keys(state: dict) -> dict[str, set]:
    """The LoRA entries of a WanExperts state dict, by expert."""
    return {e: {k for k in state if "lora_" in k and k.startswith(f"{e}.")} for e in ("transformer", "transformer_2")}


# -- routing -------------------------------------------------------------------------------------------


def test_each_expert_gets_exactly_its_samples():
    """t >= 875 (boundary_ratio 0.875 x 1000) to `transformer`, below to `transformer_2`; outputs in batch order;
    an expert without samples is not called."""
    model = wan22()
    seen: dict[str, list] = {}
    hooks = [
        getattr(model.unet, name).register_forward_pre_hook(
            lambda module, args, name=name: seen.setdefault(name, []).append(args)
        )
        for name in ("transformer", "transformer_2")
    ]
    try:
        x, t, cond = inputs([900.0, 100.0, 875.0, 874.0])
        with torch.no_grad():
            out = model.predict(x, t, cond)
            high = model.unet.transformer(x[[0, 2]], t[[0, 2]], cond[[0, 2]]).sample
            low = model.unet.transformer_2(x[[1, 3]], t[[1, 3]], cond[[1, 3]]).sample
        (x_high, t_high, _), (x_low, t_low, _) = seen["transformer"][0], seen["transformer_2"][0]
        assert t_high.tolist() == [900.0, 875.0] and t_low.tolist() == [100.0, 874.0]
        assert torch.equal(x_high, x[[0, 2]]) and torch.equal(x_low, x[[1, 3]])
        torch.testing.assert_close(out[[0, 2]], high)
        torch.testing.assert_close(out[[1, 3]], low)
        assert (high - model.unet.transformer_2(x[[0, 2]], t[[0, 2]], cond[[0, 2]]).sample).abs().max() > 1e-3
        seen.clear()
        with torch.no_grad():
            model.predict(x[:1], t[:1], cond[:1])
        assert list(seen) == ["transformer"]
    finally:
        for hook in hooks:
            hook.remove()


def test_expert_sigma_ranges_truncate_the_training_density():
    """`high`: σ from the shifted density truncated to [0.875, 1) by inverse transform; `low`: to [0, 0.875).
    Shift 3: σ = 3u / (1 + 2u), whose inverse at 0.875 is u = 0.875 / (3 − 2 · 0.875) = 0.7."""
    sched, positions = FlowMatchEulerDiscreteScheduler(shift=3.0), list(range(256))
    shifted = OBJECTIVES["flow_shifted"].timesteps
    u = rng.sample_uniform(0, 7, positions).double()
    by_hand = lambda v: 3 * v / (1 + 2 * v)  # noqa: E731
    high = shifted(sched, 0, 7, positions, sigma_range=(0.875, 1.0)) / 1000
    low = shifted(sched, 0, 7, positions, sigma_range=(0.0, 0.875)) / 1000
    torch.testing.assert_close(high.double(), by_hand(0.7 + 0.3 * u), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(low.double(), by_hand(0.7 * u), atol=1e-6, rtol=1e-6)
    assert float(high.min()) >= 0.875 > float(low.max())
    assert torch.equal(shifted(sched, 0, 7, positions, sigma_range=(0.0, 1.0)), shifted(sched, 0, 7, positions))
    # DDPM objectives: t ~ U{lo T, ..., hi T − 1}
    t = OBJECTIVES["epsilon"].timesteps(DDPMScheduler(), 0, 7, positions, sigma_range=(0.875, 1.0))
    assert 875 <= int(t.min()) and int(t.max()) <= 999 and len(set(t.tolist())) > 50
    # the model's range follows model.experts
    model = copy.copy(wan22())
    for experts, want in (("both", (0.0, 1.0)), ("high", (0.875, 1.0)), ("low", (0.0, 0.875))):
        model.experts = experts
        assert model.sigma_range == want


# -- sampling ------------------------------------------------------------------------------------------


def test_sampler_equals_wan_pipeline_with_both_experts_and_guidance_scale_2():
    """Our loop (UniPC, CFG 4 on the high-noise steps 999 and 900, 2 on 750 and 500) == WanPipeline's latents."""
    model = wan22()
    shape = model.latent_shape(5, 32, 32)
    ours = sample_latents(
        model,
        PROMPTS[:1],
        frames=5,
        height=32,
        width=32,
        seeds=[3],
        steps=4,
        guidance=4.0,
        guidance_2=2.0,
        scheduler="unipc",
    )
    pipe = pipeline(model)
    theirs = pipe(
        PROMPTS[0],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=4,
        guidance_scale=4.0,
        guidance_scale_2=2.0,
        latents=per_sample_noise(shape, [3]),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    assert pipe.scheduler.timesteps.tolist() == [999, 900, 750, 500]
    torch.testing.assert_close(ours, theirs)
    one_scale = sample_latents(
        model, PROMPTS[:1], frames=5, height=32, width=32, seeds=[3], steps=4, guidance=4.0, scheduler="unipc"
    )
    assert (one_scale - ours).abs().max() > 1e-4  # guidance_2 None: 4 throughout
    with pytest.raises(ValueError, match=r"guidance_2=2\.0 needs a model with two denoisers.*family=wan has one"):
        sample_latents(
            wan(),
            PROMPTS[:1],
            frames=5,
            height=32,
            width=32,
            seeds=[3],
            steps=2,
            guidance=4.0,
            guidance_2=2.0,
            scheduler="unipc",
        )


# -- training --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("experts", ["high", "low"])
def test_one_expert_trains_alone_on_its_timesteps(tiny_config, hub_layout, experts, caplog):
    """configs/tiny_wan22_sspo.yaml from the real hub layout: LoRA only in the chosen expert, the training timesteps
    all in its range, and it changes. The density it trains with is the folder's (shift 3.0), logged with its β."""
    folder = hub_layout("Wan-AI/Wan2.2-T2V-A14B-Diffusers")
    trainer = Trainer(
        tiny_config(
            "tiny_wan22_sspo.yaml",
            **{
                "model.pretrained": str(folder),
                "model.experts": experts,
                "method.name": "sft",
                "train.max_steps": 1,
                "train.guard": "off",  # its fixed-batch probe draws timesteps too; this counts the training step's
                "optim.batch_size": 4,
                "data.frames": 5,
                "data.height": 32,
                "data.width": 32,
            },
        )
    )
    assert trainer.model.boundary_timestep == 875.0 and trainer.model.scheduler.config.shift == 3.0  # the folder's
    assert trainer.accelerator.ddp_handler.find_unused_parameters  # DDP may meet an idle expert
    trained, idle = ("transformer", "transformer_2")[:: 1 if experts == "high" else -1]
    before = unet_state(trainer)
    keys = lora_keys(before)
    assert keys[trained] and not keys[idle]
    timesteps, training = [], [True]  # of the training step's forward passes, not of the samples written after it
    trainer.model.unet.register_forward_pre_hook(
        lambda module, args: timesteps.extend(args[1].tolist()) if training else None
    )
    with caplog.at_level(logging.INFO, logger="videosspo"):
        trainer.fit(on_step=lambda _: training.clear())
    assert len(timesteps) == 4 and all((t >= 875) == (experts == "high") for t in timesteps)
    # β = 2000 E[(1 − σ)²] over the expert's range of the shift-3 density (docs/families.md), logged at the start
    derived = {
        "high": "[0.875, 1): E[(1 − σ)²] = 0.0046, so β 9 ",
        "low": "[0, 0.875): E[(1 − σ)²] = 0.2495, so β 499 ",
    }
    assert f"shifted σ (shift 3.0, from the model's scheduler), σ in {derived[experts]}" in caplog.text
    after = unet_state(trainer)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= keys[trained]


def test_both_experts_resume_exactly_and_export_for_wan_pipeline(tiny_config, tmp_path):
    """SSPO on both experts (CFG losers with guidance_2): resumed == uninterrupted bit for bit; the adapter export
    is one LoRA per expert that `WanPipeline.load_lora_weights` loads (`load_into_transformer_2` for the second);
    the merged export is a WanPipeline folder (both experts, boundary_ratio) that samples what we sample."""
    straight, resumed = straight_and_resumed(tiny_config, tmp_path, 3, **WAN22, **{"train.checkpoint_every": 2})
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    keys = lora_keys(a)
    assert keys["transformer"] and keys["transformer_2"]
    m_a, m_b = ([json.loads(line) for line in open(t.out / "metrics.jsonl")] for t in (straight, resumed))
    assert [m["loss"] for m in m_a] == [m["loss"] for m in m_b]
    x, t, cond = inputs([900.0, 300.0])
    with torch.no_grad():
        trained = straight.model.predict(x, t, cond)
    # the adapter: our loader, and WanPipeline's, one expert at a time
    exported = straight.out / "checkpoints" / "step_00000003" / "model"
    assert sorted(p.name for p in exported.iterdir() if p.is_dir()) == ["transformer", "transformer_2"]
    fresh = build_model(ModelConfig(family="wan22"))
    pipe = pipeline(fresh)
    pipe.load_lora_weights(exported / "transformer")
    pipe.load_lora_weights(exported / "transformer_2", load_into_transformer_2=True)
    with torch.no_grad():
        torch.testing.assert_close(load_model(exported).predict(x, t, cond), trained, atol=1e-5, rtol=1e-5)
        fresh.unet = WanExperts(
            expert=dict(pipe.transformer.config),
            boundary_ratio=0.875,
            transformer=pipe.transformer,
            transformer_2=pipe.transformer_2,
        )
        torch.testing.assert_close(fresh.predict(x, t, cond), trained, atol=1e-5, rtol=1e-5)
    # merged: WanPipeline.from_pretrained, both experts and the boundary kept
    straight.model.save_pretrained(tmp_path / "merged", unet=straight.policy.merged_unet())
    pipe = WanPipeline.from_pretrained(tmp_path / "merged")
    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2 is not None
    merged = load_model(tmp_path / "merged")
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.unet.modules())
    with torch.no_grad():
        torch.testing.assert_close(merged.predict(x, t, cond), trained, atol=1e-5, rtol=1e-5)
    shape = merged.latent_shape(5, 32, 32)
    ours = sample_latents(
        merged,
        PROMPTS[1:],
        frames=5,
        height=32,
        width=32,
        seeds=[4],
        steps=4,
        guidance=4.0,
        guidance_2=2.0,
        scheduler="unipc",
    )
    theirs = pipe(
        PROMPTS[1],
        negative_prompt="",
        height=32,
        width=32,
        num_frames=5,
        num_inference_steps=4,
        guidance_scale=4.0,
        guidance_scale_2=2.0,
        latents=per_sample_noise(shape, [4]),
        max_sequence_length=16,
        output_type="latent",
    ).frames
    torch.testing.assert_close(ours, theirs)


def test_ddp_needs_unused_parameters_for_an_idle_expert(tmp_path):
    """A micro-batch on one side of the boundary leaves the other expert's LoRA without a gradient: plain DDP
    (1 gloo process: its reducer checks all the same) fails at the next step, so the family asks the trainer
    for `find_unused_parameters`, with which steps on either expert run."""
    assert FAMILIES["wan22"].unused_parameters and not FAMILIES["wan"].unused_parameters
    model = wan22()
    x, t, cond = inputs([900.0])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        for find_unused in (False, True):
            unet = copy.deepcopy(model.unet).requires_grad_(False)
            add_lora(unet, 2, None, model.lora_scope)
            ddp = DistributedDataParallel(unet, find_unused_parameters=find_unused)
            step = lambda t: ddp(x, t, encoder_hidden_states=cond).sample.square().mean().backward()  # noqa: E731
            step(t)
            if find_unused:
                step(t - 500)  # the low-noise expert now, the high one idle
                grads = {name: p.grad for name, p in unet.named_parameters() if p.requires_grad}
                assert all(g is not None for g in grads.values())  # lora_A's are zero: B starts at zero
                assert all(g.abs().sum() > 0 for name, g in grads.items() if "lora_B" in name)
            else:
                with pytest.raises(RuntimeError, match="finished reduction|did not receive grad"):
                    step(t)
    finally:
        dist.destroy_process_group()


def test_shipped_beta_is_derived_from_the_shift_the_hub_folder_holds(hub_layout):
    """β = 2000 E[(1 − σ)²] under the density the run trains with, whose shift is the folder's `flow_shift` (3.0 in
    Wan-AI/Wan2.2-T2V-A14B-Diffusers, tests/hub_layouts.py), not the 12 of the Wan team's own sampler."""
    assert epsilon_weight("flow", {}) == pytest.approx(1 / 3, abs=1e-8)  # σ ~ U(0, 1)
    assert epsilon_weight("flow_shifted", {"shift": 3.0}) == pytest.approx(1 - 0.75 * math.log(3), abs=1e-8)  # by hand
    model = build_model(ModelConfig(family="wan22", pretrained=str(hub_layout("Wan-AI/Wan2.2-T2V-A14B-Diffusers"))))
    assert model.scheduler.config.shift == 3.0
    beta = load_config(ROOT / "configs" / "wan22_sspo.yaml").method.beta
    assert beta == pytest.approx(2000 * epsilon_weight(model.objective, model.scheduler.config), rel=0.01)
    assert 2000 * epsilon_weight("flow_shifted", {"shift": 12.0}) == pytest.approx(125, abs=1)  # the old value's shift
