"""Does a base model of the synthetic world use each caption word, and how well does it follow each one?

For each model folder (a base, or a `pretrain-base` checkpoint's `model`):
- the word test: the denoising error (the MSE to the model's own target, ε or v) on clips of the world's curated split with their own
  caption, against the same clips and noise with one word swapped (the colour for the next colour,
  the shape for the next shape, the direction for the opposite one) or the caption dropped, at a few
  timesteps. A word the model ignores leaves the error unchanged: `gap` = error(swapped) / error(own) - 1
  is 0 for it. At one t the ε, v and x0 errors of a prediction are proportional (x_t fixed: ε̂ − ε =
  −√(ᾱ/(1−ᾱ)) (x̂0 − x0), v̂ − v = −(x̂0 − x0)/√(1−ᾱ)), so the gap per t does not depend on the objective;
- adherence: the four exact scores on the held-out and seen prompts (DDIM 20 steps, CFG 4, sample
  seeds 0..n-1, `videosspo.alignment.adherence`), each attribute beside their mean.

    python benchmarks/testbed_check.py assets/stacked_base --world data/world
    python benchmarks/testbed_check.py runs/testbed/base/checkpoints/step_00001000/model --world data/world_v2 \
        --out benchmarks/results/testbed/check_step1000.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMESTEPS = (100, 300, 500, 700, 900)
WORDS = ("color", "shape", "direction", "none")


def swapped(spec, word: str) -> str:
    """`spec`'s caption with `word` (color / shape / direction / none) changed: the next colour or shape, the
    opposite direction, no caption."""
    from videosspo.synth import COLORS, DIRECTIONS, SHAPES

    colors, directions = list(COLORS), list(DIRECTIONS)
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}
    if word == "color":
        return dataclasses.replace(spec, color=colors[(colors.index(spec.color) + 1) % len(colors)]).caption
    if word == "shape":
        return dataclasses.replace(spec, shape=SHAPES[(SHAPES.index(spec.shape) + 1) % len(SHAPES)]).caption
    if word == "direction":
        return dataclasses.replace(spec, direction=opposite.get(spec.direction, directions[0])).caption
    return ""


def word_test(model, world: Path, n: int = 256) -> dict:
    """`{t: {own, color, direction, none: MSE to the target}}` and per word the gap at each t, on the first n curated clips."""
    import torch

    from videosspo.objectives import get_objective
    from videosspo.synth import ClipSpec, render_clip

    rows = [json.loads(line) for line in (world / "curated" / "metadata.jsonl").read_text().splitlines()][:n]
    specs = [ClipSpec.from_dict(r["attributes"]) for r in rows]
    info = json.loads((world / "curated" / "synth_info.json").read_text())
    frames, size = info["frames"], info["height"]
    x0 = torch.tensor(np.stack([render_clip(s, frames, size, size) for s in specs])).float() / 127.5 - 1
    x0 = x0.permute(0, 4, 1, 2, 3)  # (b, c, f, h, w)
    objective = get_objective(model.objective)
    generator = torch.Generator().manual_seed(0)
    out = {}
    with torch.no_grad():
        for t in TIMESTEPS:
            eps = torch.randn(x0.shape, generator=generator)
            steps = torch.full((len(specs),), t)
            x_t, target = (f(model.scheduler, x0, eps, steps) for f in (objective.noisy, objective.target))
            err = {}
            for word in ("own", *WORDS):
                captions = [s.caption for s in specs] if word == "own" else [swapped(s, word) for s in specs]
                err[word] = float(((model.predict(x_t, steps, model.encode_prompt(captions)) - target) ** 2).mean())
            out[t] = {**err, **{f"gap_{w}": err[w] / err["own"] - 1 for w in WORDS}}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    p.add_argument("models", nargs="+", help="model folders (diffusers layout)")
    p.add_argument("--world", default="data/world", help="the world folder (web/ and curated/) the base was trained in")
    p.add_argument("--sample-seeds", dest="sample_seeds", type=int, default=2)
    p.add_argument("--out", help="JSON file for the results (default: print only)")
    args = p.parse_args(argv)

    import torch

    from models import load_model
    from videosspo.alignment import adherence
    from videosspo.synth import heldout_prompts, seen_prompts

    torch.set_num_threads(1)
    world = Path(args.world)
    info = json.loads((world / "curated" / "synth_info.json").read_text())
    results = {}
    for folder in args.models:
        t0 = time.perf_counter()
        model = load_model(folder)
        model.unet.eval()
        entry = {"word_test": word_test(model, world)}
        for split, prompts in (("heldout", heldout_prompts()), ("seen", seen_prompts())):
            scores, _ = adherence(
                model, prompts, list(range(args.sample_seeds)), frames=info["frames"], size=info["height"]
            )
            entry[split] = {k: float(v.mean()) for k, v in scores.items()}
            entry[split]["adherence"] = float(np.mean(list(entry[split].values())))
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        results[folder] = entry
        gaps = {w: round(float(np.mean([v[f"gap_{w}"] for v in entry["word_test"].values()])), 4) for w in WORDS}
        print(
            folder,
            "| mean gap over t:",
            gaps,
            "|",
            {s: {k: round(v, 3) for k, v in entry[s].items()} for s in ("heldout", "seen")},
            flush=True,
        )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            json.dumps(
                {"world": str(world), "world_info": info, "sample_seeds": args.sample_seeds, "models": results},
                indent=1,
            )
            + "\n"
        )
    return results


if __name__ == "__main__":
    main()
