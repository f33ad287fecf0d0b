"""``--backend official``: delegate to the ``vbench`` package (VBench's own models and weights,
downloaded into ~/.cache/vbench on first use) and read back its ``*_eval_results.json``."""
from __future__ import annotations

import json
from pathlib import Path

from .runner import Evaluation
from .spec import ALL_DIMS


class OfficialUnavailable(RuntimeError):
    """The official backend was asked for but the ``vbench`` package cannot be imported."""


def run_official(videos_dir: Path, out_dir: Path, name: str, dims: list[str], full_info: str | None,
                 device: str) -> Evaluation:
    """Run ``vbench.VBench.evaluate`` on ``videos_dir`` and convert its results to an Evaluation.

    With a ``full_info`` file VBench's standard mode is used (``{prompt}-{index}.mp4`` names);
    without one, ``custom_input`` mode (prompts from the file names).
    """
    try:
        from vbench import VBench
    except ImportError as e:
        raise OfficialUnavailable(
            "--backend official needs the `vbench` package (pip install vbench) and network access "
            "on first use to fetch its weights into ~/.cache/vbench; offline, use the default "
            "project backend") from e
    from .inputs import vbench_full_info_path

    info = full_info if full_info and full_info != "vbench" else str(vbench_full_info_path())
    bench = VBench(device, info, str(out_dir))
    mode = "vbench_standard" if full_info else "custom_input"
    bench.evaluate(videos_path=str(videos_dir), name=name, dimension_list=[d for d in dims if d in ALL_DIMS],
                   mode=mode)
    return from_eval_results(Path(out_dir) / f"{name}_eval_results.json")


def from_eval_results(path: Path) -> Evaluation:
    """Rebuild per-video rows from a VBench ``{dim: [mean, [{video_path, video_results}]]}`` file."""
    results = json.loads(Path(path).read_text())
    rows: dict[str, dict] = {}
    for dim, (_, per_video) in results.items():
        for r in per_video:
            row = rows.setdefault(r["video_path"], {"video": r["video_path"], "prompt": "", "scores": {}})
            value = r["video_results"]
            row["scores"][dim] = float(value) if isinstance(value, (int, float)) else None
    infos = {d: {"backend": f"vbench (official, {ALL_DIMS[d].vbench_model})", "proxy": False}
             for d in results if d in ALL_DIMS}
    return Evaluation(rows=list(rows.values()), infos=infos)
