"""The command line as a user meets it: demo, train, sample, data synth, --help, config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from videosspo.cli import main
from videosspo.video import read_video


def test_demo_aligns_a_base_and_reports_before_and_after(tmp_path, capsys):
    from models import build_model
    from videosspo.config import ModelConfig
    from videosspo.synth import heldout_prompts, make_world

    build_model(ModelConfig(family="stacked", vae="none", stacked_frames=2)).save_pretrained(tmp_path / "base")
    world = make_world(tmp_path / "world", n_web=4, n_curated=4, frames=2, size=16, progress=False)
    demo = ["demo", "--model.pretrained", str(tmp_path / "base"), "--data.path", str(world.curated),
            "--data.latent_cache", str(tmp_path / "cache"), "--data.frames", "2", "--train.max_steps", "2",
            "--optim.batch_size", "2", "--loser.steps", "2", "--sample.steps", "2", "--replay.interval", "1",
            "--train.output_dir", str(tmp_path / "demo")]
    result = main(demo)
    out = capsys.readouterr().out
    assert "| score | base | aligned | change |" in out
    assert ("aligned is better" in out) == result["better"] and ("aligned is NOT better" in out) != result["better"]
    assert set(result["before"]) == set(result["after"]) == {"color", "shape", "direction", "persistence"}
    # the verdict's paired difference is the change of the mean over the same clips
    mean = {k: sum(result[k].values()) / 4 for k in ("before", "after")}
    assert result["paired_difference"]["mean"] == pytest.approx(mean["after"] - mean["before"])
    assert "paired difference" in out and "95% t-interval over the 24 prompts" in out
    gifs = sorted((tmp_path / "demo" / "gifs").glob("*.gif"))
    assert len(gifs) == len(heldout_prompts())
    assert read_video(gifs[0]).shape[1:] == (16 * 4, (16 * 2 + 1) * 4, 3)  # base | aligned, 4x
    assert json.loads((tmp_path / "demo" / "demo.json").read_text())["train"]["steps"] == 2
    checkpoint = result["train"]["checkpoint"]

    # ... and the aligned checkpoint samples through `videosspo sample`
    main(["sample", "--checkpoint", checkpoint, "--prompt", "a red square moving left", "--prompt",
          "a blue circle moving up", "--out", str(tmp_path / "s.mp4"), "--steps", "2"])
    assert read_video(tmp_path / "s_00.mp4").shape == (2, 16, 16, 3)
    assert read_video(tmp_path / "s_01.mp4").shape == (2, 16, 16, 3)

    # a second `make demo` replaces the first run instead of refusing its folder
    assert main(demo)["train"]["steps"] == 2
    assert "replacing the previous demo run" in capsys.readouterr().out


def test_data_synth_writes_the_dataset_format(tmp_path):
    main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "3", "--frames", "4", "--size", "32", "--paired"])
    rows = [json.loads(line) for line in open(tmp_path / "d/metadata.jsonl")]
    assert len(rows) == 3 and all({"video", "caption", "loser_video", "attributes"} <= row.keys() for row in rows)


@pytest.mark.parametrize("override,message", [
    (["--optim.lrr", "1"], "unknown key optim.lrr"),
    (["--data.frames", "0"], "data.frames=0 is not allowed"),
    (["--method.name", "ppo"], "method.name='ppo' is not allowed"),
])
def test_config_errors_exit_with_the_key_named(override, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "videosspo", "train", *override,
                             "--train.output_dir", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_help_explains_every_command():
    result = subprocess.run([sys.executable, "-m", "videosspo", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "sample", "data", "demo"):
        assert command in result.stdout
    result = subprocess.run([sys.executable, "-m", "videosspo", "train", "--help"], capture_output=True, text=True,
                            check=True)
    assert "--section.key" in result.stdout


def test_sample_defaults_to_the_checkpoints_clip_size(tiny_config, tmp_path):
    from videosspo.trainer import Trainer

    summary = Trainer(tiny_config(**{"method.name": "sft", "train.max_steps": 1})).fit()
    main(["sample", "--checkpoint", summary["checkpoint"], "--prompt", "a red square moving left",
          "--out", str(tmp_path / "s.gif"), "--steps", "2"])
    assert read_video(tmp_path / "s.gif").shape == (2, 16, 16, 3)  # tiny_config trains 2 frames of 16x16
