"""Video I/O: exact frames in every container, counts of what decodes, decord == PyAV, the per-clip PyAV
fallback, shrinking frames as they decode, error messages."""

import dataclasses
import logging

import av
import imageio.v3 as iio3
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videosspo import decoders
from videosspo import video as V
from videosspo.video import VideoReadError, count_frames, probe, read_video, to_tensor, to_uint8, video_fps, write_video

needs_decord = pytest.mark.requires("decord", decoders.decord_module() is not None)  # CI requires it (.ci/run)


def smooth_clip(frames=6, height=32, width=32) -> np.ndarray:
    """Gradients that change over time: smooth enough for lossy codecs, distinct per frame."""
    y, x = np.mgrid[:height, :width]
    clip = np.empty((frames, height, width, 3), np.uint8)
    for k in range(frames):
        clip[k, ..., 0] = (x * 200 // width + 5 * k) % 256
        clip[k, ..., 1] = y * 200 // height
        clip[k, ..., 2] = 25 * k % 256
    return clip


@pytest.mark.parametrize("ext, tol", [(".mp4", 3.0), (".gif", 4.0)])
def test_round_trip(tmp_path, ext, tol):
    clip = smooth_clip(frames=6, height=32, width=40)
    path = write_video(tmp_path / "sub" / f"clip{ext}", clip, fps=8)
    assert path.exists() and path.parent.name == "sub"
    out = read_video(path)
    assert out.dtype == np.uint8 and out.shape == clip.shape
    assert np.abs(out.astype(float) - clip).mean() < tol
    assert count_frames(path) == 6
    assert list(tmp_path.glob("sub/.*")) == []  # no temporary file left behind


def test_mp4_keeps_sizes_not_multiple_of_16_and_odd(tmp_path):
    for h, w in [(24, 40), (33, 45)]:
        out = read_video(write_video(tmp_path / f"c{h}x{w}.mp4", smooth_clip(3, h, w)))
        assert out.shape == (3, h, w, 3)


def test_read_indices_and_fps(tmp_path):
    clip = smooth_clip(frames=8)
    path = write_video(tmp_path / "c.mp4", clip, fps=8)
    full = read_video(path)
    for backend in ("auto", "pyav"):
        np.testing.assert_array_equal(read_video(path, [5, 1, 5], backend=backend), full[[5, 1, 5]])
    assert video_fps(path) == pytest.approx(8.0)
    with pytest.raises(IndexError, match="8 frames"):
        read_video(path, [8])


def test_write_float_tensor(tmp_path):
    clip = smooth_clip(frames=4)
    path = write_video(tmp_path / "t.mp4", to_tensor(clip))
    assert np.abs(read_video(path).astype(float) - clip).mean() < 3


@needs_decord
def test_decord_and_pyav_decode_identical_frames(tmp_path):
    path = write_video(tmp_path / "c.mp4", smooth_clip(frames=10, height=64, width=64))
    by_decord = read_video(path, backend="decord")
    by_pyav = read_video(path, backend="pyav")
    np.testing.assert_array_equal(by_decord, by_pyav)
    np.testing.assert_array_equal(read_video(path, [7, 2], backend="decord"), by_pyav[[7, 2]])
    assert count_frames(path) == 10


@needs_decord
def test_auto_falls_back_to_pyav_where_decord_fails(tmp_path, caplog, monkeypatch):
    import videosspo.video as video_module

    monkeypatch.setattr(video_module, "_fallback_warned", set())  # earlier tests may have used up the warnings
    clip = smooth_clip(frames=5, height=48, width=48)  # a width decord 0.6 cannot copy out
    path = write_video(tmp_path / "c48.mp4", clip)
    with pytest.raises(VideoReadError):
        read_video(path, backend="decord")
    with caplog.at_level(logging.INFO, logger="videosspo.video"):
        out = read_video(path, backend="auto")
        read_video(path, [0], backend="auto")
    np.testing.assert_array_equal(out, read_video(path, backend="pyav"))
    assert np.abs(out.astype(float) - clip).mean() < 3
    assert sum("PyAV" in r.message for r in caplog.records) == 1  # warned once for this file


@needs_decord
def test_decord_fallback_warnings_stop_after_a_few_files(tmp_path, caplog, monkeypatch):
    import videosspo.video as video_module

    monkeypatch.setattr(video_module, "_fallback_warned", set())
    paths = [write_video(tmp_path / f"c{i}.mp4", smooth_clip(frames=2, height=48, width=48)) for i in range(5)]
    with caplog.at_level(logging.DEBUG, logger="videosspo.video"):
        for path in paths:
            read_video(path, [1], backend="auto")
    levels = [r.levelno for r in caplog.records if "PyAV" in r.message]
    assert levels == [logging.INFO] * video_module.FALLBACK_WARNINGS + [logging.DEBUG] * 2


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    for backend in ("auto", "pyav"):
        with pytest.raises(VideoReadError, match=r"x\.mp4.*corrupt or unreadable"):
            read_video(bad, backend=backend)
    with pytest.raises(VideoReadError, match=r"x\.mp4"):
        count_frames(bad)


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"'\.avi'.*\.mp4"):
        write_video(tmp_path / "c.avi", smooth_clip(2))
    with pytest.raises(ValueError, match=r"\(f, h, w, 3\)"):
        write_video(tmp_path / "c.mp4", np.zeros((2, 8, 8), np.uint8))
    path = write_video(tmp_path / "c.mp4", smooth_clip(2))
    with pytest.raises(ValueError, match="backend"):
        read_video(path, backend="opencv")


def test_image_is_a_one_frame_clip(tmp_path):
    import imageio.v3 as iio

    image = smooth_clip(1, 16, 24)[0]
    iio.imwrite(tmp_path / "i.png", image)
    np.testing.assert_array_equal(read_video(tmp_path / "i.png"), image[None])
    assert count_frames(tmp_path / "i.png") == 1


def test_uint8_tensor_round_trip():
    clip = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    video = to_tensor(clip)
    assert video.shape == (3, 3, 5, 7) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    np.testing.assert_array_equal(to_uint8(video), clip)
    np.testing.assert_array_equal(to_uint8(torch.full((3, 1, 2, 2), 5.0))[0, 0, 0], [255, 255, 255])


def test_without_decord_everything_goes_through_pyav(tmp_path, monkeypatch):
    path = write_video(tmp_path / "c.mp4", smooth_clip(4))
    expected = read_video(path, backend="pyav")
    monkeypatch.setattr(V, "decord_module", lambda: None)
    np.testing.assert_array_equal(read_video(path), expected)
    with pytest.raises(ImportError, match="pip install decord"):
        read_video(path, backend="decord")


# ----------------------------------------------------------------------------- frame-numbered clips

BLOCK = 16  # a frame is 2 x 4 blocks of 16 x 16 pixels, black or white: the 8 bits of its number


def numbered_clip(path, codec: str, pix_fmt: str, options: dict, frames: int = 120, container_options=None):
    """Write a clip with PyAV whose frame k shows k in big black/white blocks (robust to lossy codecs)."""
    bits = (np.arange(frames)[:, None] >> np.arange(8)) & 1  # (frames, 8), least significant bit first
    blocks = bits.reshape(frames, 2, 4).astype(np.uint8) * 255
    clip = np.repeat(np.repeat(blocks, BLOCK, axis=1), BLOCK, axis=2)[..., None].repeat(3, axis=-1)
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=8, options=options)
        stream.width, stream.height, stream.pix_fmt = 4 * BLOCK, 2 * BLOCK, pix_fmt
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def frame_numbers(frames: np.ndarray) -> list[int]:
    """Inverse of numbered_clip for ``uint8 (f, 32, 64, 3)`` frames."""
    bits = frames.reshape(len(frames), 2, BLOCK, 4, BLOCK, 3).mean(axis=(2, 4, 5)) > 127  # (f, 2, 4)
    return (bits.reshape(len(frames), 8) * (1 << np.arange(8))).sum(axis=1).tolist()


# name: (file, encoder, pixel format, encoder options, whether decord's seeking is exact there). B-frames and
# short GOPs everywhere: the MPEG-4 Part 2 clips (GOP 12) reproduce decord's wrong seeks, in .avi and in .mp4.
CLIPS = {
    "mp4/h264": ("c.mp4", "libx264", "yuv420p", {"bf": "3", "g": "7"}, True),
    "webm/vp9": ("c.webm", "libvpx-vp9", "yuv420p", {"g": "10"}, True),
    "avi/mpeg4": ("c.avi", "mpeg4", "yuv420p", {"bf": "2"}, False),
    "mp4/mpeg4": ("c.mp4", "mpeg4", "yuv420p", {"bf": "2"}, False),
    "gif": ("c.gif", "gif", "rgb8", {}, False),
}


@pytest.mark.parametrize("kind", list(CLIPS))
def test_exact_frames_deep_in_every_container(tmp_path, kind):
    name, codec, pix_fmt, options, decord_exact = CLIPS[kind]
    path = numbered_clip(tmp_path / name, codec, pix_fmt, options)
    assert count_frames(path) == 120 and probe(path).decord_exact == decord_exact
    window = list(range(96, 104))  # 96 is a keyframe of the MPEG-4 clips
    for backend in ("auto", "pyav"):
        assert frame_numbers(read_video(path, window, backend=backend)) == window
        assert frame_numbers(read_video(path, [103, 5, 96, 119], backend=backend)) == [103, 5, 96, 119]
    if decoders.decord_module() is not None and kind != "gif":  # decord cannot open gifs
        # where decord is trusted its answer is exact; elsewhere the clip shows why it is not trusted
        assert (frame_numbers(read_video(path, window, backend="decord")) == window) == decord_exact


def test_count_is_what_decodes_not_what_the_header_claims(tmp_path, caplog):
    whole = numbered_clip(
        tmp_path / "whole.mp4", "libx264", "yuv420p", {}, container_options={"movflags": "+faststart"}
    )
    cut = tmp_path / "cut.mp4"  # the index (moov, at the front) still lists all 120 frames; the data stops early
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.9)])
    with av.open(str(cut)) as container:
        assert container.streams.video[0].frames == 120
    with caplog.at_level(logging.WARNING, logger="videosspo.video"):
        n = count_frames(cut)
        assert 0 < n < 120
        assert frame_numbers(read_video(cut)) == list(range(n))  # what decodes, nothing padded
        assert frame_numbers(read_video(cut, [n - 1, 0])) == [n - 1, 0]
    with pytest.raises(IndexError, match=f"has {n} frames"):
        read_video(cut, [n])
    assert sum(f"header claims 120 frames but {n} decode" in r.message for r in caplog.records) == 1  # once


@needs_decord
def test_decord_is_not_trusted_where_its_count_differs(tmp_path, caplog, monkeypatch):
    path = numbered_clip(tmp_path / "c.mp4", "libx264", "yuv420p", {}, frames=20)
    short = dataclasses.replace(probe(path), frames=19)  # as if the last frame did not decode
    monkeypatch.setattr(V, "probe", lambda p: short)
    monkeypatch.setattr(V, "_fallback_warned", set())
    with caplog.at_level(logging.INFO, logger="videosspo.video"):
        assert frame_numbers(read_video(path, [18, 3])) == [18, 3]
        with pytest.raises(IndexError, match="has 19 frames"):
            read_video(path, [19])
    assert "decord counts 20 frames where 19 decode" in caplog.text


@pytest.mark.parametrize("backend", ["pyav", pytest.param("decord", marks=needs_decord)])
def test_size_shrinks_each_frame_as_it_decodes(tmp_path, backend):
    path = write_video(tmp_path / "big.mp4", smooth_clip(frames=3, height=256, width=384))
    full = read_video(path, [2, 0], backend=backend)
    small = read_video(path, [2, 0], backend=backend, size=(32, 48))
    assert small.shape == (2, 32, 48, 3) and small.dtype == np.uint8
    # the reference: the full-size frames resized in float; torch's uint8 kernel rounds, so within one level
    pixels = (
        F.interpolate(
            torch.from_numpy(full).permute(0, 3, 1, 2).float(),
            size=(32, 48),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        .permute(0, 2, 3, 1)
        .numpy()
    )
    assert np.abs(small - pixels).max() <= 1
    image = tmp_path / "i.png"
    iio3.imwrite(image, full[0])
    assert read_video(image, size=(32, 48)).shape == (1, 32, 48, 3)


def test_decoding_stops_at_the_first_error_after_a_frame(tmp_path, caplog, monkeypatch):
    """A damaged stream: the frames before the damage are used (warned once per file); none at all is an error."""

    class Damaged:  # a PyAV container whose decoder fails after `good` frames
        def __init__(self, good):
            self.good, self.streams = good, type("Streams", (), {"video": [type("Stream", (), {})()]})()

        def decode(self, stream):
            yield from range(self.good)
            raise av.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(decoders, "_damaged_warned", set())
    with caplog.at_level(logging.WARNING, logger="videosspo.decoders"):
        assert list(decoders.decode(Damaged(3), tmp_path / "d.mp4")) == [0, 1, 2]
        assert list(decoders.decode(Damaged(3), tmp_path / "d.mp4")) == [0, 1, 2]
    assert sum("d.mp4 is damaged after frame 3" in r.message for r in caplog.records) == 1
    with pytest.raises(av.InvalidDataError):
        list(decoders.decode(Damaged(0), tmp_path / "d.mp4"))
