"""What a cheaper loser gives up: each sampler's loser against the exact sample, from the same noise.

    python benchmarks/loser_fidelity.py                                     # configs/animatediff_sspo.yaml
    python benchmarks/loser_fidelity.py --config configs/stacked_sspo.yaml  # the committed synthetic-world base
    python benchmarks/loser_fidelity.py --config configs/wan_sspo.yaml --quick

SSPO's loser for caption c is the reference's sample x0^l from noise ε. A deterministic sampler
(DDIM, DPM-Solver++ 2M, UniPC, flow Euler) approximates the one sample the model defines from ε, the
solution of its probability-flow ODE; x* (DDIM, or the flow family's Euler, with `--ref-steps` steps)
stands in for it. A cheaper loser is as good as the shipped one when it is at least as close to x*:

    error = ‖x − x*‖ / ‖x*‖      per clip (latents, every axis), mean and 95% t-interval over clips

at the config's loser guidance (CFG), timestep spacing (`loser.spacing`), negative prompt and shapes. The model is the config's family
with tiny random weights (`--size medium`: bench_train's wider denoiser), so the schedule, the
prediction type and the CFG are the shipped ones and the denoiser is not: the numbers say how each
solver integrates this family's schedule, not a trained model's curvature. A config whose
`model.pretrained` is a model committed to this repository (stacked_sspo.yaml's synthetic-world base) loads
it instead, and there each loser's own clips are also scored with the synthetic world's four exact scores,
paired with the config's loser on the same (prompt, noise).

Per option: UNet rows per loser (steps x 2 with CFG), error, its ratio to the config's loser's error,
seconds for the batch. JSON (`--out`) and a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.bench_common import environment, table  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "loser_fidelity.json"
PROMPTS = (
    "a red square moving left",
    "a blue circle moving up",
    "a cat walking on grass",
    "waves at sunset",
    "a green triangle moving right",
    "fireworks over a city",
    "a yellow square moving down",
    "a dog running",
)
STEPS, QUICK_STEPS = (4, 6, 8, 10, 20), (4, 6, 8, 20)


def options(model, config, steps: tuple[int, ...]) -> list[tuple[str, int, str | None]]:
    """(sampler, steps, spacing): the config's loser first, then SSPO_METHOD.md's (DDIM 20, or Euler 20 for flow,
    on the schedule's own spacing), then every deterministic sampler of the family that applies to its schedule
    (Euler does not to a `clip_sample` one) at each of `steps`, with the config's `loser.spacing`."""
    from videosspo.sampling import STOCHASTIC

    def applies(build) -> bool:
        try:
            return build(model.scheduler.config) is not None
        except ValueError:
            return False

    spacing = config.loser.spacing
    own, method = (config.loser.scheduler, config.loser.steps, spacing), (reference_sampler(model), 20, None)
    names = [n for n, build in model.samplers.items() if n not in STOCHASTIC and applies(build)]
    candidates = [(n, k, spacing) for n in names for k in steps]
    return [own] + [o for o in dict.fromkeys([method, *candidates]) if o != own]


def reference_sampler(model) -> str:
    """The first-order sampler whose many-step sample stands in for the exact one: DDIM, or Euler for flow."""
    return "ddim" if "ddim" in model.samplers else "euler"


def relative_error(x: torch.Tensor, exact: torch.Tensor) -> np.ndarray:
    """‖x − x*‖ / ‖x*‖ per sample (every axis but the batch)."""
    return ((x - exact).flatten(1).norm(dim=1) / exact.flatten(1).norm(dim=1)).double().numpy()


def committed_base(config) -> Path | None:
    """The config's `model.pretrained` when it is a model committed to this repository (the synthetic world's base)."""
    path = config.model.pretrained and (ROOT / config.model.pretrained).resolve()
    return path if path and path.is_dir() and path.is_relative_to(ROOT) else None


def build(config, size: str):
    """The config's model: a committed base (the synthetic world's), else the family's random-weight denoiser of
    `size`."""
    from models import build_model

    m = config.model
    if committed_base(config):
        return build_model(dataclasses.replace(m, pretrained=str(committed_base(config))))
    return build_model(dataclasses.replace(m, pretrained=None, motion_adapter=None, lora_rank=0, size=size))


def measure(
    model,
    config,
    prompts: list[str],
    seeds: list[int],
    *,
    frames: int,
    height: int,
    width: int,
    steps: tuple[int, ...],
    ref_steps: int,
) -> dict:
    """Each option's losers against the `ref_steps` reference from the same noise; stacked: their adherence too."""
    from videosspo.alignment import SCORES, paired, score_clips, t_interval
    from videosspo.sampling import sample_latents
    from videosspo.video import to_uint8

    loser = config.loser
    kwargs = dict(
        frames=frames,
        height=height,
        width=width,
        seeds=seeds,
        guidance=loser.guidance,
        guidance_2=loser.guidance_2,
        negative_prompt=config.sample.negative_prompt,
    )
    model.unet.eval()
    exact = sample_latents(model, prompts, steps=ref_steps, scheduler=reference_sampler(model), **kwargs)
    scored = committed_base(config) is not None  # the synthetic world's model: its scorers apply
    rows, own = [], None
    for name, n, spacing in options(model, config, steps):
        t0 = time.perf_counter()
        x = sample_latents(model, prompts, steps=n, scheduler=name, spacing=spacing, **kwargs)
        seconds = time.perf_counter() - t0
        err = relative_error(x, exact)
        row = {
            "loser": f"{name} {n}" + (f" {spacing}" if spacing else "") + (" (config)" if own is None else ""),
            "scheduler": name,
            "steps": n,
            "spacing": spacing,
            "unet_rows": n * (2 if loser.guidance > 1 else 1),
            "seconds": seconds,
            "error": float(err.mean()),
            "error_ci": t_interval(err)[1],
        }
        if scored:  # one prompt per clip: scores (clips, 1) so `paired` takes each clip as a prompt
            scores = score_clips(np.stack([to_uint8(v) for v in model.decode(x).cpu()]), prompts)
            row["adherence"] = float(np.mean([scores[k] for k in SCORES]))
            row["scores"] = {k: v[:, None] for k, v in scores.items()}
        own = own or row
        row["error_vs_config"] = row["error"] / own["error"]
        rows.append(row)
    if scored:
        own_scores = own["scores"]
        for row in rows:
            d = paired(own_scores, row.pop("scores"))
            row["adherence_vs_config"] = f"{d['mean']:+.3f} ± {d['half']:.3f}"
    return {"ref": f"{reference_sampler(model)} {ref_steps}", "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs" / "animatediff_sspo.yaml"))
    p.add_argument("--quick", action="store_true", help=f"steps {QUICK_STEPS}, half the clips, 200 reference steps")
    p.add_argument("--size", default="tiny", choices=["tiny", "medium"], help="the random-weight denoiser's size")
    p.add_argument("--clips", type=int, help="clips (prompt, seed) to sample (default 8; quick 4; stacked x4)")
    p.add_argument("--ref-steps", dest="ref_steps", type=int, help="steps of the reference sample (default 500)")
    p.add_argument("--frames", type=int, help="default: 4 (stacked: the config's data.frames)")
    p.add_argument("--height", type=int, help="default: 32 (stacked: the config's)")
    p.add_argument("--width", type=int)
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)

    from videosspo.config import load_config
    from videosspo.synth import heldout_prompts, seen_prompts

    torch.manual_seed(0)
    config = load_config(args.config)
    model = build(config, args.size)
    stacked = committed_base(config) is not None  # the synthetic world's base: its prompts, shapes and scorers
    clips = args.clips or (4 if args.quick else 8) * (4 if stacked else 1)
    pool = [p for pair in zip(heldout_prompts(), seen_prompts(), strict=True) for p in pair] if stacked else PROMPTS
    prompts = [pool[i % len(pool)] for i in range(clips)]
    size = config.data.height if stacked else 32
    frames = config.data.frames if stacked else min(config.data.frames, 4)
    frames = 1 if model.image_model else frames
    if model.frame_step > 1:  # k n + 1 frames for a VAE that compresses time k x
        frames = 1 + model.frame_step * max(1, (frames - 1) // model.frame_step)
    shape = dict(frames=args.frames or frames, height=args.height or size, width=args.width or args.height or size)
    result = measure(
        model,
        config,
        prompts,
        list(range(clips)),
        **shape,
        steps=QUICK_STEPS if args.quick else STEPS,
        ref_steps=args.ref_steps or (200 if args.quick else 500),
    )
    result |= {
        "config": str(args.config),
        "family": model.family,
        "size": "trained" if stacked else args.size,
        "guidance": config.loser.guidance,
        "clips": clips,
        **shape,
        "env": environment("cpu"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    columns = ["loser", "unet_rows", "error", "error_ci", "error_vs_config", "seconds"]
    print(
        table(
            result["rows"],
            columns + (["adherence", "adherence_vs_config"] if stacked else []),
            title=f"{args.config}: {model.family} ({result['size']}), CFG {config.loser.guidance}, {clips} clips "
            f"{shape['frames']}x{shape['height']}x{shape['width']}, error against {result['ref']} steps",
        )
    )
    return result


if __name__ == "__main__":
    main()
