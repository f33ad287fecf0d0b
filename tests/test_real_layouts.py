"""Every shipped config on tiny random weights saved in the real hub layouts (tests/hub_layouts.py):
it starts, trains, checkpoints and samples; the families' schedules; exports that load in diffusers."""

from __future__ import annotations

import pytest

from conftest import ROOT
from videosspo.cli import main
from videosspo.config import load_config
from videosspo.trainer import Trainer

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # the shipped configs train in bf16

# Frames per clip where 2 does not fit: the stacked UNet's channels hold 8; a VAE that compresses time 4x takes 4k+1.
CLIP_FRAMES = {"stacked": 8, "wan": 5}
SHIPPED = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("tiny_"))


def shipped_config(path, hub_layout, synth_data, out, **overrides):
    """The shipped config at `path`, its hub ids pointed at real-layout folders, shrunk to a 1-step run."""
    model = load_config(path).model
    local = {key: str(ROOT / value if (ROOT / value).is_dir() else hub_layout(value))  # committed folders (assets/) as is
             for key in ("pretrained", "motion_adapter") if (value := getattr(model, key)) is not None}
    small = {"model": local,
             "data": {"path": str(synth_data), "frames": CLIP_FRAMES.get(model.family, 2), "height": 16, "width": 16, "num_workers": 0,
                      "latent_cache": None},
             "loser": {"steps": 1}, "sample": {"steps": 1},
             "optim": {"batch_size": 1, "grad_accum": 1},
             "train": {"output_dir": str(out), "max_steps": 1, "checkpoint_every": 0, "log_every": 1,
                       "sample_prompts": ["a red square moving left"]}}
    for key, value in overrides.items():
        section, name = key.split(".")
        small.setdefault(section, {})[name] = value
    return load_config(path, small)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_config_starts_trains_and_samples(path, hub_layout, synth_data, tmp_path):
    config = shipped_config(path, hub_layout, synth_data, tmp_path / "run")
    summary = Trainer(config).fit()
    assert summary["steps"] == 1 and summary["last_loss"] == summary["last_loss"]  # finite, not NaN
    assert len(summary["samples"]) == 1
    # What the run exported samples from the command line (SD 1.5 as shipped: merged, trained in bf16).
    out = tmp_path / "sample.gif"
    main(["sample", "--checkpoint", summary["checkpoint"], "--prompt", "a blue circle", "--out", str(out),
          "--steps", "1"])
    assert out.is_file()
