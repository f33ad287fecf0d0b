"""Score videos on the chosen dimensions: each clip is decoded once and streamed through every
dimension's accumulator; clips are scored in parallel threads (``workers``) and split across
accelerate processes, gathered in the original order. VBench's static filter then decides which
videos temporal flickering is scored on."""

from __future__ import annotations

import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .aggregate import dimension_mean
from .inputs import IMAGE_EXTS, video_fps
from .scorers import Scorer, ScorerContext, Unavailable, build
from .spec import ALL_DIMS, FRAME_WEIGHTED, VBENCH_DIMS

VBENCH_SAMPLES = 5  # videos per prompt VBench scores; flickering keeps the first 5 static ones
STATIC_FILTER_MODES = ("auto", "on", "off")


@dataclass
class Evaluation:
    """Per-video rows ``{"video", "prompt", "scores": {dim: float | None}}`` (plus ``error``,
    ``notes``, ``static`` where they apply), how each dimension was computed (``infos``), the
    dimensions skipped with reason and fix, and dimension scores reported by the backend."""

    rows: list[dict]
    infos: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, dict] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)  # dimension scores a backend reported itself

    def per_video(self) -> dict[str, list[dict]]:
        """``{dim: [{"video_path", "video_results"}]}`` for every dimension that was scored."""
        return {
            dim: [{"video_path": r["video"], "video_results": r["scores"].get(dim)} for r in self.rows]
            for dim in self.infos
        }

    def dimension_means(self) -> dict[str, float]:
        """Each scored dimension's score as VBench computes it (None when no video has a score)."""
        out = {}
        for dim, rows in self.per_video().items():
            weights = (
                [r.get("notes", {}).get(dim, {}).get("frame_pairs", 0) for r in self.rows]
                if dim in FRAME_WEIGHTED
                else None
            )
            out[dim] = self.means.get(dim, dimension_mean(rows, weights))
        return out


def in_scope(item: dict, dim: str, image: bool) -> bool:
    """VBench scores its dimensions only on videos whose prompt lists them (when lists are given);
    still images get only the image-applicable dimensions."""
    listed = item.get("dimensions")
    if listed is not None and dim not in listed and dim in VBENCH_DIMS:
        return False
    return not image or ALL_DIMS[dim].image_ok


def score_clip(item: dict, scorers: dict[str, Scorer]) -> dict:
    """Decode ``item["video"]`` once, streaming its frames through every in-scope accumulator."""
    from videosspo.video import VideoReadError, iter_frames

    row = {"video": item["video"], "prompt": item["prompt"], "scores": {}}
    meta = {**item, "fps": video_fps(item["video"])}
    image = Path(item["video"]).suffix.lower() in IMAGE_EXTS
    accs = {d: s.start(item["prompt"], meta) for d, s in scorers.items() if in_scope(item, d, image)}
    try:
        for frame in iter_frames(item["video"]):
            for dim, acc in list(accs.items()):
                try:
                    acc.update(frame)
                except Unavailable as e:  # e.g. frames too small for a model: this video only
                    del accs[dim]
                    row.setdefault("unavailable", {})[dim] = f"{e.reason}; {e.fix}"
    except (VideoReadError, FileNotFoundError) as e:
        return {**row, "error": str(e)}
    for dim, acc in accs.items():
        value = acc.result()
        if dim == STATIC:
            row["static"] = value == 1.0
            continue
        row["scores"][dim] = value
        if getattr(acc, "notes", None):
            row.setdefault("notes", {})[dim] = dict(acc.notes)
    return row


STATIC = "_static"  # the static check runs as a pseudo-dimension next to temporal flickering


def static_filter_on(items: list[dict], mode: str) -> bool:
    """``on``/``off``, or ``auto``: on when some prompt has more than 5 videos in flickering's scope
    (VBench samples 25 per flickering prompt and keeps the static ones; with 5 per prompt there is
    nothing to choose from)."""
    if mode != "auto":
        return mode == "on"
    per_prompt = defaultdict(int)
    for it in items:
        if in_scope(it, "temporal_flickering", False):
            per_prompt[it["prompt"]] += 1
    return max(per_prompt.values(), default=0) > VBENCH_SAMPLES


def apply_static_filter(rows: list[dict]) -> tuple[int, int]:
    """VBench's ``static_filter.py`` selection: per prompt, in path order, flickering keeps the
    first 5 static videos; the others lose their flickering score. Returns (static, kept)."""
    kept, static = defaultdict(int), 0
    for row in sorted(rows, key=lambda r: r["video"]):
        if "temporal_flickering" not in row["scores"]:
            continue
        static += row.get("static", False)
        if row.get("static") and kept[row["prompt"]] < VBENCH_SAMPLES:
            kept[row["prompt"]] += 1
        else:
            row["scores"]["temporal_flickering"] = None
    return static, sum(kept.values())


def evaluate(
    items: list[dict],
    dims,
    ctx: ScorerContext,
    workers: int | None = None,
    static_filter: str = "auto",
    progress: bool = True,
) -> Evaluation:
    """Score ``items`` on ``dims`` with ``workers`` threads (default: the CPU cores). Under
    ``accelerate launch`` each process takes a contiguous share of the videos."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from .classical import StaticCheck, flow_backend

    state = PartialState()
    scorers, skipped = build(dims, ctx)
    filtered = "temporal_flickering" in scorers and static_filter_on(items, static_filter)
    if filtered:
        new_flow, flow_label, _ = flow_backend(ctx)
        scorers[STATIC] = Scorer(lambda p, m: StaticCheck(new_flow()), {"backend": flow_label})
    with state.split_between_processes(items) as mine:
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            rows = list(
                tqdm(
                    pool.map(lambda it: score_clip(it, scorers), mine),
                    total=len(mine),
                    desc="vbench",
                    unit="video",
                    disable=not (progress and state.is_main_process),
                )
            )
    if state.num_processes > 1:
        rows = gather_object(rows)
    infos = {d: dict(s.info) for d, s in scorers.items() if d in dims}
    if "temporal_flickering" in infos:
        note = static_filter_note(rows, filtered, scorers.get(STATIC))
        infos["temporal_flickering"]["static_filter"] = note
        if not any(r["scores"].get("temporal_flickering") is not None for r in rows):
            skipped["temporal_flickering"] = {
                "reason": f"static filter {note}",
                "fix": "sample more videos per flickering prompt "
                "(VBench: 25) or pass --static-filter off (then not comparable with VBench)",
            }
    for dim in infos:
        reasons = [r["unavailable"][dim] for r in rows if dim in r.get("unavailable", {})]
        if reasons and not any(r["scores"].get(dim) is not None for r in rows):
            skipped[dim] = {
                "reason": f"{len(reasons)} videos: {reasons[0].split('; ')[0]}",
                "fix": reasons[0].split("; ", 1)[-1],
            }
    infos = {d: i for d, i in infos.items() if any(r["scores"].get(d) is not None for r in rows)}
    return Evaluation(rows=rows, infos=infos, skipped=skipped)


def static_filter_note(rows: list[dict], filtered: bool, check: Scorer | None) -> str:
    """Apply the static filter to ``rows`` when ``filtered``; the label saying what was done."""
    if not filtered:
        return (
            "not applied: scored on every video, so not comparable with VBench's published "
            "flickering (VBench samples 25 videos per prompt and scores only static ones; "
            "--static-filter on applies the filter)"
        )
    static, kept = apply_static_filter(rows)
    total = sum("temporal_flickering" in r["scores"] for r in rows)
    return (
        f"applied ({check.info['backend']}): "
        f"{static} of {total} videos static, {kept} scored (at most {VBENCH_SAMPLES} per prompt)"
    )
