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
    column (relative to the metadata file) and ``caption`` are used; else every video / image file
    under the folder, its prompt taken from VBench's file naming.
    """
    folder = Path(folder)
    metadata = metadata or next((folder / n for n in METADATA_NAMES if (folder / n).is_file()), None)
    if metadata is not None:
        rows = read_metadata(Path(metadata))
        items = [{**{k: v for k, v in r.items() if k not in ("video", "caption")},
                  "video": str(Path(metadata).parent / r["video"]), "prompt": r["caption"]} for r in rows]
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
        raise FileNotFoundError("the `vbench` package is not installed: pass the path of "
                                "VBench_full_info.json (from github.com/Vchitect/VBench) instead") from e
    path = Path(vbench.__file__).parent / "VBench_full_info.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the installed vbench package")
    return path


def load_prompts(spec: str) -> list[dict]:
    """``[{"prompt", "dimensions"}]`` from a text file (one prompt a line; dimensions None = all),
    a VBench_full_info.json, or ``vbench`` for the installed package's file."""
    path = vbench_full_info_path() if spec == "vbench" else Path(spec)
    if path.suffix == ".json":
        return [{"prompt": e["prompt_en"], "dimensions": list(e.get("dimension", []))}
                for e in json.loads(path.read_text())]
    return [{"prompt": line.strip(), "dimensions": None}
            for line in path.read_text().splitlines() if line.strip()]


def attach_dimensions(items: list[dict], prompts: list[dict]) -> list[dict]:
    """Give each video its prompt's VBench dimension list (VBench scores a dimension only on the
    videos of prompts that list it)."""
    dims = {p["prompt"]: p["dimensions"] for p in prompts}
    return [{**it, "dimensions": dims.get(it["prompt"], it.get("dimensions"))} for it in items]


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
