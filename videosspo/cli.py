"""`videosspo` command line: the parser (every subcommand, flag and --help text), logging set-up, exit codes.

The commands themselves: `videosspo.commands`, `videosspo.demo`.

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
import sys
import warnings
from typing import get_args

from videosspo.commands import (
    cmd_cache_latents,
    cmd_config,
    cmd_estimate,
    cmd_pretrain_base,
    cmd_sample,
    cmd_synth,
    cmd_train,
    cmd_upgrade_checkpoints,
)
from videosspo.config import Sampler
from videosspo.demo import cmd_demo
from videosspo.errors import OneLineParser as Parser

OVERRIDE_HELP = """\
Any config key may follow as --section.key VALUE (e.g. --optim.lr 1e-5 --train.max_steps 50):
  videosspo config --list                                   every key, its default and meaning
  videosspo config --show X.yaml [--section.key VALUE ...]  the resolved config a run of X.yaml would use
Values are read as YAML: lists as --train.sample_prompts '["a red square moving left", "a blue circle"]'
or --optim.betas "[0.9, 0.99]", mappings as --model.schedule "{beta_schedule: scaled_linear}", null as null."""

TRAIN_HELP = (
    OVERRIDE_HELP
    + """

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
)

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


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = Parser(
        prog="videosspo",
        description="SSPO alignment for text-to-video diffusion models.",
        epilog=OVERRIDE_HELP,
        formatter_class=raw,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    # also accepted after the command (`videosspo train --verbose`); SUPPRESS keeps the top-level value otherwise
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    def add(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], formatter_class=raw, **kwargs)

    p = add(
        "train",
        help="train with a YAML config (sft | dpo | sspo)",
        epilog=TRAIN_HELP,
        usage="videosspo train [-h] [-v] [--config CONFIG] [--section.key VALUE ...]",
    )
    p.add_argument("--config", help="YAML config file (configs/*.yaml); omitted: all defaults")
    p.set_defaults(func=cmd_train)

    p = add(
        "sample",
        help="generate videos from a checkpoint",
        epilog="Writes metadata.jsonl (video, caption, seed) beside the clips: "
        "python benchmarks/vbench_eval.py --videos FOLDER scores them against their prompts.",
    )
    p.add_argument("--checkpoint", required=True, help="a checkpoint folder (or its model/ folder)")
    p.add_argument("--prompt", required=True, action="append", help="text prompt; repeat for several")
    p.add_argument("--out", required=True, help="output .mp4 or .gif (numbered when several prompts)")
    p.add_argument("--frames", type=int, help="default: the checkpoint's training clips (else 16)")
    p.add_argument("--height", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--width", type=int, help="default: the checkpoint's training clips (else 256)")
    p.add_argument("--steps", type=int, default=25, help="sampler steps (default 25)")
    p.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance scale; <= 1 disables")
    p.add_argument(
        "--guidance-2",
        type=float,
        default=None,
        help="wan22: the scale of the low-noise expert's steps (WanPipeline's guidance_scale_2; default --guidance)",
    )
    p.add_argument(
        "--scheduler",
        choices=list(get_args(Sampler)),
        help="default: the checkpoint's sample.scheduler (else ddim; flow-matching models: euler, unipc; "
        "CogVideoX: ddim, dpm)",
    )
    p.add_argument("--negative-prompt", default="")
    p.add_argument("--seed", type=int, default=0, help="seed of the first prompt; prompt i uses seed + i")
    p.add_argument("--fps", type=int, default=8)
    p.set_defaults(func=cmd_sample)

    p = add("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    s = data_sub.add_parser(
        "synth", parents=[common], help="write a synthetic video world: coloured shapes moving, with captions"
    )
    s.add_argument("--out", required=True, help="output folder (videos/ + metadata.jsonl)")
    s.add_argument("--n", type=int, default=64, help="number of clips")
    s.add_argument("--frames", type=int, default=16)
    s.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    s.add_argument("--fps", type=int, default=8)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--paired", action="store_true", help="also write a wrong 'loser' clip per caption (DPO data)")
    s.set_defaults(func=cmd_synth)
    s = data_sub.add_parser(
        "cache-latents",
        parents=[common],
        formatter_class=raw,
        epilog=OVERRIDE_HELP,
        help="encode every clip once with the model's VAE (data.latent_cache)",
    )
    s.add_argument("--config", help="YAML config file: its model and data sections are used")
    s.add_argument("--out", help="output folder (default: <data.path folder>/latents_<family>_<h>x<w>)")
    s.set_defaults(func=cmd_cache_latents)

    p = add(
        "pretrain-base",
        help="pre-train the synthetic world's base model (SFT on noisy web captions)",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--config", help="YAML config (default: configs/stacked_base.yaml)")
    p.set_defaults(func=cmd_pretrain_base)

    p = add(
        "demo",
        help="align the synthetic world's base model with SSPO; adherence before/after + GIFs",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--config", help="YAML config (default: configs/stacked_sspo.yaml)")
    p.set_defaults(func=cmd_demo)

    p = add(
        "estimate",
        help="expected peak GPU memory of one training step, by part (docs/low-memory.md)",
        epilog=OVERRIDE_HELP,
    )
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--gpu-gb", type=float, default=24.0, help="the GPU's memory: which switches make the run fit it")
    p.set_defaults(func=cmd_estimate)

    p = add("upgrade-checkpoints", help="make checkpoints of an older videosspo (no COMPLETE.json) resumable, in place")
    p.add_argument("run", help="the run folder (train.output_dir)")
    p.set_defaults(func=cmd_upgrade_checkpoints)

    p = add("config", help="list every config key (--list) or print a resolved config (--show)", epilog=OVERRIDE_HELP)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="every key: its default, type and meaning")
    what.add_argument(
        "--show",
        nargs="?",
        const="",
        metavar="CONFIG",
        help="the resolved config of CONFIG (omitted: the defaults) with any --section.key VALUE "
        "overrides applied, as YAML",
    )
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
