"""VBench's 16 dimensions with the leaderboard's normalisation range and weight.

Numbers are VBench's (see shared/VBENCH_FACTS.md); the synthetic-world dimensions are this
project's own and never enter VBench's Quality / Semantic / Total.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DimSpec:
    """One dimension: its VBench group, min-max normalisation range, weight and VBench's model."""

    name: str
    group: str  # "quality" | "semantic" | "synthetic"
    lo: float
    hi: float
    weight: float
    vbench_model: str
    image_ok: bool = False  # meaningful for single-frame outputs

    def normalise(self, raw: float) -> float:
        """VBench's (raw - Min) / (Max - Min), unweighted."""
        return (raw - self.lo) / (self.hi - self.lo)


def _q(name, lo, hi, weight, model, image_ok=False):
    return DimSpec(name, "quality", lo, hi, weight, model, image_ok)


def _s(name, lo, hi, model, image_ok=False):
    return DimSpec(name, "semantic", lo, hi, 1.0, model, image_ok)


VBENCH_DIMS: dict[str, DimSpec] = {
    d.name: d
    for d in (
        _q("subject_consistency", 0.1462, 1.0, 1.0, "DINO ViT-B/16"),
        _q("background_consistency", 0.2615, 1.0, 1.0, "CLIP ViT-B/32"),
        _q("temporal_flickering", 0.6293, 1.0, 1.0, "none"),
        _q("motion_smoothness", 0.706, 0.9975, 1.0, "AMT-S"),
        _q("dynamic_degree", 0.0, 1.0, 0.5, "RAFT"),
        _q("aesthetic_quality", 0.0, 1.0, 1.0, "LAION aesthetic (CLIP ViT-L/14)", image_ok=True),
        _q("imaging_quality", 0.0, 1.0, 1.0, "MUSIQ (SPAQ)", image_ok=True),
        _s("object_class", 0.0, 1.0, "GRiT"),
        _s("multiple_objects", 0.0, 1.0, "GRiT"),
        _s("human_action", 0.0, 1.0, "UMT"),
        _s("color", 0.0, 1.0, "GRiT"),
        _s("spatial_relationship", 0.0, 1.0, "GRiT"),
        _s("scene", 0.0, 0.8222, "Tag2Text"),
        _s("appearance_style", 0.0009, 0.2855, "CLIP ViT-B/32", image_ok=True),
        _s("temporal_style", 0.0, 0.364, "ViCLIP"),
        _s("overall_consistency", 0.0, 0.364, "ViCLIP"),
    )
}

QUALITY_DIMS = tuple(n for n, d in VBENCH_DIMS.items() if d.group == "quality")
SEMANTIC_DIMS = tuple(n for n, d in VBENCH_DIMS.items() if d.group == "semantic")

# Project-specific dimensions: ground truth from the synthetic world's captions, range 0..1.
SYNTHETIC_DIMS: dict[str, DimSpec] = {
    d.name: d
    for d in (
        DimSpec("synthetic_color", "synthetic", 0.0, 1.0, 1.0, "none", image_ok=True),
        DimSpec("synthetic_shape", "synthetic", 0.0, 1.0, 1.0, "none", image_ok=True),
        DimSpec("synthetic_direction", "synthetic", 0.0, 1.0, 1.0, "none"),
        DimSpec("synthetic_persistence", "synthetic", 0.0, 1.0, 1.0, "none"),
    )
}

# A text-image agreement score for f = 1 models (CLIP ViT-B/32 cosine, not a VBench dimension).
EXTRA_DIMS: dict[str, DimSpec] = {
    "clip_score": DimSpec("clip_score", "extra", 0.0, 1.0, 1.0, "CLIP ViT-B/32", image_ok=True),
}

ALL_DIMS: dict[str, DimSpec] = {**VBENCH_DIMS, **SYNTHETIC_DIMS, **EXTRA_DIMS}

TOTAL_QUALITY_WEIGHT, TOTAL_SEMANTIC_WEIGHT = 4.0, 1.0  # Total = (4 Q + 1 S) / 5

# VBench stores per-video imaging quality on 0..100 (MUSIQ's scale) and its dimension mean on 0..1.
PER_VIDEO_SCALE = {"imaging_quality": 100.0}

# VBench averages these over all frames of all videos (sum of per-frame similarities / frame count),
# not per video first: per-video scores are weighted by their frame pairs (``notes["frame_pairs"]``).
FRAME_WEIGHTED = ("subject_consistency", "background_consistency")
