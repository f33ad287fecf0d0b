"""Generate the videos to evaluate from a videosspo checkpoint: seeded per (prompt, sample index),
batched, resumable (existing files are kept), split across accelerate processes."""

from __future__ import annotations

import zlib
from pathlib import Path

from tqdm.auto import tqdm


def video_name(prompt: str, index: int) -> str:
    """VBench's file name ``{prompt}-{index}.mp4`` ('/' cannot be in a file name: replaced by '_')."""
    return f"{prompt.replace('/', '_')}-{index}.mp4"


def sample_seed(prompt: str, index: int, seed: int) -> int:
    """A seed that depends only on (prompt, index, run seed): the same video whatever the prompt
    order, the batch or the number of processes."""
    return (zlib.crc32(prompt.encode()) + 1_000_003 * seed + index) % 2**31


def plan(prompts: list[dict], samples: int, out_dir: Path, flicker_samples: int | None = None) -> list[dict]:
    """One item per video to evaluate: ``{"video", "prompt", "dimensions", "auxiliary_info", "index"}``;
    ``flicker_samples`` videos for prompts that list temporal_flickering (VBench samples 25 and
    its static filter keeps 5), ``samples`` for the others."""

    def n(p):
        listed = p["dimensions"] is not None and "temporal_flickering" in p["dimensions"]
        return max(samples, flicker_samples or 0) if listed else samples

    return [
        {
            "video": str(Path(out_dir) / video_name(p["prompt"], i)),
            "prompt": p["prompt"],
            "dimensions": p["dimensions"],
            "auxiliary_info": p["auxiliary_info"],
            "index": i,
        }
        for p in prompts
        for i in range(n(p))
    ]


def generate_videos(
    checkpoint: str,
    items: list[dict],
    *,
    frames: int,
    height: int,
    width: int,
    steps: int = 25,
    guidance: float = 7.5,
    seed: int = 0,
    batch_size: int = 4,
    fps: int = 8,
    negative_prompt: str = "",
    progress: bool = True,
) -> None:
    """Write every missing ``item["video"]``; the checkpoint is only loaded when something is missing."""
    from accelerate import PartialState

    state = PartialState()
    with state.split_between_processes([it for it in items if not Path(it["video"]).is_file()]) as todo:
        if todo:
            _generate(
                checkpoint,
                todo,
                state.device,
                dict(
                    frames=frames,
                    height=height,
                    width=width,
                    steps=steps,
                    guidance=guidance,
                    negative_prompt=negative_prompt,
                ),
                seed,
                batch_size,
                fps,
                progress and state.is_main_process,
            )
    state.wait_for_everyone()


def _generate(checkpoint, todo, device, sample_kwargs, seed, batch_size, fps, progress) -> None:
    from models import load_model
    from videosspo.sampling import generate
    from videosspo.video import write_video

    model = load_model(checkpoint).to(device)
    Path(todo[0]["video"]).parent.mkdir(parents=True, exist_ok=True)
    for b in tqdm(range(0, len(todo), batch_size), desc="generating", unit="batch", disable=not progress):
        batch = todo[b : b + batch_size]
        pixels = generate(
            model,
            [it["prompt"] for it in batch],
            seeds=[sample_seed(it["prompt"], it["index"], seed) for it in batch],
            **sample_kwargs,
        )
        for it, video in zip(batch, pixels, strict=True):  # video: c f h w in [-1, 1]
            write_video(it["video"], video.cpu(), fps=fps)
