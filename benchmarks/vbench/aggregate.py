"""VBench aggregation: per-dimension means, min-max normalisation, Quality / Semantic / Total,
and the VBench ``*_eval_results.json`` layout."""

from __future__ import annotations

import numpy as np

from .spec import PER_VIDEO_SCALE, QUALITY_DIMS, SEMANTIC_DIMS, TOTAL_QUALITY_WEIGHT, TOTAL_SEMANTIC_WEIGHT, VBENCH_DIMS


def dimension_mean(rows: list[dict], weights: list[float] | None = None) -> float | None:
    """(Weighted) mean of a dimension's per-video scores, ignoring videos out of its scope (None)."""
    weights = [1.0] * len(rows) if weights is None else weights
    pairs = [(r["video_results"], w) for r, w in zip(rows, weights, strict=True) if r["video_results"] is not None]
    if not pairs or not sum(w for _, w in pairs):
        return None
    return float(np.average([v for v, _ in pairs], weights=[w for _, w in pairs]))


def eval_results(per_video: dict[str, list[dict]], means: dict[str, float]) -> dict:
    """VBench's file: ``{dim: [mean, [{"video_path": ..., "video_results": s}, ...]]}``, with the
    dimension means given and per-video values on VBench's scale (imaging quality: 0..100)."""
    out = {}
    for dim, rows in per_video.items():
        scale = PER_VIDEO_SCALE.get(dim, 1.0)
        scored = [{**r, "video_results": r["video_results"] * scale} for r in rows if r["video_results"] is not None]
        if scored and dim in means:
            out[dim] = [means[dim], scored]
    return out


def normalised(raw: dict[str, float]) -> dict[str, float]:
    """VBench leaderboard scores: (raw - Min) / (Max - Min) * weight, for VBench dimensions only."""
    return {
        d: VBENCH_DIMS[d].normalise(v) * VBENCH_DIMS[d].weight
        for d, v in raw.items()
        if d in VBENCH_DIMS and v is not None
    }


def _group(norm: dict[str, float], dims) -> tuple[float | None, list[str]]:
    """Weighted mean of a group's normalised scores over the dims present, and the missing ones."""
    present = [d for d in dims if d in norm]
    missing = [d for d in dims if d not in norm]
    if not present:
        return None, missing
    return sum(norm[d] for d in present) / sum(VBENCH_DIMS[d].weight for d in present), missing


def final_scores(raw: dict[str, float]) -> dict:
    """Quality, Semantic and Total as VBench defines them, each None when a dimension is missing.

    ``partial`` holds the same arithmetic over the dimensions present only: it is *not* comparable
    with VBench's published numbers and is labelled so in reports.
    """
    norm = normalised(raw)
    quality, q_missing = _group(norm, QUALITY_DIMS)
    semantic, s_missing = _group(norm, SEMANTIC_DIMS)
    partial_total = None
    if quality is not None and semantic is not None:
        partial_total = (TOTAL_QUALITY_WEIGHT * quality + TOTAL_SEMANTIC_WEIGHT * semantic) / (
            TOTAL_QUALITY_WEIGHT + TOTAL_SEMANTIC_WEIGHT
        )
    full_q, full_s = not q_missing, not s_missing
    return {
        "normalised": norm,
        "quality": quality if full_q else None,
        "semantic": semantic if full_s else None,
        "total": partial_total if full_q and full_s else None,
        "missing": {"quality": q_missing, "semantic": s_missing},
        "partial": {
            "quality": quality,
            "semantic": semantic,
            "total": partial_total,
            "note": "over the dimensions present only; not comparable with VBench's numbers",
        },
        "vbench_script": vbench_script_scores(raw),
    }


def vbench_script_scores(raw: dict[str, float]) -> dict:
    """What VBench's ``scripts/cal_final_score.py`` prints for these results: a missing dimension
    counts as raw 0, normalised (0 - Min) / (Max - Min) (negative where Min > 0), and the Quality /
    Semantic / Total formulas run over all 16 regardless."""
    full = {d: raw.get(d, 0.0) for d in VBENCH_DIMS}
    norm = normalised(full)
    quality, _ = _group(norm, QUALITY_DIMS)
    semantic, _ = _group(norm, SEMANTIC_DIMS)
    total = (TOTAL_QUALITY_WEIGHT * quality + TOTAL_SEMANTIC_WEIGHT * semantic) / (
        TOTAL_QUALITY_WEIGHT + TOTAL_SEMANTIC_WEIGHT
    )
    return {
        "quality": quality,
        "semantic": semantic,
        "total": total,
        "zeroed": [d for d in VBENCH_DIMS if d not in raw],
        "note": "VBench's cal_final_score.py: missing dimensions count as 0",
    }
