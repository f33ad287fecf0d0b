"""Do the evaluator's weight-free proxies rank real footage? Imaging quality (MUSIQ's proxy) on real
photographs clean, blurred, noisy and replaced by noise; dynamic degree (RAFT's proxy) on clips
filmed from them (pans, zoom, rotation: camera motion over a real scene) against static clips and
noise. Each score comes from the scorer ``vbench_eval.py`` builds (``scorers.build``, no weights),
on frames in memory and, with ``--mp4``, after an mp4 round trip through ``write_video`` /
``iter_frames`` as the CLI reads them.

    python benchmarks/proxy_ranking.py                      # this tree + the baseline (main before issue 19)
    python benchmarks/proxy_ranking.py --baseline none      # this tree only

The real frames are scikit-image's bundled photographs (in the wheel, no download): astronaut
(NASA, public domain), coffee (Rachel Michetti, CC0), chelsea (Stefan van der Walt, CC0), rocket
(SpaceX, public domain). Writes ``benchmarks/results/proxy_ranking.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from itertools import pairwise
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
BASELINE = "e581938"  # main before issue 19: Haar-noise imaging quality, flow without coherence test
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


# ----------------------------------------------------------------------------- real footage


def photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs, uint8 RGB."""
    import skimage.data

    return getattr(skimage.data, name)()


def camera(
    image: np.ndarray,
    frames: int = 16,
    size: tuple[int, int] = (256, 256),
    pan: float = 0.0,
    zoom: float = 1.0,
    turn: float = 0.0,
) -> np.ndarray:
    """A clip ``(frames, h, w, 3)`` filmed from a still photograph: a ``size`` window centred on it,
    moving ``pan`` px per frame to the right, zooming by ``zoom`` and turning ``turn`` degrees per
    frame about the centre (bilinear, mirrored at the photograph's border)."""
    import cv2

    (h, w), (ph, pw) = size, image.shape[:2]
    out = np.empty((frames, h, w, 3), np.uint8)
    for i in range(frames):
        m = cv2.getRotationMatrix2D((pw / 2, ph / 2), turn * i, zoom**i)
        m[:, 2] -= (pw / 2 - w / 2 + pan * i, ph / 2 - h / 2)
        out[i] = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def blurred(video: np.ndarray, sigma: float) -> np.ndarray:
    """Every frame Gaussian-blurred with ``sigma`` px."""
    import cv2

    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in video])


def noisy(video: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Independent Gaussian noise of ``sigma`` grey levels on every pixel, channel and frame."""
    rng = np.random.default_rng(seed)
    return np.clip(video + rng.normal(0, sigma, video.shape), 0, 255).astype(np.uint8)


def pure_noise(shape, seed: int = 0) -> np.ndarray:
    """i.i.d. uniform 0..255 noise: what an untrained generator can produce."""
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def smooth_noise(shape, sigma: float, seed: int = 0) -> np.ndarray:
    """Noise blurred with ``sigma`` px per frame, independent between frames (random blobs)."""
    import cv2

    raw = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)
    s = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in raw])
    return np.clip((s - s.mean()) / s.std() * 50 + 128, 0, 255).astype(np.uint8)


def hd_frame(image: np.ndarray) -> np.ndarray:
    """A soft 1280x720 frame: a 512x288 view of ``image`` upscaled 2.5x (bicubic), as footage
    filmed or decoded below its display size is; the proxy scores it resized to 512 px."""
    import cv2

    return cv2.resize(camera(image, 1, (288, 512))[0], (1280, 720), interpolation=cv2.INTER_CUBIC)


def quality_set(image: np.ndarray, size=(256, 256), frames: int = 4) -> dict[str, np.ndarray]:
    """A static view of ``image`` clean, blurred (sigma 1, 2 px), noisy (sigma 15, 30), and noise."""
    clean = camera(image, frames, size)
    return {
        "clean": clean,
        "blur1": blurred(clean, 1),
        "blur2": blurred(clean, 2),
        "noise15": noisy(clean, 15),
        "noise30": noisy(clean, 30),
        "pure_noise": pure_noise(clean.shape),
        "smooth_noise3": smooth_noise(clean.shape, 3),
    }


def motion_set(image: np.ndarray, size=(256, 256), frames: int = 16) -> dict[str, np.ndarray]:
    """Clips of ``image``: static (exact, with sensor noise sigma 3 and 30), panning 8 px/frame
    (above VBench's 6 px threshold at 256 px; also with noise sigma 30), zooming 4%/frame (top-5%
    flow about 6.5 px: at the threshold) and 6%/frame, turning 3 deg/frame, a 96 px patch of the
    mirrored photograph crossing the still view at 8 px/frame, and noise (i.i.d., and smooth blobs
    of 2, 3, 5 and 8 px independent between frames)."""
    still, pan = camera(image, frames, size), camera(image, frames, size, pan=8)
    patch, crossing = camera(image[:, ::-1], 1, (96, 96))[0], still.copy()
    for i, frame in enumerate(crossing):
        frame[80:176, 16 + 8 * i : 112 + 8 * i] = patch[:, : max(0, min(96, size[1] - 16 - 8 * i))]
    return {
        "static": still,
        "static_noise3": noisy(still, 3),
        "static_noise30": noisy(still, 30),
        "pan8": pan,
        "pan8_noise30": noisy(pan, 30),
        "zoom4": camera(image, frames, size, zoom=1.04),
        "zoom6": camera(image, frames, size, zoom=1.06),
        "turn": camera(image, frames, size, turn=3),
        "object8": crossing,
        "pure_noise": pure_noise(still.shape),
        **{f"smooth_noise{s}": smooth_noise(still.shape, s) for s in (2, 3, 5, 8)},
    }


# ----------------------------------------------------------------------------- scoring


def scorer(dim: str):
    """The weight-free scorer ``vbench_eval.py`` builds for ``dim``."""
    from benchmarks.vbench.scorers import ScorerContext, build

    scorers, skipped = build([dim], ScorerContext())
    if dim not in scorers:
        raise SystemExit(f"{dim} unavailable: {skipped[dim]}")
    return scorers[dim]


def score(dim: str, video: np.ndarray, fps: float = 8) -> float:
    """``dim``'s score of one clip, as the CLI computes it."""
    return scorer(dim)([video], ["a photo"], [{"fps": fps}])[0][0]


def mp4_round_trip(video: np.ndarray, folder: Path) -> np.ndarray:
    """``video`` written as mp4 and decoded again, as ``vbench_eval.py`` reads files."""
    from videosspo.video import iter_frames, write_video

    path = write_video(folder / "clip.mp4", video, fps=8)
    return np.stack(list(iter_frames(path)))


def haar_mad_sigma(gray: np.ndarray) -> float:
    """The noise estimate of the proxy before issue 19, for comparison: Donoho's median(|HH|) / 0.6745
    of the finest Haar diagonal coefficients."""
    g = gray[: gray.shape[0] // 2 * 2, : gray.shape[1] // 2 * 2]
    return float(np.median(np.abs(g[0::2, 0::2] - g[0::2, 1::2] - g[1::2, 0::2] + g[1::2, 1::2]) / 2)) / 0.6745


def top5_flow(video: np.ndarray) -> float:
    """Median over frame pairs of dynamic degree's per-pair statistic (top-5% flow, px at 256)."""
    from benchmarks.vbench import classical
    from benchmarks.vbench.scorers import feed

    acc = classical.DynamicDegree(8, classical.Flow())
    feed(acc, video)
    return float(np.median(acc.mags))


def smooth_noise_motion(seeds: int = 6, frames: int = 16) -> dict:
    """{blob sigma: share of clips that move, share of frame pairs over the threshold} for smooth
    noise that changes every frame, over ``seeds`` clips of ``frames`` frames at 256 px."""
    from benchmarks.vbench import classical
    from benchmarks.vbench.scorers import feed

    out = {}
    for sigma in (1, 2, 3, 5, 8, 12):
        moving, pairs = [], []
        for seed in range(seeds):
            acc = classical.DynamicDegree(8, classical.Flow())
            moving.append(feed(acc, smooth_noise((frames, 256, 256, 3), sigma, seed)))
            pairs += [m > 6.0 for m in acc.mags]
        out[str(sigma)] = {"moving_clips": float(np.mean(moving)), "pairs_over_threshold": float(np.mean(pairs))}
    return out


def noise_estimates() -> dict:
    """{image: {clean, noise10: {estimator: sigma}}} on the photographs and two CC0 textures, grey,
    with Gaussian noise of sigma 10 added to the grey frame for ``noise10``."""
    from benchmarks.vbench import classical

    out, rng = {}, np.random.default_rng(0)
    for name in (*PHOTOS, "grass", "gravel"):
        grey = photo(name).astype(np.float32)
        grey = grey.mean(-1) if grey.ndim == 3 else grey
        out[name] = {}
        for tag, g in (("clean", grey), ("noise10", grey + rng.normal(0, 10, grey.shape).astype(np.float32))):
            out[name][tag] = {"haar_mad": haar_mad_sigma(g)}
            if hasattr(classical, "noise_sigma"):
                out[name][tag]["noise_sigma"] = classical.noise_sigma(g)
    return out


def measure(mp4: bool) -> dict:
    """Scores of every clip of every photograph, {dim: {photo: {clip: {form: score}}}}, the median
    top-5% flow of the motion clips, and the noise estimates."""
    out = {"imaging_quality": {}, "dynamic_degree": {}, "top5_flow_px": {}}
    with tempfile.TemporaryDirectory() as tmp:
        forms = {"frames": lambda v: v, **({"mp4": lambda v: mp4_round_trip(v, Path(tmp))} if mp4 else {})}
        for name in PHOTOS:
            image = photo(name)
            sets = {"imaging_quality": {f"{k}@256": v for k, v in quality_set(image).items()}}
            hd = quality_set(hd_frame(image), (720, 1280), 2)
            sets["imaging_quality"].update({f"{k}@720p": v for k, v in hd.items()})
            sets["dynamic_degree"] = motion_set(image)
            for dim, clips in sets.items():
                out[dim][name] = {k: {form: score(dim, f(v)) for form, f in forms.items()} for k, v in clips.items()}
                print(dim, name, {k: v["frames"] for k, v in out[dim][name].items()}, flush=True)
            out["top5_flow_px"][name] = {k: {"frames": top5_flow(v)} for k, v in sets["dynamic_degree"].items()}
    out["noise_estimates"] = noise_estimates()
    out["smooth_noise_motion"] = smooth_noise_motion()
    return out


IQ_ORDER = ("clean", "blur1", "blur2", "noise30", "pure_noise")  # the ranking the tests require
MOVING = ("pan8", "pan8_noise30", "zoom6", "turn", "object8")
STILL = ("static", "static_noise3", "static_noise30", "pure_noise", "smooth_noise2", "smooth_noise3")


def ranking_checks(res: dict) -> dict:
    """Per check, the photographs (of 4) on which the ranking holds."""
    iq, dd = res["imaging_quality"], res["dynamic_degree"]
    out = {}
    for at in ("256", "720p"):
        for form in next(iter(iq.values()))["clean@256"]:
            out[f"imaging quality {' > '.join(IQ_ORDER)} @{at} {form}"] = sum(
                all(iq[p][f"{a}@{at}"][form] > iq[p][f"{b}@{at}"][form] for a, b in pairwise(IQ_ORDER)) for p in PHOTOS
            )
    for form in next(iter(dd.values()))["static"]:
        out[f"dynamic degree 1 on {', '.join(MOVING)}; 0 on {', '.join(STILL)} ({form})"] = sum(
            all(dd[p][k][form] == 1.0 for k in MOVING) and all(dd[p][k][form] == 0.0 for k in STILL) for p in PHOTOS
        )
    return out


# ----------------------------------------------------------------------------- report


def markdown(runs: dict, command: str) -> str:
    """Ranking checks per side, then per measure a table clip x side of the mean over photographs
    (and the range), then the noise estimates."""
    from benchmarks.bench_common import table

    lines = [
        f"# Weight-free proxies on real footage\n\nCommand: `{command}`\n",
        f"Photographs: {', '.join(PHOTOS)} (scikit-image's bundled data). Scores are the scorer "
        "`vbench_eval.py` builds without weights; each cell is the mean over the photographs, "
        "[min, max] after it; `mp4`: after an mp4 round trip. `top5_flow_px`: median over frame "
        "pairs of dynamic degree's statistic (VBench's threshold: 6 px at 256 px).\n",
    ]
    checks = {side: ranking_checks(res) for side, res in runs.items()}
    rows = [
        {"check (photographs of 4 where it holds)": c, **{side: checks[side][c] for side in runs}}
        for c in next(iter(checks.values()))
    ]
    lines.append(table(rows, list(rows[0]), title="rankings") + "\n")
    for dim in ("imaging_quality", "dynamic_degree", "top5_flow_px"):
        rows = []
        first = next(iter(runs.values()))[dim]
        for clip in next(iter(first.values())):
            row = {"clip": clip}
            for side, res in runs.items():
                for form in next(iter(res[dim].values()))[clip]:
                    vals = [res[dim][p][clip][form] for p in PHOTOS]
                    row[f"{side} {form}"] = f"{np.mean(vals):.3f} [{min(vals):.3f}, {max(vals):.3f}]"
            rows.append(row)
        lines.append(table(rows, list(rows[0]), title=dim) + "\n")
    rows = [
        {
            "blob sigma (px)": sigma,
            **{
                f"{side} {k}": f"{v:.2f}"
                for side, res in runs.items()
                for k, v in res["smooth_noise_motion"][sigma].items()
            },
        }
        for sigma in runs["now"]["smooth_noise_motion"]
    ]
    lines.append(
        table(
            rows,
            list(rows[0]),
            title="dynamic degree on smooth noise that changes every frame (6 seeds x 16 frames at 256 px)",
        )
        + "\n"
    )
    est = runs["now"]["noise_estimates"]
    rows = [
        {"image": name, "variant": tag, **{k: f"{v:.2f}" for k, v in vals.items()}}
        for name, tags in est.items()
        for tag, vals in tags.items()
    ]
    lines.append(table(rows, list(rows[0]), title="noise estimates (grey levels; noise10: sigma 10 added)") + "\n")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", default=BASELINE, help="git revision to compare with, or 'none'")
    p.add_argument("--no-mp4", dest="mp4", action="store_false", help="skip the mp4 round trip")
    p.add_argument("--out", type=Path, default=RESULTS / "proxy_ranking.json")
    p.add_argument("--side-json", type=Path, help=argparse.SUPPRESS)  # internal: measure this tree only
    args = p.parse_args(argv)
    if args.side_json:
        args.side_json.write_text(json.dumps(measure(args.mp4)))
        return 0
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline != "none":
            from benchmarks.bench_common import baseline_tree

            tree = baseline_tree(args.baseline, Path(tmp) / "baseline")
            side = Path(tmp) / "before.json"
            subprocess.run(
                [sys.executable, __file__, "--side-json", str(side), *([] if args.mp4 else ["--no-mp4"])],
                env={**__import__("os").environ, "PYTHONPATH": str(tree)},
                cwd=tree,
                check=True,
            )
            runs[f"before ({args.baseline})"] = json.loads(side.read_text())
        runs["now"] = measure(args.mp4)
    command = "python benchmarks/proxy_ranking.py " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": command.strip(), "photos": PHOTOS, "runs": runs}, indent=1))
    args.out.with_suffix(".md").write_text(markdown(runs, command.strip()))
    print(args.out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(Path.cwd()))
    sys.exit(main())
