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

import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from videosspo import rng
from videosspo.config import ConfigError
from videosspo.objectives import dynamic_shift_mu, get_objective

STOCHASTIC = ("ddpm", "dpm")  # samplers that add noise at each step (names of the families' `samplers`)


def make_scheduler(model, name: str = "ddim", steps: int | None = None, spacing: str | None = None):
    """The family's sampler `name`, sharing the model's training noise schedule (checked to take `steps` steps).

    `spacing` (`leading | linspace | trailing`) replaces the schedule's `timestep_spacing`: with `leading`
    (SD 1.5, ModelScope) N steps start near T − T/N (852 of 1000 for 6 UniPC steps), far below T for a few-step
    sampler; `trailing` starts at T − 1.
    """
    table = model.samplers  # the family's (models.samplers)
    if name not in table:
        raise ConfigError(
            f"sampler {name!r} does not apply to model.family={model.family} (trained with "
            f"{type(model.scheduler).__name__}); set sample.scheduler / loser.scheduler to one of "
            f"{', '.join(table)}"
        )
    config = model.scheduler.config
    if spacing is not None:
        if "timestep_spacing" not in config:
            raise ConfigError(
                f"loser.spacing={spacing!r} does not apply to model.family={model.family}, whose sampler "
                f"steps through sigmas ({type(model.scheduler).__name__}): leave it unset"
            )
        config = {**config, "timestep_spacing": spacing}
    sched = table[name](config)
    terminal = sched.config.get("shift_terminal")
    if steps is not None and steps < 2 and terminal:
        raise ConfigError(
            f"{steps} sampling step is too few for model.family={model.family}: its σ grid is stretched to "
            f"end at shift_terminal={terminal}, which takes 2 steps or more (diffusers divides by zero); "
            "set sample.steps / loser.steps >= 2"
        )
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
        raise ConfigError(
            f"guidance_2={guidance_2} needs a model with two denoisers (Wan 2.2 A14B); "
            f"model.family={model.family} has one: leave it unset"
        )


LAYOUT = "c f h w"


def per_sample_noise(
    shape: tuple[int, ...], seeds: list[int], device=None, dtype=torch.float32, layout: str = LAYOUT
) -> torch.Tensor:
    """Stack of N(0, I) tensors of `shape` (`c f h w`), the i-th drawn from a CPU generator seeded `seeds[i]`, in
    the axis order `layout` (a family's `noise_layout`: its pipeline's, so a seed gives the pipeline's noise)."""

    def draw(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(seed))
        if layout == LAYOUT:
            return torch.randn(shape, generator=gen, dtype=torch.float32)
        sizes = dict(zip(LAYOUT.split(), shape, strict=True))
        drawn = torch.randn([sizes[axis] for axis in layout.split()], generator=gen, dtype=torch.float32)
        return rearrange(drawn, f"{layout} -> {LAYOUT}")

    return torch.stack([draw(s) for s in seeds]).to(device=device, dtype=dtype)


@torch.no_grad()
def sample_latents(
    model,
    prompts: list[str],
    *,
    frames: int,
    height: int,
    width: int,
    seeds: list[int],
    steps: int = 25,
    guidance: float = 7.5,
    guidance_2: float | None = None,
    negative_prompt: str = "",
    scheduler: str = "ddim",
    spacing: str | None = None,
    progress: bool = False,
    cond: torch.Tensor | None = None,
    uncond: torch.Tensor | None = None,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
) -> torch.Tensor:
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
            raise ValueError(
                f"sampler {scheduler!r} keeps a sigma-scaled state; start from `init` with ddim, ddpm, dpm++ or unipc"
            )
        first = steps - max(1, round(strength * steps))
        timesteps = timesteps[first:]
        if hasattr(sched, "set_begin_index"):  # multistep solvers look their step index up from here
            sched.set_begin_index(first)
        t0 = timesteps[:1].expand(len(seeds))  # int for DDPM schedules, σ·T (float) for flow
        x = get_objective(model.objective).noisy(model.scheduler, init.to(device, torch.float32), noise, t0)
    # Stochastic samplers (DDPM, CogVideoX's DPM) draw their step noise from per-sample generators too, on a
    # stream of their own (seed + 1 would replay sample i+1's initial noise).
    step_kwargs = (
        {"generator": [rng.generator(int(s), 0, 0, "sampler") for s in seeds]} if scheduler in STOCHASTIC else {}
    )
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
