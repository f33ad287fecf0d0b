"""`videosspo` command line: train, sample, data synth, demo.

    videosspo train --config configs/tiny_animatediff_sspo.yaml [--optim.lr 1e-5 ...]
    accelerate launch -m videosspo.train --config ...        (multi-GPU; same flags)
    videosspo sample --checkpoint runs/x/checkpoints/step_00000100 --prompt "a red square moving left" --out a.mp4
    videosspo data synth --out data/synth --n 64
    videosspo data cache-latents --config configs/x.yaml [--out DIR]   (encode winners once; data.latent_cache DIR)
    videosspo pretrain-base [--config configs/stacked_base.yaml] [--train.max_steps N ...]
    videosspo demo                                             (align the base model; before/after table + GIFs)
    videosspo upgrade-checkpoints runs/x                       (checkpoints of an older videosspo: resumable again)
    videosspo config --list | --show configs/x.yaml [--optim.lr 1e-5 ...]   (every key; the resolved config)

Exit codes: 0 success; 2 a mistake in what the user gives (arguments, config, data, paths, a full disk),
reported in one line on stderr (`videosspo.errors.UserError`); 130 / 143 stopped by Ctrl-C / SIGTERM (one
line); 1 a bug, with its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from typing import get_args

from videosspo.config import Sampler
from videosspo.errors import OneLineParser as Parser

OVERRIDE_HELP = """\
Any config key may follow as --section.key VALUE (e.g. --optim.lr 1e-5 --train.max_steps 50):
  videosspo config --list                                   every key, its default and meaning
  videosspo config --show X.yaml [--section.key VALUE ...]  the resolved config a run of X.yaml would use
Values are read as YAML: lists as --train.sample_prompts '["a red square moving left", "a blue circle"]'
or --optim.betas "[0.9, 0.99]", mappings as --model.schedule "{beta_schedule: scaled_linear}", null as null."""

TRAIN_HELP = OVERRIDE_HELP + """

Progress bar (every logged value is in OUTPUT_DIR/metrics.jsonl under the name in brackets):
  loss  the batch's mean loss [loss]
  sw    fraction of samples SSR switched to the SFT branch: the reference already predicts the winner
        better than the policy [sspo/switch_frac]
  acc   fraction of samples whose policy-minus-reference error is lower on the winner than on the loser
        (Δ_w < Δ_l) [rewards/accuracy]
  ref   index of the replay-pool snapshot drawn as this step's reference, 0 = the initial weights
        [replay/ref_index]

Ctrl-C (or SIGTERM) stops cleanly with one line naming the step (exit 130 / 143); run the same command
with --train.resume latest to continue from the newest checkpoint. --verbose shows the libraries' own logs."""

VERBOSE_HELP = "show the libraries' own logs (transformers, diffusers, decord's FFmpeg) and videosspo's debug lines"


def _quiet_libraries(verbose: bool) -> None:
    """Keep the terminal for our own progress bar and warnings: library chatter below WARNING is hidden unless
    --verbose. Environment variables, so that nothing heavy is imported before the command needs it."""
    level = "info" if verbose else "error"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", level)
    os.environ.setdefault("DIFFUSERS_VERBOSITY", level)
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # per-file load bars (transformers reads it too)
        logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file "saving state" lines
        logging.getLogger("videosspo.video").setLevel(logging.WARNING)  # "decord could not read X: read with PyAV"
        # libraries' notes to their own developers (diffusers prints a whole scheduler config with one)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("videosspo").setLevel(logging.DEBUG if verbose else logging.INFO)


def _quiet_diffusers() -> None:
    """diffusers' "Loading pipeline components" bars: no environment variable turns them off."""
    import diffusers

    if os.environ.get("DIFFUSERS_VERBOSITY") == "error":
        diffusers.utils.logging.disable_progress_bar()


def _given_data_path(overrides: list[str]) -> bool:
    """Whether --data.path was given on the command line."""
    from videosspo.config import parse_overrides

    return "path" in (parse_overrides(overrides).get("data") or {})


def _prepare_data(config, given: bool, source: str | None) -> None:
    """data.path must exist, except that a config's own data.path with data.synth_if_missing N > 0 is written
    as a synthetic dataset of N clips when missing; a path given on the command line (`given`) always must."""
    from videosspo.errors import PathError
    from videosspo.methods import get_method
    from videosspo.shards import is_shards
    from videosspo.synth import make_dataset

    path, n = Path(config.data.path), config.data.synth_if_missing
    if path.exists() or is_shards(config.data.path):
        return
    if given or not n or path.suffix in (".jsonl", ".csv"):
        raise PathError(f"data.path={str(path)!r} does not exist; give a folder of clips with metadata.jsonl "
                        f"(see docs/your-own-videos.md), or write a synthetic one: videosspo data synth --out {path}")
    frames = max(config.data.frames, (config.data.frames - 1) * config.data.stride + 1)
    print(f"data.path {path} is missing: writing {n} synthetic clips there (data.synth_if_missing: {n}"
          f"{f' in {source}' if source else ''}; for your own clips give --data.path DIR)")
    make_dataset(path, n=n, frames=frames, height=config.data.height, width=config.data.width,
                 paired=get_method(config.method.name).losers == "data")


def cmd_train(args, overrides: list[str]) -> dict:
    from videosspo.config import load_config

    config = load_config(args.config, overrides)
    _prepare_data(config, _given_data_path(overrides), args.config)
    return _fit(config)


def _fit(config, resumable: bool = True) -> dict:
    """Trainer(config).fit(); an interrupt carries the step it stopped at and how to go on (`Interrupted.note`)."""
    from videosspo.checkpoint import latest_checkpoint
    from videosspo.interrupt import raise_if_interrupted
    from videosspo.trainer import Trainer

    _quiet_diffusers()
    trainer = None
    try:
        trainer = Trainer(config)
        return trainer.fit(on_step=lambda _: raise_if_interrupted())
    except KeyboardInterrupt as e:  # videosspo.interrupt.Interrupted too
        step = f"at step {trainer.step}" if trainer is not None else "before the first step"
        newest = latest_checkpoint(config.train.output_dir) if resumable else None
        hint = (f"; resume with --train.resume latest (from {newest.name})" if newest
                else "; resume with --train.resume latest (no checkpoint yet: it starts over)" if resumable else "")
        e.note = f"interrupted {step}{hint}"
        raise


def cmd_pretrain_base(args, overrides: list[str]) -> dict:
    """The synthetic world's base model: world data and latent cache when missing, then SFT on web/."""
    from videosspo.alignment import BASE_CONFIG, prepare
    from videosspo.config import load_config

    config = load_config(args.config or BASE_CONFIG, overrides)
    prepare(config)
    summary = _fit(config)
    print(f"base model: {summary['checkpoint']}/model ({summary['steps']} steps in {summary['seconds']} s); "
          f"align it with --model.pretrained {summary['checkpoint']}/model")
    return summary


def no_overrides(overrides: list[str]) -> None:
    from videosspo.errors import UserError

    if overrides:
        raise UserError(f"unknown arguments {' '.join(overrides)} (see --help)")


def cmd_sample(args, overrides: list[str]) -> None:
    import torch

    from models import load_model
    from videosspo.errors import UserError
    from videosspo.sampling import check_guidance_2, generate, make_scheduler
    from videosspo.video import WRITE_EXTENSIONS, write_video

    no_overrides(overrides)
    _quiet_diffusers()
    if Path(args.out).suffix.lower() not in WRITE_EXTENSIONS:
        raise UserError(f"--out {args.out}: write a {' or '.join(WRITE_EXTENSIONS)} file")
    _check_checkpoint(Path(args.checkpoint))
    model = load_model(args.checkpoint)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    _fill_from_checkpoint(args)
    try:
        model.latent_shape(args.frames, args.height, args.width)
        make_scheduler(model, args.scheduler, args.steps)
        check_guidance_2(model, args.guidance_2)
    except ValueError as e:
        raise UserError(f"cannot sample {args.frames} frames of {args.height}x{args.width} in {args.steps} "
                        f"{args.scheduler} steps from {args.checkpoint}: {e}") from e
    prompts = args.prompt
    seeds = [args.seed + i for i in range(len(prompts))]
    pixels = generate(model, prompts, frames=args.frames, height=args.height, width=args.width, seeds=seeds,
                      steps=args.steps, guidance=args.guidance, guidance_2=args.guidance_2,
                      negative_prompt=args.negative_prompt,
                      scheduler=args.scheduler, progress=True)
    out, rows = Path(args.out), []
    for i, video in enumerate(pixels.cpu()):
        path = out if len(prompts) == 1 else out.with_name(f"{out.stem}_{i:02d}{out.suffix}")
        write_video(path, video, fps=args.fps)
        rows.append({"video": path.name, "caption": prompts[i], "seed": seeds[i], "checkpoint": str(args.checkpoint)})
        print(f"wrote {path}  ({prompts[i]!r}, seed {seeds[i]})")
    print(f"captions in {write_captions(out.parent, rows)} (evaluate: python benchmarks/vbench_eval.py --videos "
          f"{out.parent} --out eval/NAME)")


def write_captions(folder: Path, rows: list[dict]) -> Path:
    """`folder/metadata.jsonl` (the data format: video relative to it, caption): `rows` replace the rows of the
    same videos, other rows stay, so several `sample` calls into one folder describe every clip in it."""
    from videosspo.files import atomic_write_text

    path, ours = folder / "metadata.jsonl", {row["video"] for row in rows}
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("video") not in ours:
                kept.append(row)
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in [*kept, *rows]))
    return path


def _check_checkpoint(path: Path) -> None:
    """A training checkpoint (or its model/) must verify before sampling: missing, incomplete, damaged or
    pre-marker ones are one line naming the folder and the fix. Other model folders are left to load_model."""
    from videosspo.checkpoint import CHECKPOINTS, verify
    from videosspo.errors import PathError

    if not path.exists():
        raise PathError(f"--checkpoint {path} does not exist; give a checkpoint folder (runs/NAME/checkpoints/step_N) "
                        f"or a model folder")
    folder = path.parent if path.name == "model" else path
    if folder.parent.name == CHECKPOINTS or (folder / "trainer.json").is_file():
        verify(folder)


def _fill_from_checkpoint(args) -> None:
    """Unset --frames/--height/--width/--scheduler default to the checkpoint's training clips and sampler."""
    from videosspo.config import load_config

    folder = Path(args.checkpoint)
    saved = next((p for p in (folder / "config.yaml", folder.parent / "config.yaml") if p.is_file()), None)
    config = load_config(saved) if saved else None
    for key, section, fallback in (("frames", "data", 16), ("height", "data", 256), ("width", "data", 256),
                                   ("scheduler", "sample", "ddim")):
        if getattr(args, key) is None:
            setattr(args, key, getattr(getattr(config, section), key) if config else fallback)


def cmd_synth(args, overrides: list[str]) -> None:
    from videosspo.synth import make_dataset

    no_overrides(overrides)
    path = make_dataset(args.out, n=args.n, frames=args.frames, height=args.size, width=args.size, fps=args.fps,
                        seed=args.seed, paired=args.paired)
    print(f"wrote {args.n} clips and metadata.jsonl to {path}")


def default_latent_dir(config) -> Path:
    """`<data.path folder>/latents_<family>_<h>x<w>`."""
    path = Path(config.data.path)
    folder = path.parent if path.suffix.lower() in (".jsonl", ".json", ".csv") else path
    return folder / f"latents_{config.model.family}_{config.data.height}x{config.data.width}"


def cmd_cache_latents(args, overrides: list[str]) -> None:
    import torch

    from models import build_model
    from videosspo.config import load_config
    from videosspo.data import VideoDataset
    from videosspo.latents import cache_latents

    config = load_config(args.config, overrides)
    _prepare_data(config, _given_data_path(overrides), args.config)
    _quiet_diffusers()
    model = build_model(config.model).to("cuda" if torch.cuda.is_available() else "cpu")
    model.latent_shape(config.data.frames, config.data.height, config.data.width)  # checks the VAE factor
    data = config.data
    dataset = VideoDataset(data.path, frames=data.frames, stride=data.stride, height=data.height, width=data.width)
    out = Path(args.out) if args.out else default_latent_dir(config)
    cache_latents(model, dataset, out, metadata=data.path)
    unreadable = len(json.loads((out / "cache_info.json").read_text())["unreadable"])
    print(f"wrote latents of {len(dataset) - unreadable} clips to {out} ({unreadable} unreadable, skipped); "
          f"train with --data.latent_cache {out}")


def cmd_estimate(args, overrides: list[str]) -> None:
    """Print the expected peak GPU memory of one step of the config, and the switches that fit --gpu-gb."""
    from videosspo.config import load_config
    from videosspo.memory import report

    print(report(load_config(args.config, overrides), args.gpu_gb)[0])


def cmd_upgrade_checkpoints(args, overrides: list[str]) -> None:
    """Checkpoints of an earlier videosspo (no COMPLETE.json, or a pickled LR schedule): made current in place
    (`checkpoint.upgrade`), under the run lock, so `--train.resume latest` takes them again."""
    from videosspo.checkpoint import RunLock, to_upgrade, upgrade
    from videosspo.errors import PathError

    no_overrides(overrides)
    run = Path(args.run)
    if not (run / "checkpoints").is_dir():
        raise PathError(f"{run} is not a run folder (no checkpoints/ in it); give a train.output_dir")
    if not to_upgrade(run):
        print(f"{run}: every checkpoint is current; nothing to do")
        return
    with RunLock(run):
        for line in upgrade(run):
            print(line)


def cmd_demo(args, overrides: list[str]) -> dict:
    """Align the synthetic world's base model with SSPO and show prompt adherence before and after.

    The base is the committed one (assets/stacked_base), else the newest `videosspo pretrain-base`
    checkpoint in runs/base, else a short pretrain-base run (DEMO_BASE_STEPS steps) made now.
    """
    import time

    import numpy as np

    from models import load_model
    from videosspo.alignment import ALIGN_CONFIG, SCORES, adherence, paired, prepare, side_by_side
    from videosspo.config import load_config
    from videosspo.synth import heldout_prompts
    from videosspo.video import write_video

    t0 = time.perf_counter()
    config = load_config(args.config or ALIGN_CONFIG, overrides)
    base = _demo_base(config.model.pretrained)
    config = load_config(args.config or ALIGN_CONFIG, [*overrides, "--model.pretrained", str(base)])
    out = Path(config.train.output_dir)
    if (out / "checkpoints").is_dir():  # the demo's own folder: a rerun replaces the previous demo run
        print(f"videosspo demo: replacing the previous demo run in {out}")
        shutil.rmtree(out)
    prepare(config)
    data, seeds, prompts = config.data, list(range(DEMO_SAMPLE_SEEDS)), heldout_prompts()
    kwargs = dict(frames=data.frames, size=data.height, steps=config.sample.steps, guidance=config.sample.guidance)
    before, base_clips = adherence(load_model(base), prompts, seeds, **kwargs)
    summary = _fit(config, resumable=False)  # a rerun replaces the demo's folder
    after, aligned_clips = adherence(load_model(summary["checkpoint"]), prompts, seeds, **kwargs)

    for i, prompt in enumerate(prompts):  # base | aligned, same seed
        write_video(out / "gifs" / f"{i:02d}_{prompt.replace(' ', '_')}.gif",
                    side_by_side(base_clips[i, 0], aligned_clips[i, 0]), fps=4)
    delta = paired(before, after)  # same prompts, seeds and initial noise: per-clip differences
    before, after = ({k: float(v.mean()) for k, v in scores.items()} for scores in (before, after))
    mean_before, mean_after = np.mean(list(before.values())), np.mean(list(after.values()))
    better = [k for k in SCORES if after[k] > before[k]]
    change = (f"mean adherence {mean_before:.3f} -> {mean_after:.3f}, paired difference {delta['mean']:+.3f} "
              f"± {delta['half']:.3f} (95% t-interval over the {len(prompts)} prompts)")
    verdict = {"better": f"aligned is better: {change}",
               "tied": f"aligned is NOT better: not distinguishable from the base: {change}",
               "worse": f"aligned is NOT better: it is worse: {change}"}[delta["verdict"]]
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
    result = {"before": before, "after": after, "paired_difference": delta, "base": str(base), "prompts": prompts,
              "seeds": seeds, "train": summary, "better": delta["verdict"] == "better"}
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
        latest = Path(cmd_pretrain_base(argparse.Namespace(config=None),
                                        ["--train.max_steps", str(DEMO_BASE_STEPS)])["checkpoint"])
    return latest / "model"


def cmd_config(args, overrides: list[str]) -> None:
    """`--list`: every key, its default and meaning; `--show [CONFIG]`: the config a run would use, as YAML."""
    import yaml

    from videosspo.config import load_config
    from videosspo.config_help import describe_keys

    if args.list:
        no_overrides(overrides)
        print(describe_keys())
        return
    config = load_config(args.show or None, overrides)
    print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False), end="")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = Parser(prog="videosspo", description="SSPO alignment for text-to-video diffusion models.",
                    epilog=OVERRIDE_HELP, formatter_class=raw)
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    # also accepted after the command (`videosspo train --verbose`); SUPPRESS keeps the top-level value otherwise
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=raw, **kwargs)

    p = add("train", help="train with a YAML config (sft | dpo | sspo)", epilog=TRAIN_HELP,
            usage="videosspo train [-h] [-v] [--config CONFIG] [--section.key VALUE ...]")
    p.add_argument("--config", help="YAML config file (configs/*.yaml); omitted: all defaults")
    p.set_defaults(func=cmd_train)

    p = add("sample", help="generate videos from a checkpoint",
            epilog="Writes metadata.jsonl (video, caption, seed) beside the clips: "
                   "python benchmarks/vbench_eval.py --videos FOLDER scores them against their prompts.")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (or its model/ folder)")
    p.add_argument("--prompt", required=True, action="append", help="text prompt; repeat for several")
    p.add_argument("--out", required=True, help="output .mp4 or .gif (numbered when several prompts)")
    p.add_argument("--frames", type=int, help="default: the checkpoint's training clips (else 16)")
    p.add_argument("--height", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--width", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale; <= 1 disables")
    p.add_argument("--guidance-2", type=float, default=None,
                   help="wan22: the scale of the low-noise expert's steps (WanPipeline's guidance_scale_2; default --guidance)")
    p.add_argument("--scheduler", choices=list(get_args(Sampler)),
                   help="default: the checkpoint's sample.scheduler (else ddim; flow-matching models: euler, unipc; "
                        "CogVideoX: ddim, dpm)")
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt; prompt i uses seed + i")
    p.add_argument("--fps", type=int, default=8)
    p.set_defaults(func=cmd_sample)

    p = add("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    s = data_sub.add_parser("synth", parents=[common],
                            help="write a synthetic video world: coloured shapes moving, with captions")
    s.add_argument("--out", required=True, help="output folder (videos/ + metadata.jsonl)")
    s.add_argument("--n", type=int, default=64, help="number of clips")
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    s.add_argument("--fps", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--paired", action="store_true", help="also write a wrong 'loser' clip per caption (DPO data)")
    s.set_defaults(func=cmd_synth)
    s = data_sub.add_parser("cache-latents", parents=[common], formatter_class=raw, epilog=OVERRIDE_HELP,
                            help="encode every clip once with the model's VAE (data.latent_cache)")
    s.add_argument("--config", help="YAML config file: its model and data sections are used")
    s.add_argument("--out", help="output folder (default: <data.path folder>/latents_<family>_<h>x<w>)")
    s.set_defaults(func=cmd_cache_latents)

    p = add("pretrain-base", help="pre-train the synthetic world's base model (SFT on noisy web captions)",
            epilog=OVERRIDE_HELP)
    p.add_argument("--config", help="YAML config (default: configs/stacked_base.yaml)")
    p.set_defaults(func=cmd_pretrain_base)

    p = add("demo", help="align the synthetic world's base model with SSPO; adherence before/after + GIFs",
            epilog=OVERRIDE_HELP)
    p.add_argument("--config", help="YAML config (default: configs/stacked_sspo.yaml)")
    p.set_defaults(func=cmd_demo)

    p = add("estimate", help="expected peak GPU memory of one training step, by part (docs/low-memory.md)",
            epilog=OVERRIDE_HELP)
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--gpu-gb", type=float, default=24.0, help="the GPU's memory: which switches make the run fit it")
    p.set_defaults(func=cmd_estimate)

    p = add("upgrade-checkpoints", help="make checkpoints of an older videosspo (no COMPLETE.json) resumable, "
                                        "in place")
    p.add_argument("run", help="the run folder (train.output_dir)")
    p.set_defaults(func=cmd_upgrade_checkpoints)

    p = add("config", help="list every config key (--list) or print a resolved config (--show)", epilog=OVERRIDE_HELP)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="every key: its default, type and meaning")
    what.add_argument("--show", nargs="?", const="", metavar="CONFIG",
                      help="the resolved config of CONFIG (omitted: the defaults) with any --section.key VALUE "
                           "overrides applied, as YAML")
    p.set_defaults(func=cmd_config)
    return parser


def run(argv: list[str] | None = None):
    """Run one command and return what it returns (a summary dict for train, pretrain-base and demo).

    Errors propagate: `UserError` (one line, exit 2 in `main`), `KeyboardInterrupt` (a signal), anything else
    (a bug)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from videosspo.interrupt import stop_on_signals

    args, rest = build_parser().parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.captureWarnings(True)  # warnings.warn through logging: printed above the progress bar, once each
    _quiet_libraries(args.verbose)
    with stop_on_signals(), logging_redirect_tqdm():  # log lines above the progress bar, never inside it
        result = args.func(args, rest)
    if args.command == "train" and result is not None:
        print(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    """The `videosspo` command: returns 0 when done (the console script's `sys.exit(main())`); a user error exits 2
    (SystemExit), an interrupt 128 + the signal, each after one line on stderr; a bug raises (exit 1)."""
    from videosspo.errors import UserError

    command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
    try:
        run(argv)
    except UserError as e:  # config, data, paths, disk: the message is the whole story (tracebacks are for bugs)
        print(f"videosspo {command}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM (videosspo.interrupt): one line, no traceback
        if os.environ.get("RANK", "0") == "0":
            print(f"videosspo {command}: {getattr(e, 'note', 'interrupted')}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 130))
    except BrokenPipeError:  # `videosspo config --list | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
    return 0


if __name__ == "__main__":
    sys.exit(main())
