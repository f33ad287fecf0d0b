"""The `videosspo` commands but the demo: each `cmd_*(args, overrides)` does one subcommand.

`videosspo.cli` parses the command line (and says what each flag means) and calls these; heavy libraries are
imported inside each command, so `videosspo --help` and a user error answer at once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


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
        raise PathError(
            f"data.path={str(path)!r} does not exist; give a folder of clips with metadata.jsonl "
            f"(see docs/your-own-videos.md), or write a synthetic one: videosspo data synth --out {path}"
        )
    frames = max(config.data.frames, (config.data.frames - 1) * config.data.stride + 1)
    print(
        f"data.path {path} is missing: writing {n} synthetic clips there (data.synth_if_missing: {n}"
        f"{f' in {source}' if source else ''}; for your own clips give --data.path DIR)"
    )
    make_dataset(
        path,
        n=n,
        frames=frames,
        height=config.data.height,
        width=config.data.width,
        paired=get_method(config.method.name).losers == "data",
    )


def cmd_train(args, overrides: list[str]) -> dict:
    from models import load_checked_config

    config = load_checked_config(args.config, overrides)
    _prepare_data(config, _given_data_path(overrides), args.config)
    return fit(config)


def fit(config, resumable: bool = True) -> dict:
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
        hint = (
            f"; resume with --train.resume latest (from {newest.name})"
            if newest
            else "; resume with --train.resume latest (no checkpoint yet: it starts over)"
            if resumable
            else ""
        )
        e.note = f"interrupted {step}{hint}"
        raise


def cmd_pretrain_base(args, overrides: list[str]) -> dict:
    """The synthetic world's base model: world data and latent cache when missing, then SFT on web/."""
    from models import load_checked_config
    from videosspo.alignment import BASE_CONFIG, prepare

    config = load_checked_config(args.config or BASE_CONFIG, overrides)
    prepare(config)
    summary = fit(config)
    print(
        f"base model: {summary['checkpoint']}/model ({summary['steps']} steps in {summary['seconds']} s); "
        f"align it with --model.pretrained {summary['checkpoint']}/model"
    )
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
        raise UserError(
            f"cannot sample {args.frames} frames of {args.height}x{args.width} in {args.steps} "
            f"{args.scheduler} steps from {args.checkpoint}: {e}"
        ) from e
    prompts = args.prompt
    seeds = [args.seed + i for i in range(len(prompts))]
    pixels = generate(
        model,
        prompts,
        frames=args.frames,
        height=args.height,
        width=args.width,
        seeds=seeds,
        steps=args.steps,
        guidance=args.guidance,
        guidance_2=args.guidance_2,
        negative_prompt=args.negative_prompt,
        scheduler=args.scheduler,
        progress=True,
    )
    out, rows = Path(args.out), []
    for i, video in enumerate(pixels.cpu()):
        path = out if len(prompts) == 1 else out.with_name(f"{out.stem}_{i:02d}{out.suffix}")
        write_video(path, video, fps=args.fps)
        rows.append({"video": path.name, "caption": prompts[i], "seed": seeds[i], "checkpoint": str(args.checkpoint)})
        print(f"wrote {path}  ({prompts[i]!r}, seed {seeds[i]})")
    print(
        f"captions in {write_captions(out.parent, rows)} (evaluate: python benchmarks/vbench_eval.py --videos "
        f"{out.parent} --out eval/NAME)"
    )


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
    from videosspo.checkpoint import CHECKPOINTS
    from videosspo.checkpoint_read import verify
    from videosspo.errors import PathError

    if not path.exists():
        raise PathError(
            f"--checkpoint {path} does not exist; give a checkpoint folder (runs/NAME/checkpoints/step_N) "
            f"or a model folder"
        )
    folder = path.parent if path.name == "model" else path
    if folder.parent.name == CHECKPOINTS or (folder / "trainer.json").is_file():
        verify(folder)


def _fill_from_checkpoint(args) -> None:
    """Unset --frames/--height/--width/--scheduler default to the checkpoint's training clips and sampler."""
    from videosspo.config import load_config

    folder = Path(args.checkpoint)
    saved = next((p for p in (folder / "config.yaml", folder.parent / "config.yaml") if p.is_file()), None)
    config = load_config(saved) if saved else None
    for key, section, fallback in (
        ("frames", "data", 16),
        ("height", "data", 256),
        ("width", "data", 256),
        ("scheduler", "sample", "ddim"),
    ):
        if getattr(args, key) is None:
            setattr(args, key, getattr(getattr(config, section), key) if config else fallback)


def cmd_synth(args, overrides: list[str]) -> None:
    from videosspo.synth import make_dataset

    no_overrides(overrides)
    path = make_dataset(
        args.out,
        n=args.n,
        frames=args.frames,
        height=args.size,
        width=args.size,
        fps=args.fps,
        seed=args.seed,
        paired=args.paired,
    )
    print(f"wrote {args.n} clips and metadata.jsonl to {path}")


def default_latent_dir(config) -> Path:
    """`<data.path folder>/latents_<family>_<h>x<w>`."""
    path = Path(config.data.path)
    folder = path.parent if path.suffix.lower() in (".jsonl", ".json", ".csv") else path
    return folder / f"latents_{config.model.family}_{config.data.height}x{config.data.width}"


def cmd_cache_latents(args, overrides: list[str]) -> None:
    import torch

    from models import build_model, load_checked_config
    from videosspo.data import VideoDataset
    from videosspo.latents import cache_latents

    config = load_checked_config(args.config, overrides)
    _prepare_data(config, _given_data_path(overrides), args.config)
    _quiet_diffusers()
    model = build_model(config.model).to("cuda" if torch.cuda.is_available() else "cpu")
    model.latent_shape(config.data.frames, config.data.height, config.data.width)  # checks the VAE factor
    data = config.data
    dataset = VideoDataset(data.path, frames=data.frames, stride=data.stride, height=data.height, width=data.width)
    out = Path(args.out) if args.out else default_latent_dir(config)
    cache_latents(model, dataset, out, metadata=data.path)
    unreadable = len(json.loads((out / "cache_info.json").read_text())["unreadable"])
    print(
        f"wrote latents of {len(dataset) - unreadable} clips to {out} ({unreadable} unreadable, skipped); "
        f"train with --data.latent_cache {out}"
    )


def cmd_estimate(args, overrides: list[str]) -> None:
    """Print the expected peak GPU memory of one step of the config, and the switches that fit --gpu-gb."""
    from models import load_checked_config
    from videosspo.memory import report

    print(report(load_checked_config(args.config, overrides), args.gpu_gb)[0])


def cmd_upgrade_checkpoints(args, overrides: list[str]) -> None:
    """Checkpoints of an earlier videosspo (no COMPLETE.json, or a pickled LR schedule): made current in place
    (`videosspo.upgrade`), under the run lock, so `--train.resume latest` takes them again."""
    from videosspo.errors import PathError
    from videosspo.runlock import RunLock
    from videosspo.upgrade import to_upgrade, upgrade

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


def cmd_config(args, overrides: list[str]) -> None:
    """`--list`: every key, its default and meaning; `--show [CONFIG]`: the config a run would use, as YAML."""
    import yaml

    from models import load_checked_config
    from videosspo.config_help import describe_keys

    if args.list:
        no_overrides(overrides)
        print(describe_keys())
        return
    config = load_checked_config(args.show or None, overrides)
    print(yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=False), end="")
