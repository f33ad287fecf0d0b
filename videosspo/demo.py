"""`videosspo demo`: align the synthetic world's base model with SSPO and show adherence before and after."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from videosspo.commands import cmd_pretrain_base, fit


def cmd_demo(args, overrides: list[str]) -> dict:
    """Align the synthetic world's base model with SSPO and show prompt adherence before and after.

    The base is the committed one (assets/stacked_base), else the newest `videosspo pretrain-base`
    checkpoint in runs/base, else a short pretrain-base run (DEMO_BASE_STEPS steps) made now.
    """
    import time

    import numpy as np

    from models import load_checked_config, load_model
    from videosspo.alignment import ALIGN_CONFIG, SCORES, adherence, paired, prepare, side_by_side
    from videosspo.synth import heldout_prompts
    from videosspo.video import write_video

    t0 = time.perf_counter()
    config = load_checked_config(args.config or ALIGN_CONFIG, overrides)
    base = _demo_base(config.model.pretrained)
    config = load_checked_config(args.config or ALIGN_CONFIG, [*overrides, "--model.pretrained", str(base)])
    out = Path(config.train.output_dir)
    if (out / "checkpoints").is_dir():  # the demo's own folder: a rerun replaces the previous demo run
        print(f"videosspo demo: replacing the previous demo run in {out}")
        shutil.rmtree(out)
    prepare(config)
    data, seeds, prompts = config.data, list(range(DEMO_SAMPLE_SEEDS)), heldout_prompts()
    kwargs = dict(frames=data.frames, size=data.height, steps=config.sample.steps, guidance=config.sample.guidance)
    before, base_clips = adherence(load_model(base), prompts, seeds, **kwargs)
    summary = fit(config, resumable=False)  # a rerun replaces the demo's folder
    after, aligned_clips = adherence(load_model(summary["checkpoint"]), prompts, seeds, **kwargs)

    for i, prompt in enumerate(prompts):  # base | aligned, same seed
        write_video(
            out / "gifs" / f"{i:02d}_{prompt.replace(' ', '_')}.gif",
            side_by_side(base_clips[i, 0], aligned_clips[i, 0]),
            fps=4,
        )
    delta = paired(before, after)  # same prompts, seeds and initial noise: per-clip differences
    before, after = ({k: float(v.mean()) for k, v in scores.items()} for scores in (before, after))
    mean_before, mean_after = np.mean(list(before.values())), np.mean(list(after.values()))
    better = [k for k in SCORES if after[k] > before[k]]
    change = (
        f"mean adherence {mean_before:.3f} -> {mean_after:.3f}, paired difference {delta['mean']:+.3f} "
        f"± {delta['half']:.3f} (95% t-interval over the {len(prompts)} prompts)"
    )
    verdict = {
        "better": f"aligned is better: {change}",
        "tied": f"aligned is NOT better: not distinguishable from the base: {change}",
        "worse": f"aligned is NOT better: it is worse: {change}",
    }[delta["verdict"]]
    lines = [
        f"videosspo demo: {summary['method']} on {summary['steps']} steps of the curated split "
        f"({summary['seconds']:.0f} s), from the base model {base}",
        f"prompt adherence on {len(prompts)} held-out prompts x {len(seeds)} seeds (combinations the curated "
        f"split never shows; exact synthetic-world scores of the generated clips, 1 = every clip right; "
        f"base and aligned sample each clip from the same initial noise):",
        "",
        "| score | base | aligned | change |",
        "|---|---|---|---|",
        *[f"| {k} | {before[k]:.3f} | {after[k]:.3f} | {after[k] - before[k]:+.3f} |" for k in SCORES],
        f"| mean | {mean_before:.3f} | {mean_after:.3f} | {mean_after - mean_before:+.3f} |",
        "",
        f"{verdict} (higher on {len(better)} of {len(SCORES)} scores: {', '.join(better) or 'none'})",
        f"side-by-side GIFs (base | aligned, same seed): {out / 'gifs'}/",
        f"checkpoint: {summary['checkpoint']}   total {time.perf_counter() - t0:.0f} s",
    ]
    text = "\n".join(lines)
    result = {
        "before": before,
        "after": after,
        "paired_difference": delta,
        "base": str(base),
        "prompts": prompts,
        "seeds": seeds,
        "train": summary,
        "better": delta["verdict"] == "better",
    }
    (out / "demo.json").write_text(json.dumps(result, indent=2))
    (out / "SUMMARY.txt").write_text(text + "\n")
    print(text)
    return result


DEMO_SAMPLE_SEEDS = 4  # clips per held-out prompt, for the base and the aligned model alike


DEMO_BASE_STEPS = 300  # a base made by the demo itself when none is cached: ~5 min on 2 cores, weak


def _demo_base(pretrained: str | None) -> Path:
    """The base model folder: `pretrained` if it exists (a relative path: here, else in the repository, where the
    committed assets/stacked_base is), else runs/base's newest checkpoint, else a short pretrain-base."""
    from videosspo.alignment import ROOT
    from videosspo.checkpoint import latest_checkpoint

    for candidate in (Path(pretrained), ROOT / pretrained) if pretrained else ():
        if candidate.is_dir():
            return candidate
    latest = latest_checkpoint("runs/base")
    if latest is None:
        print(f"no cached base model ({pretrained} is missing): pre-training one for {DEMO_BASE_STEPS} steps")
        latest = Path(
            cmd_pretrain_base(argparse.Namespace(config=None), ["--train.max_steps", str(DEMO_BASE_STEPS)])[
                "checkpoint"
            ]
        )
    return latest / "model"
