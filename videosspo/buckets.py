"""Buckets (`data.buckets`): clips of several frame counts and aspect ratios in one run, one shape per global batch.

Each clip is assigned one bucket shape (frames, height, width) in pixels, once, from its probe:

    frames   the buckets whose frame count the clip holds at `data.stride` (winner and loser: the shorter);
             a clip shorter than every bucket takes the fewest frames (its last frame repeats, as without buckets)
    size     among those, the nearest aspect ratio |log(w/h) - log(W/H)|, then the most frames, then the
             larger area, then the order of the list; the clip is scaled to cover it and centre-cropped
             (a DPO loser at the same shape and frame indices as its winner)

`auto`: one frame count (`data.frames`) and, per aspect ratio found in the data, the size of about
`data.height x data.width` pixels with sides multiples of `max(16, size_multiple)`.

The stream (trainer's `StreamSampler`) stays a function of the position alone: an epoch permutes the
dataset (`rng.epoch_order`), splits it by bucket in that order, pads each bucket to a multiple of the
global batch G with its own first clips (wrapping), cuts it into chunks of G and permutes the chunks
(seeded by (seed, epoch)). Global batch d = positions [dG, (d+1)G) is one chunk, so every micro-batch of
every layout with that global batch has one shape, and N processes == 1 process and exact resume hold
as without buckets; every clip is seen each epoch, a few twice (epoch length: Σ_b ⌈n_b / G⌉ G).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from videosspo import rng
from videosspo.config import ConfigError, DataConfig
from videosspo.metadata import Record
from videosspo.video import VideoReadError, probe

log = logging.getLogger("videosspo.buckets")

Shape = tuple[int, int, int]  # frames, height, width (pixels)
AUTO_STEP = 16  # `auto` sizes: sides multiples of this (or of the family's size multiple, if larger)


@dataclass(frozen=True)
class Buckets:
    """The bucket shapes and each dataset index's bucket."""

    shapes: tuple[Shape, ...]
    of: tuple[int, ...]  # bucket of dataset index i

    def shape(self, index: int) -> Shape:
        return self.shapes[self.of[index]]

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """Clips per bucket."""
        return np.bincount(self.of, minlength=len(self.shapes))

    def length(self, chunk: int) -> int:
        """Positions per epoch: each bucket padded to a multiple of `chunk` (the global batch)."""
        return sum(math.ceil(n / chunk) * chunk for n in self.counts)

    def order(self, seed: int, epoch: int, chunk: int) -> np.ndarray:
        """The dataset index at each position of epoch `epoch`: chunks of `chunk` positions, one bucket each."""
        perm = rng.epoch_order(seed, epoch, len(self.of))
        of = np.asarray(self.of)
        chunks = []
        for b in range(len(self.shapes)):
            members = perm[of[perm] == b]  # in the epoch's order
            if len(members):
                padded = members[np.arange(math.ceil(len(members) / chunk) * chunk) % len(members)]
                chunks += list(padded.reshape(-1, chunk))
        shuffle = np.random.default_rng([seed, epoch, rng.PURPOSES["data"], 1]).permutation(len(chunks))
        return np.concatenate([chunks[i] for i in shuffle])


def nearest(clip: Shape, shapes: Sequence[Shape]) -> int:
    """The bucket of a clip holding `clip` = (usable frames, height, width): see the module doc."""
    frames, h, w = clip
    fitting = [i for i, s in enumerate(shapes) if s[0] <= frames] or [
        i for i, s in enumerate(shapes) if s[0] == min(s[0] for s in shapes)
    ]
    aspect = math.log(w / h)
    return min(
        fitting,
        key=lambda i: (
            round(abs(math.log(shapes[i][2] / shapes[i][1]) - aspect), 9),
            -shapes[i][0],
            -shapes[i][1] * shapes[i][2],
            i,
        ),
    )


def auto_size(h: int, w: int, area: int, step: int) -> tuple[int, int]:
    """The size of about `area` pixels with the aspect ratio of h x w, sides multiples of `step`."""
    ratio = w / h
    return (
        max(step, round(math.sqrt(area / ratio) / step) * step),
        max(step, round(math.sqrt(area * ratio) / step) * step),
    )


def clip_shape(record: Record, stride: int) -> Shape | None:
    """(usable frames at `stride`, height, width) of a row's clip (and loser), or None when it does not probe."""
    try:
        infos = [probe(p) for p in (record.video, record.loser_video) if p is not None]
    except VideoReadError:
        return None  # read (and counted as unreadable) like any other clip, in the first bucket
    frames = min(i.frames for i in infos)
    return (frames - 1) // stride + 1, infos[0].height, infos[0].width


def check_shape(model, shape: Shape, prefix: str = "") -> None:
    """Refuse in one line (ConfigError) a clip shape (frames, height, width) the model's family cannot take."""
    try:
        model.latent_shape(*shape)
    except ValueError as e:
        raise ConfigError(f"{prefix}{e}") from None


def plan(data: DataConfig, dataset, model) -> Buckets:
    """The buckets of `data.buckets` for `dataset`'s rows, each shape checked against the family's frames / size rule."""
    if hasattr(dataset, "shard_sizes"):
        raise ConfigError(
            f"data.buckets needs a metadata file (each clip probed once), but data.path {data.path!r} "
            "names WebDataset shards; unset data.buckets"
        )
    clips = [clip_shape(r, data.stride) for r in dataset.records]
    if data.buckets == "auto":
        step = max(AUTO_STEP, model.size_multiple)
        shapes = sorted(
            {(data.frames, *auto_size(c[1], c[2], data.height * data.width, step)) for c in clips if c is not None}
            or {(data.frames, data.height, data.width)}
        )
    else:
        shapes = list(data.buckets)
    for shape in shapes:
        check_shape(model, shape, f"data.buckets {list(shape)} (frames, height, width): ")
    of = tuple(0 if c is None else nearest(c, shapes) for c in clips)
    buckets = Buckets(tuple(shapes), of)
    log.info(
        "buckets (frames x height x width: clips): %s",
        ", ".join(f"{f}x{h}x{w}: {n}" for (f, h, w), n in zip(shapes, buckets.counts, strict=True)),
    )
    return buckets
