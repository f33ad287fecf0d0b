"""Latent cache: cached == on-the-fly encoding for the same seed, resume, mismatch and missing-file errors,
unreadable clips, and the `videosspo data cache-latents` command."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from models import build_model
from videosspo.config import ModelConfig
from videosspo.data import Unreadable, VideoDataset, collate
from videosspo.latent_dataset import LatentDataset
from videosspo.latents import cache_latents, encoder_identity
from videosspo.metadata import load_metadata
from videosspo.video import VideoReadError

ROOT = Path(__file__).resolve().parents[1]
H, W = 16, 24  # synth clips are 32x32: scaled to 24x24, then centre-cropped (exercises the resize path)


@pytest.fixture(scope="module")
def tiny_model():
    return build_model(ModelConfig(family="animatediff", vae="auto"))


@pytest.fixture(scope="module")
def cache(tiny_model, synth_data, tmp_path_factory):
    """The paired synthetic data cached once at 16x24 (module-wide; tests that modify copy it)."""
    data = VideoDataset(synth_data, frames=2, height=H, width=W)
    return cache_latents(
        tiny_model,
        data,
        tmp_path_factory.mktemp("cache") / "latents",
        progress=False,
        batch_frames=3,
        metadata=synth_data,
    )


@pytest.mark.parametrize("frames, stride", [(3, 1), (2, 2), (6, 1)])  # (6, 1): 4-frame clips, last frame repeated
def test_cached_latents_equal_on_the_fly_encoding(tiny_model, synth_data, cache, frames, stride):
    videos = VideoDataset(synth_data, frames=frames, stride=stride, height=H, width=W, require_loser=True)
    latents = LatentDataset(
        cache,
        synth_data,
        frames=frames,
        stride=stride,
        height=H,
        width=W,
        require_loser=True,
        expect=encoder_identity(tiny_model),
    )
    assert len(latents) == len(videos) == 6
    for index, seed in [(0, 0), (1, 7), (3, 123), (5, 99)]:
        pix, lat = videos.get(index, seed), latents.get(index, seed)
        assert lat["caption"] == pix["caption"] and lat["index"] == index
        want = tiny_model.encode_video(pix["pixels"][None])[0]
        assert lat["latents"].shape == want.shape == (4, frames, H // 2, W // 2)
        torch.testing.assert_close(lat["latents"], want, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            lat["loser_latents"], tiny_model.encode_video(pix["loser_pixels"][None])[0], atol=1e-5, rtol=1e-5
        )
    batch = collate([latents.get(0, 0), None, latents.get(2, 1)])
    assert batch["latents"].shape == (2, 4, frames, H // 2, W // 2) and batch["loser_latents"].shape[0] == 2
    assert batch["indices"] == [0, 2] and "pixels" not in batch


def test_caption_embeddings_are_cached_and_a_format_1_cache_still_reads(tiny_model, synth_data, cache, tmp_path):
    """Format 2 stores each caption's embedding; a cache written before it (format 1: latents only, no text
    encoder in its identity) still trains, its captions encoded per step; filling it with format 2 is refused."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    item = LatentDataset(cache, synth_data, frames=2, height=H, width=W, expect=encoder_identity(tiny_model)).get(1, 0)
    torch.testing.assert_close(item["prompt_embeds"], tiny_model.encode_prompt([item["caption"]])[0])
    old = tmp_path / "old"
    shutil.copytree(cache, old)
    info = json.loads((old / "cache_info.json").read_text())
    for key in ("text_encoder_sha256", "tokenizer_sha256", "text_length", "temporal_factor"):
        del info["encoder"][key]
    (old / "cache_info.json").write_text(
        json.dumps({k: v for k, v in info.items() if k not in ("frames", "stride")} | {"format": 1})
    )
    for file in old.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            header = f.metadata()
        save_file({k: v for k, v in load_file(file).items() if k != "prompt_embeds"}, file, metadata=header)
    read = LatentDataset(old, synth_data, frames=2, height=H, width=W, expect=encoder_identity(tiny_model)).get(1, 0)
    assert "prompt_embeds" not in read and torch.equal(read["latents"], item["latents"])
    with pytest.raises(ValueError, match=r"already holds latents made differently \(format: cached 1, now 2"):
        cache_latents(tiny_model, VideoDataset(synth_data, frames=2, height=H, width=W), old, progress=False)


def test_image_model_f1(synth_data, tmp_path):
    model = build_model(ModelConfig(family="sd", vae="auto"))
    videos = VideoDataset(synth_data, frames=1, height=16, width=16)
    out = cache_latents(model, videos, tmp_path / "c", progress=False)
    latents = LatentDataset(out, synth_data, frames=1, height=16, width=16, expect=encoder_identity(model))
    for index, seed in [(0, 3), (4, 5)]:
        want = model.encode_video(videos.get(index, seed)["pixels"][None])[0]
        torch.testing.assert_close(latents.get(index, seed)["latents"], want, atol=1e-5, rtol=1e-5)


def test_pixel_space_model_caches_pixels(synth_data, tmp_path):
    model = build_model(ModelConfig(family="animatediff", vae="none"))
    videos = VideoDataset(synth_data, frames=2, height=16, width=16)
    out = cache_latents(model, videos, tmp_path / "c", progress=False, dtype=torch.float16)
    latents = LatentDataset(out, synth_data, frames=2, height=16, width=16, expect=encoder_identity(model))
    got = latents.get(2, 4)["latents"]
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), videos.get(2, 4)["pixels"], atol=1e-3, rtol=0)


def test_resume_writes_nothing_new_and_fills_gaps(tiny_model, synth_data, cache, tmp_path):
    cache = Path(shutil.copytree(cache, tmp_path / "c"))
    data = VideoDataset(synth_data, frames=2, height=H, width=W)
    mtimes = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    assert len(mtimes) == 6
    cache_latents(tiny_model, data, cache, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")} == mtimes

    (cache / "000002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of 6 rows have no file.*cache-latents"):
        LatentDataset(cache, synth_data, frames=2, height=H, width=W)
    cache_latents(tiny_model, data, cache, progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.safetensors")}
    assert {k for k in after if after[k] != mtimes.get(k)} == {"000002.safetensors"}
    assert not list(cache.glob(".*"))  # no temporary files left
    LatentDataset(cache, synth_data, frames=2, height=H, width=W)


def test_mismatched_size_metadata_or_vae_raise_clear_errors(tiny_model, synth_data, cache, tmp_path):
    with pytest.raises(ValueError, match=r"height: cached 16, data config 32.*cache-latents"):
        LatentDataset(cache, synth_data, frames=2, height=32, width=W)
    with pytest.raises(ValueError, match="the metadata differs"):
        LatentDataset(cache, load_metadata(synth_data)[:4], frames=2, height=H, width=W)

    other = build_model(ModelConfig(family="animatediff", vae="auto"))
    with torch.no_grad():
        next(other.vae.parameters()).add_(0.01)  # same architecture, different weights
    with pytest.raises(ValueError, match=r"VAE weights differ.*cache-latents"):
        LatentDataset(cache, synth_data, frames=2, height=H, width=W, expect=encoder_identity(other))
    no_vae = build_model(ModelConfig(family="animatediff", vae="none"))
    with pytest.raises(ValueError, match="vae_class"):
        LatentDataset(cache, synth_data, frames=2, height=H, width=W, expect=encoder_identity(no_vae))
    # the same VAE under another family is the same encoder
    same = build_model(ModelConfig(family="sd", vae="auto"))
    LatentDataset(cache, synth_data, frames=2, height=H, width=W, expect=encoder_identity(same))
    # caching into the folder with another VAE or size is refused, not mixed
    with pytest.raises(ValueError, match="already holds latents made differently"):
        cache_latents(other, VideoDataset(synth_data, frames=2, height=H, width=W), cache, progress=False)
    with pytest.raises(ValueError, match="already holds latents made differently"):
        cache_latents(tiny_model, VideoDataset(synth_data, frames=2, height=H, width=H), cache, progress=False)
    with pytest.raises(FileNotFoundError, match="not a latent cache"):
        LatentDataset(tmp_path, synth_data, frames=2, height=H, width=W)


def test_unreadable_clip_is_skipped_and_counted(tiny_model, synth_data, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="videosspo")
    data_dir = Path(shutil.copytree(synth_data, tmp_path / "data"))
    rows = [json.loads(line) for line in (data_dir / "metadata.jsonl").read_text().splitlines()]
    (data_dir / rows[1]["video"]).write_bytes(b"this is not an mp4 file" * 10)
    out = cache_latents(tiny_model, VideoDataset(data_dir, frames=2, height=H, width=W), tmp_path / "c", progress=False)
    info = json.loads((out / "cache_info.json").read_text())
    assert list(info["unreadable"]) == ["1"] and info["complete"]
    assert "cannot read video" in caplog.text
    assert len(list(out.glob("*.safetensors"))) == 5

    latents = LatentDataset(out, data_dir, frames=2, height=H, width=W)
    assert isinstance(latents.try_get(1, 0), Unreadable) and "mp4" in latents.try_get(1, 0).path
    assert "latents" in latents.try_get(0, 0)
    with pytest.raises(VideoReadError):
        latents.get(1, 0)


def test_cli_cache_latents_writes_the_default_folder(synth_data, tmp_path, capsys):
    from videosspo.cli import main

    data_dir = Path(shutil.copytree(synth_data, tmp_path / "data"))
    main(
        [
            "data",
            "cache-latents",
            "--config",
            str(ROOT / "configs/tiny_animatediff_sspo.yaml"),
            "--data.path",
            str(data_dir),
            "--data.frames",
            "2",
            "--data.height",
            "16",
            "--data.width",
            "16",
        ]
    )
    out = data_dir / "latents_animatediff_16x16"
    assert str(out) in capsys.readouterr().out
    assert len(list(out.glob("*.safetensors"))) == 6
    model = build_model(ModelConfig(family="animatediff", vae="auto"))
    latents = LatentDataset(out, data_dir, frames=2, height=16, width=16, expect=encoder_identity(model))
    assert latents.get(0, 0)["latents"].shape == (4, 2, 8, 8)
    main(
        [
            "data",
            "cache-latents",
            "--config",
            str(ROOT / "configs/tiny_animatediff_sspo.yaml"),
            "--out",
            str(tmp_path / "x"),
            "--data.path",
            str(data_dir),
            "--data.frames",
            "2",
            "--data.height",
            "16",
            "--data.width",
            "16",
        ]
    )
    assert len(list((tmp_path / "x").glob("*.safetensors"))) == 6
