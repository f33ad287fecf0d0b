"""Write a run's outputs: VBench's ``{name}_eval_results.json``, ``summary.json`` and
``per_video.jsonl``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .aggregate import eval_results, final_scores
from .runner import Evaluation
from .spec import ALL_DIMS


def summarise(ev: Evaluation, name: str, dims, config: dict | None = None) -> dict:
    """The run's summary: raw and normalised score per dimension with its backend, skipped
    dimensions with reason and fix, and VBench's Quality / Semantic / Total where computable."""
    per_video = ev.per_video()
    raw = ev.dimension_means()
    skipped = dict(ev.skipped)
    for d in dims:
        if d not in skipped and raw.get(d) is None:
            skipped[d] = {
                "reason": "no video in this dimension's scope (single frames, prompts "
                "that do not list it, or captions it cannot parse)",
                "fix": "evaluate videos generated from prompts this dimension applies to",
            }
    raw = {d: v for d, v in raw.items() if v is not None}
    scores = final_scores(raw)
    dimensions = {
        d: {
            "raw": v,
            "normalised": scores["normalised"].get(d),
            "group": ALL_DIMS[d].group,
            "weight": ALL_DIMS[d].weight,
            "vbench_model": ALL_DIMS[d].vbench_model,
            "n_videos": sum(r["video_results"] is not None for r in per_video[d]),
            **_note_totals(ev.rows, d),
            **ev.infos[d],
        }
        for d, v in raw.items()
    }
    return {
        "name": name,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "n_videos": len(ev.rows),
        "requested": list(dims),
        "dimensions": dimensions,
        "skipped": skipped,
        "scores": scores,
        "errors": [{"video": r["video"], "error": r["error"]} for r in ev.rows if "error" in r],
        "samples": [r["video"] for r in ev.rows if "error" not in r][:4],
        "config": config or {},
    }


def _note_totals(rows: list[dict], dim: str) -> dict:
    """Per-video counts a dimension noted (e.g. ``flat_frames``), summed over the run."""
    totals: dict[str, int] = {}
    for r in rows:
        for k, v in r.get("notes", {}).get(dim, {}).items():
            totals[k] = totals.get(k, 0) + v
    return totals


def write_run(ev: Evaluation, out_dir: Path, name: str, dims, config: dict | None = None) -> dict:
    """Write the three files into ``out_dir`` and return the summary."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarise(ev, name, dims, config)
    raw = {d: row["raw"] for d, row in summary["dimensions"].items()}
    (out_dir / f"{name}_eval_results.json").write_text(
        json.dumps(
            eval_results({d: rows for d, rows in ev.per_video().items() if d in raw}, raw), indent=2, allow_nan=False
        )
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    with open(out_dir / "per_video.jsonl", "w") as f:
        for row in ev.rows:
            f.write(json.dumps(row, allow_nan=False) + "\n")
    return summary
