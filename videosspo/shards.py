"""WebDataset tar shards, as video2dataset writes them, read shard by shard with exact resume.

A shard is an uncompressed tar whose members are grouped into samples by key, as webdataset groups
them (the member name up to the first dot of its file name): `KEY.mp4` (or another video or image
extension) with `KEY.txt` (the caption) and/or `KEY.json` (its "caption" field); video2dataset writes
all three. `data.path` names the shards: a folder of `*.tar` (sorted by name), one `.tar`, or a brace
pattern in webdataset's notation, `/data/shards/{00000..00127}.tar` (ranges keep their zero padding;
`{a,b}` lists alternatives).

**Nothing is unpacked.** At start every process lists the members of every shard from the tar
headers alone (tarfile seeks from header to header), which gives the sample counts that exact resume
and `data.max_bad_fraction` need. A sample is read by its members' offsets when it is drawn; its clip
is decoded from a temporary file by the same readers, frame rules and resizing as a folder dataset.

**Order.** Epoch e of process r of P reads the shards `rng.epoch_order(seed, e)[r::P]` (the epoch's
shard permutation, dealt round-robin), each front to back. A process's samples are those of its epoch
0, then of its epoch 1, ...; micro-batch m of optimizer step s takes its samples
[(s // reuse * A + m) B, ... + B) of that stream (A accumulation steps, B per-process batch). So the
order is a pure function of (shards, seed, P, r, step): a run resumed at step s reads exactly what the
uninterrupted run read from step s on, and within an epoch the processes read disjoint shards. Unlike a
metadata folder, N processes are not the same run as one process with the same global batch (each
reads its own shards); resume needs the same number of processes. Samples within a shard keep the
order they were written in (video2dataset: its input order), so write shards from a shuffled list.

**Bad samples.** A member that does not decode, is cut short, or a sample without a video or a caption
is an unreadable clip (`Unreadable`: skipped, counted against `data.max_bad_fraction`); a shard whose
headers break off keeps the samples listed before the break (one warning). Reads never wait on
anything but the file.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videosspo import rng
from videosspo.data import VideoDataset
from videosspo.errors import DataError, PathError
from videosspo.metadata import METADATA_NAMES
from videosspo.video import IMAGE_EXTENSIONS, VideoReadError, count_frames

log = logging.getLogger("videosspo.shards")

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif", *IMAGE_EXTENSIONS)
CAPTION_EXTENSIONS = (".txt", ".json")
_BRACES = re.compile(r"\{([^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """webdataset's brace notation: `a{00..02}b{x,y}` -> a00bx, a00by, a01bx, ... (ranges keep their padding)."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    if ".." in body:
        lo, hi = body.split("..", 1)
        if not (lo.isdigit() and hi.isdigit()):
            raise PathError(f"data.path {pattern!r}: a range must be {{first..last}} in digits, got {{{body}}}")
        choices = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        choices = body.split(",")
    return [head + choice + rest for choice in choices for rest in expand_braces(tail)]


def is_shards(path: str) -> bool:
    """Does `data.path` name tar shards (a .tar, a brace pattern, or a folder of .tar without metadata)?"""
    folder = Path(path)
    if folder.is_dir():
        return not any((folder / name).is_file() for name in METADATA_NAMES) and any(folder.glob("*.tar"))
    return path.endswith(".tar") or _BRACES.search(path) is not None


def shard_paths(path: str) -> list[Path]:
    """The shard files `data.path` names, in order; a missing one is an error naming it."""
    folder = Path(path)
    paths = sorted(folder.glob("*.tar")) if folder.is_dir() else [Path(p) for p in expand_braces(path)]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise PathError(f"data.path {path!r}: {len(missing)} of {len(paths)} shards do not exist (first: {missing[0]})")
    return paths


@dataclass(frozen=True)
class Member:
    offset: int  # of its data in the tar
    size: int


@dataclass(frozen=True)
class ShardSample:
    """One sample of a shard: its members by extension (`.mp4`, `.txt`, ...)."""

    index: int  # dataset index: position over all shards
    shard: Path
    key: str
    members: dict[str, Member]

    @property
    def video(self) -> str:  # what messages name
        return f"{self.shard}:{self.key}"

    def read(self, extension: str) -> bytes:
        member = self.members[extension]
        with open(self.shard, "rb") as f:
            f.seek(member.offset)
            data = f.read(member.size)
        if len(data) < member.size:
            raise VideoReadError(self.video + extension, f"cut short: {len(data)} of {member.size} bytes in the shard")
        return data

    def caption(self) -> str:
        """The `.txt` caption, else the `.json`'s "caption"; a sample without one is unreadable."""
        try:
            if ".txt" in self.members:
                text = self.read(".txt").decode("utf-8").strip()
            else:
                text = (
                    str(json.loads(self.read(".json")).get("caption") or "").strip() if ".json" in self.members else ""
                )
        except (UnicodeDecodeError, ValueError, AttributeError) as e:
            raise VideoReadError(self.video, f"caption unreadable ({e})") from e
        if not text:
            raise VideoReadError(self.video, f"no caption (a {' or '.join(CAPTION_EXTENSIONS)} member with text)")
        return text


def _key_and_extension(name: str) -> tuple[str, str]:
    """webdataset's split: `dir/000012.clip.mp4` -> (`dir/000012`, `.clip.mp4`); the extension's last part decides."""
    folder, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ("." + rest.rsplit(".", 1)[-1].lower() if dot else "")


def list_shard(path: Path, first_index: int) -> list[ShardSample]:
    """The samples of one shard from its tar headers (data is skipped, not read); consecutive members with one
    key form a sample. Headers that break off end the listing there, with a warning."""
    groups: list[tuple[str, dict[str, Member]]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, extension = _key_and_extension(info.name)
                if not groups or groups[-1][0] != key:
                    groups.append((key, {}))
                groups[-1][1][extension] = Member(info.offset_data, info.size)
    except (tarfile.TarError, EOFError, OSError) as e:
        log.warning("%s: the tar breaks off after %d samples (%s); using those", path, len(groups), e)
    return [ShardSample(first_index + i, path, key, members) for i, (key, members) in enumerate(groups)]


class ShardDataset(VideoDataset):
    """The samples of WebDataset tar shards as clips, like `VideoDataset` (same frames, sizes and errors).

    `shard_sizes[k]` samples belong to shard k, with dataset indices consecutive in shard order (shards
    without samples are left out); `ShardSampler` reads them shard by shard.
    """

    def __init__(
        self,
        path: str,
        frames: int,
        stride: int = 1,
        *,
        height: int,
        width: int,
        require_loser: bool = False,
        backend: str = "auto",
    ):
        if require_loser:
            raise DataError(
                f"data.path {path!r} holds WebDataset shards, which have no loser clips; Diffusion-DPO "
                f"needs paired data: a metadata file with a loser_video column"
            )
        samples, self.shard_sizes = [], []
        for shard in shard_paths(path):
            listed = list_shard(shard, len(samples))
            if listed:
                samples += listed
                self.shard_sizes.append(len(listed))
        if not samples:
            raise DataError(f"data.path {path!r}: no shard holds a sample (see the warnings above)")
        super().__init__(samples, frames, stride, height=height, width=width, backend=backend)

    def get(self, index: int, seed: int) -> dict:
        """`{"pixels", "caption", "index"}` of sample `index`; raises VideoReadError naming shard and key."""
        sample = self.records[index]
        video = next((e for e in VIDEO_EXTENSIONS if e in sample.members), None)
        if video is None:
            raise VideoReadError(sample.video, f"no video member ({', '.join(VIDEO_EXTENSIONS)})")
        data = sample.read(video)
        caption = sample.caption()
        with tempfile.NamedTemporaryFile(suffix=video) as clip:  # the decoders read files; removed on exit
            clip.write(data)
            clip.flush()
            try:
                indices = self._indices(sample, count_frames(clip.name), seed)
                pixels = self._load(Path(clip.name), indices)
            except VideoReadError as e:
                raise VideoReadError(sample.video + video, e.reason) from e
        return {"pixels": pixels, "caption": caption, "index": index}


def epoch_share(shard_sizes: Sequence[int], seed: int, epoch: int, processes: int, rank: int) -> np.ndarray:
    """Dataset indices process `rank` reads in `epoch`: its shards `epoch_order(seed, epoch)[rank::processes]`,
    each front to back."""
    starts = np.cumsum([0, *shard_sizes])
    shards = rng.epoch_order(seed, epoch, len(shard_sizes))[rank::processes]
    return np.concatenate([np.arange(starts[k], starts[k + 1]) for k in shards])


def check_shares(shard_sizes: Sequence[int], processes: int, path: str) -> None:
    """Every process reads whole shards: there must be at least one per process."""
    if len(shard_sizes) < processes:
        raise DataError(
            f"data.path {path!r}: {len(shard_sizes)} shards with samples for {processes} processes; each "
            f"process reads whole shards, so write at least as many shards as processes (video2dataset: "
            f"a smaller number_sample_per_shard)"
        )


class ProcessStream:
    """Sample q of one process's stream (`epoch_share` of epoch 0, then of epoch 1, ...) as a dataset index.

    Keeps the epochs it last used, so reading forward (or repeating a reuse window across an epoch
    boundary) lists each epoch once; q must not go back further than that window.
    """

    def __init__(self, shard_sizes: Sequence[int], seed: int, processes: int, rank: int):
        self.share = lambda epoch: epoch_share(shard_sizes, seed, epoch, processes, rank)
        self.epochs: dict[int, tuple[int, np.ndarray]] = {}  # epoch -> (its first q, its indices)
        self.next = (0, 0)  # the epoch after the newest listed one, and its first q

    def __getitem__(self, q: int) -> int:
        for first, indices in self.epochs.values():
            if first <= q < first + len(indices):
                return int(indices[q - first])
        if q < self.next[1]:  # before the kept epochs: list again from the start
            self.epochs, self.next = {}, (0, 0)
        for epoch in itertools.count(self.next[0]):
            first, indices = self.next[1], self.share(epoch)
            self.next = (epoch + 1, first + len(indices))
            if q < self.next[1]:
                self.epochs = {e: v for e, v in self.epochs.items() if e == epoch - 1} | {epoch: (first, indices)}
                return int(indices[q - first])
