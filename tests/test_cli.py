"""The command line as a user meets it: demo, train, sample, data synth, --help, config errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from videosspo.cli import main
from videosspo.video import read_video


def test_demo_on_a_minimal_setting_leaves_checkpoint_samples_and_summary(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo writes data/ and runs/ relative to where it is started
    main(["demo", "--train.max_steps", "2", "--train.checkpoint_every", "0", "--data.synth_if_missing", "4",
          "--data.frames", "2", "--data.height", "16", "--data.width", "16", "--loser.steps", "2",
          "--sample.steps", "2", "--replay.interval", "1"])
    out = capsys.readouterr().out
    assert "videosspo demo: done" in out
    summary = json.loads((tmp_path / "runs/demo/summary.json").read_text())
    assert summary["method"] == "sspo" and summary["steps"] == 2
    assert (tmp_path / "data/synth/metadata.jsonl").is_file()
    assert (tmp_path / "runs/demo/SUMMARY.txt").read_text().startswith("videosspo demo: done")
    for sample in summary["samples"]:
        assert read_video(sample).shape == (2, 16, 16, 3)
    checkpoint = summary["checkpoint"]

    # ... and the checkpoint samples through `videosspo sample`
    main(["sample", "--checkpoint", checkpoint, "--prompt", "a red square moving left", "--prompt",
          "a blue circle moving up", "--out", str(tmp_path / "s.mp4"), "--frames", "3", "--height", "16",
          "--width", "16", "--steps", "2"])
    assert read_video(tmp_path / "s_00.mp4").shape == (3, 16, 16, 3)
    assert read_video(tmp_path / "s_01.mp4").shape == (3, 16, 16, 3)


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
