"""Inputs: videos with their prompts (metadata file or VBench's ``{prompt}-{index}.mp4`` naming)
and prompt lists (plain text or VBench's ``VBench_full_info.json``)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

VIDEO_EXTS = (".mp4", ".gif", ".avi", ".mov", ".webm", ".mkv")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
_VBENCH_NAME = re.compile(r"^(?P<prompt>.+)-(?P<index>\d+)$")


def read_metadata(path: Path) -> list[dict]:
    """Rows ``{"video", "caption", ...}`` of a .jsonl or .csv file (the project's dataset format)."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def prompt_from_name(path: Path) -> str:
    """VBench naming: ``{prompt}-{index}.mp4`` -> prompt (the whole stem when there is no index)."""
    m = _VBENCH_NAME.match(path.stem)
    return m["prompt"] if m else path.stem


def collect_videos(folder: Path, metadata: Path | None = None, limit: int | None = None) -> list[dict]:
    """``[{"video": path, "prompt": str, "attributes": ...}]`` sorted by path, at most ``limit``.

    With a metadata file (given, or ``metadata.jsonl`` / ``.csv`` in the folder) its ``video``
    column (relative to the metadata file) and ``caption`` are used, other columns kept (a .jsonl
    row may carry VBench's ``auxiliary_info`` dict); else every video / image file under the
    folder, its prompt taken from VBench's file naming.
    """
    folder = Path(folder)
    metadata = metadata or next((folder / n for n in METADATA_NAMES if (folder / n).is_file()), None)
    if metadata is not None:
        rows = read_metadata(Path(metadata))
        items = [
            {
                **{k: v for k, v in r.items() if k not in ("video", "caption")},
                "video": str(Path(metadata).parent / r["video"]),
                "prompt": r["caption"],
            }
            for r in rows
        ]
    else:
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTS + IMAGE_EXTS)
        items = [{"video": str(p), "prompt": prompt_from_name(p)} for p in files]
    items.sort(key=lambda it: it["video"])
    if not items:
        raise FileNotFoundError(f"no videos found in {folder} (expected {', '.join(VIDEO_EXTS + IMAGE_EXTS)})")
    return items[:limit] if limit else items


def vbench_full_info_path() -> Path:
    """``VBench_full_info.json`` shipped in the installed ``vbench`` package."""
    try:
        import vbench
    except ImportError as e:
        raise FileNotFoundError(
            "the `vbench` package is not installed: pass the path of "
            "VBench_full_info.json (from github.com/Vchitect/VBench) instead"
        ) from e
    path = Path(vbench.__file__).parent / "VBench_full_info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed vbench package")
    return path


def load_prompts(spec: str) -> list[dict]:
    """``[{"prompt", "dimensions", "auxiliary_info"}]`` from a text file (one prompt a line;
    dimensions None = all, no auxiliary info), a VBench_full_info.json, or ``vbench`` for the
    installed package's file.

    VBench's JSON lists ``{"prompt_en", "dimension": [...], "auxiliary_info": {dimension: info}}``;
    ``info`` is what that dimension's module reads (``utils.load_dimension_info``), e.g. scene's
    ``{"scene": {"scene": "alley"}}``, colour's ``{"color": "red"}``. A prompt listed twice (VBench's
    file has two: appearance style and the quality dimensions) is scored for both entries' dimensions
    in VBench's standard mode, so its entries are merged: dimensions in order, auxiliary info joined.
    """
    path = vbench_full_info_path() if spec == "vbench" else Path(spec)
    if path.suffix != ".json":
        return [
            {"prompt": line.strip(), "dimensions": None, "auxiliary_info": {}}
            for line in path.read_text().splitlines()
            if line.strip()
        ]
    merged: dict[str, dict] = {}
    for e in json.loads(path.read_text()):
        p = merged.setdefault(e["prompt_en"], {"prompt": e["prompt_en"], "dimensions": [], "auxiliary_info": {}})
        p["dimensions"] += [d for d in e.get("dimension", []) if d not in p["dimensions"]]
        p["auxiliary_info"].update(e.get("auxiliary_info", {}))
    return list(merged.values())


def attach_prompt_info(items: list[dict], prompts: list[dict]) -> list[dict]:
    """Give each video its prompt's VBench dimension list and auxiliary info (VBench scores a
    dimension only on the videos of prompts that list it, with that prompt's info); the prompt
    file's info wins over a metadata row's own ``auxiliary_info``."""
    info = {p["prompt"]: p for p in prompts}
    return [
        {
            **it,
            "dimensions": info[it["prompt"]]["dimensions"],
            "auxiliary_info": {**it.get("auxiliary_info", {}), **info[it["prompt"]]["auxiliary_info"]},
        }
        if it["prompt"] in info
        else it
        for it in items
    ]


def auxiliary_info(meta: dict, dimension: str):
    """What VBench's module for ``dimension`` reads for this video (its prompt's
    ``auxiliary_info[dimension]``), or None when the prompt has none."""
    return (meta.get("auxiliary_info") or {}).get(dimension)


def video_fps(path: str) -> float | None:
    """Frame rate from the container (PyAV), None for images or when it is unknown."""
    if Path(path).suffix.lower() in IMAGE_EXTS:
        return None
    try:
        import av

        with av.open(path) as c:
            rate = c.streams.video[0].average_rate
            return float(rate) if rate else None
    except Exception:  # noqa: BLE001  (any decoder failure just means "fps unknown")
        return None
