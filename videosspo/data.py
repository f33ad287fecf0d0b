"""The video (or image) dataset users bring: clips read at the training size, and the rows that do not decode.

Its rows come from a metadata file (`videosspo.metadata`: format and skipped rows). Images (.png, .jpg, ...)
are 1-frame clips, so an image dataset is the ``frames=1`` case of the same class.

A file that exists but cannot be decoded is only found when it is read: ``VideoDataset.get`` raises
``VideoReadError``, while ``VideoDataset.try_get`` (what the trainer calls) returns it as ``Unreadable``,
which ``collate`` drops and ``UnreadableClips`` counts: each bad file is logged once, and the run stops
with the worst files named once more than ``data.max_bad_fraction`` of the rows (or all of them) are bad.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from videosspo.errors import DataError
from videosspo.metadata import Record, load_metadata
from videosspo.video import BACKENDS, VideoReadError, count_frames, probe, read_video, to_tensor

log = logging.getLogger("videosspo.data")

LARGE_CLIP = 4  # a clip this many times the training size per side, or more, is reported (once)
MAX_COVER = (
    4  # a frame scaled to cover the training size may hold at most this many times its pixels (else: crop first)
)


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
    """Scale ``c f h w`` so it covers (height, width), keeping its aspect ratio, then crop the centre.

    A frame whose aspect ratio is far from the output's (a 1 x 20000 image) is first cropped to the output's
    aspect ratio, so that no intermediate exceeds ``MAX_COVER`` times the output (it would be 32 x 640000 for
    an output of 32 x 32)."""
    _, _, h, w = video.shape
    size = cover_size(h, w, height, width)
    if size[0] * size[1] > MAX_COVER * height * width:
        crop_h, crop_w = min(h, max(1, round(w * height / width))), min(w, max(1, round(h * width / height)))
        top, left = (h - crop_h) // 2, (w - crop_w) // 2
        video, h, w = video[:, :, top : top + crop_h, left : left + crop_w], crop_h, crop_w
        size = cover_size(h, w, height, width)
    if size != (h, w):
        frames = rearrange(video, "c f h w -> f c h w")
        frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True, align_corners=False)
        video = rearrange(frames, "f c h w -> c f h w")
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top : top + height, left : left + width]


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
        return [
            {"index": i, "path": bad.path, "reason": bad.reason, "visits": self.visits[i]}
            for i, bad in self.rows.items()
        ]

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
                    log.warning(
                        "skipping row %d: cannot read %s (%s); %d of %d rows unreadable so far, the run "
                        "stops past data.max_bad_fraction=%g",
                        bad.index,
                        bad.path,
                        bad.reason,
                        len(self.rows),
                        self.num_rows,
                        self.max_bad_fraction,
                    )
        too_many = len(self.rows) > self.max_bad_fraction * self.num_rows
        if len(self.rows) == self.num_rows or too_many:
            worst = sorted(self.rows, key=lambda i: -self.visits[i])[:5]
            files = "; ".join(
                f"{self.rows[i].path} (row {i}, failed {self.visits[i]}x: {self.rows[i].reason})" for i in worst
            )
            what = (
                f"none of the {self.num_rows} clips could be read"
                if len(self.rows) == self.num_rows
                else f"{len(self.rows)} of {self.num_rows} rows are unreadable, more than data.max_bad_fraction="
                f"{self.max_bad_fraction:g}"
            )
            raise DataError(f"{what}; worst: {files}. Fix or remove those files (or raise data.max_bad_fraction)")
        return len(failures)


# ----------------------------------------------------------------------------- dataset


class ClipDataset(torch.utils.data.Dataset):
    """What every clip dataset shares: the records, the frame-sampling settings and the unreadable-row rule.

    Sampling randomness (the start frame) comes only from the ``seed`` given to ``get``, so the
    caller decides what is reproducible; ``dataset[i]`` uses seed ``i``. Subclasses implement ``get``.
    """

    def __init__(
        self,
        metadata: str | os.PathLike | Sequence[Record],
        frames: int,
        stride: int = 1,
        *,
        height: int,
        width: int,
        require_loser: bool = False,
    ):
        if min(frames, stride, height, width) < 1:
            raise ValueError(
                f"frames, stride, height and width must be >= 1, got {frames}, {stride}, {height}, {width}"
            )
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

    def _indices(
        self, record: Record, num_frames: int, seed: int, frames: int | None = None, path: Path | None = None
    ) -> list[int]:
        """``frame_indices`` of ``frames`` (default: the dataset's) for a clip of ``num_frames`` frames, warning
        once about short clips (`path`: the short one of a pair, else the record's video)."""
        frames = frames or self.frames
        if num_frames < frames and not self._warned_short:
            self._warned_short = True
            log.warning(
                "%s has %d frames, fewer than the %d requested: repeating its last frame (reported once; "
                "other clips may be short too)",
                path or record.video,
                num_frames,
                frames,
            )
        return frame_indices(num_frames, frames, self.stride, np.random.default_rng(seed))


class VideoDataset(ClipDataset):
    """Clips of ``frames`` frames at ``height`` x ``width`` as float ``c f h w`` tensors in [-1, 1].

    Frame counts are of the frames that decode (``video.probe``, once per file). A clip larger than the
    training size is shrunk frame by frame as it decodes, never held at full size; one ``LARGE_CLIP``
    times larger (per side) or more is reported once, since decoding it still costs full-size time.
    """

    def __init__(
        self,
        metadata: str | os.PathLike | Sequence[Record],
        frames: int,
        stride: int = 1,
        *,
        height: int,
        width: int,
        require_loser: bool = False,
        backend: str = "auto",
    ):
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
            log.warning(
                "%s is %dx%d, at least %dx the training size %dx%d per side: frames are shrunk as they "
                "decode, but decoding still costs full-size time; resize the dataset once (e.g. ffmpeg "
                "-vf scale=-2:%d) for faster loading (reported once; other clips may be large too)",
                path,
                info.height,
                info.width,
                LARGE_CLIP,
                height,
                width,
                size[0],
            )
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
        shortest = paths[counts.index(min(counts))]
        indices = self._indices(record, min(counts), seed, frames, shortest)  # winner and loser share frames and size
        item = {
            "pixels": self._load(record.video, indices, (height, width)),
            "caption": record.caption,
            "index": record.index,
            "size": size,
        }
        if record.loser_video is not None:
            item["loser_pixels"] = self._load(record.loser_video, indices, (height, width))
        return item


def report_long_captions(records: Sequence[Record], tokenizer, limit: int) -> int:
    """Warn once, with the count, about captions longer than the text encoder's `limit` tokens (special tokens
    included): the encoder sees only their first `limit` tokens. Returns the count."""
    records = [r for r in records if isinstance(r.caption, str)]  # WebDataset shards: read with the clip, not known
    captions = [r.caption for r in records]
    lengths = [
        len(ids)
        for start in range(0, len(captions), 4096)
        for ids in tokenizer(captions[start : start + 4096], truncation=False, verbose=False).input_ids
    ]
    long = [k for k, n in enumerate(lengths) if n > limit]
    if long:
        first = records[long[0]]
        log.warning(
            "%d of %d captions are longer than the text encoder's %d tokens and are truncated to them "
            "(first: row %d, %d tokens, %r)",
            len(long),
            len(captions),
            limit,
            first.index,
            lengths[long[0]],
            first.caption[:80],
        )
    return len(long)


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
