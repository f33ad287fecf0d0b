"""The video (or image) dataset users bring: a folder of clips plus a metadata file.

Metadata is JSONL (one object per line) or CSV, with columns
    video        path of the clip, relative to the metadata file's folder or absolute
    caption      the prompt
    loser_video  optional: a worse clip for the same caption (paired, DPO-style data)
Other columns are kept in ``Record.extra`` and otherwise ignored. Images (.png, .jpg, ...) are
1-frame clips, so an image dataset is the ``frames=1`` case of the same class.

Rows that cannot be used (not valid UTF-8, no caption, no video, a file that does not exist) are
skipped when the metadata loads, with one warning giving the counts and the rows' line numbers. A file
that exists but cannot be decoded is only found when it is read: ``VideoDataset.get`` raises
``VideoReadError``, while ``VideoDataset.try_get`` (what the trainer calls) returns it as ``Unreadable``,
which ``collate`` drops and ``UnreadableClips`` counts: each bad file is logged once, and the run stops
with the worst files named once more than ``data.max_bad_fraction`` of the rows (or all of them) are bad.
"""

from __future__ import annotations

import csv
import io
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

from videosspo.errors import DataError, PathError
from videosspo.video import BACKENDS, VideoReadError, count_frames, probe, read_video, to_tensor

log = logging.getLogger("videosspo.data")

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")
LARGE_CLIP = 4  # a clip this many times the training size per side, or more, is reported (once)


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
        raise PathError(f"{path} contains none of {METADATA_NAMES}")
    if not path.is_file():
        raise PathError(f"data.path: metadata file {path} does not exist")
    return path


def _is_utf8(text: str) -> bool:
    """False for text decoded with ``errors="surrogateescape"`` from bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_rows(path: Path) -> list[tuple[int, dict | None]]:
    """``(line number, row)`` of a .jsonl or .csv metadata file; the row is None where it is not valid UTF-8."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise DataError(f"metadata file {path} must end in .jsonl or .csv")
    # undecodable bytes become lone surrogates, so one bad row is found and skipped, not a crash for the file
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = reader.fieldnames or []
        missing = [c for c in ("video", "caption") if c not in columns]
        if missing:
            raise DataError(f"{path} has no {' or '.join(missing)} column; its columns are {columns}")
        rows, line = [], reader.line_num + 1
        for row in reader:  # a quoted field may span lines: a row starts on the line after the previous one ended
            rows.append((line, row if all(_is_utf8(str(v)) for v in row.values()) else None))
            line = reader.line_num + 1
        return rows
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not _is_utf8(line):
            rows.append((line_no, None))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({e})") from e
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_no, row))
    return rows


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _skip_reason(row: dict | None, paths: dict) -> str | None:
    """Why a metadata row cannot be used, or None when it can."""
    if row is None:
        return "not valid UTF-8 (save the file as UTF-8)"
    if not _text(row.get("caption")):
        return "missing caption"
    if paths["video"] is None:
        return "missing video"
    if not paths["video"].is_file():
        return "video file not found"
    if paths["loser_video"] is not None and not paths["loser_video"].is_file():
        return "loser_video file not found"
    return None


def load_metadata(path: str | os.PathLike) -> list[Record]:
    """Usable rows of a metadata file, or of the ``metadata.jsonl``/``metadata.csv`` in a folder.

    Skipped rows are counted by reason and reported in one warning naming their first lines; no usable row at
    all is a ValueError.
    """
    path = _metadata_file(Path(path))
    root = path.parent.resolve()
    records: list[Record] = []
    skipped: dict[str, list[int]] = {}  # reason -> line numbers
    rows = _read_rows(path)
    for line, row in rows:
        video, loser = (_text(row.get(k)) if row else "" for k in ("video", "loser_video"))
        paths = {"video": root / video if video else None, "loser_video": root / loser if loser else None}
        reason = _skip_reason(row, paths)
        if reason is None:
            extra = {k: v for k, v in row.items() if k not in ("video", "caption", "loser_video")}
            records.append(Record(len(records), paths["video"], _text(row["caption"]), paths["loser_video"], extra))
        else:
            skipped.setdefault(reason, []).append(line)
    summary = ", ".join(f"{len(lines)} {reason} ({_lines(lines)})" for reason, lines in skipped.items())
    if skipped:
        log.warning("%s: skipped %d of %d rows: %s", path, sum(map(len, skipped.values())), len(rows), summary)
    if not records:
        raise DataError(f"{path}: no usable rows ({summary or 'the file has no rows'})")
    return records


def _lines(lines: list[int], shown: int = 3) -> str:
    """``line 4`` / ``lines 4, 9, 12, ...``."""
    more = ", ..." if len(lines) > shown else ""
    return f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:shown]))}{more}"


# ----------------------------------------------------------------------------- sampling and resizing


def frame_indices(num_frames: int, frames: int, stride: int, rng: np.random.Generator) -> list[int]:
    """``frames`` indices spaced by ``stride`` from a random valid start in a clip of ``num_frames``:
    one of ``frame_windows``, drawn uniformly."""
    windows = frame_windows(num_frames, frames, stride)
    return windows[0] if len(windows) == 1 else windows[int(rng.integers(0, len(windows)))]


def frame_windows(num_frames: int, frames: int, stride: int) -> list[list[int]]:
    """Every index list ``frame_indices`` can return for a clip of ``num_frames``, by start frame.

    A clip too short for ``stride`` uses the largest stride that fits; one with fewer than ``frames``
    frames has one window: all of them with the last one repeated.
    """
    if num_frames < frames:
        return [[min(k, num_frames - 1) for k in range(frames)]]
    if (frames - 1) * stride + 1 > num_frames:
        stride = (num_frames - 1) // (frames - 1)  # >= 1 here, since num_frames >= frames >= 2
    return [[start + k * stride for k in range(frames)] for start in range(num_frames - (frames - 1) * stride)]


def cover_size(h: int, w: int, height: int, width: int) -> tuple[int, int]:
    """The size an ``h x w`` frame is scaled to so it covers ``height x width`` with its aspect ratio kept."""
    scale = max(height / h, width / w)
    return max(height, round(h * scale)), max(width, round(w * scale))


def resize_center_crop(video: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scale ``c f h w`` so it covers (height, width), keeping its aspect ratio, then crop the centre."""
    _, _, h, w = video.shape
    size = cover_size(h, w, height, width)
    if size != (h, w):
        frames = rearrange(video, "c f h w -> f c h w")
        frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
        video = rearrange(frames, "f c h w -> c f h w")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top:top + height, left:left + width]


# ----------------------------------------------------------------------------- unreadable clips


@dataclass(frozen=True)
class Unreadable:
    """A row ``try_get`` could not serve: its clip (or its loser's) exists but does not decode."""

    index: int
    path: str
    reason: str


class UnreadableClips:
    """Counts the unreadable rows of a dataset, logs each bad file once, and stops when too many are bad.

    Raises ``DataError`` naming the files once more than ``max_bad_fraction`` of the ``num_rows`` rows proved
    unreadable (``data.max_bad_fraction``), or once every row did: a full pass of the data with no readable clip,
    which would otherwise loop forever. Judged on distinct rows against the whole dataset, so it never stops
    early on a few bad files met first.

    The trainer feeds it every process's failures of a step (so each process decides alike, on the global
    count) and checkpoints it (`state_dict`), so a resumed run keeps counting. `verbose`: log new bad files
    (the main process).
    """

    def __init__(self, num_rows: int, max_bad_fraction: float, verbose: bool = True):
        self.num_rows, self.max_bad_fraction, self.verbose = num_rows, max_bad_fraction, verbose
        self.rows: dict[int, Unreadable] = {}  # distinct unreadable rows, first failure of each
        self.visits: Counter[int] = Counter()  # failed reads per row

    def state_dict(self) -> list[dict]:
        """JSON-able: each unreadable row with its first failure and how often it failed."""
        return [{"index": i, "path": bad.path, "reason": bad.reason, "visits": self.visits[i]}
                for i, bad in self.rows.items()]

    def load_state_dict(self, state: list[dict]) -> None:
        self.rows = {row["index"]: Unreadable(row["index"], row["path"], row["reason"]) for row in state}
        self.visits = Counter({row["index"]: row["visits"] for row in state})

    def add(self, failures: Sequence[Unreadable]) -> int:
        """Record failed reads; returns how many there were."""
        for bad in failures:
            self.visits[bad.index] += 1
            if bad.index not in self.rows:
                self.rows[bad.index] = bad
                if self.verbose:
                        log.warning("skipping row %d: cannot read %s (%s); %d of %d rows unreadable so far, the run "
                                "stops past data.max_bad_fraction=%g", bad.index, bad.path, bad.reason, len(self.rows),
                                self.num_rows, self.max_bad_fraction)
        too_many = len(self.rows) > self.max_bad_fraction * self.num_rows
        if len(self.rows) == self.num_rows or too_many:
            worst = sorted(self.rows, key=lambda i: -self.visits[i])[:5]
            files = "; ".join(f"{self.rows[i].path} (row {i}, failed {self.visits[i]}x: {self.rows[i].reason})"
                              for i in worst)
            what = (f"none of the {self.num_rows} clips could be read" if len(self.rows) == self.num_rows else
                    f"{len(self.rows)} of {self.num_rows} rows are unreadable, more than data.max_bad_fraction="
                    f"{self.max_bad_fraction:g}")
            raise DataError(f"{what}; worst: {files}. Fix or remove those files (or raise data.max_bad_fraction)")
        return len(failures)


# ----------------------------------------------------------------------------- dataset


class ClipDataset(torch.utils.data.Dataset):
    """What every clip dataset shares: the records, the frame-sampling settings and the unreadable-row rule.

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
                raise DataError(f"paired data needed, but {len(unpaired)} rows have no loser_video: {first}")
        self.frames, self.stride, self.height, self.width = frames, stride, height, width
        self.buckets = None  # `videosspo.buckets.Buckets` (data.buckets): each row's own shape; set by the trainer
        self._warned_short = False

    def shape(self, index: int) -> tuple[int, int, int]:
        """(frames, height, width) row `index` is read at: its bucket's, or the dataset's."""
        return self.buckets.shape(index) if self.buckets else (self.frames, self.height, self.width)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        return self.get(index, seed=index)

    def get(self, index: int, seed: int) -> dict:
        raise NotImplementedError

    def try_get(self, index: int, seed: int) -> dict | Unreadable:
        """``get``, but a clip that cannot be decoded is returned as ``Unreadable`` (which ``collate`` drops).

        The trainer reads data through this and counts the failures in ``UnreadableClips`` (in the main
        process: DataLoader workers hold copies of the dataset), so one corrupt file costs one sample, not the run.
        """
        try:
            return self.get(index, seed)
        except VideoReadError as e:
            return Unreadable(index, str(e.path), e.reason)

    def _indices(self, record: Record, num_frames: int, seed: int, frames: int | None = None) -> list[int]:
        """``frame_indices`` of ``frames`` (default: the dataset's) for a clip of ``num_frames`` frames, warning
        once about short clips."""
        frames = frames or self.frames
        if num_frames < frames and not self._warned_short:
            self._warned_short = True
            log.warning("%s has %d frames, fewer than the %d requested: repeating its last frame "
                        "(reported once; other clips may be short too)", record.video, num_frames, frames)
        return frame_indices(num_frames, frames, self.stride, np.random.default_rng(seed))


class VideoDataset(ClipDataset):
    """Clips of ``frames`` frames at ``height`` x ``width`` as float ``c f h w`` tensors in [-1, 1].

    Frame counts are of the frames that decode (``video.probe``, once per file). A clip larger than the
    training size is shrunk frame by frame as it decodes, never held at full size; one ``LARGE_CLIP``
    times larger (per side) or more is reported once, since decoding it still costs full-size time.
    """

    def __init__(self, metadata: str | os.PathLike | Sequence[Record], frames: int, stride: int = 1, *,
                 height: int, width: int, require_loser: bool = False, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
        super().__init__(metadata, frames, stride, height=height, width=width, require_loser=require_loser)
        self.backend = backend
        self._warned_large = False

    def read_frames(self, path: Path, indices: Sequence[int], target: tuple[int, int] | None = None) -> np.ndarray:
        """``uint8 (f, h, w, 3)`` frames of ``path``; a clip larger than ``target`` (height, width; default the
        dataset's) arrives at its ``cover_size`` (then only cropped)."""
        info = probe(path)
        height, width = target or (self.height, self.width)
        size = cover_size(info.height, info.width, height, width)
        if min(info.height / size[0], info.width / size[1]) >= LARGE_CLIP and not self._warned_large:
            self._warned_large = True
            log.warning("%s is %dx%d, at least %dx the training size %dx%d per side: frames are shrunk as they "
                        "decode, but decoding still costs full-size time; resize the dataset once (e.g. ffmpeg "
                        "-vf scale=-2:%d) for faster loading (reported once; other clips may be large too)", path,
                        info.height, info.width, LARGE_CLIP, height, width, size[0])
        shrink = size[0] * size[1] < info.height * info.width
        return read_video(path, indices, backend=self.backend, size=size if shrink else None)

    def _load(self, path: Path, indices: list[int], target: tuple[int, int] | None = None) -> torch.Tensor:
        unique, inverse = np.unique(indices, return_inverse=True)  # decode each frame once, in order
        frames = self.read_frames(path, unique.tolist(), target)[inverse]
        return resize_center_crop(to_tensor(frames), *(target or (self.height, self.width)))

    def get(self, index: int, seed: int) -> dict:
        """``{"pixels", "caption", "index", "size"}`` (+ ``"loser_pixels"`` for paired rows) at the row's
        ``shape`` (``size``: that (frames, height, width)); raises VideoReadError."""
        record = self.records[index]
        frames, height, width = size = self.shape(index)
        paths = [record.video] + ([record.loser_video] if record.loser_video is not None else [])
        counts = [count_frames(p) for p in paths]
        indices = self._indices(record, min(counts), seed, frames)  # winner and loser share frame indices and size
        item = {"pixels": self._load(record.video, indices, (height, width)), "caption": record.caption,
                "index": record.index, "size": size}
        if record.loser_video is not None:
            item["loser_pixels"] = self._load(record.loser_video, indices, (height, width))
        return item


STACKED = ("pixels", "loser_pixels", "latents", "loser_latents", "prompt_embeds")


def collate(batch: Sequence[dict | None]) -> dict | None:
    """Stack each of ``pixels``, ``loser_pixels``, ``latents``, ``loser_latents`` (``b c f h w``) and
    ``prompt_embeds`` (``b l d``) that every item has, list captions and indices, drop ``Unreadable`` (and None) items; None when every item
    was dropped.
    """
    items = [item for item in batch if isinstance(item, dict)]
    if not items:
        return None
    out = {"captions": [item["caption"] for item in items], "indices": [item["index"] for item in items]}
    sizes = {item["size"] for item in items if "size" in item}
    if len(sizes) > 1:
        raise RuntimeError(f"a micro-batch mixes clip shapes {sorted(sizes)}: the stream must keep a bucket per batch")
    if sizes:
        out["size"] = sizes.pop()  # (frames, height, width) of every clip in it
    for key in STACKED:
        if all(key in item for item in items):
            out[key] = torch.stack([item[key] for item in items])
    return out
