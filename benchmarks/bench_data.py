"""Data benchmark: `VideoDataset.get` on a large clip and on a deep window of an MPEG-4 Part 2 .avi, today's
tree against a baseline revision (before exact-frame reading, decoded-frame counts and bounded-memory decoding).

    python benchmarks/bench_data.py                 # a 16-frame 4096x4096 mp4 (about a minute per side)
    python benchmarks/bench_data.py --quick         # 1024x1024 (seconds)
    python benchmarks/bench_data.py --baseline none --out /tmp/bench_data.json   # this tree only

Each side runs in a fresh subprocess (`PYTHONPATH` = its tree; Linux: VmHWM) and reports its peak RSS,
the first `get` (which, today, also counts the clip's frames by decoding it once) and a second `get`.
The .avi clip (mpeg4 with B-frames, 240 frames, each showing its number in black/white blocks) also
reports whether the frames returned are the frames asked for.
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

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_common import (  # noqa: E402
    ROOT,
    baseline_tree,  # noqa: E402
    table,
)
from videosspo.data import frame_indices  # noqa: E402

BASELINE = "c1e5cee"  # before the data fixes: decord everywhere, header counts, full-size decoding
TRAIN = {"frames": 16, "height": 64, "width": 64}
BLOCK = 16  # the numbered clip: 2 x 4 blocks of 16 px, the 8 bits of the frame number
SEED = 7  # the `get` seed: it picks the clip's window

# Runs inside each side's tree: one clip, two `get`s, the frame numbers seen (for the numbered clip).
CHILD = f"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from videosspo.data import VideoDataset
folder, frames, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ds = VideoDataset(folder, frames=frames, height=height, width=width)
times, items = [], []
for _ in range(2):
    t0 = time.perf_counter()
    items.append(ds.get(0, seed={SEED}))
    times.append(time.perf_counter() - t0)
pixels = ((items[0]["pixels"] + 1) * 127.5).round().numpy()  # c f h w
numbers = None
if pixels.shape[2:] == (2 * {BLOCK}, 4 * {BLOCK}):  # the numbered clip
    bits = pixels.reshape(3, frames, 2, {BLOCK}, 4, {BLOCK}).mean(axis=(0, 3, 5)) > 127
    numbers = (bits.reshape(frames, 8) * (1 << np.arange(8))).sum(axis=1).tolist()
# VmHWM, not ru_maxrss: a child's ru_maxrss starts at its parent's peak (Linux keeps it across fork and exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(json.dumps({{"first_get_s": times[0], "second_get_s": times[1], "numbers": numbers, "peak_rss_mb": peak_kb / 1024}}))
"""


def write_large(path: Path, frames: int, size: int) -> None:
    """Smooth colour waves, streamed frame by frame into an h264 mp4."""
    import av

    y, x = np.mgrid[:size, :size].astype(np.float32) * (4096 / size)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8, options={"preset": "ultrafast", "crf": "30"})
        stream.width = stream.height = size
        for k in range(frames):
            waves = np.stack([x / 300 + k, y / 400 - k, (x + y) / 500], axis=-1)
            container.mux(stream.encode(av.VideoFrame.from_ndarray((127 + 100 * np.sin(waves)).astype(np.uint8))))
        container.mux(stream.encode())


def write_numbered_avi(path: Path, frames: int) -> None:
    """MPEG-4 Part 2 with B-frames in an .avi; frame k shows k in 2 x 4 black/white blocks (32 x 64 px)."""
    import av

    bits = (np.arange(frames)[:, None] >> np.arange(8)) & 1
    clip = np.repeat(np.repeat(bits.reshape(frames, 2, 4).astype(np.uint8) * 255, BLOCK, 1), BLOCK, 2)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=8, options={"bf": "2"})
        stream.width, stream.height = 4 * BLOCK, 2 * BLOCK
        for frame in clip[..., None].repeat(3, axis=-1):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def run_side(tree: Path, folder: Path, frames: int, height: int, width: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder), str(frames), str(height), str(width)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{tree}: the child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a 1024x1024 clip instead of 4096x4096")
    parser.add_argument("--baseline", default=BASELINE, help="git revision to compare against, or none")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_data.json")
    args = parser.parse_args(argv)
    size = 1024 if args.quick else 4096

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sides = {"today": ROOT}
        if args.baseline != "none":
            sides[args.baseline] = baseline_tree(args.baseline, tmp / "baseline")
        clips = {
            f"mp4 {size}x{size}, 16 frames -> 64x64": ("large", "clip.mp4", TRAIN),
            "avi mpeg4 with B-frames, 16 of 240 frames": ("avi", "clip.avi", {"frames": 16, "height": 32, "width": 64}),
        }
        write_large(tmp / "large.mp4", 16, size)
        write_numbered_avi(tmp / "avi.avi", 240)
        rows = []
        for clip, (stem, name, train) in clips.items():
            folder = tmp / stem
            folder.mkdir()
            os.replace(tmp / f"{stem}{Path(name).suffix}", folder / name)
            (folder / "metadata.jsonl").write_text(json.dumps({"video": name, "caption": clip}) + "\n")
            for side, tree in sides.items():
                t0 = time.perf_counter()
                result = run_side(tree, folder, train["frames"], train["height"], train["width"])
                numbers = result.pop("numbers")
                wanted = frame_indices(240, train["frames"], 1, np.random.default_rng(SEED))  # the child's draw
                rows.append(
                    {
                        "clip": clip,
                        "side": side,
                        **result,
                        "process_s": time.perf_counter() - t0,
                        **(
                            {
                                "frames_asked": f"{wanted[0]}-{wanted[-1]}",
                                "frames_got": f"{numbers[0]}-{numbers[-1]}",
                                "frames_exact": numbers == wanted,
                            }
                            if stem == "avi"
                            else {}
                        ),
                    }
                )
    result = {"train": TRAIN, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        table(
            rows,
            [
                "clip",
                "side",
                "peak_rss_mb",
                "first_get_s",
                "second_get_s",
                "frames_asked",
                "frames_got",
                "frames_exact",
            ],
            title="VideoDataset.get (seconds; peak RSS of the whole process, torch included)",
        )
    )
    return result


if __name__ == "__main__":
    main()
