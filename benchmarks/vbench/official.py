"""``--backend official``: delegate to the ``vbench`` package (VBench's own models and weights,
downloaded into ~/.cache/vbench on first use) and read back its ``*_eval_results.json``.

VBench's modes (``VBench.evaluate(mode=...)``):
  vbench_standard  prompts and per-prompt dimension lists (and the auxiliary info that object
                   class, multiple objects, colour, spatial relationship, scene and appearance
                   style need) from ``VBench_full_info.json``; videos named ``{prompt}-{0..4}.mp4``.
                   Used when ``--prompts`` is VBench's JSON file (or ``vbench``).
  custom_input     any videos, prompts from a ``{file name: prompt}`` map (written to
                   ``OUT/{name}_prompts.json``, the format of VBench's ``--prompt_file``); VBench
                   refuses the six dimensions above here, so they are skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

from .runner import Evaluation
from .spec import ALL_DIMS, PER_VIDEO_SCALE, VBENCH_DIMS

# VBench.check_dimension_requires_extra_info: not allowed in custom_input mode
NEEDS_FULL_INFO = ("object_class", "multiple_objects", "scene", "appearance_style", "color", "spatial_relationship")


class OfficialUnavailable(RuntimeError):
    """The official backend was asked for but the ``vbench`` package cannot be imported."""


def check_available():
    """The ``vbench.VBench`` class, or OfficialUnavailable (checked before any video is generated)."""
    try:
        from vbench import VBench
    except ImportError as e:
        raise OfficialUnavailable(
            "--backend official needs the `vbench` package (pip install vbench) and network access "
            "on first use to fetch its weights into ~/.cache/vbench; offline, use the default "
            "project backend"
        ) from e
    return VBench


def plan_official(dims: list[str], prompts: str | None) -> tuple[str, list[str], dict[str, dict]]:
    """(mode, dimensions to run, skipped) for the requested ``dims``: VBench's standard mode when
    ``prompts`` is its JSON file, else custom_input without the dimensions it refuses."""
    dims = [d for d in dims if d in VBENCH_DIMS]
    if prompts == "vbench" or (prompts and Path(prompts).suffix == ".json"):
        return "vbench_standard", dims, {}
    skipped = {
        d: {
            "reason": "VBench's custom_input mode refuses it: it needs the per-prompt auxiliary "
            "info of VBench_full_info.json",
            "fix": "generate from VBench's prompts and pass --prompts VBench_full_info.json",
        }
        for d in dims
        if d in NEEDS_FULL_INFO
    }
    return "custom_input", [d for d in dims if d not in skipped], skipped


def run_official(
    items: list[dict], videos_dir: Path, out_dir: Path, name: str, dims: list[str], prompts: str | None, device: str
) -> Evaluation:
    """Run ``vbench.VBench.evaluate`` on ``videos_dir`` and convert its results to an Evaluation."""
    VBench = check_available()
    from .inputs import vbench_full_info_path

    mode, run_dims, skipped = plan_official(dims, prompts)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    info = prompts if mode == "vbench_standard" and prompts != "vbench" else str(vbench_full_info_path())
    bench = VBench(device, info, str(out_dir))
    kwargs = {}
    if mode == "custom_input":
        kwargs["prompt_list"] = prompt_map(items, videos_dir)
        (Path(out_dir) / f"{name}_prompts.json").write_text(json.dumps(kwargs["prompt_list"], indent=2))
    bench.evaluate(videos_path=str(videos_dir), name=name, dimension_list=run_dims, mode=mode, **kwargs)
    ev = from_eval_results(Path(out_dir) / f"{name}_eval_results.json")
    ev.skipped.update(skipped)
    return ev


def prompt_map(items: list[dict], videos_dir: Path) -> dict[str, str]:
    """``{file name relative to videos_dir: prompt}``: custom_input's prompt list."""
    return {str(Path(it["video"]).resolve().relative_to(Path(videos_dir).resolve())): it["prompt"] for it in items}


def from_eval_results(path: Path) -> Evaluation:
    """Rebuild per-video rows from a VBench ``{dim: [mean, [{video_path, video_results}]]}`` file."""
    results = json.loads(Path(path).read_text())
    rows: dict[str, dict] = {}
    for dim, (_, per_video) in results.items():
        for r in per_video:
            row = rows.setdefault(r["video_path"], {"video": r["video_path"], "prompt": "", "scores": {}})
            value = r["video_results"]
            row["scores"][dim] = (
                float(value) / PER_VIDEO_SCALE.get(dim, 1.0) if isinstance(value, (int, float)) else None
            )
    infos = {
        d: {"backend": f"vbench (official, {ALL_DIMS[d].vbench_model})", "proxy": False}
        for d in results
        if d in ALL_DIMS
    }
    means = {d: float(mean) for d, (mean, _) in results.items() if d in ALL_DIMS}
    return Evaluation(rows=list(rows.values()), infos=infos, means=means)
