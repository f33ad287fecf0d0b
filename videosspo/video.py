"""Video I/O: read clips with decord (fast) or PyAV (reads everything), write mp4/gif atomically.

Reading
    ``read_video(path, indices)`` returns ``uint8 (f, h, w, 3)``. With ``backend="auto"`` decord is
    tried first when it is installed; if decord raises on a file, that clip is re-read with PyAV and a
    warning is logged once per file. decord 0.6 fails on some frame widths (48 px:
    ``DECORDArrayCopyFromTo: The size must exactly match``), and its single-frame ``vr[i]`` even
    returns a wrong ``(h, w, 4)`` array there, so only the batch API is used and its output shape is
    checked. On the files tried, decord and PyAV decode bit-identical frames (both wrap FFmpeg's
    h264 decoder and use the same yuv->rgb conversion). A file that neither backend can decode raises
    ``VideoReadError``. Still images (.png, .jpg, ...) are read as 1-frame clips, so image datasets
    go through the same path.

Writing
    ``write_video(path, video, fps)`` writes .mp4 (libx264, near-lossless CRF, yuv420p; odd frame
    sizes, which yuv420p cannot hold, are written as yuv444p so the exact size is kept) or .gif
    (looping). Input is ``uint8 (f, h, w, 3)`` or a float tensor ``c f h w`` in [-1, 1].
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import imageio.v2 as iio2
import imageio.v3 as iio3
import numpy as np
import torch
from einops import rearrange

log = logging.getLogger("videosspo.video")

BACKENDS = ("auto", "decord", "pyav")
WRITE_EXTENSIONS = (".mp4", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MP4_CRF = 10  # x264 constant rate factor: 0 is lossless, 10 is visually lossless, 23 is x264's default

_fallback_warned: set[str] = set()  # files already reported as "decord failed, read with PyAV"
FALLBACK_WARNINGS = 3  # files reported at WARNING; later ones at DEBUG (a dataset of one odd size hits them all)


class VideoReadError(RuntimeError):
    """A video file exists but cannot be decoded (corrupt, truncated or not a video)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path}: the file is corrupt or unreadable ({reason})")


# ----------------------------------------------------------------------------- tensor <-> uint8


def to_uint8(video: torch.Tensor) -> np.ndarray:
    """Float tensor ``c f h w`` in [-1, 1] -> ``uint8 (f, h, w, c)`` numpy frames (values clamped)."""
    if video.ndim != 4:
        raise ValueError(f"expected a video tensor 'c f h w', got shape {tuple(video.shape)}")
    scaled = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(scaled, "c f h w -> f h w c").cpu().numpy()


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """``uint8 (f, h, w, c)`` frames -> float32 tensor ``c f h w`` in [-1, 1]."""
    frames = _check_frames(frames)
    video = torch.from_numpy(rearrange(frames, "f h w c -> c f h w").copy())
    return video.float() / 127.5 - 1


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        desc = f"{type(frames).__name__} {getattr(frames, 'dtype', '')} {getattr(frames, 'shape', '')}"
        raise ValueError(f"expected uint8 frames of shape (f, h, w, 3), got {desc}")
    return frames


# ----------------------------------------------------------------------------- reading


@functools.cache
def _decord():
    """The decord module, or None when it is not installed (PyAV is then used for everything)."""
    try:
        import decord
    except ImportError:
        return None
    return decord


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, "video file not found", str(path))


def _check_indices(indices: Sequence[int] | None, count: int, path: Path) -> list[int]:
    """All frames when ``indices`` is None; otherwise the indices, each checked to lie in [0, count)."""
    if indices is None:
        return list(range(count))
    indices = [int(i) for i in indices]
    bad = [i for i in indices if not 0 <= i < count]
    if bad:
        raise IndexError(f"{path} has {count} frames; frame indices {bad[:5]} are out of range")
    return indices


def _read_image(path: Path, indices: Sequence[int] | None) -> np.ndarray:
    try:
        image = iio3.imread(path, mode="RGB")
    except Exception as e:  # imageio/Pillow raise assorted types for bad files
        raise VideoReadError(path, f"image decoder: {e}") from e
    frames = image[None]  # (1, h, w, 3)
    return frames[_check_indices(indices, 1, path)]


def _decord_reader(path: Path):
    return _decord().VideoReader(str(path))


def _count_decord(path: Path) -> int:
    return len(_decord_reader(path))


def _read_decord(path: Path, indices: Sequence[int] | None) -> np.ndarray:
    reader = _decord_reader(path)
    indices = _check_indices(indices, len(reader), path)
    frames = reader.get_batch(indices).asnumpy()
    if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
        raise RuntimeError(f"decord returned frames of shape {frames.shape} for {len(indices)} indices")
    return frames


def _count_pyav(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.frames > 0:  # from the container header; 0 when the format does not store it
            return stream.frames
        return sum(1 for _ in container.decode(stream))


def _read_pyav(path: Path, indices: Sequence[int] | None) -> np.ndarray:
    """Decode sequentially up to the last wanted frame (exact, no seeking) and keep the wanted ones."""
    import av

    wanted = None if indices is None else [int(i) for i in indices]
    last = None if wanted is None else max(wanted, default=-1)
    decoded: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            decoded.append(frame.to_ndarray(format="rgb24"))
            if last is not None and len(decoded) > last:
                break
    if not decoded:
        raise RuntimeError("no video frames decoded")
    if wanted is None:
        return np.stack(decoded)
    # stopping early means every wanted index was decoded; otherwise len(decoded) is the clip length
    wanted = _check_indices(wanted, len(decoded), path)
    return np.stack([decoded[i] for i in wanted])


_OPS = {("decord", "read"): _read_decord, ("decord", "count"): _count_decord,
        ("pyav", "read"): _read_pyav, ("pyav", "count"): _count_pyav}


def _run(backend: str, op: str, path: Path, *args):
    """Call a backend's "read" or "count", turning decoder failures into VideoReadError."""
    try:
        return _OPS[backend, op](path, *args)
    except IndexError:
        raise
    except Exception as e:  # decord raises RuntimeError/DECORDError, PyAV raises av.FFmpegError (a ValueError)
        raise VideoReadError(path, f"{backend}: {_first_line(e)}") from e


def _first_line(error: Exception) -> str:
    """The first line of an error message (decord appends C++ stack traces), or the error's type."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend == "decord" and _decord() is None:
        raise ImportError("backend='decord' needs the decord package: pip install decord")


def _dispatch(path: Path, backend: str, op: str, *args):
    """Run ``op`` with the chosen backend; "auto" = decord, then PyAV for this file if decord fails."""
    if backend != "auto":
        return _run(backend, op, path, *args)
    if _decord() is None or path.suffix.lower() == ".gif":  # decord cannot read gifs
        return _run("pyav", op, path, *args)
    try:
        return _run("decord", op, path, *args)
    except VideoReadError as first:
        try:
            result = _run("pyav", op, path, *args)
        except VideoReadError as second:
            raise VideoReadError(path, f"{first.reason}; {second.reason}") from second
        if str(path) not in _fallback_warned:
            _fallback_warned.add(str(path))
            level = logging.WARNING if len(_fallback_warned) <= FALLBACK_WARNINGS else logging.DEBUG
            more = "; further files are logged at DEBUG" if len(_fallback_warned) == FALLBACK_WARNINGS else ""
            log.log(level, "decord could not read %s (%s); read it with PyAV instead%s", path, first.reason, more)
        return result


def read_video(path: str | os.PathLike, indices: Sequence[int] | None = None, backend: str = "auto") -> np.ndarray:
    """Frames ``indices`` (all when None) of a video or still image, as ``uint8 (f, h, w, 3)``.

    Raises FileNotFoundError for a missing file, VideoReadError for one that cannot be decoded,
    IndexError for frame indices outside the clip.
    """
    path = Path(path)
    _check_backend(backend)
    _check_exists(path)
    if indices is not None and len(indices) == 0:
        raise ValueError(f"no frame indices given for {path}")
    if _is_image(path):
        return _read_image(path, indices)
    return _dispatch(path, backend, "read", indices)


def count_frames(path: str | os.PathLike, backend: str = "auto") -> int:
    """Number of frames (1 for a still image); read from the container index, without decoding, when possible."""
    path = Path(path)
    _check_backend(backend)
    _check_exists(path)
    if _is_image(path):
        return 1
    return _dispatch(path, backend, "count")


def video_fps(path: str | os.PathLike) -> float:
    """Average frame rate stored in the container (gifs store centiseconds, so 8 fps reads as 8.33)."""
    import av

    path = Path(path)
    _check_exists(path)
    if _is_image(path):
        raise ValueError(f"{path} is a still image and has no frame rate")
    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate
    except Exception as e:
        raise VideoReadError(path, f"pyav: {e}") from e
    if not rate:
        raise VideoReadError(path, "the container stores no frame rate")
    return float(rate)


# ----------------------------------------------------------------------------- writing


def write_video(path: str | os.PathLike, video: np.ndarray | torch.Tensor, fps: float = 8) -> Path:
    """Write ``video`` to ``path`` (.mp4 or .gif, by extension), creating parent folders.

    ``video`` is ``uint8 (f, h, w, 3)`` or a float tensor ``c f h w`` in [-1, 1]. The file is written
    to a temporary name in the same folder and moved into place, so readers never see half a file.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"cannot write video {path}: extension {ext or '(none)'!r} is not one of {WRITE_EXTENSIONS}")
    frames = to_uint8(video) if isinstance(video, torch.Tensor) else _check_frames(video)
    if len(frames) == 0:
        raise ValueError(f"cannot write video {path}: it has no frames")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=ext)
    os.close(fd)
    try:
        if ext == ".mp4":
            _write_mp4(tmp, frames, fps, _mp4_pixel_format(frames, path))
        else:
            _write_gif(tmp, frames, fps)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _mp4_pixel_format(frames: np.ndarray, path: Path) -> str:
    """yuv420p, which every player supports, needs even sizes (chroma is 2x2 subsampled); else yuv444p."""
    _, h, w, _ = frames.shape
    if h % 2 == 0 and w % 2 == 0:
        return "yuv420p"
    log.warning("frame size %dx%d is odd, which yuv420p cannot hold: writing %s as yuv444p "
                "(exact size kept; some players only play yuv420p)", h, w, path)
    return "yuv444p"


def _write_mp4(path: str, frames: np.ndarray, fps: float, pixelformat: str) -> None:
    writer = iio2.get_writer(path, format="FFMPEG", fps=fps, codec="libx264", quality=None,
                             output_params=["-crf", str(MP4_CRF)], pixelformat=pixelformat,
                             macro_block_size=1, ffmpeg_log_level="error")
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def _write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    # Pillow's GIF writer: duration per frame in ms (stored in centiseconds), loop=0 loops forever
    iio3.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
