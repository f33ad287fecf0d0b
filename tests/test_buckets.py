"""Buckets (`data.buckets`, videosspo/buckets.py): clips of several shapes in one run, one shape per global batch,
with the invariances of unbucketed runs (per-sample randomness, N processes == 1, accumulation, exact resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_trainer import assert_two_processes_equal_one, grads_after_one_step, straight_and_resumed, unet_state

import videosspo.losers as losers_module
from videosspo.buckets import Buckets, auto_size, nearest
from videosspo.cli import main
from videosspo.config import ConfigError, load_config
from videosspo.data import VideoDataset
from videosspo.stream import StreamSampler
from videosspo.trainer import Trainer

# mixed_data: rows 0-3 are 4 frames of 32x32, rows 4-7 six frames of 32x64
BUCKETS = [[2, 16, 16], [3, 16, 32]]  # square clips -> 2x16x16, wide ones -> 3x16x32
SQUARE, WIDE = (2, 16, 16), (3, 16, 32)


def bucketed(tiny_config, mixed_data, **overrides):
    return tiny_config(**{"data.path": str(mixed_data), "data.buckets": BUCKETS, **overrides})


def test_each_clip_takes_the_nearest_aspect_among_the_frame_counts_it_holds():
    shapes = [(9, 32, 32), (5, 32, 48), (17, 32, 48)]
    assert nearest((20, 100, 150), shapes) == 2  # both 3:2 buckets fit: the most frames
    assert nearest((10, 100, 150), shapes) == 1  # 17 frames do not fit
    assert nearest((12, 64, 60), shapes) == 0  # nearly square
    assert nearest((3, 64, 96), shapes) == 1  # shorter than every bucket: the fewest frames (last frame repeats)
    assert auto_size(32, 64, 32 * 32, 16) == (16, 48)  # ~1024 pixels at 1:2, multiples of 16
    assert auto_size(720, 1280, 480 * 832, 16) == (480, 848)


@pytest.mark.parametrize("chunk", [1, 2, 3])
def test_every_global_batch_is_one_bucket_and_every_clip_is_seen_each_epoch(chunk):
    buckets = Buckets(shapes=((1, 8, 8), (1, 8, 16), (1, 16, 8)), of=(0, 0, 0, 1, 1, 2, 0, 1, 2, 2, 0))
    counts = np.bincount(buckets.of)
    assert buckets.length(chunk) == sum(-(-n // chunk) * chunk for n in counts)
    for epoch in (0, 1):
        order = buckets.order(seed=5, epoch=epoch, chunk=chunk)
        assert len(order) == buckets.length(chunk) and set(order) == set(range(len(buckets.of)))
        assert all(len({buckets.of[i] for i in batch}) == 1 for batch in order.reshape(-1, chunk))
        assert np.array_equal(order, buckets.order(seed=5, epoch=epoch, chunk=chunk))  # a function of (seed, epoch)
    assert not np.array_equal(buckets.order(5, 0, chunk), buckets.order(5, 1, chunk))


def test_streams_of_any_layout_with_one_global_batch_read_the_same_positions():
    """1 process x batch 4, 2 x 2, 4 x 1 accumulating: the same (index, position) per global batch, one bucket each."""
    buckets = Buckets(shapes=((1, 8, 8), (1, 8, 16)), of=(0, 1, 0, 1, 1, 0, 0))

    def steps(processes, batch, accum, n=5):
        reads = {}
        for rank in range(processes):
            it = iter(StreamSampler(7, batch, accum, processes, rank, seed=3, start_step=0, buckets=buckets))
            for _ in range(n * accum):
                reads.update({p: i for i, p in next(it)})
        return reads

    one = steps(1, 4, 1)
    assert one == steps(2, 2, 1) == steps(1, 1, 4) == steps(4, 1, 1)
    for d in range(5):
        assert len({buckets.of[one[p]] for p in range(4 * d, 4 * d + 4)}) == 1
    # a process that replaced unreadable micro-batches (skip) reads later ones of its share: still one shape each
    it = iter(StreamSampler(7, 2, 1, 2, 1, seed=3, start_step=2, skip=3, buckets=buckets))
    assert all(len({buckets.of[i] for i, _ in next(it)}) == 1 for _ in range(10))


def test_a_dpo_pair_is_read_at_its_winners_bucket_with_the_same_frames(mixed_data):
    data = VideoDataset(mixed_data, frames=2, height=16, width=16, require_loser=True)
    data.buckets = Buckets(shapes=(SQUARE, WIDE), of=(0, 0, 0, 0, 1, 1, 1, 1))
    for index, shape in ((0, SQUARE), (5, WIDE)):
        item = data.get(index, seed=1)
        assert item["size"] == shape and item["pixels"].shape[1:] == item["loser_pixels"].shape[1:] == shape
    # the frames drawn for a seed are the unbucketed dataset's at that frame count (one draw per sample)
    plain = VideoDataset(mixed_data, frames=3, height=16, width=32, require_loser=True)
    assert torch.equal(data.get(5, seed=7)["loser_pixels"], plain.get(5, seed=7)["loser_pixels"])


def test_bucketed_sspo_micro_batches_have_one_shape_and_losers_take_it(tiny_config, mixed_data, monkeypatch):
    trainer = Trainer(
        bucketed(
            tiny_config,
            mixed_data,
            **{"train.max_steps": 4, "optim.batch_size": 2, "loser.reuse": 1, "train.sample_every": 0},
        )
    )
    assert [trainer.data.shape(i) for i in range(8)] == [SQUARE] * 4 + [WIDE] * 4
    seen, sample = [], losers_module.sample_latents
    monkeypatch.setattr(
        losers_module,
        "sample_latents",
        lambda *a, **k: seen.append((k["frames"], k["height"], k["width"])) or sample(*a, **k),
    )
    shapes, loss = [], trainer.loss
    monkeypatch.setattr(trainer, "loss", lambda batch: shapes.append(batch["size"]) or loss(batch))
    trainer.fit()
    assert sorted(shapes) == [SQUARE] * 2 + [WIDE] * 2  # an epoch: 2 global batches of each bucket
    assert (
        seen[:4] == shapes
    )  # losers sampled at their winners' bucket (then the run's samples, at data.frames x h x w)


@pytest.mark.parametrize(
    "config, frames", [("tiny_wan_sspo.yaml", 5), ("tiny_cogvideox_sspo.yaml", 9), ("tiny_ltx_sspo.yaml", 9)]
)
def test_dit_families_train_on_two_buckets(tiny_config, mixed_data, monkeypatch, config, frames):
    """Per-shape parts of the DiTs (Wan's and CogVideoX's rotary positions, LTX's packing and σ shift) follow the batch."""
    trainer = Trainer(
        tiny_config(
            config,
            **{
                "data.path": str(mixed_data),
                "data.buckets": [[frames, 32, 32], [frames, 32, 64]],
                "data.frames": frames,
                "data.height": 32,
                "data.width": 32,
                "loser.reuse": 1,
            },
        )
    )
    shapes, loss = [], trainer.loss
    monkeypatch.setattr(trainer, "loss", lambda batch: shapes.append(batch["size"]) or loss(batch))
    summary = trainer.fit()
    assert set(shapes) == {(frames, 32, 32), (frames, 32, 64)} and np.isfinite(summary["last_loss"])


def test_bucketed_resume_equals_uninterrupted(tiny_config, mixed_data, tmp_path):
    straight, resumed = straight_and_resumed(
        lambda **o: bucketed(tiny_config, mixed_data, **o),
        tmp_path,
        4,
        **{"model.lora_rank": 4, "train.checkpoint_every": 2, "loser.reuse": 3},
    )
    a, b = unet_state(straight), unet_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bucketed_accumulation_1x2_equals_2x1(tiny_config, mixed_data):
    losers = {"loser.guidance": 3.0, "optim.max_grad_norm": 0}
    big = grads_after_one_step(Trainer(bucketed(tiny_config, mixed_data, **{"optim.batch_size": 2, **losers})))
    acc = grads_after_one_step(
        Trainer(bucketed(tiny_config, mixed_data, **{"optim.batch_size": 1, "optim.grad_accum": 2, **losers}))
    )
    assert big.keys() == acc.keys() and len(big) > 0
    scale = max(g.abs().max() for g in big.values())
    assert max((big[k] - acc[k]).abs().max() for k in big) < 1e-4 * scale


def test_bucketed_two_processes_equal_one(mixed_data, tmp_path):
    assert_two_processes_equal_one(
        tmp_path,
        "configs/tiny_animatediff_sspo.yaml",
        "--data.path",
        str(mixed_data),
        "--data.frames",
        "2",
        "--data.height",
        "16",
        "--data.width",
        "16",
        "--data.buckets",
        str(BUCKETS),
    )


def test_auto_buckets_come_from_the_datas_aspect_ratios(tiny_config, mixed_data):
    trainer = Trainer(
        tiny_config(**{"data.path": str(mixed_data), "data.buckets": "auto", "data.height": 32, "data.width": 32})
    )
    assert [trainer.data.shape(i) for i in (0, 4)] == [(2, 32, 32), (2, 16, 48)]  # ~1024 pixels at 1:1 and 1:2


def test_bad_buckets_are_refused_in_one_line(tiny_config, mixed_data, tmp_path, capsys):
    base = [
        "--config",
        "configs/tiny_wan_sspo.yaml",
        "--data.path",
        str(mixed_data),
        "--train.output_dir",
        str(tmp_path),
    ]
    with pytest.raises(SystemExit) as stop:  # the family's frame rule: Wan takes 4k+1 frames
        main(["train", *base, "--data.buckets", "[[5, 32, 32], [8, 32, 64]]"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1
    assert "data.buckets [8, 32, 64]" in err and "4k+1" in err
    with pytest.raises(SystemExit) as stop:  # and data.frames itself
        main(["train", *base, "--data.frames", "8"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "data.frames=8" in err
    for overrides, match in (
        ({"data.buckets": [[2, 16]]}, r"data.buckets\[0\]"),
        ({"data.buckets": [[0, 16, 16]]}, "frames >= 1"),
        ({"data.buckets": "auto", "data.latent_cache": "x"}, "data.latent_cache"),
        ({"model.family": "stacked", "data.frames": 8, "data.buckets": [[4, 16, 16]]}, "stacked_frames"),
    ):
        with pytest.raises(ConfigError, match=match):
            tiny_config(**overrides)
    with pytest.raises(ConfigError, match="multiples of the VAE factor 8"):
        load_config("configs/animatediff_sspo.yaml", {"data": {"buckets": [[16, 256, 260]]}})
