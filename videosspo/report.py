"""What a run shows the person watching it, besides checkpoints: its opening log lines and sample videos.

`log_start` says what is trained on what (the global batch, the noise schedule, the loss's density);
`write_samples` writes videos of `train.sample_prompts` from the current policy, during training and at its end.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import torch

from videosspo.config import SCHEDULE_KEYS
from videosspo.latents import encoders_on_cpu
from videosspo.objectives import density_note
from videosspo.sampling import sample_latents
from videosspo.video import write_video

log = logging.getLogger("videosspo.trainer")


def log_start(tr) -> None:
    """What is trained on what, the global batch, the noise schedule and the loss's density (one line each)."""
    cfg, acc = tr.config, tr.accelerator
    trainable = sum(p.numel() for p in tr.model.unet.parameters() if p.requires_grad)
    log.info(
        "%s on %s (%s): %d clips, global batch %d = %d per process x %d processes x %d accumulation; "
        "%.2fM trainable parameters%s; steps %d -> %d; outputs in %s",
        cfg.method.name,
        cfg.model.family,
        cfg.model.pretrained or "tiny random model",
        len(tr.data),
        tr.global_batch,
        cfg.optim.batch_size,
        acc.num_processes,
        cfg.optim.grad_accum,
        trainable / 1e6,
        f" (LoRA rank {cfg.model.lora_rank})" if cfg.model.lora_rank else "",
        tr.step,
        cfg.train.max_steps,
        tr.out,
    )
    schedule = tr.model.scheduler.config
    log.info(
        "noise schedule: %s",
        ", ".join(f"{k}={schedule[k]}" for k in ("prediction_type", *SCHEDULE_KEYS) if k in schedule),
    )
    log.info(
        density_note(
            tr.model,
            cfg.method.beta,
            math.prod(tr.model.latent_shape(cfg.data.frames, cfg.data.height, cfg.data.width)[1:]),
        )
    )


def write_samples(tr) -> list[Path]:
    """Videos of `train.sample_prompts` from the trainer's current policy (its EMA when on), with their prompts."""
    cfg, acc = tr.config, tr.accelerator
    prompts = list(cfg.train.sample_prompts)
    if not prompts:  # the same config on every process: none of them enters the collective below
        return []
    with tr.inference_weights():
        whole = tr.policy.state() if tr.policy.sharded else None  # every process: a collective under FSDP
        if not acc.is_main_process:
            return []
        view = copy.copy(tr.model)  # the unwrapped unet: sampling needs no gradient sync
        if whole is not None:  # FSDP: the unwrapped unet holds this process's shard; sample a whole copy
            view.unet = tr.policy.merged_unet(whole)
        view.unet.eval()
        on_cpu = "text_encoder" in encoders_on_cpu(cfg)  # its prompts encoded once per run, not per sample event
        pixels = view.decode(
            sample_latents(
                view,
                prompts,
                frames=cfg.data.frames,
                height=cfg.data.height,
                width=cfg.data.width,
                steps=cfg.sample.steps,
                guidance=cfg.sample.guidance,
                guidance_2=cfg.sample.guidance_2,
                negative_prompt=cfg.sample.negative_prompt,
                scheduler=cfg.sample.scheduler,
                seeds=list(range(len(prompts))),
                cond=torch.cat([tr.embed_once(p) for p in prompts]) if on_cpu else None,
                uncond=tr.embed_once(cfg.sample.negative_prompt) if on_cpu and cfg.sample.guidance > 1 else None,
            )
        )
        view.unet.train()
    folder = tr.out / "samples" / f"step_{tr.step:06d}"
    paths = [
        write_video(folder / f"{i:02d}_{_slug(p)}.{cfg.train.sample_format}", video, fps=8)
        for i, (p, video) in enumerate(zip(prompts, pixels.cpu(), strict=True))
    ]
    (folder / "prompts.txt").write_text(
        "\n".join(f"{path.name}\t{p}" for path, p in zip(paths, prompts, strict=True)) + "\n"
    )
    return paths


def _slug(text: str, n: int = 60) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())[:n].strip("_")
