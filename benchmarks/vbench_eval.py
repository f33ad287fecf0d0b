"""VBench-style evaluation of text-to-video (and text-to-image) models, offline.

Examples
  # a folder of videos with metadata.jsonl / .csv (video, caption), or VBench names {prompt}-{index}.mp4
  python benchmarks/vbench_eval.py --videos runs/sspo/samples --out eval/sspo --name sspo
  # generate first from a checkpoint (resumable), 5 samples per prompt, VBench's prompt file
  python benchmarks/vbench_eval.py --checkpoint runs/sspo/checkpoints/step_00001000 --prompts VBench_full_info.json \\
      --samples 5 --frames 16 --height 256 --width 256 --out eval/sspo
  # model-based dimensions from local weights (see --list-dims for the folder layout)
  python benchmarks/vbench_eval.py --videos DIR --weights ~/vbench_weights --out eval/base
  # compare runs side by side (base vs SFT vs SSPO)
  python benchmarks/vbench_eval.py --compare eval/base eval/sft eval/sspo --out eval/compare
  # several processes: accelerate launch benchmarks/vbench_eval.py --videos DIR --out eval/x

Backends
  project (default): temporal_flickering is VBench's exact formula, scored (like VBench) only on
    static videos, the first 5 per prompt, when the static filter is on (--static-filter; auto = on
    when a prompt has more than 5 videos, VBench's protocol samples 25; otherwise the score is
    labelled "not applied"); dynamic_degree, motion_smoothness and the static filter use OpenCV
    optical flow (proxies for RAFT and AMT-S with VBench's thresholds and protocol; dynamic degree
    and the filter count only vectors that explain the frames, dynamic degree only transitive
    ones, so noise is not motion, though smooth blobs of 8 px or more changing every frame are);
    imaging_quality uses (1 - blur effect) x 2^(-noise sigma / 8) x naturalness on frames with
    longer side <= 512 (a proxy for MUSIQ that ranks clean > blurred > noisy > noise on real
    frames; docs/evaluation-proxies.md has the numbers and the limits); subject_consistency (DINO
    ViT-B/16), background_consistency and appearance_style (CLIP ViT-B/32) and aesthetic_quality
    (CLIP ViT-L/14 + LAION head) run through transformers from --weights; VBench's own MUSIQ,
    RAFT, AMT-S, ViCLIP (overall_consistency, temporal_style), UMT (human_action), Tag2Text
    (scene) and GRiT (object_class, multiple_objects, color, spatial_relationship; these five need
    --prompts VBench_full_info.json for each prompt's scene word, object, colour or relation)
    checkpoints load from --weights into ported modules (ViCLIP falls back to CLIP frame-text
    cosine, a labelled proxy). With every file and VBench's JSON all 16 dimensions are computed,
    so Quality, Semantic and Total are complete. Proxies are labelled in every output; a dimension that cannot be
    computed is reported as skipped with the reason and the fix, never as 0. Each clip is decoded
    once and streamed through every dimension; --workers clips are scored in parallel.
  official: runs the `vbench` package (pip install vbench; downloads weights on first use) in
    VBench's standard mode with --prompts VBench_full_info.json, else in its custom_input mode
    (without the six dimensions that mode refuses; prompts passed as its {file: prompt} map).

Scores: VBench's Quality / Semantic / Total when all 16 dimensions are present; otherwise the
partial scores over the dimensions present *and* what VBench's cal_final_score.py would print
(missing dimensions counted as 0), both labelled. The last line names unreadable videos;
--strict exits 1 when there are any.

Outputs (in --out): {name}_eval_results.json (VBench's format), summary.json (raw, normalised,
Quality / Semantic / Total or the missing dimensions), per_video.jsonl, report.md, report.html,
radar.png, frames.png; with --compare: compare.md, compare.html, compare_radar.png (only the
dimensions every run scored the same way).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.vbench import report  # noqa: E402
from benchmarks.vbench.inputs import IMAGE_EXTS, attach_prompt_info, collect_videos, load_prompts  # noqa: E402
from benchmarks.vbench.runner import STATIC_FILTER_MODES  # noqa: E402
from benchmarks.vbench.spec import ALL_DIMS  # noqa: E402
from videosspo.errors import DataError, OneLineParser, PathError, UserError  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = OneLineParser(prog="vbench_eval.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("inputs")
    src.add_argument("--videos", type=Path, help="folder of videos (or images for f = 1 models)")
    src.add_argument(
        "--metadata",
        type=Path,
        help="jsonl/csv with video, caption (default: "
        "metadata.jsonl/.csv in --videos, else VBench names {prompt}-{index}.mp4)",
    )
    src.add_argument("--checkpoint", help="videosspo checkpoint: generate the videos first into OUT/videos")
    src.add_argument(
        "--prompts",
        help="prompt list: text file (one a line), VBench_full_info.json, or "
        "'vbench' for the installed package's file; with --videos it attaches VBench's "
        "per-prompt dimension lists and auxiliary info (scene, object, colour, relation)",
    )
    src.add_argument("--limit", type=int, help="evaluate only the first N videos (quick runs)")
    gen = p.add_argument_group("generation (with --checkpoint)")
    gen.add_argument("--samples", type=int, default=5, help="videos per prompt (VBench: 5)")
    gen.add_argument(
        "--flicker-samples",
        type=int,
        default=25,
        help="videos per prompt that lists temporal_flickering in VBench's JSON (VBench: 25, "
        "of which its static filter keeps 5)",
    )
    gen.add_argument("--frames", type=int, default=16)
    gen.add_argument("--height", type=int, default=256)
    gen.add_argument("--width", type=int, default=256)
    gen.add_argument("--steps", type=int, default=25)
    gen.add_argument("--guidance", type=float, default=7.5)
    gen.add_argument(
        "--seed", type=int, default=0, help="run seed; each video's seed also depends on its prompt and index"
    )
    gen.add_argument("--gen-batch", type=int, default=4)
    gen.add_argument("--fps", type=int, default=8)
    ev = p.add_argument_group("evaluation")
    ev.add_argument(
        "--dims",
        nargs="+",
        default=None,
        metavar="DIM",
        help="dimensions (default: all 16 VBench + synthetic; for images, the image-applicable ones)",
    )
    ev.add_argument("--backend", choices=("project", "official"), default="project")
    ev.add_argument(
        "--weights",
        type=Path,
        help="folder with dino_vitb16/, clip_vit_b32/, clip_vit_l14/ "
        "(transformers save_pretrained) and sa_0_4_vit_l_14_linear.pth",
    )
    ev.add_argument("--flow", choices=("dis", "farneback"), default="dis", help="OpenCV optical flow")
    ev.add_argument("--device", default=None, help="torch device for learned models (default: accelerate's)")
    ev.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="clips scored in parallel threads (default: the CPU cores)"
    )
    ev.add_argument(
        "--static-filter",
        choices=STATIC_FILTER_MODES,
        default="auto",
        help="VBench's static filter for temporal_flickering (score only static videos, the "
        "first 5 per prompt); auto: on when a prompt has more than 5 videos",
    )
    ev.add_argument("--no-progress", action="store_true")
    out = p.add_argument_group("outputs")
    out.add_argument("--out", type=Path, help="output folder")
    out.add_argument("--name", default=None, help="run name (default: the output folder's name)")
    out.add_argument("--compare", nargs="+", type=Path, metavar="RUN", help="run folders (summary.json) to compare")
    out.add_argument("--no-report", action="store_true")
    out.add_argument("--strict", action="store_true", help="exit with status 1 when a video cannot be read")
    p.add_argument("--list-dims", action="store_true", help="list the dimensions and exit")
    args = p.parse_args(argv)
    if not args.list_dims:
        if args.out is None:
            p.error("--out is required")
        if not (args.videos or args.checkpoint or args.compare):
            p.error("give --videos, --checkpoint (with --prompts) or --compare")
        if args.checkpoint and not args.prompts:
            p.error("--checkpoint needs --prompts")
        bad = [d for d in args.dims or [] if d not in ALL_DIMS]
        if bad:
            p.error(f"unknown dimensions {bad}; see --list-dims")
    return args


def check_paths(args) -> None:
    """Every path the user named exists (one line naming it and the fix, exit 2), before anything is loaded."""
    if args.videos and not args.checkpoint and not args.videos.is_dir():
        raise PathError(
            f"--videos {args.videos} {'is not a folder' if args.videos.exists() else 'does not exist'}; "
            f"give the folder of clips (with metadata.jsonl: video, caption)"
        )
    if args.checkpoint and not Path(args.checkpoint).exists():
        raise PathError(
            f"--checkpoint {args.checkpoint} does not exist; give a checkpoint folder (runs/NAME/checkpoints/step_N)"
        )
    for flag, path in (("--metadata", args.metadata), ("--prompts", args.prompts)):
        if path and path != "vbench" and not Path(path).is_file():
            raise PathError(f"{flag} {path} does not exist")
    if args.weights and not args.weights.is_dir():
        raise PathError(f"--weights {args.weights} is not a folder (see --list-dims for what it may hold)")
    for run in args.compare or []:
        if not (run / "summary.json").is_file() and not (run.is_file() and run.suffix == ".json"):
            raise PathError(
                f"--compare {run}: no summary.json {'in it' if run.is_dir() else '(no such folder)'}; "
                f"evaluate it first: python benchmarks/vbench_eval.py --videos DIR --out {run}"
            )


def list_dims() -> str:
    from benchmarks.vbench import learned

    lines = [f"{'dimension':24} {'group':9} {'VBench model':32} image"]
    lines += [f"{d.name:24} {d.group:9} {d.vbench_model:32} {'yes' if d.image_ok else ''}" for d in ALL_DIMS.values()]
    return "\n".join(lines) + "\n\n" + learned.__doc__


def default_dims(items: list[dict]) -> list[str]:
    """All dimensions, or only the image-applicable ones when every input is an image."""
    images = all(Path(it["video"]).suffix.lower() in IMAGE_EXTS for it in items)
    return [d for d, s in ALL_DIMS.items() if s.image_ok or not images]


def gather_items(args) -> list[dict]:
    """The videos to score: generated from --checkpoint, or found in --videos."""
    prompts = load_prompts(args.prompts) if args.prompts else None
    if args.checkpoint:
        from benchmarks.vbench.generate import generate_videos, plan

        items = plan(prompts, args.samples, args.videos or args.out / "videos", args.flicker_samples)[: args.limit]
        generate_videos(
            args.checkpoint,
            items,
            frames=args.frames,
            height=args.height,
            width=args.width,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            batch_size=args.gen_batch,
            fps=args.fps,
            progress=not args.no_progress,
        )
        return items
    try:
        items = collect_videos(args.videos, args.metadata, args.limit)
    except FileNotFoundError as e:  # no videos in the folder, or a video the metadata names is missing
        raise PathError(str(e)) from None
    except (KeyError, ValueError) as e:  # a row without video / caption, or a line that is not JSON
        raise DataError(
            f"the metadata of {args.videos} cannot be read ({type(e).__name__}: {e}); each row needs "
            f"video (relative to the file) and caption"
        ) from None
    return attach_prompt_info(items, prompts) if prompts else items


def evaluate_run(args, name: str) -> dict | None:
    """Score the run and write its files; returns the summary on the main process."""
    from accelerate import PartialState

    from benchmarks.vbench.results import write_run
    from benchmarks.vbench.runner import evaluate
    from benchmarks.vbench.scorers import ScorerContext

    state = PartialState()
    if args.backend == "official":
        from benchmarks.vbench.official import check_available, run_official

        check_available()  # before any video is generated
    items = gather_items(args)
    dims = args.dims or default_dims(items)
    if args.backend == "official":
        ev = run_official(
            items,
            args.videos or args.out / "videos",
            args.out,
            name,
            dims,
            args.prompts,
            args.device or str(state.device),
        )
    else:
        ctx = ScorerContext(weights=args.weights, device=args.device or str(state.device), options={"flow": args.flow})
        ev = evaluate(
            items, dims, ctx, workers=args.workers, static_filter=args.static_filter, progress=not args.no_progress
        )
    if not state.is_main_process:
        return None
    config = {k: str(v) for k, v in vars(args).items() if v is not None}
    return write_run(ev, args.out, name, dims, config)


def main(argv=None) -> int:
    """Exit codes: 0 done, 1 unreadable videos with --strict (or a bug: a traceback), 2 a user error (one line),
    130 / 143 interrupted (Ctrl-C / SIGTERM)."""
    from benchmarks.vbench.official import OfficialUnavailable
    from videosspo.interrupt import stop_on_signals

    args = parse_args(argv)
    if args.list_dims:
        print(list_dims())
        return 0
    try:
        with stop_on_signals():
            return run(args)
    except (UserError, OfficialUnavailable) as e:
        print(f"vbench_eval.py: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("vbench_eval.py: interrupted (generated videos are kept: the same command resumes)", file=sys.stderr)
        return getattr(e, "exit_code", 130)


def run(args) -> int:
    check_paths(args)
    name = args.name or args.out.resolve().name
    summary = evaluate_run(args, name) if (args.videos or args.checkpoint) else None
    if summary is not None and not args.no_report:
        report.write_report(summary, args.out)
    if args.compare:
        summaries = [report.load_summary(r) for r in args.compare] + ([summary] if summary else [])
        written = report.write_comparison(summaries, args.out)
        table = [line for line in written["md"].read_text().splitlines() if line and not line.startswith("![")]
        print("\n".join(table[1:]))  # the note and the table, without the title and the radar chart
        print(f"comparison of {', '.join(s['name'] for s in summaries)} -> {written['md']}, {written['html']}")
    if summary is None:
        return 0
    print(final_line(summary, args.out))
    return 1 if args.strict and summary["errors"] else 0


def _pct(v) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def final_line(summary: dict, out: Path) -> str:
    """The run in one line: VBench's scores (or the partial ones and what VBench's script would
    print, both labelled), what was scored and skipped, and the unreadable videos."""
    s, v = summary["scores"], summary["scores"]["vbench_script"]
    if s["total"] is not None:
        scores = f"quality {_pct(s['quality'])}, semantic {_pct(s['semantic'])}, total {_pct(s['total'])}"
    else:
        p = s["partial"]
        scores = (
            f"partial (dimensions present only) quality {_pct(p['quality'])}, semantic "
            f"{_pct(p['semantic'])}, total {_pct(p['total'])}; VBench's cal_final_score would print "
            f"total {_pct(v['total'])} ({len(v['zeroed'])} missing dimensions counted as 0)"
        )
    line = f"{summary['name']}: {scores}; scored {len(summary['dimensions'])}, skipped {len(summary['skipped'])}"
    errors = summary["errors"]
    if errors:
        names = ", ".join(Path(e["video"]).name for e in errors[:UNREADABLE_SHOWN])
        line += f"; {len(errors)} unreadable videos ({names}{', ...' if len(errors) > UNREADABLE_SHOWN else ''})"
    return f"{line} -> {out}"


UNREADABLE_SHOWN = 3  # unreadable videos named on the final line


if __name__ == "__main__":
    sys.exit(main())
