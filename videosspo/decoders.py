"""Video decoding backends: decord (fast random access) and PyAV (sequential, reads everything).

`videosspo.video` chooses between them and owns the public reading API; here is what each decoder does:

- decord's seeking lands on wrong frames for some codecs and containers: asked for frames 100-107 of an
  MPEG-4 Part 2 .avi with B-frames it returns 90-97, and in .mp4/.mkv the same codec is wrong for windows
  that start on a keyframe. So decord is trusted only where its seeking was verified exact
  (``DECORD_CODECS`` in ``DECORD_CONTAINERS``) and its frame count equals the count that decodes.
- decord 0.6 fails on some frame widths (48 px: ``DECORDArrayCopyFromTo: The size must exactly match``).
  Only its batch API is used (its ``vr[i]`` returns a wrong ``(h, w, 4)`` array there) and its output shape
  is checked. decord and PyAV decode bit-identical frames where both work (the same FFmpeg decoders and
  yuv->rgb conversion).
- PyAV decodes sequentially (exact); a damaged file's frames before the damage are used (a warning names it),
  and frames with rotation metadata (a display matrix, as phones record) are turned upright here (decord 0.6
  applies the matrix itself).
- ``size=(h, w)`` resizes each frame as soon as it is decoded (``resize_frames``), so a 4096x4096 clip is
  never held at full size. The decoders' own scalers (decord's width/height, PyAV's reformat; both FFmpeg's
  swscale on yuv) were measured less faithful: a 512x512 -> 64x64 clip was 5.8 levels (of 255) from the
  source on average, against 1.2 for decoding at full size and resizing.

Failures are plain exceptions (RuntimeError, av.FFmpegError, IndexError); `videosspo.video` turns them into
VideoReadError.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

log = logging.getLogger("videosspo.decoders")

# Where decord's seeking was verified exact (frame-numbered clips, every start frame; tests/test_video.py): these
# codecs in these FFmpeg demuxers. MPEG-4 Part 2 and MPEG-2 with B-frames land on wrong frames in every container,
# and AVI stores no presentation timestamps; everything outside the lists is decoded by PyAV, sequentially.
DECORD_CONTAINERS = ("mov", "mp4", "matroska", "webm")
DECORD_CODECS = ("h264", "hevc", "vp8", "vp9")

_damaged_warned: set[str] = set()  # files already reported as "damaged after frame k"


@functools.cache
def decord_module():
    """The decord module, or None when it is not installed (PyAV is then used for everything)."""
    try:
        import decord
    except ImportError:
        return None
    # its bundled FFmpeg prints "[h264 @ 0x...] error while decoding" to stderr for every damaged packet; the
    # failure reaches us as an exception anyway. Shown when our own log is at DEBUG (`videosspo --verbose`).
    decord.logging.set_level(decord.logging.ERROR if log.isEnabledFor(logging.DEBUG) else decord.logging.QUIET)
    return decord


def upright(frame) -> np.ndarray:
    """A PyAV frame as ``uint8 (h, w, 3)``, turned by its display matrix as players show it."""
    rgb = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4  # counterclockwise, as np.rot90
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


def check_indices(indices: Sequence[int] | None, count: int, path: Path) -> list[int]:
    """All frames when ``indices`` is None; otherwise the indices, each checked to lie in [0, count)."""
    if indices is None:
        return list(range(count))
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise IndexError(f"{path} has {count} frames; frame indices {bad[:5]} are out of range")
    return indices


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 (f, H, W, 3)`` -> ``(f, h, w, 3)``: torch's antialiased bilinear on uint8 (its fast kernel).

    Within one level (of 255) of resizing the float frames: the uint8 kernel rounds its output.
    """
    if frames.shape[1:3] == tuple(size):
        return frames
    pixels = torch.from_numpy(rearrange(frames, "f h w c -> f c h w"))
    pixels = F.interpolate(pixels, size=tuple(size), mode="bilinear", antialias=True, align_corners=False)
    return rearrange(pixels, "f c h w -> f h w c").numpy()


def decode(container, path: Path):
    """PyAV's decoded frames of an open container, in order. Decoding stops at the first error once a frame has
    decoded (a damaged or truncated file: its frames before the damage are used; a warning names the file once)."""
    import av

    if not container.streams.video:
        raise RuntimeError("the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    decoded = 0
    try:
        for frame in container.decode(stream):
            yield frame
            decoded += 1
    except av.FFmpegError as e:
        if decoded == 0:
            raise
        if str(path) not in _damaged_warned:
            _damaged_warned.add(str(path))
            log.warning(
                "%s is damaged after frame %d (%s): using its first %d frames", path, decoded, first_line(e), decoded
            )


def read_decord(
    path: Path, indices: Sequence[int] | None, size: tuple[int, int] | None, expected: int | None = None
) -> np.ndarray:
    """decord's frames; ``expected`` (the count that decodes) is checked against decord's own count."""
    reader = decord_module().VideoReader(str(path))
    if expected is not None and len(reader) != expected:
        raise RuntimeError(f"decord counts {len(reader)} frames where {expected} decode")
    indices = check_indices(indices, len(reader), path)
    chunks = [indices] if size is None else [[i] for i in indices]  # resizing: hold one full-size frame at a time
    out = []
    for chunk in chunks:
        frames = reader.get_batch(chunk).asnumpy()
        if frames.ndim != 4 or frames.shape[0] != len(chunk) or frames.shape[-1] != 3:
            raise RuntimeError(f"decord returned frames of shape {frames.shape} for {len(chunk)} indices")
        out.append(frames if size is None else resize_frames(frames, size))
    return np.concatenate(out)


def read_pyav(path: Path, indices: Sequence[int] | None, size: tuple[int, int] | None) -> np.ndarray:
    """Decode sequentially (exact: no seeking) up to the last wanted frame, converting only the wanted ones."""
    import av

    wanted = None if indices is None else set(indices)
    last = None if indices is None else max(indices)
    kept: dict[int, np.ndarray] = {}
    count = 0
    with av.open(str(path)) as container:
        for count, frame in enumerate(decode(container, path), start=1):
            k = count - 1
            if wanted is None or k in wanted:
                rgb = upright(frame)[None]
                kept[k] = rgb if size is None else resize_frames(rgb, size)
            if k == last:
                break
    if count == 0:
        raise RuntimeError("no video frames decoded")
    return np.concatenate([kept[i] for i in check_indices(indices, count, path)])


def first_line(error: Exception) -> str:
    """The first line of an error message (decord appends C++ stack traces), or the error's type."""
    lines = str(error).strip().splitlines()
    return (
        re.sub(r"^\[[\d:]+\] \S+:\d+: ", "", lines[0]) if lines else type(error).__name__
    )  # decord's "[time] file.cc:N: "
