"""The alignment world end to end: data, base model, prompt-adherence scores of generated clips.

Shared by `videosspo pretrain-base`, `videosspo demo` and `benchmarks/alignment_study.py`:

    prepare(config)   the world's data (web/ + curated/, `synth.make_world` with the objects of
                      `synth.WORLDS[data.world]`) and the identity
                      latent cache of data.path, written when missing
    adherence(...)    sample prompts x seeds from a model and score each clip with the exact
                      synthetic-world scorers of `videosspo/synth_scores.py`
    paired(...)       two models' scores on the same clips (prompt, seed, initial noise): the mean
                      difference in adherence and its 95% t-interval over prompts
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from videosspo.config import Config, ConfigError
from videosspo.sampling import generate
from videosspo.synth import COLORS, DIRECTIONS, WORLDS, make_world, parse_caption
from videosspo.synth_scores import score_clip
from videosspo.video import to_uint8

log = logging.getLogger("videosspo.alignment")

ROOT = Path(__file__).resolve().parent.parent
# The committed base model (`videosspo pretrain-base`, see README "The base model"), in diffusers layout.
BASE_MODEL = ROOT / "assets" / "stacked_base"
BASE_CONFIG = ROOT / "configs" / "stacked_base.yaml"
ALIGN_CONFIG = ROOT / "configs" / "stacked_sspo.yaml"
SCORES = ("color", "shape", "direction", "persistence")


def world_root(config: Config) -> Path:
    """The world folder holding data.path (`<root>/web` or `<root>/curated`, or a metadata file in one)."""
    path = Path(config.data.path)
    split = path.parent if path.suffix in (".jsonl", ".csv") else path
    return split.parent


def prepare(config: Config, progress: bool = True) -> None:
    """Write the world (when data.path is missing) and the latent cache (when data.latent_cache is missing)."""
    from models import build_model
    from videosspo.data import VideoDataset
    from videosspo.latents import cache_latents

    data = config.data
    if data.world not in WORLDS:
        raise ConfigError(f"data.world {data.world!r} is not a synthetic world; choose one of {sorted(WORLDS)}")
    if not Path(data.path).exists():  # web/: data.synth_if_missing clips (default 4096); curated/: 1/16 of that
        n_web = data.synth_if_missing or 4096
        make_world(
            world_root(config),
            n_web=n_web,
            n_curated=max(8, n_web // 16),
            frames=data.frames,
            size=data.height,
            progress=progress,
            **WORLDS[data.world],
        )
    if data.latent_cache and not (Path(data.latent_cache) / "cache_info.json").is_file():
        model = build_model(config.model)
        dataset = VideoDataset(data.path, frames=data.frames, height=data.height, width=data.width)
        cache_latents(model, dataset, data.latent_cache, metadata=data.path, progress=progress)


def score_clips(videos: np.ndarray, prompts: list[str]) -> dict[str, np.ndarray]:
    """Per-clip exact scores `{color, shape, direction, persistence}` of uint8 clips `(n, f, h, w, 3)`."""
    rows = [score_clip(v, parse_caption(p), COLORS, DIRECTIONS) for v, p in zip(videos, prompts, strict=True)]
    return {k: np.array([r[f"synthetic_{k}"] for r in rows]) for k in SCORES}


@torch.no_grad()
def generate_clips(
    model,
    prompts: list[str],
    seeds: list[int],
    *,
    frames: int,
    size: int,
    steps: int = 20,
    guidance: float = 4.0,
    batch: int = 32,
) -> np.ndarray:
    """uint8 clips `(n, f, h, w, 3)` of `prompts[i]` from seed `seeds[i]`, in batches of `batch`."""
    model.unet.eval()
    out = []
    for k in range(0, len(prompts), batch):
        pixels = generate(
            model,
            prompts[k : k + batch],
            seeds=seeds[k : k + batch],
            frames=frames,
            height=size,
            width=size,
            steps=steps,
            guidance=guidance,
        )
        out += [to_uint8(v) for v in pixels.cpu()]
    return np.stack(out)


def adherence(model, prompts: list[str], seeds: list[int], **kwargs) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-clip scores `{score: (prompts, seeds)}` of every (prompt, seed) clip, and the clips `(prompts, seeds, f, h, w, 3)`.

    Seed s starts from the same initial noise in every model, so two models' clips are paired.
    """
    all_prompts = [p for p in prompts for _ in seeds]
    clips = generate_clips(model, all_prompts, [s for _ in prompts for s in seeds], **kwargs)
    scores = score_clips(clips, all_prompts)
    shape = (len(prompts), len(seeds))
    return {k: v.reshape(shape) for k, v in scores.items()}, clips.reshape(*shape, *clips.shape[1:])


def t_interval(values) -> tuple[float, float]:
    """Mean and half-width of the 95% Student-t interval of `values` (half-width nan for one value)."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    n, mean = len(values), float(values.mean())
    if n < 2:
        return mean, float("nan")
    return mean, float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n))


def paired(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict:
    """`after - before` in adherence (the mean of the four scores) on the same clips `(prompts, seeds)`.

    Returns the mean difference and the half-width of its 95% t-interval over prompts (a prompt's
    clips averaged first), and `verdict`: `better` / `worse` when the interval excludes 0, else `tied`.
    """
    diff = np.mean([after[k] - before[k] for k in SCORES], axis=0)  # (prompts, seeds)
    mean, half = t_interval(diff.mean(axis=1))
    verdict = "better" if mean - half > 0 else "worse" if mean + half < 0 else "tied"
    return {"mean": mean, "half": half, "verdict": verdict}


def side_by_side(*clips: np.ndarray, scale: int = 4, gap: int = 1) -> np.ndarray:
    """uint8 clips `(f, h, w, 3)` next to each other, `scale`x nearest-neighbour, `gap` white columns between."""
    f, h = clips[0].shape[:2]
    line = np.full((f, h, gap, 3), 255, np.uint8)
    joined = np.concatenate([part for clip in clips for part in (clip, line)][:-1], axis=2)
    return joined.repeat(scale, axis=1).repeat(scale, axis=2)


def forwards_per_step(config: Config) -> int:
    """UNet sample-forwards of one optimizer step, a backward counted as two forwards.

    Per sample: policy forward + backward on the winner (and on the loser for dpo/sspo), the
    reference's forward on the same inputs (dpo/sspo), and with sampled losers (sspo) their sampling by the
    reference (`LoserConfig`: steps x (2 with CFG) x strength, paid once per `loser.reuse` steps).
    """
    from videosspo.methods import get_method

    b, method, loser = config.optim.batch_size * config.optim.grad_accum, get_method(config.method.name), config.loser
    k = 2 if method.pairs else 1
    train = 3 * k + (k if method.reference != "none" else 0)
    losers = (
        round(loser.strength * loser.steps) * (2 if loser.guidance > 1 else 1) / loser.reuse
        if method.losers == "sampled"
        else 0
    )
    return round(b * (train + losers))
