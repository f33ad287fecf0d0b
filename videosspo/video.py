"""Video I/O: read clips with decord (fast) or PyAV (reads everything), write mp4/gif atomically.

Reading
    ``read_video(path, indices, size=None)`` returns ``uint8 (f, h, w, 3)``; with ``backend="auto"``
    (the default) these are exactly the frames asked for, in every container: decord only where its
    seeking was verified exact (``VideoInfo.decord_exact``) and its frame count equals the count that
    decodes, PyAV (sequential, exact) for every other clip (.avi, .gif, MPEG-4 Part 2, ...) and for
    every clip decord fails on. What each decoder gets wrong, and the resizing: `videosspo.decoders`.

    Frame counts (``probe``, ``count_frames``) are of the frames PyAV decodes, counted once per file and
    cached: headers can claim frames that do not decode, and a decoder asked for one pads with a repeated
    frame. Clips with rotation metadata come out upright, and ``probe`` reports the upright size.

    A file that cannot be decoded raises ``VideoReadError``; a path that is no regular file is named for
    what it is (``file_problem``). Still images (.png, .jpg, ...) are 1-frame clips, so image datasets
    go through the same path.

Writing
    ``write_video(path, video, fps)`` writes .mp4 (libx264, near-lossless CRF, yuv420p; odd frame
    sizes, which yuv420p cannot hold, are written as yuv444p so the exact size is kept) or .gif
    (looping). ``lossless=True`` writes mp4 as lossless RGB H.264 (libx264rgb, CRF 0) in-process
    with PyAV: pixels read back exactly and a small clip takes about a millisecond (no ffmpeg
    process per file), which is what a synthetic dataset with exact ground truth needs. Input is
    ``uint8 (f, h, w, 3)`` or a float tensor ``c f h w`` in [-1, 1].
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import imageio.v2 as iio2
import imageio.v3 as iio3
import numpy as np
import torch
from einops import rearrange
from PIL import Image

from videosspo.decoders import (
    DECORD_CODECS,
    DECORD_CONTAINERS,
    check_indices,
    decode,
    decord_module,
    first_line,
    read_decord,
    read_pyav,
    resize_frames,
    upright,
)
from videosspo.files import chmod_like_open

log = logging.getLogger("videosspo.video")

BACKENDS = ("auto", "decord", "pyav")
WRITE_EXTENSIONS = (".mp4", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
MP4_CRF = 10  # x264 constant rate factor: 0 is lossless, 10 is visually lossless, 23 is x264's default


_fallback_warned: set[str] = set()  # files already reported as "decord failed, read with PyAV"
# Files reported at INFO (the frames are exact either way: not a warning); later ones at DEBUG (a dataset of one
# odd size hits them all).
FALLBACK_WARNINGS = 3


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


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns about a clip."""

    frames: int  # frames that decode (not the header's claim); a damaged file counts those before the damage
    height: int
    width: int
    container: str  # FFmpeg's demuxer names, e.g. "mov,mp4,m4a,3gp,3g2,mj2", "avi", "gif"; "image" for stills
    codec: str  # FFmpeg's decoder name, e.g. "h264", "mpeg4", "vp9"; "image" for stills
    rotation: int = 0  # degrees counterclockwise the stored frames are turned to be upright (0, 90, 180, 270)

    @property
    def decord_exact(self) -> bool:
        """Whether decord's seeking lands on the exact frames here (``DECORD_CONTAINERS`` x ``DECORD_CODECS``)."""
        return self.codec in DECORD_CODECS and any(c in DECORD_CONTAINERS for c in self.container.split(","))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def file_problem(path: Path) -> str | None:
    """Why `path` is not a regular file that can be read ("file not found", "a symlink loop", "a FIFO", ...), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symlink loop"
        return "a broken symlink" if path.is_symlink() else "file not found"
    kinds = {
        stat.S_ISDIR: "a folder",
        stat.S_ISFIFO: "a FIFO (named pipe)",
        stat.S_ISCHR: "a character device",
        stat.S_ISBLK: "a block device",
        stat.S_ISSOCK: "a socket",
    }
    return next((what for test, what in kinds.items() if test(mode)), None)


def _check_exists(path: Path) -> None:
    problem = file_problem(path)
    if problem == "file not found":
        raise FileNotFoundError(errno.ENOENT, "video file not found", str(path))
    if problem:
        raise VideoReadError(path, f"not a regular file: {problem}")


def _read_image(path: Path, indices: Sequence[int] | None, size: tuple[int, int] | None) -> np.ndarray:
    try:
        image = iio3.imread(path, mode="RGB")
    except Exception as e:  # imageio/Pillow raise assorted types for bad files
        raise VideoReadError(path, f"image decoder: {e}") from e
    frames = image[None][check_indices(indices, 1, path)]  # (f, h, w, 3)
    return frames if size is None else resize_frames(frames, size)


@functools.lru_cache(maxsize=2**16)
def _probe_video(path: Path, mtime_ns: int, size: int) -> VideoInfo:
    """``probe`` of one version of a file (the cache key includes its modification time and size)."""
    import av

    frames, height, width, rotation = 0, 0, 0, 0
    with av.open(str(path)) as container:
        for frame in decode(container, path):  # decode only: no conversion to RGB
            frames, height, width = frames + 1, frame.height, frame.width
            if frames == 1:
                rotation = round(frame.rotation / 90) % 4 * 90
        if frames == 0:
            raise RuntimeError("no video frame decodes")
        stream = container.streams.video[0]
        if stream.frames > frames:  # the header's count (0 where the container stores none)
            log.warning(
                "%s: its header claims %d frames but %d decode: using those %d", path, stream.frames, frames, frames
            )
        if rotation % 180:  # upright, it is turned on its side
            height, width = width, height
        return VideoInfo(frames, height, width, container.format.name, stream.codec_context.name, rotation)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Frame count, size and container of a video (or still image), decoding it once with PyAV; cached per file.

    The count is of the frames that decode, never a header's claim: headers can be wrong (an mp4 claiming 456
    frames of which 455 decode; an AVI with a damaged index claiming 68 of 444), and a decoder asked for a frame
    that is not there pads with a repeated one. Raises FileNotFoundError or VideoReadError.
    """
    path = Path(path)
    _check_exists(path)
    if _is_image(path):
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception as e:  # Pillow raises assorted types for bad files
            raise VideoReadError(path, f"image decoder: {e}") from e
        return VideoInfo(1, height, width, "image", "image")
    stat = path.stat()
    try:
        return _probe_video(path.resolve(), stat.st_mtime_ns, stat.st_size)
    except Exception as e:  # PyAV raises av.FFmpegError (a ValueError) for files it cannot open or decode
        raise VideoReadError(path, f"pyav: {first_line(e)}") from e


_READERS = {"decord": read_decord, "pyav": read_pyav}


def _run(backend: str, path: Path, *args):
    """Read with one backend, turning decoder failures into VideoReadError."""
    try:
        return _READERS[backend](path, *args)
    except IndexError:
        raise
    except Exception as e:  # decord raises RuntimeError/DECORDError, PyAV raises av.FFmpegError (a ValueError)
        raise VideoReadError(path, f"{backend}: {first_line(e)}") from e


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend == "decord" and decord_module() is None:
        raise ImportError("backend='decord' needs the decord package: pip install decord")


def _read_auto(path: Path, indices: Sequence[int] | None, size: tuple[int, int] | None) -> np.ndarray:
    """decord where its answer is exact (``VideoInfo.decord_exact``, and its count equals what decodes), else PyAV.

    PyAV also serves every clip decord fails on (an INFO line names the first few files), and whole clips
    (``indices=None``: a sequential decode, where decord's random access gains nothing).
    """
    if decord_module() is None or indices is None:
        return _run("pyav", path, indices, size)
    info = probe(path)
    indices = check_indices(indices, info.frames, path)
    if not info.decord_exact:
        return _run("pyav", path, indices, size)
    try:
        return _run("decord", path, indices, size, info.frames)
    except VideoReadError as first:
        try:
            result = _run("pyav", path, indices, size)
        except VideoReadError as second:
            raise VideoReadError(path, f"{first.reason}; {second.reason}") from second
        if str(path) not in _fallback_warned:
            _fallback_warned.add(str(path))
            level = logging.INFO if len(_fallback_warned) <= FALLBACK_WARNINGS else logging.DEBUG
            more = "; further files are logged at DEBUG" if len(_fallback_warned) == FALLBACK_WARNINGS else ""
            log.log(level, "decord could not read %s (%s); read it with PyAV instead%s", path, first.reason, more)
        return result


def read_video(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    backend: str = "auto",
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Frames ``indices`` (all when None) of a video or still image, as ``uint8 (f, h, w, 3)``.

    ``size=(h, w)`` resizes each frame as soon as it is decoded (``resize_frames``), so a large clip is never
    held at full size. ``backend="auto"`` returns exact frames (see the module docstring); ``"decord"`` and
    ``"pyav"`` force one decoder, decord's answer unchecked. Raises FileNotFoundError for a missing file,
    VideoReadError for one that cannot be decoded, IndexError for frame indices outside the clip.
    """
    path = Path(path)
    _check_backend(backend)
    _check_exists(path)
    if indices is not None and len(indices) == 0:
        raise ValueError(f"no frame indices given for {path}")
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (height, width) with both >= 1, got {size}")
    if _is_image(path):
        return _read_image(path, indices, size)
    if backend == "auto":
        return _read_auto(path, indices, size)
    return _run(backend, path, indices, size)


def count_frames(path: str | os.PathLike) -> int:
    """Number of frames that decode (1 for a still image): ``probe(path).frames``."""
    return probe(path).frames


def iter_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield a video's (or still image's) frames one at a time as ``uint8 (h, w, 3)``, decoded
    sequentially by PyAV (exact; a damaged file yields its frames before the damage), so a long clip
    is never held whole. Raises FileNotFoundError, or VideoReadError when nothing decodes."""
    import av

    path = Path(path)
    _check_exists(path)
    if _is_image(path):
        yield _read_image(path, None, None)[0]
        return
    try:
        with av.open(str(path)) as container:
            decoded = 0
            for frame in decode(container, path):
                decoded += 1
                yield upright(frame)
            if decoded == 0:
                raise RuntimeError("no video frames decoded")
    except Exception as e:  # PyAV raises av.FFmpegError (a ValueError) for files it cannot open or decode
        raise VideoReadError(path, f"pyav: {first_line(e)}") from e


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


def write_video(
    path: str | os.PathLike, video: np.ndarray | torch.Tensor, fps: float = 8, lossless: bool = False
) -> Path:
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
        if ext == ".mp4" and lossless:
            _write_mp4_lossless(tmp, frames, fps)
        elif ext == ".mp4":
            _write_mp4(tmp, frames, fps, _mp4_pixel_format(frames, path))
        else:
            _write_gif(tmp, frames, fps)
        chmod_like_open(tmp)
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
    log.warning(
        "frame size %dx%d is odd, which yuv420p cannot hold: writing %s as yuv444p "
        "(exact size kept; some players only play yuv420p)",
        h,
        w,
        path,
    )
    return "yuv444p"


def _write_mp4(path: str, frames: np.ndarray, fps: float, pixelformat: str) -> None:
    writer = iio2.get_writer(
        path,
        format="FFMPEG",
        fps=fps,
        codec="libx264",
        quality=None,
        output_params=["-crf", str(MP4_CRF)],
        pixelformat=pixelformat,
        macro_block_size=1,
        ffmpeg_log_level="error",
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()


def _write_mp4_lossless(path: str, frames: np.ndarray, fps: float) -> None:
    import av

    _, h, w, _ = frames.shape
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264rgb", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt, stream.options = w, h, "rgb24", {"crf": "0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _write_gif(path: str, frames: np.ndarray, fps: float) -> None:
    # Pillow's GIF writer: duration per frame in ms (stored in centiseconds), loop=0 loops forever
    iio3.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
