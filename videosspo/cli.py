"""`videosspo` command line: train, sample, data synth, demo.

    videosspo train --config configs/tiny_animatediff_sspo.yaml [--optim.lr 1e-5 ...]
    accelerate launch -m videosspo.train --config ...        (multi-GPU; same flags)
    videosspo sample --checkpoint runs/x/checkpoints/step_00000100 --prompt "a red square moving left" --out a.mp4
    videosspo data synth --out data/synth --n 64
    videosspo data cache-latents --config configs/x.yaml [--out DIR]   (encode winners once; data.latent_cache DIR)
    videosspo demo                                             (synthetic data + a short tiny SSPO run)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

OVERRIDE_HELP = ("Any config key may follow as --section.key VALUE (e.g. --optim.lr 1e-5 --train.max_steps 50); "
                 "see videosspo/config.py for every key, its default and meaning.")
DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "tiny_animatediff_sspo.yaml"


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress bar: silence per-file load/save bars of HF libraries."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # per-file "saving state" lines


def _prepare_data(config) -> None:
    """Write the synthetic dataset at data.path when it is missing and data.synth_if_missing > 0."""
    from videosspo.errors import PathError
    from videosspo.synth import make_dataset

    path = Path(config.data.path)
    if path.exists() or not config.data.synth_if_missing:
        return
    if path.suffix in (".jsonl", ".csv"):
        raise PathError(f"data.path={str(path)!r} does not exist")
    frames = max(config.data.frames, (config.data.frames - 1) * config.data.stride + 1)
    print(f"data.path {path} is missing: writing {config.data.synth_if_missing} synthetic clips there")
    make_dataset(path, n=config.data.synth_if_missing, frames=frames, height=config.data.height,
                 width=config.data.width, paired=config.method.name == "dpo")


def cmd_train(args, overrides: list[str]) -> dict:
    from videosspo.config import load_config
    from videosspo.trainer import Trainer

    config = load_config(args.config, overrides)
    _prepare_data(config)
    summary = Trainer(config).fit()
    return summary


def cmd_sample(args, overrides: list[str]) -> None:
    import torch

    from models import load_model
    from videosspo.sampling import generate
    from videosspo.video import write_video

    if overrides:
        raise SystemExit(f"videosspo sample: unknown arguments {overrides}")
    model = load_model(args.checkpoint)
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    _fill_clip_size(args)
    prompts = args.prompt
    seeds = [args.seed + i for i in range(len(prompts))]
    pixels = generate(model, prompts, frames=args.frames, height=args.height, width=args.width, seeds=seeds,
                      steps=args.steps, guidance=args.guidance, negative_prompt=args.negative_prompt,
                      scheduler=args.scheduler, progress=True)
    out = Path(args.out)
    for i, video in enumerate(pixels.cpu()):
        path = out if len(prompts) == 1 else out.with_name(f"{out.stem}_{i:02d}{out.suffix}")
        write_video(path, video, fps=args.fps)
        print(f"wrote {path}  ({prompts[i]!r}, seed {seeds[i]})")


def _fill_clip_size(args) -> None:
    """Unset --frames/--height/--width default to the clip size the checkpoint was trained on."""
    from videosspo.config import load_config

    folder = Path(args.checkpoint)
    saved = next((p for p in (folder / "config.yaml", folder.parent / "config.yaml") if p.is_file()), None)
    data = load_config(saved).data if saved else None
    for key, fallback in (("frames", 16), ("height", 256), ("width", 256)):
        if getattr(args, key) is None:
            setattr(args, key, getattr(data, key) if data else fallback)


def cmd_synth(args, overrides: list[str]) -> None:
    from videosspo.synth import make_dataset

    if overrides:
        raise SystemExit(f"videosspo data synth: unknown arguments {overrides}")
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
    _prepare_data(config)
    model = build_model(config.model).to("cuda" if torch.cuda.is_available() else "cpu")
    model.latent_shape(config.data.frames, config.data.height, config.data.width)  # checks the VAE factor
    data = config.data
    dataset = VideoDataset(data.path, frames=data.frames, stride=data.stride, height=data.height, width=data.width)
    out = Path(args.out) if args.out else default_latent_dir(config)
    cache_latents(model, dataset, out, metadata=data.path)
    unreadable = len(json.loads((out / "cache_info.json").read_text())["unreadable"])
    print(f"wrote latents of {len(dataset) - unreadable} clips to {out} ({unreadable} unreadable, skipped); "
          f"train with --data.latent_cache {out}")


def cmd_demo(args, overrides: list[str]) -> None:
    """The embedded default: synthetic data if missing, a short tiny SSPO run, a summary."""
    args.config = str(DEMO_CONFIG)
    summary = cmd_train(args, overrides)
    from videosspo.config import load_config

    out = Path(load_config(args.config, overrides).train.output_dir)
    lines = [
        "videosspo demo: done",
        f"  method {summary['method']} on the tiny {summary['family']} model, {summary['steps']} steps "
        f"in {summary['seconds']} s (global batch {summary['global_batch']})",
        f"  loss {summary['first_loss']:.4g} -> {summary['last_loss']:.4g}; replay snapshots at steps {summary['replay_steps']}",
        f"  checkpoint:  {summary['checkpoint']}   (model/ inside is a diffusers layout)",
        f"  samples:     {', '.join(summary['samples'])}",
        "               (the tiny model starts from random weights, so its samples are noise: the demo exercises",
        "                the whole pipeline; real alignment starts from configs/animatediff_sspo.yaml)",
        f"  tensorboard: tensorboard --logdir {out / 'logs'}",
        f"  summary:     {out / 'summary.json'}",
        f"  next: videosspo sample --checkpoint {summary['checkpoint']} --prompt 'a blue circle moving up' --out demo.gif",
    ]
    text = "\n".join(lines)
    (out / "SUMMARY.txt").write_text(text + "\n")
    print(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="videosspo", description="SSPO alignment for text-to-video diffusion models.",
                                     epilog=OVERRIDE_HELP)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train with a YAML config (sft | dpo | sspo)", epilog=OVERRIDE_HELP)
    p.add_argument("--config", help="YAML config file (configs/*.yaml); omitted: all defaults")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="generate videos from a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (or its model/ folder)")
    p.add_argument("--prompt", required=True, action="append", help="text prompt; repeat for several")
    p.add_argument("--out", required=True, help="output .mp4 or .gif (numbered when several prompts)")
    p.add_argument("--frames", type=int, help="default: the checkpoint's training clips (else 16)")
    p.add_argument("--height", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--width", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale; <= 1 disables")
    p.add_argument("--scheduler", default="ddim", choices=["ddim", "ddpm", "euler", "dpm++"])
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt; prompt i uses seed + i")
    p.add_argument("--fps", type=int, default=8)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write a synthetic video world: coloured shapes moving, with captions")
    s.add_argument("--out", required=True, help="output folder (videos/ + metadata.jsonl)")
    s.add_argument("--n", type=int, default=64, help="number of clips")
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    s.add_argument("--fps", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--paired", action="store_true", help="also write a wrong 'loser' clip per caption (DPO data)")
    s.set_defaults(func=cmd_synth)
    s = data_sub.add_parser("cache-latents", help="encode every clip once with the model's VAE (data.latent_cache)",
                            epilog=OVERRIDE_HELP)
    s.add_argument("--config", help="YAML config file: its model and data sections are used")
    s.add_argument("--out", help="output folder (default: <data.path folder>/latents_<family>_<h>x<w>)")
    s.set_defaults(func=cmd_cache_latents)

    p = sub.add_parser("demo", help="synthetic data + a short SSPO run of the tiny AnimateDiff model on CPU",
                       epilog=OVERRIDE_HELP)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, rest = build_parser().parse_known_args(argv)
    _quiet_libraries()
    from videosspo.errors import UserError

    try:
        result = args.func(args, rest)
    except UserError as e:  # config, data, paths, disk: the message is the whole story (tracebacks are for bugs)
        print(f"videosspo {args.command}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    if args.command == "train" and result is not None:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
