"""One sampling loop in latent space for every model family; decoding is a separate step.

The loop is the textbook one over a diffusers scheduler built from the model's own training
schedule (so betas and prediction type always match):

    x_T ~ N(0, I) * init_sigma;  for t in timesteps:  x <- scheduler.step(f(x, t, c), t, x)

with classifier-free guidance f = f_u + g (f_c - f_u) when g > 1. Noise is drawn per sample from
its own seed, so sample i is the same whatever batch it is drawn in.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from tqdm.auto import tqdm

from videosspo import rng

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
}


def make_scheduler(model, name: str = "ddim"):
    """A sampling scheduler sharing the model's training noise schedule."""
    if name not in SCHEDULERS:
        raise ValueError(f"sampler {name!r} is unknown; choose one of {', '.join(SCHEDULERS)}")
    return SCHEDULERS[name].from_config(model.scheduler.config)


def per_sample_noise(shape: tuple[int, ...], seeds: list[int], device=None, dtype=torch.float32) -> torch.Tensor:
    """Stack of N(0, I) tensors of `shape`, the i-th drawn from a CPU generator seeded `seeds[i]`."""
    noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s)), dtype=torch.float32) for s in seeds]
    return torch.stack(noise).to(device=device, dtype=dtype)


@torch.no_grad()
def sample_latents(model, prompts: list[str], *, frames: int, height: int, width: int, seeds: list[int],
                   steps: int = 25, guidance: float = 7.5, negative_prompt: str = "", scheduler: str = "ddim",
                   progress: bool = False, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Generate latents `b c f h w` for `prompts` (one seed per prompt); decode with `model.decode`.

    `cond`: the prompts' embeddings when the caller already has them (the trainer does).
    """
    if len(seeds) != len(prompts):
        raise ValueError(f"got {len(prompts)} prompts but {len(seeds)} seeds: give one seed per prompt")
    device = model.device
    sched = make_scheduler(model, scheduler)
    sched.set_timesteps(steps, device=device)
    cond = model.encode_prompt(prompts) if cond is None else cond
    use_cfg = guidance > 1.0
    if use_cfg:
        cond = torch.cat([model.encode_prompt([negative_prompt] * len(prompts)), cond])
    shape = model.latent_shape(frames, height, width)
    x = per_sample_noise(shape, seeds, device) * sched.init_noise_sigma
    # Stochastic samplers (DDPM) draw their step noise from per-sample generators too, on a stream
    # of their own (seed + 1 would replay sample i+1's initial noise).
    gens = [rng.generator(int(s), 0, 0, "sampler") for s in seeds]
    for t in tqdm(sched.timesteps, desc="sampling", disable=not progress, leave=False):
        x_in = torch.cat([x, x]) if use_cfg else x
        x_in = sched.scale_model_input(x_in, t)
        out = model.predict(x_in, t.reshape(1).expand(x_in.shape[0]).to(device), cond).float()
        if use_cfg:
            out_u, out_c = out.chunk(2)
            out = out_u + guidance * (out_c - out_u)
        x = sched.step(out, t, x, generator=gens if scheduler == "ddpm" else None).prev_sample
    return x


def generate(model, prompts: list[str], **kwargs) -> torch.Tensor:
    """Sample and decode: pixels `b c f h w` in [-1, 1]."""
    return model.decode(sample_latents(model, prompts, **kwargs))
