"""Dataset: metadata loading and skipping, frame sampling, resizing, paired clips, images, corrupt files."""

import csv
import json
import logging

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from videosspo.data import (
    DataError,
    Unreadable,
    UnreadableClips,
    VideoDataset,
    collate,
    frame_indices,
    resize_center_crop,
)
from videosspo.metadata import load_metadata
from videosspo.video import VideoReadError, read_video, to_tensor, write_video


def counter_clip(num_frames: int, offset: int = 0, height: int = 32, width: int = 32) -> np.ndarray:
    """Uniform frames whose brightness is 10 * k + offset, so a frame's index can be read from its pixels."""
    values = np.arange(num_frames) * 10 + offset
    return np.broadcast_to(values[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8).copy()


def frame_ids(pixels: torch.Tensor, offset: int = 0) -> list[int]:
    """Inverse of counter_clip for a ``c f h w`` tensor in [-1, 1]."""
    brightness = ((pixels + 1) * 127.5).mean(dim=(0, 2, 3))
    return [round((b - offset) / 10) for b in brightness.tolist()]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def folder(tmp_path):
    """clips/a.mp4 (20 frames), clips/b.mp4 (3 frames), clips/a_loser.mp4 (20 frames, brightness +5)."""
    write_video(tmp_path / "clips" / "a.mp4", counter_clip(20))
    write_video(tmp_path / "clips" / "a_loser.mp4", counter_clip(20, offset=5))
    write_video(tmp_path / "clips" / "b.mp4", counter_clip(3, height=32, width=48))
    return tmp_path


def test_jsonl_with_relative_and_absolute_paths(folder):
    write_jsonl(
        folder / "metadata.jsonl",
        [
            {"video": "clips/a.mp4", "caption": "a", "loser_video": "clips/a_loser.mp4", "score": 3},
            {"video": str(folder / "clips" / "b.mp4"), "caption": " b "},
        ],
    )
    records = load_metadata(folder)  # a folder finds its metadata.jsonl
    assert [r.index for r in records] == [0, 1]
    assert records[0].video == (folder / "clips" / "a.mp4").resolve()
    assert records[0].loser_video == (folder / "clips" / "a_loser.mp4").resolve()
    assert records[0].extra == {"score": 3}
    assert records[1].caption == "b" and records[1].loser_video is None


def test_csv_and_skipped_rows_are_counted(folder, caplog):
    with (folder / "data.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "caption", "loser_video", "note"])
        writer.writerow(["clips/a.mp4", "first", "", "x"])
        writer.writerow(["clips/b.mp4", "", "", ""])  # empty caption
        writer.writerow(["", "no video", "", ""])
        writer.writerow(["clips/gone.mp4", "missing file", "", ""])
        writer.writerow(["clips/b.mp4", "missing loser", "clips/gone.mp4", ""])
        writer.writerow(["clips/b.mp4", "second", "", ""])
    with caplog.at_level(logging.WARNING, logger="videosspo.metadata"):
        records = load_metadata(folder / "data.csv")
    assert [r.caption for r in records] == ["first", "second"]
    assert [r.index for r in records] == [0, 1] and records[0].extra == {"note": "x"}
    (message,) = [r.getMessage() for r in caplog.records if r.name == "videosspo.metadata"]
    for part in [
        "skipped 4 of 6 rows",
        "1 missing caption (line 3)",
        "1 missing video (line 4)",
        "1 video file not found (line 5)",
        "1 loser_video file not found (line 6)",
    ]:
        assert part in message


def test_metadata_errors(folder):
    with (folder / "bad.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["path", "text"], ["clips/a.mp4", "a"]])
    with pytest.raises(ValueError, match=r"no video or caption column.*\['path', 'text'\]"):
        load_metadata(folder / "bad.csv")
    empty = write_jsonl(folder / "empty.jsonl", [{"video": "clips/gone.mp4", "caption": "x"}, {"caption": "y"}])
    with pytest.raises(
        ValueError,
        match=r"empty\.jsonl: no usable rows \(1 video file not found \(line 1\), 1 missing video \(line 2\)\)",
    ):
        load_metadata(empty)
    with pytest.raises(FileNotFoundError, match="metadata.jsonl"):
        load_metadata(folder / "clips")


def test_frame_indices():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        indices = frame_indices(20, 4, 3, rng)
        assert np.diff(indices).tolist() == [3, 3, 3] and 0 <= indices[0] <= 20 - 10
        starts.add(indices[0])
    assert starts == set(range(11))  # every valid start is drawn
    assert frame_indices(7, 4, 3, rng) == [0, 2, 4, 6]  # largest stride that fits
    assert frame_indices(3, 5, 2, rng) == [0, 1, 2, 2, 2]  # too short: repeat the last frame
    assert frame_indices(3, 1, 4, np.random.default_rng(1)) == frame_indices(3, 1, 4, np.random.default_rng(1))


def test_dataset_samples_the_frames_it_should(folder, caplog):
    write_jsonl(
        folder / "metadata.jsonl", [{"video": "clips/a.mp4", "caption": "a"}, {"video": "clips/b.mp4", "caption": "b"}]
    )
    ds = VideoDataset(folder, frames=4, stride=3, height=16, width=16)
    assert len(ds) == 2
    item = ds.get(0, seed=5)
    assert item["pixels"].shape == (3, 4, 16, 16) and item["pixels"].dtype == torch.float32
    assert -1 <= item["pixels"].min() and item["pixels"].max() <= 1
    assert (item["caption"], item["index"]) == ("a", 0)
    expected = frame_indices(20, 4, 3, np.random.default_rng(5))
    assert frame_ids(item["pixels"]) == expected
    assert torch.equal(ds.get(0, seed=5)["pixels"], item["pixels"])  # same seed, same frames
    assert frame_ids(ds[0]["pixels"]) == frame_indices(20, 4, 3, np.random.default_rng(0))
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        short = ds.get(1, seed=0)  # 3 frames of 32x48: last frame repeated, resized and centre-cropped
        ds.get(1, seed=1)
    assert frame_ids(short["pixels"]) == [0, 1, 2, 2] and short["pixels"].shape == (3, 4, 16, 16)
    assert sum("repeating its last frame" in r.getMessage() for r in caplog.records) == 1


def test_resize_center_crop():
    video = torch.linspace(-1, 1, 48).expand(3, 2, 32, 48)  # horizontal ramp
    out = resize_center_crop(video, 16, 16)
    assert out.shape == (3, 2, 16, 16)
    assert out[0, 0, 0, 0] > -1 + 0.1 and out[0, 0, 0, -1] < 1 - 0.1  # the sides were cropped away
    assert torch.allclose(out.mean(), torch.tensor(0.0), atol=0.02)  # ... symmetrically
    assert torch.equal(resize_center_crop(video, 32, 48), video)


def test_paired_dataset_uses_the_same_frames(folder):
    write_jsonl(
        folder / "metadata.jsonl",
        [
            {"video": "clips/a.mp4", "caption": "a", "loser_video": "clips/a_loser.mp4"},
            {"video": "clips/b.mp4", "caption": "b"},
        ],
    )
    with pytest.raises(ValueError, match=r"1 rows have no loser_video: row 1 \(b.mp4, 'b'\)"):
        VideoDataset(folder, frames=4, height=32, width=32, require_loser=True)
    records = load_metadata(folder)[:1]
    ds = VideoDataset(records, frames=4, stride=2, height=32, width=32, require_loser=True)
    item = ds.get(0, seed=3)
    assert frame_ids(item["loser_pixels"], offset=5) == frame_ids(item["pixels"])
    batch = collate([item, None, ds.get(0, seed=4)])
    assert batch["pixels"].shape == batch["loser_pixels"].shape == (2, 3, 4, 32, 32)
    assert batch["captions"] == ["a", "a"] and batch["indices"] == [0, 0]


def test_images_are_one_frame_clips(tmp_path):
    iio.imwrite(tmp_path / "red.png", np.full((20, 30, 3), (255, 0, 0), np.uint8))
    iio.imwrite(tmp_path / "gray.jpg", np.full((24, 24, 3), 128, np.uint8))
    write_jsonl(
        tmp_path / "metadata.jsonl", [{"video": "red.png", "caption": "red"}, {"video": "gray.jpg", "caption": "gray"}]
    )
    ds = VideoDataset(tmp_path, frames=1, height=16, width=16)
    batch = collate([ds[0], ds[1]])
    assert batch["pixels"].shape == (2, 3, 1, 16, 16)
    assert torch.allclose(batch["pixels"][0, :, 0, 8, 8], torch.tensor([1.0, -1.0, -1.0]))


def test_corrupt_video_is_returned_as_unreadable_by_try_get(folder):
    (folder / "clips" / "x.mp4").write_bytes(b"garbage" * 100)
    write_jsonl(
        folder / "metadata.jsonl", [{"video": "clips/x.mp4", "caption": "x"}, {"video": "clips/a.mp4", "caption": "a"}]
    )
    ds = VideoDataset(folder, frames=2, height=16, width=16)
    with pytest.raises(VideoReadError, match="x.mp4"):
        ds.get(0, seed=0)
    bad = ds.try_get(0, seed=0)
    assert isinstance(bad, Unreadable) and bad.index == 0 and bad.path.endswith("x.mp4") and "pyav" in bad.reason
    batch = collate([ds.try_get(i, seed=i) for i in range(len(ds))])
    assert batch["captions"] == ["a"] and batch["pixels"].shape == (1, 3, 2, 16, 16)
    assert collate([bad]) is None


def test_unreadable_rows_are_logged_once_and_stop_the_run_past_the_fraction(caplog):
    bad = [Unreadable(i, f"clips/{i}.mp4", "pyav: invalid data") for i in range(3)]
    clips = UnreadableClips(num_rows=40, max_bad_fraction=0.05)  # 2 of 40 rows may be bad, not 3
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        assert clips.add([bad[0], bad[1], bad[0]]) == 3
        assert clips.add([bad[1], bad[1]]) == 2
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["skipping row 0", "skipping row 1"]
    with pytest.raises(
        DataError,
        match=r"3 of 40 rows are unreadable, more than data.max_bad_fraction=0.05; "
        r"worst: clips/1.mp4 \(row 1, failed 3x: pyav: invalid data\); clips/0.mp4",
    ):
        clips.add([bad[2]])
    everything = UnreadableClips(num_rows=2, max_bad_fraction=1.0)  # tolerates any fraction, not an empty pass
    everything.add([bad[0]])
    with pytest.raises(DataError, match="none of the 2 clips could be read"):
        everything.add([bad[1]])


def test_a_dataset_of_only_unreadable_clips_stops_the_run(tiny_config, tmp_path, caplog):
    from videosspo.trainer import Trainer

    for i in range(3):
        (tmp_path / f"{i}.mp4").write_bytes(b"not a video" * 30)
    write_jsonl(tmp_path / "metadata.jsonl", [{"video": f"{i}.mp4", "caption": f"c{i}"} for i in range(3)])
    trainer = Trainer(tiny_config(**{"data.path": str(tmp_path), "method.name": "sft", "data.max_bad_fraction": 1.0}))
    with (
        caplog.at_level(logging.WARNING, logger="videosspo.data"),
        pytest.raises(DataError, match=r"none of the 3 clips could be read; worst: .*[012]\.mp4"),
    ):
        trainer.fit()
    assert trainer.step == 0
    logged = sorted(r.getMessage().split(":")[0] for r in caplog.records if "skipping row" in r.getMessage())
    assert logged == ["skipping row 0", "skipping row 1", "skipping row 2"]  # each file once


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_rows_that_are_not_utf8_are_skipped_with_their_line(folder, caplog, suffix):
    lines = [
        '{"video": "clips/a.mp4", "caption": "first"}',
        '{"video": "clips/b.mp4", "caption": "caf\xe9"}',
        '{"video": "clips/b.mp4", "caption": "third"}',
    ]
    if suffix == ".csv":
        lines = ["video,caption", "clips/a.mp4,first", "clips/b.mp4,caf\xe9", "clips/b.mp4,third"]
    path = folder / f"meta{suffix}"
    path.write_bytes("\n".join(lines).encode("latin-1"))  # "café" in Latin-1: byte 0xe9 is not UTF-8
    with caplog.at_level(logging.WARNING, logger="videosspo.metadata"):
        records = load_metadata(path)
    assert [r.caption for r in records] == ["first", "third"]
    (message,) = [r.getMessage() for r in caplog.records if r.name == "videosspo.metadata"]
    line = 3 if suffix == ".csv" else 2
    assert f"meta{suffix}: skipped 1 of 3 rows: 1 not valid UTF-8 (save the file as UTF-8) (line {line})" in message


def test_a_large_clip_is_decoded_at_the_training_size(folder, caplog, monkeypatch):
    import videosspo.data as data_module

    big = write_video(folder / "big.mp4", counter_clip(3, height=128, width=192))  # 8x the training size
    write_jsonl(folder / "metadata.jsonl", [{"video": "big.mp4", "caption": "big"}] * 2)
    ds = VideoDataset(folder, frames=2, height=16, width=16)
    sizes = []
    monkeypatch.setattr(
        data_module, "read_video", lambda *a, size=None, **k: sizes.append(size) or read_video(*a, size=size, **k)
    )
    with caplog.at_level(logging.WARNING, logger="videosspo.data"):
        item, again = ds.get(0, seed=1), ds.get(1, seed=1)
    assert sizes == [(16, 24), (16, 24)]  # frames shrunk as they decode to the size that covers 16 x 16
    indices = frame_indices(3, 2, 1, np.random.default_rng(1))
    full = resize_center_crop(to_tensor(read_video(big)[indices]), 16, 16)  # decode at full size, then resize
    assert (item["pixels"] - full).abs().max() <= 1 / 127.5 + 1e-6  # within one level: the uint8 kernel rounds
    assert torch.equal(item["pixels"], again["pixels"])
    assert sum("128x192, at least 4x the training size 16x16" in r.getMessage() for r in caplog.records) == 1
