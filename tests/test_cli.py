"""The command line as a user meets it: demo, train, sample, data synth, --help, config errors."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from videosspo.cli import main, run
from videosspo.video import read_video


def test_demo_aligns_a_base_and_reports_before_and_after(tmp_path, capsys):
    from models import build_model
    from videosspo.config import ModelConfig
    from videosspo.synth import heldout_prompts, make_world

    build_model(ModelConfig(family="stacked", vae="none", stacked_frames=2)).save_pretrained(tmp_path / "base")
    world = make_world(tmp_path / "world", n_web=4, n_curated=4, frames=2, size=16, progress=False)
    demo = [
        "demo",
        "--model.pretrained",
        str(tmp_path / "base"),
        "--data.path",
        str(world.curated),
        "--data.latent_cache",
        str(tmp_path / "cache"),
        "--data.frames",
        "2",
        "--train.max_steps",
        "2",
        "--optim.batch_size",
        "2",
        "--loser.steps",
        "2",
        "--sample.steps",
        "2",
        "--replay.interval",
        "1",
        "--train.output_dir",
        str(tmp_path / "demo"),
    ]
    result = run(demo)
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
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                checkpoint,
                "--prompt",
                "a red square moving left",
                "--prompt",
                "a blue circle moving up",
                "--out",
                str(tmp_path / "s.mp4"),
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert read_video(tmp_path / "s_00.mp4").shape == (2, 16, 16, 3)
    assert read_video(tmp_path / "s_01.mp4").shape == (2, 16, 16, 3)

    # a second `make demo` replaces the first run instead of refusing its folder
    assert run(demo)["train"]["steps"] == 2
    assert "replacing the previous demo run" in capsys.readouterr().out


def test_data_synth_writes_the_dataset_format(tmp_path):
    assert (
        main(["data", "synth", "--out", str(tmp_path / "d"), "--n", "3", "--frames", "4", "--size", "32", "--paired"])
        == 0
    )
    rows = [json.loads(line) for line in open(tmp_path / "d/metadata.jsonl")]
    assert len(rows) == 3 and all({"video", "caption", "loser_video", "attributes"} <= row.keys() for row in rows)


@pytest.mark.parametrize(
    "override,message",
    [
        (["--optim.lrr", "1"], "unknown key optim.lrr"),
        (["--data.frames", "0"], "data.frames=0 is not allowed"),
        (["--method.name", "ppo"], "method.name='ppo' is not allowed"),
    ],
)
def test_config_errors_exit_with_the_key_named(override, message, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "videosspo", "train", *override, "--train.output_dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_help_explains_every_command():
    result = subprocess.run([sys.executable, "-m", "videosspo", "--help"], capture_output=True, text=True, check=True)
    for command in ("train", "sample", "data", "demo"):
        assert command in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "videosspo", "train", "--help"], capture_output=True, text=True, check=True
    )
    assert "--section.key" in result.stdout


def test_sample_defaults_to_the_checkpoints_clip_size(tiny_config, tmp_path):
    from videosspo.trainer import Trainer

    summary = Trainer(tiny_config(**{"method.name": "sft", "train.max_steps": 1})).fit()
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                summary["checkpoint"],
                "--prompt",
                "a red square moving left",
                "--out",
                str(tmp_path / "s.gif"),
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert read_video(tmp_path / "s.gif").shape == (2, 16, 16, 3)  # tiny_config trains 2 frames of 16x16


@pytest.fixture(scope="module")
def made(synth_data, tmp_path_factory):
    """A 1-step run (config file, checkpoint) and a latent cache of synth_data at its size, for the error cases."""
    from conftest import tiny

    from videosspo.config import save_config
    from videosspo.trainer import Trainer

    root = tmp_path_factory.mktemp("cli_errors")
    config = tiny(synth_data, root / "run", **{"method.name": "sft", "train.max_steps": 1})
    save_config(config, root / "c.yaml")
    checkpoint = Path(Trainer(config).fit()["checkpoint"])
    assert main(["data", "cache-latents", "--config", str(root / "c.yaml"), "--out", str(root / "cache")]) == 0
    return root, checkpoint


def _incomplete(root, checkpoint):  # what a kill while writing leaves
    shutil.copytree(checkpoint, checkpoint.with_name(".tmp-step_00000009"), dirs_exist_ok=True)
    (checkpoint.with_name(".tmp-step_00000009") / "COMPLETE.json").unlink(missing_ok=True)
    return [str(checkpoint.with_name(".tmp-step_00000009"))]


def _legacy(root, checkpoint):  # a checkpoint of a videosspo older than COMPLETE.json
    shutil.copytree(checkpoint, root / "legacy/checkpoints/step_00000001", dirs_exist_ok=True)
    (root / "legacy/checkpoints/step_00000001/COMPLETE.json").unlink(missing_ok=True)
    return [str(root / "legacy/checkpoints/step_00000001")]


def _damaged(root, checkpoint):
    copy = root / "damaged/checkpoints" / checkpoint.name
    shutil.copytree(checkpoint, copy, dirs_exist_ok=True)
    (copy / "model/model_index.json").write_text("{")
    return [str(copy / "model")]


def _corrupt_cache(root, checkpoint):
    shutil.copytree(root / "cache", root / "corrupt", dirs_exist_ok=True)
    for path in (root / "corrupt").glob("*.safetensors"):
        path.write_bytes(path.read_bytes()[:200])
    return [str(root / "corrupt")]


SAMPLE = ["sample", "--prompt", "a", "--out"]
TRAIN = lambda root: ["train", "--config", str(root / "c.yaml")]  # noqa: E731


CASES = [  # (what, arguments from (made folder, checkpoint), the error line's pattern)
    (
        "sample: missing checkpoint",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", str(r / "nope")],
        r"--checkpoint .*nope does not exist",
    ),
    (
        "sample: incomplete checkpoint",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", *_incomplete(r, c)],
        r"tmp-step_00000009 is not a complete checkpoint .*the newest: .*step_00000001",
    ),
    (
        "sample: pre-marker checkpoint",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", *_legacy(r, c)],
        r"step_00000001 has no COMPLETE.json: .*videosspo upgrade-checkpoints .*legacy",
    ),
    (
        "sample: damaged checkpoint",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", *_damaged(r, c)],
        r"model_index.json is damaged: 1 bytes",
    ),
    (
        "sample: no such model folder",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", str(r)],
        r"is not a videosspo model directory",
    ),
    (
        "sample: output format",
        lambda r, c: [*SAMPLE, str(r / "a.txt"), "--checkpoint", str(c)],
        r"--out .*a.txt: write a",
    ),
    (
        "sample: size the VAE cannot take",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", str(c), "--height", "15"],
        r"cannot sample 2 frames of 15x16.*multiples",
    ),
    (
        "sample: unknown argument",
        lambda r, c: [*SAMPLE, str(r / "a.gif"), "--checkpoint", str(c), "--bogus", "1"],
        r"unknown arguments --bogus 1",
    ),
    ("sample: required argument", lambda r, c: ["sample", "--prompt", "a"], r"required: --checkpoint, --out"),
    ("unknown command", lambda r, c: ["trian"], r"invalid choice: 'trian'"),
    ("data synth: out is a file", lambda r, c: ["data", "synth", "--out", str(r / "c.yaml")], r"c.yaml is not empty"),
    ("data synth: no clips", lambda r, c: ["data", "synth", "--out", str(r / "s"), "--n", "0"], r"n=0"),
    (
        "cache-latents: another size",
        lambda r, c: [
            "data",
            "cache-latents",
            "--config",
            str(r / "c.yaml"),
            "--out",
            str(r / "cache"),
            "--data.height",
            "32",
        ],
        r"already holds latents made differently \(height: cached 16, now 32",
    ),
    (
        "cache-latents: frames the VAE cannot take",
        lambda r, c: [
            "data",
            "cache-latents",
            "--config",
            str(r / "c.yaml"),
            "--out",
            str(r / "cache_cog"),
            "--model.family",
            "cogvideox",
            "--data.frames",
            "5",
        ],
        r"data\.frames=5 is invalid for model\.family=cogvideox: .*8k\+1",
    ),
    (
        "cache-latents: missing config",
        lambda r, c: ["data", "cache-latents", "--config", str(r / "no.yaml")],
        r"no.yaml' does not exist",
    ),
    (
        "train: not a latent cache",
        lambda r, c: [*TRAIN(r), "--data.latent_cache", str(r)],
        r"has no cache_info.json: it is not a latent cache; build it with: videosspo data cache-latents",
    ),
    (
        "train: cache of another size",
        lambda r, c: [
            *TRAIN(r),
            "--data.latent_cache",
            str(r / "cache"),
            "--data.height",
            "32",
            "--data.width",
            "32",
            "--train.output_dir",
            str(r / "t1"),
        ],
        r"latent cache .*cache does not match this run: height: cached 16, data config 32",
    ),
    (
        "train: damaged cache file",
        lambda r, c: [*TRAIN(r), "--data.latent_cache", *_corrupt_cache(r, c), "--train.output_dir", str(r / "t2")],
        r"latent cache file .*corrupt/00000\d.safetensors is damaged .*cache-latents .*--out .*corrupt",
    ),
    (
        "train: frames the VAE cannot take",
        lambda r, c: [
            *TRAIN(r),
            "--model.family",
            "cogvideox",
            "--data.frames",
            "5",
            "--train.output_dir",
            str(r / "t3"),
        ],
        r"data\.frames=5 is invalid for model\.family=cogvideox: .*8k\+1",
    ),
    (
        "train: size the VAE and patches cannot take",
        lambda r, c: [
            *TRAIN(r),
            "--model.family",
            "wan",
            "--data.frames",
            "5",
            "--data.height",
            "24",
            "--sample.scheduler",
            "unipc",
            "--loser.scheduler",
            "unipc",
            "--train.output_dir",
            str(r / "t4"),
        ],
        r"data\.height/width 24x16 must be multiples of 16 for model\.family=wan",
    ),
    (
        "train: a sampler the family has not",
        lambda r, c: [*TRAIN(r), "--model.family", "wan", "--data.frames", "5", "--train.output_dir", str(r / "t5")],
        r"sampler 'ddim' does not apply to model\.family=wan .*one of euler, unipc",
    ),
    (
        "train: a key another family owns",
        lambda r, c: [
            *TRAIN(r),
            "--model.family",
            "wan",
            "--model.experts",
            "high",
            "--train.output_dir",
            str(r / "t6"),
        ],
        r"model\.experts='high' is not allowed: 'both' for model\.family=wan \(only model\.family: wan22 reads it",
    ),
    (
        "estimate: a pixel-space VAE for a latent family",
        lambda r, c: ["estimate", "--config", str(r / "c.yaml"), "--model.family", "ltx", "--model.vae", "none"],
        r"model\.vae='none' is not allowed: 'auto' for model\.family=ltx \(pixel space only for animatediff",
    ),
    (
        "pretrain-base: missing config",
        lambda r, c: ["pretrain-base", "--config", str(r / "no.yaml")],
        r"does not exist",
    ),
    ("demo: missing config", lambda r, c: ["demo", "--config", str(r / "no.yaml")], r"does not exist"),
    ("upgrade-checkpoints: not a run", lambda r, c: ["upgrade-checkpoints", str(r / "cache")], r"is not a run folder"),
]


@pytest.mark.parametrize("args,expected", [pytest.param(a, e, id=what) for what, a, e in CASES])
def test_user_errors_of_every_command_are_one_line_and_exit_2(made, capsys, args, expected):
    root, checkpoint = made
    try:
        code = main(args(root, checkpoint))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("videosspo")]  # not the log or progress bars
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and re.search(expected, lines[0]), err[-2000:]
