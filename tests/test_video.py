"""Video I/O: write/read round trips, decord == PyAV, the per-clip PyAV fallback, error messages."""

import logging

import numpy as np
import pytest
import torch

from videosspo import video as V
from videosspo.video import (VideoReadError, count_frames, read_video, to_tensor, to_uint8, video_fps,
                             write_video)

needs_decord = pytest.mark.skipif(V._decord() is None, reason="decord not installed")


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
    assert count_frames(path, backend="decord") == count_frames(path, backend="pyav") == 10


@needs_decord
def test_auto_falls_back_to_pyav_where_decord_fails(tmp_path, caplog, monkeypatch):
    import videosspo.video as video_module

    monkeypatch.setattr(video_module, "_fallback_warned", set())  # earlier tests may have used up the warnings
    clip = smooth_clip(frames=5, height=48, width=48)  # a width decord 0.6 cannot copy out
    path = write_video(tmp_path / "c48.mp4", clip)
    with pytest.raises(VideoReadError):
        read_video(path, backend="decord")
    with caplog.at_level(logging.WARNING, logger="videosspo.video"):
        out = read_video(path, backend="auto")
        read_video(path, [0], backend="auto")
    np.testing.assert_array_equal(out, read_video(path, backend="pyav"))
    assert np.abs(out.astype(float) - clip).mean() < 3
    assert sum("PyAV" in r.message for r in caplog.records) == 1  # warned once for this file


def test_decord_fallback_warnings_stop_after_a_few_files(tmp_path, caplog, monkeypatch):
    import videosspo.video as video_module

    monkeypatch.setattr(video_module, "_fallback_warned", set())
    paths = [write_video(tmp_path / f"c{i}.mp4", smooth_clip(frames=2, height=48, width=48)) for i in range(5)]
    with caplog.at_level(logging.DEBUG, logger="videosspo.video"):
        for path in paths:
            read_video(path, backend="auto")
    levels = [r.levelno for r in caplog.records if "PyAV" in r.message]
    assert levels == [logging.WARNING] * video_module.FALLBACK_WARNINGS + [logging.DEBUG] * 2


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        read_video(tmp_path / "nope.mp4")
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    for backend in ("auto", "pyav"):
        with pytest.raises(VideoReadError, match=r"x\.mp4.*corrupt or unreadable"):
            read_video(bad, backend=backend)
        with pytest.raises(VideoReadError):
            count_frames(bad, backend=backend)


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
    monkeypatch.setattr(V, "_decord", lambda: None)
    np.testing.assert_array_equal(read_video(path), expected)
    assert count_frames(path) == 4
    with pytest.raises(ImportError, match="pip install decord"):
        read_video(path, backend="decord")
