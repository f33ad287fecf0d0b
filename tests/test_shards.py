"""WebDataset tar shards (videosspo/shards.py): written from the synthetic clips as video2dataset lays them out,
read without unpacking, in an order that resumes exactly and splits whole shards between processes."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch
from test_trainer import straight_and_resumed, unet_state

from videosspo.config import ConfigError
from videosspo.data import Unreadable, VideoDataset
from videosspo.errors import DataError
from videosspo.metadata import load_metadata
from videosspo.shards import ShardDataset, check_shares, epoch_share, expand_braces, is_shards
from videosspo.stream import ShardSampler
from videosspo.trainer import Trainer


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder, records, sizes, captions=(".txt", ".json")) -> list:
    """`records` in shards of `sizes` samples, each `KEY.mp4` + `KEY.txt` and/or `KEY.json` (video2dataset's layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, records = [], iter(records)
    for k, size in enumerate(sizes):
        paths.append(folder / f"{k:05d}.tar")
        with tarfile.open(paths[-1], "w") as tar:
            for record in (next(records) for _ in range(size)):
                key = f"{k:05d}{record.index:04d}"
                _add(tar, f"{key}.mp4", record.video.read_bytes())
                if ".txt" in captions:
                    _add(tar, f"{key}.txt", record.caption.encode())
                if ".json" in captions:
                    _add(tar, f"{key}.json", json.dumps({"caption": record.caption, "key": key}).encode())
    return paths


@pytest.fixture(scope="module")
def shards(synth_data, tmp_path_factory):
    """The six synthetic clips in shards of 3, 1 and 2 samples; the middle one with .json captions only."""
    records = load_metadata(synth_data)
    folder = tmp_path_factory.mktemp("shards")
    write_shards(folder, records[:4], [3, 1], captions=(".txt", ".json"))
    (folder / "00001.tar").unlink()
    write_shards(folder / "json", records[3:4], [1], captions=(".json",))[0].rename(folder / "00001.tar")
    write_shards(folder / "rest", records[4:], [2])[0].rename(folder / "00002.tar")
    return str(folder / "{00000..00002}.tar")


def test_brace_patterns_expand_as_webdataset_writes_them(tmp_path):
    assert expand_braces("s/{00..02}.tar") == ["s/00.tar", "s/01.tar", "s/02.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert is_shards("s/{00..02}.tar") and is_shards("x.tar") and not is_shards(str(tmp_path))


def test_shards_read_as_the_clips_they_hold(shards, synth_data):
    data = ShardDataset(shards, frames=2, height=16, width=16)
    folder = VideoDataset(synth_data, frames=2, height=16, width=16)
    assert data.shard_sizes == [3, 1, 2] and len(data) == len(folder) == 6
    for i in range(6):
        a, b = data.get(i, seed=11), folder.get(i, seed=11)  # same clip, same frame offset, same pixels
        assert a["caption"] == b["caption"] and torch.equal(a["pixels"], b["pixels"]), i


def test_processes_read_disjoint_whole_shards_each_epoch():
    sizes = [3, 1, 2]
    for epoch in range(3):
        shares = [epoch_share(sizes, 0, epoch, 2, rank) for rank in range(2)]
        assert sorted(np.concatenate(shares).tolist()) == list(range(6))  # disjoint, and every sample once
        for share in shares:  # whole shards, each front to back
            rest = share.tolist()
            while rest:
                rest = rest[len(next(s for s in ([0, 1, 2], [3], [4, 5]) if rest[: len(s)] == s)) :]
    orders = {tuple(epoch_share(sizes, 0, e, 1, 0)) for e in range(6)}
    assert len(orders) > 1  # the shard order changes with the epoch
    with pytest.raises(DataError, match="at least as many shards as processes"):
        check_shares(sizes, 4, "x")


def _reads(sampler, steps):
    it, accum = iter(sampler), sampler.accum
    return [[next(it) for _ in range(accum)] for _ in range(steps)]


def test_resume_in_the_middle_reads_what_the_uninterrupted_run_read():
    """Batch 2 x accumulation 2, batches reused over 3 steps; shards of 3, 1 and 2 put epoch ends inside windows."""
    args = dict(batch=2, accum=2, processes=2, seed=5, repeat=3)
    for rank in range(2):
        straight = _reads(ShardSampler([3, 1, 2], rank=rank, start_step=0, **args), 12)
        for start in (1, 4, 7):
            assert _reads(ShardSampler([3, 1, 2], rank=rank, start_step=start, **args), 12 - start) == straight[start:]
        samples = [i for step in straight[::3] for micro in step for i, _ in micro]
        first = epoch_share([3, 1, 2], 5, 0, 2, rank)
        assert samples[: len(first)] == first.tolist()  # epoch 0 of this process, then its epoch 1
    positions = {
        p
        for rank in range(2)
        for step in _reads(ShardSampler([3, 1, 2], rank=rank, start_step=0, **args), 3)
        for micro in step
        for _, p in micro
    }
    assert positions == set(range(8))  # seeds: one global batch of 8 positions, as with a metadata folder


def test_training_on_shards_resumes_exactly(tiny_config, tmp_path, shards):
    straight, resumed = straight_and_resumed(
        tiny_config,
        tmp_path,
        3,
        **{"data.path": shards, "train.checkpoint_every": 2, "optim.batch_size": 2, "method.name": "sft"},
    )
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_on_another_process_count_is_refused(tiny_config, shards, monkeypatch):
    """Each process reads its own shards: a checkpoint's stream continues only on its number of processes."""
    Trainer(tiny_config(**{"data.path": shards, "train.max_steps": 1, "method.name": "sft"})).fit()  # 1 x batch 2
    trainer = Trainer(
        tiny_config(**{"data.path": shards, "optim.batch_size": 1, "method.name": "sft", "train.resume": "latest"})
    )
    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: 2))  # as if on 2 x batch 1
    with pytest.raises(
        ConfigError,
        match="cannot resume on 2 processes: the checkpoint's 1 processes each read their "
        "own WebDataset shards .*; resume with 1 processes",
    ):
        trainer.fit()


def test_a_corrupt_member_is_a_bad_clip(synth_data, tmp_path, tiny_config):
    records = load_metadata(synth_data)
    good, bad, cut, junk = write_shards(tmp_path / "s", records[:4], [1, 1, 1, 1])
    with tarfile.open(bad, "w") as tar:  # a member that is not a video
        _add(tar, "x.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
        _add(tar, "x.txt", b"a red square moving left")
    cut.write_bytes(cut.read_bytes()[:900])  # cut inside the clip's data
    junk.write_bytes(b"not a tar at all" * 64)
    data = ShardDataset(str(tmp_path / "s" / "{00000..00003}.tar"), frames=2, height=16, width=16)
    assert data.shard_sizes == [1, 1, 1]  # the junk file lists no sample
    assert isinstance(data.try_get(0, 0), dict)
    for index, why in ((1, "pyav"), (2, "cut short")):
        failure = data.try_get(index, 0)
        assert isinstance(failure, Unreadable) and ".mp4" in failure.path and why in failure.reason
    trainer = Trainer(
        tiny_config(
            **{
                "data.path": str(tmp_path / "s"),
                "data.max_bad_fraction": 0.5,
                "train.max_steps": 4,
                "optim.batch_size": 1,
            }
        )
    )
    with pytest.raises(DataError, match="more than data.max_bad_fraction"):  # 2 of 3 bad: stops, never hangs
        trainer.fit()
