"""Scorer registry: each dimension name maps to a factory that builds a :class:`Scorer`.

Clips are streamed: a scorer's ``start(prompt, meta)`` returns an :class:`Accumulator` for one
video, which is fed the clip's uint8 ``(h, w, 3)`` frames one at a time (``update``) and then gives
the video's score (``result``: a float, or ``None`` where the video is out of the dimension's
scope). So a clip is decoded once, its frames are shared by every dimension, and no dimension
holds the whole clip. Calling a scorer on whole clips, ``scorer(videos, prompts, meta) ->
(scores, info)``, feeds them through the same accumulators. Factories are cheap and raise
:class:`Unavailable` (with the reason and the fix) when a dimension cannot be computed here;
heavy models are loaded on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np


class Accumulator(Protocol):
    """One video's running state for one dimension; ``notes`` (optional) lands in its row."""

    def update(self, frame: np.ndarray) -> None: ...

    def result(self) -> float | None: ...


@dataclass(frozen=True)
class Scorer:
    """A dimension's scorer: ``start(prompt, meta)`` opens one video; ``info`` says how it is
    computed (``backend``, ``proxy``, ...)."""

    start: Callable[[str, dict], Accumulator]
    info: dict

    def __call__(self, videos: Iterable[np.ndarray], prompts, meta) -> tuple[list, dict]:
        """Score whole clips (uint8 ``(f, h, w, 3)``): one score per video and ``info``."""
        return (
            [feed(self.start(p, {"frames": len(v), **m}), v) for v, p, m in zip(videos, prompts, meta, strict=True)],
            dict(self.info),
        )


def feed(acc: Accumulator, frames: Iterable[np.ndarray]) -> float | None:
    """Push every frame into ``acc`` and return its result."""
    for frame in frames:
        acc.update(frame)
    return acc.result()


class Unavailable(Exception):
    """A dimension that cannot be computed here: reported as skipped, never as 0."""

    def __init__(self, reason: str, fix: str):
        super().__init__(reason)
        self.reason, self.fix = reason, fix


@dataclass(frozen=True)
class Refused:
    """The accumulator of a video a dimension cannot score (e.g. its prompt lacks the auxiliary
    info the dimension reads): the runner reports ``reason`` and ``fix`` for that video, and skips
    the dimension when no video has a score."""

    reason: str
    fix: str

    def update(self, frame):
        raise Unavailable(self.reason, self.fix)

    def result(self):
        return None


@dataclass
class ScorerContext:
    """What factories may use: the weights folder, the torch device and per-backend options."""

    weights: Path | None = None
    device: str = "cpu"
    batch_frames: int = 32  # frames per forward pass of a learned model
    options: dict = field(default_factory=dict)


def weight_file(ctx: ScorerContext, names) -> Path | None:
    """The first of ``names`` (paths relative to ``--weights``) that is a file there, else None."""
    if ctx.weights is None:
        return None
    return next((Path(ctx.weights) / n for n in names if (Path(ctx.weights) / n).is_file()), None)


FACTORIES: dict[str, Callable[[ScorerContext], Scorer]] = {}


def register(*names: str):
    """Decorator: register a factory under one or more dimension names."""

    def deco(factory):
        for name in names:
            FACTORIES[name] = factory
        return factory

    return deco


def build(names, ctx: ScorerContext) -> tuple[dict[str, Scorer], dict[str, dict]]:
    """Build the scorers for ``names``; return (scorers, skipped) with skipped = {name: {reason, fix}}."""
    from . import classical, learned, synthetic  # noqa: F401  (registers the factories)

    scorers, skipped = {}, {}
    for name in names:
        try:
            if name not in FACTORIES:
                raise Unavailable(f"unknown dimension {name!r}", "see --list-dims")
            scorers[name] = FACTORIES[name](ctx)
        except Unavailable as e:
            skipped[name] = {"reason": e.reason, "fix": e.fix}
    return scorers, skipped
