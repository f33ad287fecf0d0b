"""Evaluation benchmark: wall time, clips per minute and peak memory of ``vbench_eval.py`` on the
weight-free dimensions, today's tree against a baseline revision, on a long synthetic clip.

    python benchmarks/bench_eval.py                # one 795-frame 768x576 clip (minutes)
    python benchmarks/bench_eval.py --quick        # 48 frames, 2 clips (< 1 minute per side)
    python benchmarks/bench_eval.py --baseline none --out /tmp/bench_eval.json   # this tree only

Each side is the real CLI in a subprocess (``--dims temporal_flickering dynamic_degree
motion_smoothness imaging_quality``); the baseline runs from ``git archive BASELINE`` in a temporary
folder. Peak memory is the child's max RSS (``wait4``). The clip: a textured scene panning under a
moving square, 24 fps, written frame by frame (never held whole).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_common import ROOT, baseline_tree, table  # noqa: E402

DIMS = ("temporal_flickering", "dynamic_degree", "motion_smoothness", "imaging_quality")
BASELINE = "c1e5cee"  # before streaming: every frame held, each dimension at full resolution


def write_clip(path: Path, frames: int, height: int, width: int, fps: int = 24, seed: int = 0) -> Path:
    """A textured scene panning 2 px/frame with a square crossing it, streamed into an mp4."""
    import cv2
    import imageio.v2 as iio
    import numpy as np

    rng = np.random.default_rng(seed)
    pan = 2 * frames
    scene = sum(
        cv2.resize(
            rng.uniform(0, 255, (max(height // s, 2), max((width + pan) // s, 2), 3)).astype(np.float32),
            (width + pan, height),
            interpolation=cv2.INTER_CUBIC,
        )
        / 3
        for s in (4, 16, 64)
    )
    scene = np.clip(scene, 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with iio.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=1) as w:
        for i in range(frames):
            frame = scene[:, 2 * i : 2 * i + width].copy()
            x = (3 * i) % max(width - 64, 1)
            frame[height // 3 : height // 3 + 64, x : x + 64] = (220, 40, 40)
            w.append_data(frame)
    return path


def run_cli(tree: Path, videos: Path, out: Path, extra: list[str]) -> dict:
    """Run ``tree``'s vbench_eval.py; wall seconds, the child's peak RSS and its final line."""
    cmd = [
        sys.executable,
        "benchmarks/vbench_eval.py",
        "--videos",
        str(videos),
        "--out",
        str(out),
        "--dims",
        *DIMS,
        "--no-progress",
        "--no-report",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "scores": {d: r["raw"] for d, r in summary["dimensions"].items()},
        "final_line": stdout.strip().splitlines()[-1],
    }


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="48 frames, 2 clips")
    p.add_argument("--frames", type=int, help="frames per clip (default 795; 48 with --quick)")
    p.add_argument("--height", type=int, default=576)
    p.add_argument("--width", type=int, default=768)
    p.add_argument("--clips", type=int, help="clips scored per run (default 1; 2 with --quick)")
    p.add_argument("--baseline", default=BASELINE, help="git revision to compare with, or 'none'")
    p.add_argument("--out", type=Path, help="write the JSON here too")
    args = p.parse_args(argv)
    frames = args.frames or (48 if args.quick else 795)
    clips = args.clips or (2 if args.quick else 1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clip = write_clip(tmp / "clip.mp4", frames, args.height, args.width)
        videos = tmp / "videos"
        videos.mkdir()
        for i in range(clips):
            (videos / f"a red square over a panning scene-{i}.mp4").symlink_to(clip)
        sides = {"after": ROOT}
        if args.baseline != "none":
            sides = {"before": baseline_tree(args.baseline, tmp / "baseline"), **sides}
        runs = {name: run_cli(tree, videos, tmp / f"out_{name}", []) for name, tree in sides.items()}
    for r in runs.values():
        r["clips_per_min"] = 60.0 * clips / r["wall_s"]
    result = {
        "clip": {"frames": frames, "height": args.height, "width": args.width, "fps": 24, "clips": clips},
        "dims": list(DIMS),
        "baseline": args.baseline,
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }
    if "before" in runs:
        result["speedup"] = runs["before"]["wall_s"] / runs["after"]["wall_s"]
    rows = [
        {
            "side": k,
            "revision": args.baseline if k == "before" else "this tree",
            "wall_s": r["wall_s"],
            "clips_per_min": r["clips_per_min"],
            "peak_rss_mb": r["peak_rss_mb"],
        }
        for k, r in runs.items()
    ]
    print(json.dumps(result, indent=2))
    print(
        table(
            rows,
            ["side", "revision", "wall_s", "clips_per_min", "peak_rss_mb"],
            f"vbench_eval: {clips} x {frames}-frame {args.width}x{args.height} clip, {', '.join(DIMS)}",
        )
    )
    if "speedup" in result:
        print(f"\nspeed-up {result['speedup']:.1f}x")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
