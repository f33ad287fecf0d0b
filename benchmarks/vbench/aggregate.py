"""VBench aggregation: per-dimension means, min-max normalisation, Quality / Semantic / Total,
and the VBench ``*_eval_results.json`` layout."""
from __future__ import annotations

import numpy as np

from .spec import (QUALITY_DIMS, SEMANTIC_DIMS, TOTAL_QUALITY_WEIGHT, TOTAL_SEMANTIC_WEIGHT,
                   VBENCH_DIMS)


def dimension_mean(rows: list[dict]) -> float | None:
    """Mean of a dimension's per-video scores, ignoring videos out of its scope (None)."""
    vals = [r["video_results"] for r in rows if r["video_results"] is not None]
    return float(np.mean(vals)) if vals else None


def eval_results(per_video: dict[str, list[dict]]) -> dict:
    """VBench's file: ``{dim: [mean, [{"video_path": ..., "video_results": s}, ...]]}``."""
    out = {}
    for dim, rows in per_video.items():
        scored = [r for r in rows if r["video_results"] is not None]
        if scored:
            out[dim] = [dimension_mean(scored), scored]
    return out


def normalised(raw: dict[str, float]) -> dict[str, float]:
    """VBench leaderboard scores: (raw - Min) / (Max - Min) * weight, for VBench dimensions only."""
    return {d: VBENCH_DIMS[d].normalise(v) * VBENCH_DIMS[d].weight
            for d, v in raw.items() if d in VBENCH_DIMS and v is not None}


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
            TOTAL_QUALITY_WEIGHT + TOTAL_SEMANTIC_WEIGHT)
    full_q, full_s = not q_missing, not s_missing
    return {
        "normalised": norm,
        "quality": quality if full_q else None,
        "semantic": semantic if full_s else None,
        "total": partial_total if full_q and full_s else None,
        "missing": {"quality": q_missing, "semantic": s_missing},
        "partial": {"quality": quality, "semantic": semantic, "total": partial_total,
                    "note": "over the dimensions present only; not comparable with VBench's numbers"},
    }
