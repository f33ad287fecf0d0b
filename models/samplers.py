"""The latent samplers a family declares (`VideoDiffusionModel.samplers`): name -> builder from its training
scheduler's config, so a sampler always shares the model's noise schedule (betas / flow shift, prediction type).

Schedulers are extended with free functions that take the scheduler (STYLE 8): `cogvideox_dpm` adapts CogVideoX's
two-state DPM step to the one-state `step` the sampling loop (`videosspo.sampling`) calls.
"""

from __future__ import annotations

from collections.abc import Callable

from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput
from einops import rearrange

from videosspo.config import ConfigError


def clipping_x0(cls) -> Callable:
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


def unclipped(cls) -> Callable:
    """`cls.from_config` for a solver that cannot clip x0 (Euler): refused on a `clip_sample` schedule, where
    its samples diverge (the stacked base: latents of std ~1e4 at any step count)."""

    def build(config):
        if config.get("clip_sample"):
            raise ConfigError(
                f"{cls.__name__} cannot clip x0 as this model's schedule does (clip_sample: true): its "
                "samples diverge; use sampler ddim, ddpm, dpm++ or unipc"
            )
        return cls.from_config(config)

    return build


def flow_unipc(config):
    """UniPC on flow-matching σ (Wan's sampler): velocity prediction, the training scheduler's shift."""
    return UniPCMultistepScheduler(
        num_train_timesteps=config.num_train_timesteps,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=config.shift,
    )


def cogvideox_dpm(config):
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
        prev_sample, x0 = step(
            frames_first(model_output),
            previous["x0"],
            timestep,
            previous["t"],
            frames_first(sample),
            generator=generator,
        )
        previous.update(x0=x0, t=timestep)
        return DDIMSchedulerOutput(prev_sample=channels_first(prev_sample), pred_original_sample=channels_first(x0))

    sched.step = two_step
    return sched


# DDPM-trained families (epsilon or v prediction on a beta schedule).
DDPM_SAMPLERS: dict[str, Callable] = {
    "ddim": DDIMScheduler.from_config,
    "ddpm": DDPMScheduler.from_config,
    "euler": unclipped(EulerDiscreteScheduler),
    "dpm++": clipping_x0(DPMSolverMultistepScheduler),  # DPM-Solver++ 2M (dpmsolver++, order 2)
    "unipc": clipping_x0(UniPCMultistepScheduler),  # UniPC (bh2): few-step, 5-10 steps
}
# CogVideoX's v-prediction schedule: DDIM as CogVideoXPipeline samples 2b, its DPM as it samples 5b.
COGVIDEOX_SAMPLERS: dict[str, Callable] = {"ddim": CogVideoXDDIMScheduler.from_config, "dpm": cogvideox_dpm}
# Flow matching with a fixed shift (Wan): Euler, or UniPC as WanPipeline samples.
FLOW_SAMPLERS: dict[str, Callable] = {"euler": FlowMatchEulerDiscreteScheduler.from_config, "unipc": flow_unipc}
# σ shifted by the latent sequence length (LTX-Video): Euler, as LTXPipeline samples.
DYNAMIC_FLOW_SAMPLERS: dict[str, Callable] = {"euler": FlowMatchEulerDiscreteScheduler.from_config}
