"""Hostile or odd inputs (issue 24): bounded memory for extreme aspect ratios, rotated clips upright, captions the
text encoder truncates or that are not text, paths that are no regular file, the short clip of a pair named."""

from __future__ import annotations

import json
import logging
import os
import subprocess

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from videosspo import data as data_module
from videosspo.data import MAX_COVER, VideoDataset, report_long_captions
from videosspo.decoders import decord_module
from videosspo.metadata import Record, load_metadata
from videosspo.video import VideoReadError, probe, read_video, write_video


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_thin_image_is_cropped_before_it_is_scaled(tmp_path, monkeypatch):
    """A 1 x 20000 PNG (a gradient) to 32 x 32: every scaled intermediate stays under MAX_COVER x the output (scaling
    first would make 32 x 640000, 2.2 GB); the output is the image's centre pixel, everywhere."""
    row = np.linspace(0, 255, 20000).round().astype(np.uint8)
    image = np.stack([row, 255 - row, np.full_like(row, 7)], axis=-1)[None]  # (1, 20000, 3)
    iio.imwrite(tmp_path / "thin.png", image)
    write_jsonl(tmp_path / "m.jsonl", [{"video": "thin.png", "caption": "a line"}])
    sizes = []
    real = data_module.F.interpolate
    monkeypatch.setattr(
        data_module.F, "interpolate", lambda x, **k: (lambda y: sizes.append(y.numel()) or y)(real(x, **k))
    )
    pixels = VideoDataset(tmp_path / "m.jsonl", frames=1, height=32, width=32).get(0, seed=0)["pixels"]
    assert pixels.shape == (3, 1, 32, 32) and sizes and max(sizes) <= MAX_COVER * 3 * 32 * 32
    centre = torch.tensor(image[0, (20000 - 1) // 2], dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(pixels, centre[:, None, None, None].expand_as(pixels), atol=1e-6)


def ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@pytest.mark.parametrize("degrees", [90, 180, -90])
def test_a_clip_with_rotation_metadata_comes_out_upright(tmp_path, degrees):
    """A lossless 64 x 128 clip given a display matrix (as phones record) reads back turned as FFmpeg's players
    show it (ffmpeg's autorotate, checked here too), at its upright size, by either decoder and the dataset."""
    frames = np.zeros((3, 64, 128, 3), np.uint8)
    frames[:, :32, :, 0] = 255  # top half red
    frames[:, :, :16, 1] = 255  # left strip green: tells every rotation apart
    frames[1:, ..., 2] = 100  # frames differ
    write_video(tmp_path / "flat.mp4", frames, lossless=True)
    subprocess.run(
        [
            ffmpeg(),
            "-y",
            "-loglevel",
            "error",
            "-display_rotation:v:0",
            str(degrees),
            "-i",
            str(tmp_path / "flat.mp4"),
            "-c",
            "copy",
            str(tmp_path / "phone.mp4"),
        ],
        check=True,
    )
    subprocess.run(
        [
            ffmpeg(),
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(tmp_path / "phone.mp4"),
            "-frames:v",
            "1",
            str(tmp_path / "shown.png"),
        ],
        check=True,
    )
    upright = np.rot90(frames, degrees // 90, axes=(1, 2))
    assert np.array_equal(iio.imread(tmp_path / "shown.png")[..., :3], upright[0])  # what a player shows
    info = probe(tmp_path / "phone.mp4")
    assert (info.height, info.width, info.rotation) == (*upright.shape[1:3], degrees % 360)
    assert np.array_equal(read_video(tmp_path / "phone.mp4"), upright)  # PyAV, sequentially
    for backend in ("auto", "pyav", *(("decord",) if decord_module() else ())):
        assert np.array_equal(read_video(tmp_path / "phone.mp4", [2, 0], backend=backend), upright[[2, 0]]), backend
    write_jsonl(tmp_path / "m.jsonl", [{"video": "phone.mp4", "caption": "upright"}])
    h, w = upright.shape[1:3]
    pixels = VideoDataset(tmp_path / "m.jsonl", frames=3, height=h, width=w).get(0, seed=0)["pixels"]
    assert torch.equal(pixels, torch.from_numpy(upright.copy()).permute(3, 0, 1, 2).float() / 127.5 - 1)


def test_captions_longer_than_the_text_encoder_takes_are_counted_once(tmp_path, caplog):
    from models.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    limit = tokenizer.model_max_length
    records = [
        Record(k, tmp_path / "a.mp4", caption)
        for k, caption in enumerate(
            ["a red square", " ".join(["red square"] * limit), "blue", " ".join(["blue"] * limit)]
        )
    ]
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        assert report_long_captions(records, tokenizer, limit) == 2
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(
        f"2 of 4 captions are longer than the text encoder's {limit} tokens and are truncated to them (first: row 1, "
    )


def test_a_run_reports_its_long_captions_in_one_line(tiny_config, synth_data, tmp_path, caplog):
    from videosspo.trainer import Trainer

    rows = [json.loads(line) for line in open(synth_data / "metadata.jsonl")]
    for row in rows[:2]:
        row["caption"] = " ".join([row["caption"]] * 40)
        row["video"], row["loser_video"] = str(synth_data / row["video"]), str(synth_data / row["loser_video"])
    for row in rows[2:]:
        row["video"], row["loser_video"] = str(synth_data / row["video"]), str(synth_data / row["loser_video"])
    write_jsonl(tmp_path / "long.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        Trainer(tiny_config(**{"data.path": str(tmp_path / "long.jsonl")}))
    assert [r.getMessage()[:40] for r in caplog.records if "captions are longer" in r.getMessage()] == [
        "2 of 6 captions are longer than the text"
    ]


def test_rows_that_are_no_readable_file_or_text_are_named_for_what_they_are(tmp_path, caplog):
    write_video(tmp_path / "ok.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    os.symlink(tmp_path / "loop_b", tmp_path / "loop_a")
    os.symlink(tmp_path / "loop_a", tmp_path / "loop_b")
    os.mkfifo(tmp_path / "pipe.mp4")
    (tmp_path / "folder.mp4").mkdir()
    write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"video": "ok.mp4", "caption": "fine"},
            {"video": "loop_a", "caption": "a loop"},
            {"video": "pipe.mp4", "caption": "a fifo"},
            {"video": "/dev/zero", "caption": "a device"},
            {"video": "folder.mp4", "caption": "a folder"},
            {"video": "gone.mp4", "caption": "missing"},
            {"video": "ok.mp4", "caption": ["a", "list"]},
            {"video": "ok.mp4", "caption": {"en": "an object"}},
            {"video": "ok.mp4", "caption": "fine", "loser_video": "pipe.mp4"},
        ],
    )
    with caplog.at_level(logging.WARNING, logger="videosspo.metadata"):
        records = load_metadata(tmp_path / "m.jsonl")
    assert [r.caption for r in records] == ["fine"]
    (line,) = [r.getMessage() for r in caplog.records]
    for reason in (
        "1 video is a symlink loop (line 2)",
        "1 video is a FIFO (named pipe) (line 3)",
        "1 video is a character device (line 4)",
        "1 video is a folder (line 5)",
        "1 video file not found (line 6)",
        "2 caption is a JSON list or object, not text (write it as one string) (lines 7, 8)",
        "1 loser_video is a FIFO (named pipe) (line 9)",
    ):
        assert reason in line, (reason, line)
    for path, what in ((tmp_path / "pipe.mp4", "a FIFO"), ("/dev/zero", "a character device")):
        with pytest.raises(VideoReadError, match=f"not a regular file: {what}"):  # never opened: no hang
            read_video(path)


def test_the_short_clip_warning_names_the_short_clip_of_a_pair(tmp_path, caplog):
    write_video(tmp_path / "winner.mp4", np.zeros((6, 16, 16, 3), np.uint8))
    write_video(tmp_path / "loser.mp4", np.zeros((2, 16, 16, 3), np.uint8))
    write_jsonl(tmp_path / "m.jsonl", [{"video": "winner.mp4", "caption": "pair", "loser_video": "loser.mp4"}])
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        VideoDataset(tmp_path / "m.jsonl", frames=4, height=16, width=16).get(0, seed=0)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "videosspo.data"]
    assert line.startswith(f"{tmp_path / 'loser.mp4'} has 2 frames, fewer than the 4 requested")
