"""Synthetic-world dimensions: the exact scores of `videosspo/synth_scores.py` as VBench scorers, one per score.

Videos whose caption does not parse get ``None`` (out of scope), not 0.
"""

from __future__ import annotations

import functools

from .scorers import Scorer, ScorerContext, Unavailable, register


class Blobs:
    """Accumulator: the object of each frame, then one synthetic dimension's score."""

    def __init__(self, attrs: dict, dim: str, synth, scores):
        self.attrs, self.dim, self.synth, self.scores, self.blobs = attrs, dim, synth, scores, []

    def update(self, frame):
        self.blobs.append(self.scores.find_blob(frame))

    def result(self):
        return self.scores.score_blobs(self.blobs, self.attrs, self.synth.COLORS, self.synth.DIRECTIONS).get(self.dim)


class OutOfScope:
    """Accumulator of a video a dimension does not apply to (e.g. a caption that does not parse)."""

    def update(self, frame):
        pass

    def result(self):
        return None


def _synth():
    try:
        from videosspo import synth, synth_scores
    except ImportError as e:
        raise Unavailable(
            "videosspo.synth (the synthetic world) is not importable",
            "install the videosspo package (pip install -e .)",
        ) from e
    return synth, synth_scores


def make_synthetic(ctx: ScorerContext, dim: str):
    """Scorer for one synthetic dimension; prompts are parsed with ``synth.parse_caption``."""
    synth, scores = _synth()

    def start(prompt, meta):
        attrs = synth.parse_caption(prompt)
        return Blobs(attrs, dim, synth, scores) if attrs else OutOfScope()

    return Scorer(start, {"backend": "synthetic-world ground truth", "proxy": False})


for _dim in ("synthetic_color", "synthetic_shape", "synthetic_direction", "synthetic_persistence"):
    register(_dim)(functools.partial(make_synthetic, dim=_dim))
