"""The latent sampler: per-sample determinism, every scheduler, CFG on/off, argument errors,
and the seed plumbing in `videosspo.rng`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from models import build_model
from models.samplers import DDPM_SAMPLERS
from videosspo import rng
from videosspo.config import ModelConfig
from videosspo.sampling import generate, make_scheduler, per_sample_noise, sample_latents

PROMPTS = ["a red square moving left", "a blue circle moving up", "a green triangle moving right"]
SIZE = dict(frames=2, height=16, width=16)
_CACHE: dict = {}


def tiny(family: str = "sd", vae: str = "none", prediction_type: str = "epsilon"):
    key = (family, vae, prediction_type)
    if key not in _CACHE:
        _CACHE[key] = build_model(ModelConfig(family=family, vae=vae, prediction_type=prediction_type))
    return _CACHE[key]


def sample(model, prompts, seeds, **kwargs):
    kwargs = {**SIZE, "steps": 3, "guidance": 3.0, **kwargs}
    return sample_latents(model, prompts, seeds=seeds, **kwargs)


# -- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, scheduler", [("sd", "ddim"), ("sd", "ddpm"), ("animatediff", "ddim"), ("modelscope", "euler")]
)
def test_a_sample_is_the_same_alone_or_in_a_batch(family, scheduler):
    model = tiny(family, "auto")
    batch = sample(model, PROMPTS, [11, 22, 33], scheduler=scheduler)
    alone = sample(model, PROMPTS[1:2], [22], scheduler=scheduler)
    reordered = sample(model, [PROMPTS[2], PROMPTS[1]], [33, 22], scheduler=scheduler)
    torch.testing.assert_close(batch[1:2], alone, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch[1], reordered[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch[2], reordered[0], atol=1e-4, rtol=1e-4)


def test_repeatable_and_seeds_matter():
    model = tiny()
    a = sample(model, PROMPTS[:2], [0, 1])
    assert torch.equal(a, sample(model, PROMPTS[:2], [0, 1]))
    b = sample(model, PROMPTS[:2], [0, 2])
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)
    assert (a[1] - b[1]).abs().max() > 1e-2  # another seed, another sample
    same_prompt = sample(model, [PROMPTS[0]] * 2, [5, 6])
    assert (same_prompt[0] - same_prompt[1]).abs().max() > 1e-2


def test_ddpm_step_noise_is_per_sample_too():
    """DDPM draws fresh noise every step: still per-sample, and still seeded."""
    model = tiny()
    a = sample(model, PROMPTS[:2], [7, 8], scheduler="ddpm")
    assert torch.equal(a, sample(model, PROMPTS[:2], [7, 8], scheduler="ddpm"))
    ddim = sample(model, PROMPTS[:2], [7, 8], scheduler="ddim")
    assert (a - ddim).abs().max() > 1e-3


def test_ddpm_step_noise_does_not_reuse_another_samples_initial_noise(monkeypatch):
    model = tiny()
    step_seeds: list[int] = []
    original = DDPMScheduler.step

    def step(self, *args, generator=None, **kwargs):
        step_seeds.extend(g.initial_seed() for g in generator)
        return original(self, *args, generator=generator, **kwargs)

    monkeypatch.setattr(DDPMScheduler, "step", step)
    seeds = [0, 1]
    sample(model, PROMPTS[:2], seeds, scheduler="ddpm", steps=1)
    # The first step-noise draw of sample 0 equals sample 1's x_T when the generators share a seed.
    assert not set(step_seeds) & set(seeds)


# -- schedulers and CFG ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheduler", sorted(DDPM_SAMPLERS))
def test_every_scheduler_runs(scheduler):
    model = tiny("sd", "auto")
    out = sample(model, PROMPTS[:2], [0, 1], scheduler=scheduler, steps=4)
    assert out.shape == (2, *model.latent_shape(**SIZE)) and torch.isfinite(out).all()
    noise = per_sample_noise(model.latent_shape(**SIZE), [0, 1])
    assert (out - noise).abs().max() > 1e-3  # it did denoise something


def test_make_scheduler_shares_the_training_schedule():
    model = tiny(prediction_type="v_prediction")
    for name in DDPM_SAMPLERS:
        sched = make_scheduler(model, name)
        assert sched.config.prediction_type == "v_prediction"
        assert sched.config.num_train_timesteps == model.scheduler.config.num_train_timesteps
        torch.testing.assert_close(sched.alphas_cumprod, model.scheduler.alphas_cumprod)
    out = sample(model, PROMPTS[:1], [0], scheduler="ddim")
    assert torch.isfinite(out).all()


def test_unknown_scheduler():
    model = tiny()
    with pytest.raises(
        ValueError, match=r"'heun' does not apply to model.family=sd.*ddim, ddpm, euler, dpm\+\+, unipc"
    ):
        make_scheduler(model, "heun")
    with pytest.raises(ValueError, match=r"'heun'"):
        sample(model, PROMPTS[:1], [0], scheduler="heun")


def count_predicts(model, monkeypatch) -> list[int]:
    sizes: list[int] = []
    original = model.predict

    def predict(x_t, t, cond):
        assert t.shape == (x_t.shape[0],) and cond.shape[0] == x_t.shape[0]
        sizes.append(x_t.shape[0])
        return original(x_t, t, cond)

    monkeypatch.setattr(model, "predict", predict)
    return sizes


@pytest.mark.parametrize("guidance, batch", [(1.0, 2), (0.5, 2), (0.0, 2), (1.01, 4), (7.5, 4)])
def test_guidance_at_most_one_skips_cfg(guidance, batch, monkeypatch):
    model = tiny()
    sizes = count_predicts(model, monkeypatch)
    sample(model, PROMPTS[:2], [0, 1], guidance=guidance, steps=3)
    assert sizes == [batch] * 3  # one call per step: b without CFG, 2b with


def test_guidance_steers_the_sample():
    """CFG (g > 1) changes the result, and stays finite; g <= 1 is the conditional model alone."""
    model = tiny()
    plain = sample(model, PROMPTS[:2], [0, 1], guidance=1.0)
    steered = sample(model, PROMPTS[:2], [0, 1], guidance=4.0)
    assert (plain - steered).abs().max() > 1e-3
    assert torch.isfinite(steered).all()


def test_given_negative_embedding_equals_encoding_it(monkeypatch):
    model = tiny()
    encoded = sample(model, PROMPTS[:2], [0, 1], negative_prompt="blurry")
    uncond = model.encode_prompt(["blurry"])
    prompts = []
    real = model.encode_prompt
    monkeypatch.setattr(model, "encode_prompt", lambda p: prompts.extend(p) or real(p))
    given = sample(model, PROMPTS[:2], [0, 1], uncond=uncond)
    assert torch.equal(encoded, given) and "blurry" not in prompts and "" not in prompts


@pytest.mark.parametrize("scheduler", ["ddim", "dpm++", "unipc"])
def test_start_from_an_init_latent_with_strength(scheduler, monkeypatch):
    """strength s: x_τ = √ᾱ_τ init + √(1−ᾱ_τ) ε at τ = timesteps[N − round(s N)], then round(s N) steps."""
    model = tiny()
    shape = model.latent_shape(**SIZE)
    init = torch.randn(2, *shape, generator=torch.Generator().manual_seed(9))
    seen = []
    real = model.predict
    monkeypatch.setattr(model, "predict", lambda x, t, c: seen.append((x.clone(), t.clone())) or real(x, t, c))
    out = sample(model, PROMPTS[:2], [3, 4], scheduler=scheduler, steps=10, guidance=1.0, init=init, strength=0.4)
    assert out.shape == init.shape and torch.isfinite(out).all() and len(seen) == 4
    sched = make_scheduler(model, scheduler)
    sched.set_timesteps(10)
    tau = sched.timesteps[6]
    assert seen[0][1].tolist() == [tau] * 2 and [t[0] for _, t in seen] == sched.timesteps[6:].tolist()
    abar = model.scheduler.alphas_cumprod[tau]
    expected = abar.sqrt() * init + (1 - abar).sqrt() * per_sample_noise(shape, [3, 4])
    torch.testing.assert_close(seen[0][0], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(
        out, sample(model, PROMPTS[:2], [3, 4], scheduler=scheduler, steps=10, guidance=1.0, init=init, strength=0.4)
    )
    with pytest.raises(ValueError, match="sigma-scaled"):
        sample(model, PROMPTS[:1], [0], scheduler="euler", init=init[:1], strength=0.5)
    with pytest.raises(ValueError, match=r"strength=0 must be in \(0, 1\]"):
        sample(model, PROMPTS[:1], [0], init=init[:1], strength=0)


def predictions(model, x, t, prompts, negative=""):
    """(unconditional, conditional) outputs of the model at `x`, timestep `t`, called one by one."""
    t = torch.full((len(prompts),), int(t))
    with torch.no_grad():
        return (
            model.predict(x, t, model.encode_prompt([negative] * len(prompts))),
            model.predict(x, t, model.encode_prompt(prompts)),
        )


def test_one_cfg_step_is_the_guided_combination_then_the_scheduler_step():
    """x_{t-1} = DDIM.step(u + g (c - u), t, x_T): guidance pushes away from the unconditional output."""
    model, g = tiny(), 4.0
    x_T = per_sample_noise(model.latent_shape(**SIZE), [0, 1])
    sched = make_scheduler(model, "ddim")
    sched.set_timesteps(1)
    (t,) = sched.timesteps
    u, c = predictions(model, x_T, t, PROMPTS[:2], negative="blurry")
    want = sched.step(u + g * (c - u), t, x_T).prev_sample
    got = sample(model, PROMPTS[:2], [0, 1], steps=1, guidance=g, negative_prompt="blurry")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_ddim_steps_by_hand():
    """Deterministic DDIM (η = 0) with ε-prediction, two steps over T = 1000 ("leading" spacing: t = 500, 0):

    x0_hat = (x_t − √(1−ᾱ_t) ε) / √ᾱ_t,   x_prev = √ᾱ_prev x0_hat + √(1−ᾱ_prev) ε,   ᾱ_prev(t = 0) = 1
    """
    model = tiny()
    abar = model.scheduler.alphas_cumprod.double()
    x = per_sample_noise(model.latent_shape(**SIZE), [3]).double()
    for t, abar_prev in ((500, abar[0]), (0, torch.tensor(1.0, dtype=torch.float64))):
        _, eps = predictions(model, x.float(), t, PROMPTS[:1])
        x0_hat = (x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()
        x = abar_prev.sqrt() * x0_hat + (1 - abar_prev).sqrt() * eps
    got = sample(model, PROMPTS[:1], [3], steps=2, guidance=1.0, scheduler="ddim")
    torch.testing.assert_close(got, x.float(), atol=1e-5, rtol=1e-5)


def test_seed_and_prompt_counts_must_match():
    with pytest.raises(ValueError, match=r"2 prompts but 1 seeds"):
        sample(tiny(), PROMPTS[:2], [0])


def test_generate_decodes_to_pixels():
    model = tiny("sd", "auto")
    pixels = generate(model, PROMPTS[:1], seeds=[0], steps=2, guidance=1.0, **SIZE)
    assert pixels.shape == (1, 3, 2, 16, 16)
    assert pixels.min() >= -1 and pixels.max() <= 1
    latents = sample_latents(model, PROMPTS[:1], seeds=[0], steps=2, guidance=1.0, **SIZE)
    torch.testing.assert_close(pixels, model.decode(latents))


# -- noise and seeds --------------------------------------------------------------------------------


def test_per_sample_noise_is_torch_randn_with_that_seed():
    shape = (4, 2, 3, 5)
    noise = per_sample_noise(shape, [3, 1234567890123, 3])
    assert noise.shape == (3, *shape) and noise.dtype == torch.float32
    for i, seed in enumerate([3, 1234567890123]):
        assert torch.equal(noise[i], torch.randn(shape, generator=torch.Generator().manual_seed(seed)))
    assert torch.equal(noise[0], noise[2])
    half = per_sample_noise(shape, [3], dtype=torch.float16)
    assert half.dtype == torch.float16 and torch.equal(half[0], noise[0].half())


def test_derive_seed_is_deterministic_and_depends_on_every_argument():
    base = (0, 5, 2, "noise")
    seed = rng.derive_seed(*base)
    assert seed == rng.derive_seed(*base)
    assert isinstance(seed, int) and 0 <= seed < 2**63
    variants = [(1, 5, 2, "noise"), (0, 6, 2, "noise"), (0, 5, 3, "noise"), (0, 5, 2, "timestep"), (0, 5, 2, "loser")]
    seeds = [rng.derive_seed(*v) for v in variants]
    assert seed not in seeds and len(set(seeds)) == len(seeds)
    # Swapping two arguments is another seed too (not a symmetric mix).
    assert rng.derive_seed(5, 0, 2, "noise") != seed and rng.derive_seed(0, 2, 5, "noise") != seed
    # Well spread: many (step, index) pairs never collide.
    many = {rng.derive_seed(0, s, i, "noise") for s in range(50) for i in range(20)}
    assert len(many) == 1000
    with pytest.raises(KeyError):
        rng.derive_seed(0, 0, 0, "colour")


def test_rng_draws_follow_the_derived_seeds():
    noise = rng.sample_noise((2, 3), seed=1, step=4, indices=[0, 7])
    assert torch.equal(
        noise[1], torch.randn((2, 3), generator=torch.Generator().manual_seed(rng.derive_seed(1, 4, 7, "noise")))
    )
    assert torch.equal(rng.sample_noise((2, 3), 1, 4, [7])[0], noise[1])  # index, not position
    t = rng.sample_timesteps(1000, seed=1, step=4, indices=list(range(64)))
    assert t.dtype == torch.int64 and t.shape == (64,) and 0 <= t.min() and t.max() < 1000
    assert len(set(t.tolist())) > 32
    order = rng.epoch_order(0, 3, 10)
    assert sorted(order.tolist()) == list(range(10)) and np.array_equal(order, rng.epoch_order(0, 3, 10))
    assert not np.array_equal(order, rng.epoch_order(0, 4, 10))


@pytest.mark.parametrize("name", ["unipc", "dpm++"])
def test_multistep_solvers_clip_x0_on_a_clip_sample_schedule(name):
    """The committed stacked base (cosine schedule, trailing spacing, clip_sample): its first step has ᾱ ≈ 0,
    where ε-predicted x0 diverges unless clipped as DDIM clips it (4 unclipped UniPC steps: latents of std ~2000)."""
    from pathlib import Path

    from models import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "assets" / "stacked_base")
    x = sample_latents(
        model,
        ["a red square moving left", "a blue circle moving up"],
        frames=8,
        height=16,
        width=16,
        seeds=[0, 1],
        steps=4,
        guidance=4.0,
        scheduler=name,
    )
    assert x.abs().max() <= 1.0 + 1e-5 and x.std() > 0.1
    assert make_scheduler(model, name).config.thresholding  # and a schedule without clip_sample is left alone:
    assert not DDPM_SAMPLERS[name](DDPMScheduler(clip_sample=False).config).config.thresholding


def test_euler_is_refused_on_a_clip_sample_schedule():
    """Euler has no x0 clipping: on the stacked base's schedule its losers diverge (benchmarks/loser_fidelity.py:
    relative error ~1e4 at 4-20 steps), so it is refused in one line naming the samplers that clip."""
    with pytest.raises(ValueError, match="clip_sample: true.*ddim, ddpm, dpm.. or unipc"):
        DDPM_SAMPLERS["euler"](DDPMScheduler(clip_sample=True).config)
    assert DDPM_SAMPLERS["euler"](DDPMScheduler(clip_sample=False).config).config.num_train_timesteps


def test_loser_spacing_replaces_the_schedules_own():
    """`spacing` overrides the schedule's timestep spacing: SD 1.5's `leading` starts 6 UniPC steps at t = 6 x
    (1000 // 7) = 852, `trailing` at 999; the schedule itself is untouched, and a flow model (sigmas) refuses the key."""
    from models import build_model
    from videosspo.config import ModelConfig

    sd = build_model(ModelConfig(family="sd"))
    assert sd.scheduler.config.timestep_spacing == "leading"
    for spacing, first in ((None, 852), ("leading", 852), ("trailing", 999)):
        sched = make_scheduler(sd, "unipc", 6, spacing)
        sched.set_timesteps(6)
        assert int(sched.timesteps[0]) == first, spacing
    assert sd.scheduler.config.timestep_spacing == "leading"
    with pytest.raises(ValueError, match="loser.spacing='trailing' does not apply to model.family=wan"):
        make_scheduler(build_model(ModelConfig(family="wan")), "unipc", 6, "trailing")


def test_the_trainer_samples_losers_with_loser_spacing(tiny_config, monkeypatch):
    import videosspo.losers as losers_module
    from videosspo.trainer import Trainer

    seen = []
    real = losers_module.sample_latents
    monkeypatch.setattr(losers_module, "sample_latents", lambda *a, **k: seen.append(k["spacing"]) or real(*a, **k))
    trainer = Trainer(tiny_config("tiny_sd_sspo.yaml", **{"loser.spacing": "trailing", "model.vae": "none"}))
    from tests.test_trainer import fixed_batch

    trainer.losers.sample(fixed_batch(trainer), 0)
    assert seen == ["trailing"]
