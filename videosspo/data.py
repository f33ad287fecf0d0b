"""The video (or image) dataset users bring: a folder of clips plus a metadata file.

Metadata is JSONL (one object per line) or CSV, with columns
    video        path of the clip, relative to the metadata file's folder or absolute
    caption      the prompt
    loser_video  optional: a worse clip for the same caption (paired, DPO-style data)
Other columns are kept in ``Record.extra`` and otherwise ignored. Images (.png, .jpg, ...) are
1-frame clips, so an image dataset is the ``frames=1`` case of the same class.

Rows that cannot be used (no caption, no video, a file that does not exist) are skipped when the
metadata loads, with one warning giving the counts. A file that exists but cannot be decoded is only
found when it is read: ``VideoDataset.get`` raises ``VideoReadError``, while ``VideoDataset.try_get``
(what the trainer calls) logs it, counts it in ``skipped`` and returns None, which ``collate`` drops.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from videosspo.video import BACKENDS, VideoReadError, count_frames, read_video, to_tensor

log = logging.getLogger("videosspo.data")

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Record:
    """One usable metadata row."""

    index: int  # position in the loaded list (= dataset index); skipped rows leave no gaps
    video: Path  # absolute path
    caption: str
    loser_video: Path | None = None  # absolute path, or None for unpaired data
    extra: dict = field(default_factory=dict)  # the row's other columns, untouched


# ----------------------------------------------------------------------------- metadata


def _metadata_file(path: Path) -> Path:
    if path.is_dir():
        for name in METADATA_NAMES:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"{path} contains none of {METADATA_NAMES}")
    if not path.is_file():
        raise FileNotFoundError(f"metadata file {path} does not exist")
    return path


def _read_rows(path: Path) -> list[dict]:
    """The raw rows of a .jsonl or .csv metadata file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        rows = []
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}, line {line_no}: not valid JSON ({e})") from e
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in ("video", "caption") if c not in columns]
            if missing:
                raise ValueError(f"{path} has no {' or '.join(missing)} column; its columns are {columns}")
            return list(reader)
    raise ValueError(f"metadata file {path} must end in .jsonl or .csv")


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def load_metadata(path: str | os.PathLike) -> list[Record]:
    """Usable rows of a metadata file, or of the ``metadata.jsonl``/``metadata.csv`` in a folder.

    Skipped rows are counted by reason and reported in one warning; no usable row at all is a ValueError.
    """
    path = _metadata_file(Path(path))
    root = path.parent.resolve()
    records: list[Record] = []
    skipped: Counter[str] = Counter()
    examples: list[str] = []
    rows = _read_rows(path)
    for row_no, row in enumerate(rows):
        caption, video, loser = _text(row.get("caption")), _text(row.get("video")), _text(row.get("loser_video"))
        paths = {"video": root / video if video else None, "loser_video": root / loser if loser else None}
        if not caption:
            reason = "missing caption"
        elif not video:
            reason = "missing video"
        elif not paths["video"].is_file():
            reason = "video file not found"
        elif loser and not paths["loser_video"].is_file():
            reason = "loser_video file not found"
        else:
            extra = {k: v for k, v in row.items() if k not in ("video", "caption", "loser_video")}
            records.append(Record(len(records), paths["video"], caption, paths["loser_video"], extra))
            continue
        skipped[reason] += 1
        if len(examples) < 3:
            examples.append(f"row {row_no} ({reason}): {row}")
    if skipped:
        log.warning("%s: skipped %d of %d rows (%s); first: %s", path, sum(skipped.values()), len(rows),
                    ", ".join(f"{n} {reason}" for reason, n in skipped.items()), "; ".join(examples))
    if not records:
        why = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "the file has no rows"
        raise ValueError(f"{path}: no usable rows ({why})")
    return records


# ----------------------------------------------------------------------------- sampling and resizing


def frame_indices(num_frames: int, frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    """``frames`` indices spaced by ``stride`` from a random valid start in a clip of ``num_frames``.

    A clip too short for ``stride`` uses the largest stride that fits; one with fewer than ``frames``
    frames returns all of them with the last one repeated.
    """
    if num_frames < frames:
        return [min(k, num_frames - 1) for k in range(frames)]
    if (frames - 1) * stride + 1 > num_frames:
        stride = (num_frames - 1) // (frames - 1)  # >= 1 here, since num_frames >= frames >= 2
    start = int(rng.integers(0, num_frames - (frames - 1) * stride))
    return [start + k * stride for k in range(frames)]


def resize_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``c f h w`` so it covers (height, width), keeping its aspect ratio, then crop the centre."""
    _, _, h, w = video.shape
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    if size != (h, w):
        frames = rearrange(video, "c f h w -> f c h w")
        frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
        video = rearrange(frames, "f c h w -> c f h w")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top:top + height, left:left + width]


# ----------------------------------------------------------------------------- dataset


class ClipDataset(torch.utils.data.Dataset):
    """What every clip dataset shares: the records, the frame-sampling settings and skip counting.

    Sampling randomness (the start frame) comes only from the ``seed`` given to ``get``, so the
    caller decides what is reproducible; ``dataset[i]`` uses seed ``i``. Subclasses implement ``get``.
    """

    def __init__(self, metadata: str | os.PathLike | Sequence[Record], frames: int, stride: int = 1, *,
                 height: int, width: int, require_loser: bool = False):
        if min(frames, stride, height, width) < 1:
            raise ValueError(f"frames, stride, height and width must be >= 1, got {frames}, {stride}, {height}, {width}")
        self.records = load_metadata(metadata) if isinstance(metadata, (str, os.PathLike)) else list(metadata)
        if require_loser:
            unpaired = [r for r in self.records if r.loser_video is None]
            if unpaired:
                first = ", ".join(f"row {r.index} ({r.video.name}, {r.caption!r})" for r in unpaired[:3])
                raise ValueError(f"paired data needed, but {len(unpaired)} rows have no loser_video: {first}")
        self.frames, self.stride, self.height, self.width = frames, stride, height, width
        self.skipped = 0  # rows try_get could not serve (counted per process: each DataLoader worker has its own)
        self._warned_short = False

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.get(index, seed=index)

    def get(self, index: int, seed: int) -> dict:
        raise NotImplementedError

    def try_get(self, index: int, seed: int) -> dict | None:
        """``get``, but a clip that cannot be decoded is logged, counted in ``skipped`` and returned as None.

        The trainer reads data through this, so one corrupt file costs one sample, not the run.
        """
        try:
            return self.get(index, seed)
        except VideoReadError as e:
            self.skipped += 1
            log.warning("skipping row %d: %s", index, e)
            return None

    def _indices(self, record: Record, num_frames: int, seed: int) -> list[int]:
        """``frame_indices`` for a clip of ``num_frames`` frames, warning once about short clips."""
        if num_frames < self.frames and not self._warned_short:
            self._warned_short = True
            log.warning("%s has %d frames, fewer than the %d requested: repeating its last frame "
                        "(reported once; other clips may be short too)", record.video, num_frames, self.frames)
        return frame_indices(num_frames, self.frames, self.stride, np.random.default_rng(seed))


class VideoDataset(ClipDataset):
    """Clips of ``frames`` frames at ``height`` x ``width`` as float ``c f h w`` tensors in [-1, 1]."""

    def __init__(self, metadata: str | os.PathLike | Sequence[Record], frames: int, stride: int = 1, *,
                 height: int, width: int, require_loser: bool = False, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
        super().__init__(metadata, frames, stride, height=height, width=width, require_loser=require_loser)
        self.backend = backend
        self._counts: dict[Path, int] = {}

    def _count(self, path: Path) -> int:
        if path not in self._counts:
            self._counts[path] = count_frames(path, backend=self.backend)
        return self._counts[path]

    def _load(self, path: Path, indices: list[int]) -> torch.Tensor:
        unique, inverse = np.unique(indices, return_inverse=True)  # decode each frame once, in order
        try:
            frames = read_video(path, unique.tolist(), backend=self.backend)[inverse]
        except IndexError as e:  # the indices came from the header's frame count: the file is truncated
            raise VideoReadError(path, f"it decodes fewer frames than its header says ({e})") from e
        return resize_center_crop(to_tensor(frames), self.height, self.width)

    def get(self, index: int, seed: int) -> dict:
        """``{"pixels", "caption", "index"}`` (+ ``"loser_pixels"`` for paired rows); raises VideoReadError."""
        record = self.records[index]
        paths = [record.video] + ([record.loser_video] if record.loser_video is not None else [])
        counts = [self._count(p) for p in paths]
        for path, count in zip(paths, counts):
            if count < 1:
                raise VideoReadError(path, "it has no frames")
        indices = self._indices(record, min(counts), seed)  # winner and loser share the frame indices
        item = {"pixels": self._load(record.video, indices), "caption": record.caption, "index": record.index}
        if record.loser_video is not None:
            item["loser_pixels"] = self._load(record.loser_video, indices)
        return item

STACKED = ("pixels", "loser_pixels", "latents", "loser_latents")


def collate(batch: Sequence[dict | None]) -> dict | None:
    """Stack each of ``pixels``, ``loser_pixels``, ``latents``, ``loser_latents`` that every item has
    (``b c f h w``), list captions and indices, drop None items; None when every item was dropped.
    """
    items = [item for item in batch if item is not None]
    if not items:
        return None
    out = {"captions": [item["caption"] for item in items], "indices": [item["index"] for item in items]}
    for key in STACKED:
        if all(key in item for item in items):
            out[key] = torch.stack([item[key] for item in items])
    return out
