"""Score videos on the chosen dimensions, split across accelerate processes and gathered."""
from __future__ import annotations

from dataclasses import dataclass, field

from tqdm.auto import tqdm

from .inputs import video_fps
from .scorers import ScorerContext, build
from .spec import ALL_DIMS, VBENCH_DIMS


@dataclass
class Evaluation:
    """Per-video rows ``{"video", "prompt", "scores": {dim: float | None}}``, how each dimension
    was computed (``infos``) and the dimensions skipped with reason and fix."""

    rows: list[dict]
    infos: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, dict] = field(default_factory=dict)

    def per_video(self) -> dict[str, list[dict]]:
        """``{dim: [{"video_path", "video_results"}]}`` for every dimension that was scored."""
        return {dim: [{"video_path": r["video"], "video_results": r["scores"].get(dim)} for r in self.rows]
                for dim in self.infos}


def in_scope(item: dict, dim: str, n_frames: int) -> bool:
    """VBench scores its dimensions only on videos whose prompt lists them (when lists are given);
    single frames get only the image-applicable dimensions."""
    listed = item.get("dimensions")
    if listed is not None and dim not in listed and dim in VBENCH_DIMS:
        return False
    return n_frames > 1 or ALL_DIMS[dim].image_ok


def score_batch(items, scorers, infos) -> list[dict]:
    """Read a batch of videos and run every scorer on the videos in its scope."""
    from videosspo.video import VideoReadError, read_video

    rows, videos = [], []
    meta = [{**it, "fps": video_fps(it["video"])} for it in items]
    for it in items:
        row = {"video": it["video"], "prompt": it["prompt"], "scores": {}}
        try:
            videos.append(read_video(it["video"]))
        except (VideoReadError, FileNotFoundError) as e:
            row["error"] = str(e)
            videos.append(None)
        rows.append(row)
    for dim, scorer in scorers.items():
        idx = [i for i, v in enumerate(videos) if v is not None and in_scope(items[i], dim, len(v))]
        if not idx:
            continue
        scores, info = scorer([videos[i] for i in idx], [items[i]["prompt"] for i in idx], [meta[i] for i in idx])
        infos.setdefault(dim, info)
        for i, s in zip(idx, scores):
            rows[i]["scores"][dim] = s
    return rows


def evaluate(items: list[dict], dims, ctx: ScorerContext, batch_size: int = 4,
             progress: bool = True) -> Evaluation:
    """Score ``items`` on ``dims``. Under ``accelerate launch`` each process takes a contiguous
    share of the videos; rows and infos are gathered on every process in the original order."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    scorers, skipped = build(dims, ctx)
    rows, infos = [], {}
    with state.split_between_processes(items) as mine:
        batches = range(0, len(mine), batch_size)
        for b in tqdm(batches, desc="vbench", unit="batch", disable=not (progress and state.is_main_process)):
            rows += score_batch(mine[b:b + batch_size], scorers, infos)
    if state.num_processes > 1:
        rows = gather_object(rows)
        for part in gather_object([infos]):
            for k, v in part.items():
                infos.setdefault(k, v)
    return Evaluation(rows=rows, infos={d: infos[d] for d in dims if d in infos}, skipped=skipped)
