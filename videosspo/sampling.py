"""One sampling loop in latent space for every model family; decoding is a separate step.

The loop is the textbook one over a diffusers scheduler built from the model's own training
schedule (so betas / flow shift and prediction type always match):

    x_T ~ N(0, I) * init_sigma;  for t in timesteps:  x <- scheduler.step(f(x, t, c), t, x)

with classifier-free guidance f = f_u + g (f_c - f_u) when g > 1, both branches in one batched
forward (2b). The same loop integrates a flow-matching model's velocity (f = v, σ from 1 to 0:
Euler, or UniPC as `WanPipeline` samples; a schedule shifted by sequence length, LTX-Video's, on
`LTXPipeline`'s σ grid, Euler only). Noise is drawn per sample from its own seed, so sample i is the same whatever batch
it is drawn in. A model with two denoisers (Wan 2.2 A14B's experts) switches inside `predict` at its
`boundary_timestep`, and the loop switches g to `guidance_2` there, as `WanPipeline` does (CFG is on
or off for the whole run by the first g).

Started from an image (`init`, strength s, as img2img / SDEdit): x_τ = objective.noisy(init, ε, τ)
at the first of the last round(s·N) timesteps τ of the N-step schedule, then those round(s·N)
steps; s = 1 is the plain loop from noise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from diffusers import (CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler,
                       FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler)
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from einops import rearrange
from tqdm.auto import tqdm

from models.families import flow_unipc
from videosspo import rng
from videosspo.config import ConfigError
from videosspo.objectives import dynamic_shift_mu, get_objective


def _cogvideox_dpm(config):
    """CogVideoX-5b's sampler (`CogVideoXDPMScheduler`, a stochastic 2nd-order DPM-Solver on the same schedule).

    Its `step` also takes the previous step's x0 estimate and timestep; this instance keeps them, so the
    loop calls `step(out, t, x, generator=...)` as on any scheduler, exactly as `CogVideoXPipeline` steps it.
    The step runs on frames-first latents (`b f c h w`, the pipeline's layout): its noise is drawn in that
    layout, so the same generator gives the pipeline's sample.
    """
    sched = CogVideoXDPMScheduler.from_config(config)
    step, previous = sched.step, {"x0": None, "t": None}
    frames_first = lambda x: rearrange(x, "b c f h w -> b f c h w")  # noqa: E731
    channels_first = lambda x: rearrange(x, "b f c h w -> b c f h w")  # noqa: E731

    def two_step(model_output, timestep, sample, generator=None, return_dict=True):
        prev_sample, x0 = step(frames_first(model_output), previous["x0"], timestep, previous["t"],
                               frames_first(sample), generator=generator)
        previous.update(x0=x0, t=timestep)
        return DDIMSchedulerOutput(prev_sample=channels_first(prev_sample), pred_original_sample=channels_first(x0))

    sched.step = two_step
    return sched


def _clipping_x0(cls) -> Callable:
    """`cls.from_config` that honours the schedule's `clip_sample` as DDIM does, for solvers without it.

    DPM-Solver++ and UniPC predict x0 = (x − √(1−ᾱ) ε) / √ᾱ; on a schedule whose first step has ᾱ ≈ 0
    (cosine with trailing spacing: the stacked base) x0 diverges unless clipped (latents of std ~2000
    after 4 UniPC steps). Their `thresholding` with `sample_max_value` r clamps x0 to ±s, s = clamp(
    quantile |x0|, 1, r): DDIM's clip to [−r, r] exactly for r = 1, the range pixel-space models use.
    """
    def build(config):
        if not config.get("clip_sample"):
            return cls.from_config(config)
        return cls.from_config(config, thresholding=True, sample_max_value=config.get("clip_sample_range", 1.0))
    return build


def _unclipped(cls) -> Callable:
    """`cls.from_config` for a solver that cannot clip x0 (Euler): refused on a `clip_sample` schedule, where
    its samples diverge (the stacked base: latents of std ~1e4 at any step count)."""
    def build(config):
        if config.get("clip_sample"):
            raise ConfigError(f"{cls.__name__} cannot clip x0 as this model's schedule does (clip_sample: true): its "
                              "samples diverge; use sampler ddim, ddpm, dpm++ or unipc")
        return cls.from_config(config)
    return build


# Samplers by name, per training-scheduler class: each builds from the training scheduler's config.
SCHEDULERS: dict[str, dict[str, Callable]] = {
    "DDPMScheduler": {
        "ddim": DDIMScheduler.from_config,
        "ddpm": DDPMScheduler.from_config,
        "euler": _unclipped(EulerDiscreteScheduler),
        "dpm++": _clipping_x0(DPMSolverMultistepScheduler),  # DPM-Solver++ 2M (dpmsolver++, order 2)
        "unipc": _clipping_x0(UniPCMultistepScheduler),  # UniPC (bh2): few-step, 5-10 steps
    },
    "CogVideoXDDIMScheduler": {"ddim": CogVideoXDDIMScheduler.from_config,  # as CogVideoXPipeline samples 2b
                               "dpm": _cogvideox_dpm},                       # and 5b
    "FlowMatchEulerDiscreteScheduler": {
        "euler": FlowMatchEulerDiscreteScheduler.from_config,
        "unipc": flow_unipc,
    },
    # σ shifted by the latent sequence length (LTX-Video): Euler, as LTXPipeline samples.
    "FlowMatchEulerDiscreteScheduler+dynamic_shifting": {"euler": FlowMatchEulerDiscreteScheduler.from_config},
}


STOCHASTIC = ("ddpm", "dpm")  # samplers that add noise at each step


def samplers_for(model) -> dict[str, Callable]:
    """The samplers that apply to `model`: those of its training scheduler's class (and shift)."""
    name = type(model.scheduler).__name__
    return SCHEDULERS[name + "+dynamic_shifting" if model.scheduler.config.get("use_dynamic_shifting") else name]


def make_scheduler(model, name: str = "ddim", steps: int | None = None, spacing: str | None = None):
    """A sampling scheduler sharing the model's training noise schedule (checked to take `steps` steps).

    `spacing` (`leading | linspace | trailing`) replaces the schedule's `timestep_spacing`: with `leading`
    (SD 1.5, ModelScope) N steps start near T − T/N (852 of 1000 for 6 UniPC steps), far below T for a few-step
    sampler; `trailing` starts at T − 1.
    """
    table = samplers_for(model)
    if name not in table:
        raise ConfigError(f"sampler {name!r} does not apply to model.family={model.family} (trained with "
                          f"{type(model.scheduler).__name__}); set sample.scheduler / loser.scheduler to one of "
                          f"{', '.join(table)}")
    config = model.scheduler.config
    if spacing is not None:
        if "timestep_spacing" not in config:
            raise ConfigError(f"loser.spacing={spacing!r} does not apply to model.family={model.family}, whose sampler "
                              f"steps through sigmas ({type(model.scheduler).__name__}): leave it unset")
        config = {**config, "timestep_spacing": spacing}
    sched = table[name](config)
    terminal = sched.config.get("shift_terminal")
    if steps is not None and steps < 2 and terminal:
        raise ConfigError(f"{steps} sampling step is too few for model.family={model.family}: its σ grid is stretched to "
                          f"end at shift_terminal={terminal}, which takes 2 steps or more (diffusers divides by zero); "
                          "set sample.steps / loser.steps >= 2")
    return sched


def set_timesteps(sched, steps: int, shape: tuple[int, ...], device=None) -> None:
    """`steps` sampling steps for latents of `shape` (c f h w). A schedule shifted by sequence length
    (`use_dynamic_shifting`) gets `LTXPipeline`'s grid: σ = linspace(1, 1/steps, steps), shifted by
    μ(f·h·w) (then stretched to its `shift_terminal`, by the scheduler)."""
    if sched.config.get("use_dynamic_shifting"):
        mu = dynamic_shift_mu(sched.config, int(np.prod(shape[1:])))
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu, device=device)
    else:
        sched.set_timesteps(steps, device=device)


def scale_model_input(sched, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The scheduler's input scaling (Euler / DPM divide by √(σ² + 1)); flow matching feeds x_t as is."""
    scale = getattr(sched, "scale_model_input", None)
    return x if scale is None else scale(x, t)


def check_guidance_2(model, guidance_2: float | None) -> None:
    """A second CFG scale needs a second denoiser to apply to (as `WanPipeline` checks)."""
    if guidance_2 is not None and model.boundary_timestep is None:
        raise ConfigError(f"guidance_2={guidance_2} needs a model with two denoisers (Wan 2.2 A14B); "
                          f"model.family={model.family} has one: leave it unset")


LAYOUT = "c f h w"


def per_sample_noise(shape: tuple[int, ...], seeds: list[int], device=None, dtype=torch.float32,
                     layout: str = LAYOUT) -> torch.Tensor:
    """Stack of N(0, I) tensors of `shape` (`c f h w`), the i-th drawn from a CPU generator seeded `seeds[i]`, in
    the axis order `layout` (a family's `noise_layout`: its pipeline's, so a seed gives the pipeline's noise)."""
    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        if layout == LAYOUT:
            return torch.randn(shape, generator=gen, dtype=torch.float32)
        sizes = dict(zip(LAYOUT.split(), shape))
        drawn = torch.randn([sizes[axis] for axis in layout.split()], generator=gen, dtype=torch.float32)
        return rearrange(drawn, f"{layout} -> {LAYOUT}")

    return torch.stack([draw(s) for s in seeds]).to(device=device, dtype=dtype)


@torch.no_grad()
def sample_latents(model, prompts: list[str], *, frames: int, height: int, width: int, seeds: list[int],
                   steps: int = 25, guidance: float = 7.5, guidance_2: float | None = None,
                   negative_prompt: str = "", scheduler: str = "ddim", spacing: str | None = None,
                   progress: bool = False, cond: torch.Tensor | None = None, uncond: torch.Tensor | None = None,
                   init: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
    """Generate latents `b c f h w` for `prompts` (one seed per prompt); decode with `model.decode`.

    `cond` / `uncond`: the prompts' / the negative prompt's embeddings when the caller already has
    them (the trainer encodes the negative prompt once per run). `init` (`b c f h w`) with
    `strength` in (0, 1]: denoise `init` noised to the schedule's point s·T, in round(s·steps) steps.
    `guidance_2`: the CFG scale of the steps below a two-denoiser model's boundary (None: `guidance`).
    `spacing`: the timestep spacing, when not the schedule's own (`make_scheduler`).
    """
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    check_guidance_2(model, guidance_2)
    boundary = model.boundary_timestep  # None: one denoiser, one scale
    if not 0 < strength <= 1:
        raise ValueError(f"strength={strength} must be in (0, 1]: the fraction of the schedule to denoise")
    device = model.device
    shape = model.latent_shape(frames, height, width)
    sched = make_scheduler(model, scheduler, steps, spacing)
    set_timesteps(sched, steps, shape, device)
    cond = model.encode_prompt(prompts) if cond is None else cond
    use_cfg = guidance > 1.0
    if use_cfg:
        uncond = model.encode_prompt([negative_prompt]) if uncond is None else uncond
        cond = torch.cat([uncond.to(cond).expand(len(prompts), -1, -1), cond])
    noise = per_sample_noise(shape, seeds, device, layout=model.noise_layout)
    timesteps = sched.timesteps
    if init is None:
        x = noise * getattr(sched, "init_noise_sigma", 1.0)  # flow matching: x_1 = ε
    else:
        if float(getattr(sched, "init_noise_sigma", 1.0)) != 1.0:
            raise ValueError(f"sampler {scheduler!r} keeps a sigma-scaled state; start from `init` with ddim, "
                             "ddpm, dpm++ or unipc")
        first = steps - max(1, round(strength * steps))
        timesteps = timesteps[first:]
        if hasattr(sched, "set_begin_index"):  # multistep solvers look their step index up from here
            sched.set_begin_index(first)
        t0 = timesteps[:1].expand(len(seeds))  # int for DDPM schedules, σ·T (float) for flow
        x = get_objective(model.objective).noisy(model.scheduler, init.to(device, torch.float32), noise, t0)
    # Stochastic samplers (DDPM, CogVideoX's DPM) draw their step noise from per-sample generators too, on a
    # stream of their own (seed + 1 would replay sample i+1's initial noise).
    step_kwargs = ({"generator": [rng.generator(int(s), 0, 0, "sampler") for s in seeds]} if scheduler in STOCHASTIC
                   else {})
    for t in tqdm(timesteps, desc="sampling", disable=not progress, leave=False):
        x_in = torch.cat([x, x]) if use_cfg else x
        x_in = scale_model_input(sched, x_in, t)
        out = model.predict(x_in, t.reshape(1).expand(x_in.shape[0]).to(device), cond).float()
        if use_cfg:
            out_u, out_c = out.chunk(2)
            g = guidance if boundary is None or t >= boundary or guidance_2 is None else guidance_2
            out = out_u + g * (out_c - out_u)
        x = sched.step(out, t, x, **step_kwargs).prev_sample
    return x


def generate(model, prompts: list[str], **kwargs) -> torch.Tensor:
    """Sample and decode: pixels `b c f h w` in [-1, 1]."""
    return model.decode(sample_latents(model, prompts, **kwargs))
