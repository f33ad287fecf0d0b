"""The commands as a user runs them: the installed `videosspo` console script (and `python -m videosspo`,
`benchmarks/vbench_eval.py`) in a subprocess. Exit codes 0 / 2 / 130 / 143, one line per user error and
per interrupt, never a traceback; the keys and the progress bar explained; output that stays readable."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin, where `pip install -e .` put the `videosspo` script
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
TINY = [
    "--config",
    str(ROOT / "configs/tiny_animatediff_sspo.yaml"),
    "--data.frames",
    "2",
    "--data.height",
    "16",
    "--data.width",
    "16",
    "--loser.steps",
    "2",
    "--sample.steps",
    "2",
    "--replay.interval",
    "1",
    "--train.sample_prompts",
    "[a]",
    "--optim.warmup_steps",
    "0",
]


def videosspo(*args: str, cwd: Path | None = None, module: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "videosspo"] if module else [str(BIN / "videosspo")]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=ENV, cwd=cwd)


def vbench_eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/vbench_eval.py"), *args], capture_output=True, text=True, env=ENV
    )


def test_the_console_script_is_installed():
    assert (BIN / "videosspo").is_file(), f"no videosspo in {BIN}: pip install -e ."


@pytest.mark.parametrize("module", [False, True], ids=["videosspo", "python -m videosspo"])
def test_success_exits_0_and_prints_no_dict_on_stderr(module, tmp_path):
    """The console script once passed main()'s summary dict to sys.exit: status 1 after every good run."""
    result = videosspo(
        "data", "synth", "--out", str(tmp_path / "d"), "--n", "2", "--frames", "2", "--size", "16", module=module
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 clips" in result.stdout and "{" not in result.stderr
    assert videosspo("config", "--show", module=module).returncode == 0
    error = videosspo("config", "--show", "--optim.lr", "-1", module=module)
    assert error.returncode == 2 and error.stderr.count("\n") == 1 and "optim.lr=-1.0 is not allowed" in error.stderr


def test_a_training_run_exits_0_with_its_summary_on_stdout(synth_data, tmp_path):
    result = videosspo(
        "train",
        *TINY,
        "--data.path",
        str(synth_data),
        "--train.output_dir",
        str(tmp_path / "run"),
        "--train.max_steps",
        "1",
        "--method.name",
        "sft",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout[result.stdout.index("{") :])["steps"] == 1
    assert "'steps'" not in result.stderr  # the summary is not printed a second time, as a dict, by sys.exit


def test_library_deprecation_notes_stay_out_of_a_run(synth_data, tmp_path):
    """An SD run's merged export made diffusers print a FutureWarning with a whole scheduler config: hidden
    unless --verbose."""
    args = (
        "train",
        "--config",
        str(ROOT / "configs" / "tiny_sd_sft.yaml"),
        "--data.path",
        str(synth_data),
        "--train.max_steps",
        "1",
    )
    quiet = videosspo(*args, "--train.output_dir", str(tmp_path / "quiet"))
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "FutureWarning" not in quiet.stderr and "_class_name" not in quiet.stderr
    loud = videosspo(*args, "--train.output_dir", str(tmp_path / "loud"), "--verbose")
    assert loud.returncode == 0 and "FutureWarning" in loud.stderr  # the filter is what hides it


def test_the_documented_demo_checkpoint_is_the_one_the_demo_writes():
    from videosspo.alignment import ALIGN_CONFIG
    from videosspo.config import load_config

    config = load_config(ALIGN_CONFIG)
    named = {
        int(m)
        for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
        for m in re.findall(r"runs/demo/checkpoints/step_(\d+)", doc.read_text())
    }
    assert config.train.output_dir == "runs/demo" and named <= {config.train.max_steps}, named


# (what, arguments (tmp folder -> list), the one line's pattern)
CASES = [
    ("train: unknown key", lambda t: ["train", "--optim.lrr", "1"], r"unknown key optim.lrr"),
    ("train: missing config", lambda t: ["train", "--config", str(t / "no.yaml")], r"no.yaml' does not exist"),
    (
        "train: a --data.path that is missing",
        lambda t: ["train", *TINY, "--data.path", str(t / "typo"), "--train.output_dir", str(t / "run")],
        r"data.path='.*typo' does not exist; .* videosspo data synth --out",
    ),
    ("train: bad override", lambda t: ["train", "--verbose", "lr", "1"], r"bad override 'lr'"),
    (
        "sample: missing checkpoint",
        lambda t: ["sample", "--prompt", "a", "--out", str(t / "a.gif"), "--checkpoint", str(t / "nope")],
        r"--checkpoint .*nope does not exist",
    ),
    (
        "sample: output format",
        lambda t: ["sample", "--prompt", "a", "--out", "a.txt", "--checkpoint", "x"],
        r"--out a.txt: write a .mp4 or .gif file",
    ),
    ("sample: required argument", lambda t: ["sample", "--prompt", "a"], r"required: --checkpoint, --out"),
    ("data synth: no clips", lambda t: ["data", "synth", "--out", str(t / "s"), "--n", "0"], r"n=0"),
    ("data: no subcommand", lambda t: ["data"], r"required: data_command"),
    (
        "data cache-latents: missing data",
        lambda t: ["data", "cache-latents", *TINY[:2], "--data.path", str(t / "x")],
        r"data.path='.*x' does not exist",
    ),
    ("pretrain-base: missing config", lambda t: ["pretrain-base", "--config", str(t / "no.yaml")], r"does not exist"),
    ("demo: missing config", lambda t: ["demo", "--config", str(t / "no.yaml")], r"does not exist"),
    ("upgrade-checkpoints: not a run", lambda t: ["upgrade-checkpoints", str(t)], r"is not a run folder"),
    ("config: neither --list nor --show", lambda t: ["config"], r"one of the arguments --list --show is required"),
    ("config: --show of a missing file", lambda t: ["config", "--show", str(t / "no.yaml")], r"does not exist"),
    ("config: bad value", lambda t: ["config", "--show", "--data.frames", "0"], r"data.frames=0 is not allowed"),
    ("unknown command", lambda t: ["trian"], r"invalid choice: 'trian'"),
]


@pytest.mark.parametrize("args,expected", [pytest.param(a, e, id=what) for what, a, e in CASES])
def test_user_errors_are_one_line_exit_2_through_the_console_script(args, expected, tmp_path):
    result = videosspo(*args(tmp_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("videosspo") and re.search(expected, lines[0]), result.stderr


def _evaluated(tmp_path: Path) -> Path:
    """A run folder of vbench_eval.py on two synthetic clips."""
    from videosspo.synth import make_dataset

    clips = make_dataset(tmp_path / "clips", n=2, frames=4, height=16, width=16, progress=False)
    result = vbench_eval(
        "--videos",
        str(clips),
        "--out",
        str(tmp_path / "eval"),
        "--no-progress",
        "--dims",
        "temporal_flickering",
        "synthetic_color",
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "eval"


EVAL_CASES = [
    (
        "missing folder",
        lambda t: ["--videos", str(t / "nope"), "--out", str(t / "o")],
        r"--videos .*nope does not exist",
    ),
    ("empty folder", lambda t: ["--videos", str(t), "--out", str(t / "o")], r"no videos found in"),
    (
        "--compare with a missing run",
        lambda t: ["--compare", str(_evaluated(t)), str(t / "nope"), "--out", str(t / "c")],
        r"--compare .*nope: no summary.json",
    ),
    (
        "missing --prompts file",
        lambda t: ["--videos", str(t), "--prompts", str(t / "p.txt"), "--out", str(t / "o")],
        r"--prompts .*p.txt does not exist",
    ),
    ("no inputs", lambda t: ["--out", str(t / "o")], r"give --videos, --checkpoint"),
    ("unknown argument", lambda t: ["--videos", str(t), "--out", str(t / "o"), "--bogus"], r"unrecognized arguments"),
]


@pytest.mark.parametrize("args,expected", [pytest.param(a, e, id=what) for what, a, e in EVAL_CASES])
def test_vbench_eval_user_errors_are_one_line_exit_2(args, expected, tmp_path):
    result = vbench_eval(*args(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vbench_eval.py: ") and re.search(expected, lines[0]), lines


def test_vbench_eval_compare_prints_the_comparison(tmp_path):
    run = _evaluated(tmp_path)
    result = vbench_eval("--compare", str(run), str(run), "--out", str(tmp_path / "cmp"))
    assert result.returncode == 0, result.stderr
    assert "| dimension | eval | eval |" in result.stdout and "temporal_flickering" in result.stdout
    assert str(tmp_path / "cmp" / "compare.md") in result.stdout.splitlines()[-1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_stops_in_one_line_and_releases_its_lock(signum, synth_data, tmp_path):
    from videosspo.checkpoint import MARKER, latest_checkpoint
    from videosspo.runlock import LOCK

    out = tmp_path / "run"
    process = subprocess.Popen(
        [
            str(BIN / "videosspo"),
            "train",
            *TINY,
            "--data.path",
            str(synth_data),
            "--train.output_dir",
            str(out),
            "--train.max_steps",
            "10000",
            "--train.checkpoint_every",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + 300
    while latest_checkpoint(out) is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)  # training has started: past model building, a first checkpoint written
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("videosspo")]
    assert len(lines) == 1 and re.fullmatch(
        r"videosspo train: interrupted at step \d+; resume with --train.resume "
        r"latest \(from step_\d{8}\)",
        lines[0],
    ), stderr[-2000:]
    assert not (out / LOCK).exists()  # released: the same command with --train.resume latest can take the folder
    assert all((c / MARKER).is_file() for c in (out / "checkpoints").glob("step_*"))  # no half checkpoint
    step = int(re.search(r"at step (\d+)", lines[0])[1])
    assert step >= int(re.search(r"step_(\d+)", lines[0])[1])


def test_a_signal_whose_exception_python_drops_still_stops_the_run(capsys):
    """A handler that runs inside a destructor raises where Python drops exceptions ("Exception ignored in"): the
    run must still stop, at the next step (`raise_if_interrupted`), and print no traceback for it."""
    from videosspo.interrupt import Interrupted, raise_if_interrupted, stop_on_signals

    class Dropped:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs between these bytecodes, inside __del__
                pass

    with stop_on_signals():
        Dropped()
        with pytest.raises(Interrupted) as stopped:
            raise_if_interrupted()
    assert stopped.value.exit_code == 143
    assert "Interrupted" not in capsys.readouterr().err
    raise_if_interrupted()  # a new block starts with no signal pending
    with stop_on_signals():
        raise_if_interrupted()


def test_warnings_during_training_are_lines_of_their_own_above_the_bar_once_each(synth_data, tmp_path):
    from conftest import with_broken_clips

    metadata = with_broken_clips(synth_data, tmp_path, rows=[1, 4])  # each logged when first drawn, mid-run
    result = videosspo(
        "train",
        *TINY,
        "--data.path",
        str(metadata),
        "--data.max_bad_fraction",
        "0.5",
        "--train.output_dir",
        str(tmp_path / "run"),
        "--train.max_steps",
        "4",
        "--method.name",
        "sft",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pieces = re.split(r"[\r\n]", result.stderr)  # a bar redraws itself after \r
    warned = [p for p in pieces if "skipping row" in p]
    assert sorted(re.search(r"broken\d", p)[0] for p in warned) == ["broken1", "broken4"], result.stderr[-3000:]
    assert all(p.startswith("WARNING videosspo.data: skipping row") for p in warned), warned  # not inside the bar
    assert any("it/s" in p or "s/it" in p for p in pieces)  # there was a bar to keep them out of


def test_train_help_lists_how_to_find_keys_and_names_the_progress_bar_fields():
    from videosspo.trainer import Trainer

    class Every(dict):  # every metric present: the bar's field names
        __contains__ = lambda self, key: True  # noqa: E731
        __getitem__ = lambda self, key: 0.0  # noqa: E731

    result = videosspo("train", "--help")
    assert result.returncode == 0
    text = result.stdout
    for needed in (
        "videosspo config --list",
        "videosspo config --show",
        "--train.sample_prompts '[",
        "--train.resume latest",
        "--verbose",
    ):
        assert needed in text, needed
    for field in Trainer._short(Every()):
        assert re.search(rf"^  {re.escape(field)} +\S", text, flags=re.M), f"bar field {field!r} not explained"


def test_config_list_gives_every_key_a_default_and_a_meaning():
    from videosspo.config_help import config_keys

    keys = config_keys()
    assert {k.name.split(".")[0] for k in keys} == {
        "model",
        "data",
        "method",
        "replay",
        "loser",
        "sample",
        "optim",
        "train",
    }
    assert [k.name for k in keys if len(k.meaning) < 10] == []
    by_name = {k.name: k for k in keys}
    assert by_name["optim.lr"].default == 1e-5 and "learning rate" in by_name["optim.lr"].meaning
    assert by_name["model.family"].type == "str" and "models.FAMILIES" in by_name["model.family"].meaning
    assert "model family" in by_name["model.family"].meaning  # its own block, not the next field's
    assert by_name["model.pretrained"].meaning.startswith("A local directory or hub id")
    listed = videosspo("config", "--list").stdout
    assert all(f"\n{k.name} = " in f"\n{listed}" for k in keys)


def test_config_show_prints_the_resolved_config_that_train_would_use(tmp_path):
    import yaml

    from videosspo.config import config_from_dict, load_config

    config = ROOT / "configs/tiny_wan_sspo.yaml"
    result = videosspo("config", "--show", str(config), "--optim.lr", "3e-4", "--train.sample_prompts", "[x, y]")
    assert result.returncode == 0, result.stderr
    shown = config_from_dict(yaml.safe_load(result.stdout))
    assert shown == load_config(config, ["--optim.lr", "3e-4", "--train.sample_prompts", "[x, y]"])
    assert shown.optim.lr == 3e-4 and shown.train.sample_prompts == ("x", "y") and shown.model.family == "wan"


def test_run_folders_default_to_the_config_name_and_no_two_configs_share_one(tmp_path):
    from videosspo.config import load_config

    (tmp_path / "mine.yaml").write_text("optim:\n  lr: 1.0e-4\n")
    assert load_config(tmp_path / "mine.yaml").train.output_dir == "runs/mine"
    assert load_config(tmp_path / "mine.yaml", ["--train.output_dir", "x"]).train.output_dir == "x"
    assert load_config(None).train.output_dir == "runs/default"
    folders = {}
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        folders.setdefault(load_config(path).train.output_dir, []).append(path.name)
    assert {k: v for k, v in folders.items() if len(v) > 1} == {}  # a tiny_* run never resumes another's folder


def test_synthetic_data_only_where_the_config_asks_for_it(tmp_path, capsys):
    from videosspo.commands import _prepare_data
    from videosspo.config import load_config
    from videosspo.errors import PathError

    (tmp_path / "c.yaml").write_text(
        f"data:\n  path: {tmp_path / 'synth'}\n  synth_if_missing: 2\n  frames: 2\n  height: 16\n  width: 16\n"
    )
    config = load_config(tmp_path / "c.yaml")
    with pytest.raises(PathError, match="does not exist"):  # the same path, typed on the command line
        _prepare_data(config, given=True, source=str(tmp_path / "c.yaml"))
    assert not (tmp_path / "synth").exists()
    _prepare_data(config, given=False, source=str(tmp_path / "c.yaml"))  # the config's own path: asked for by name
    assert len((tmp_path / "synth/metadata.jsonl").read_text().splitlines()) == 2
    assert "data.synth_if_missing: 2 in" in capsys.readouterr().out
    with pytest.raises(PathError, match="does not exist"):  # a config without synth_if_missing
        _prepare_data(load_config(None, ["--data.path", str(tmp_path / "none")]), given=False, source=None)


def test_sample_writes_captions_vbench_eval_reads_and_honours_the_umask(tiny_config, tmp_path):
    from videosspo.cli import main
    from videosspo.files import umask
    from videosspo.trainer import Trainer

    checkpoint = Trainer(tiny_config(**{"method.name": "sft", "train.max_steps": 1})).fit()["checkpoint"]
    out = tmp_path / "samples"
    for prompts, name in (
        (["a red square moving left", "a blue circle moving up"], "a.mp4"),
        (["a green triangle moving down"], "b.gif"),
    ):
        args = [a for p in prompts for a in ("--prompt", p)]
        assert main(["sample", "--checkpoint", checkpoint, *args, "--out", str(out / name), "--steps", "2"]) == 0
    rows = [json.loads(line) for line in (out / "metadata.jsonl").open()]
    assert [(r["video"], r["caption"], r["seed"]) for r in rows] == [
        ("a_00.mp4", "a red square moving left", 0),
        ("a_01.mp4", "a blue circle moving up", 1),
        ("b.gif", "a green triangle moving down", 0),
    ]
    for path in (*out.iterdir(), *Path(checkpoint).rglob("*.json")):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask(), path  # not mkstemp's 0600

    result = vbench_eval(
        "--videos",
        str(out),
        "--out",
        str(tmp_path / "eval"),
        "--no-progress",
        "--no-report",
        "--dims",
        "synthetic_color",
    )
    assert result.returncode == 0, result.stderr
    scored = {json.loads(line)["prompt"] for line in (tmp_path / "eval/per_video.jsonl").open()}
    assert scored == {r["caption"] for r in rows}


def test_demo_finds_the_committed_base_from_any_directory(tmp_path, monkeypatch):
    import videosspo.demo as demo
    from videosspo.demo import _demo_base

    def no_pretraining(*args):
        raise AssertionError("the demo pre-trains a base instead of using the committed one")

    monkeypatch.setattr(demo, "cmd_pretrain_base", no_pretraining)
    monkeypatch.chdir(tmp_path)
    assert _demo_base("assets/stacked_base") == ROOT / "assets/stacked_base"
    (tmp_path / "assets/stacked_base").mkdir(parents=True)  # a base of the user's own, here, comes first
    assert _demo_base("assets/stacked_base") == Path("assets/stacked_base")


def _corrupt_h264(path: Path) -> Path:
    import numpy as np

    from videosspo.video import write_video

    rng = np.random.default_rng(0)
    write_video(path, rng.integers(0, 255, (16, 64, 64, 3), dtype=np.uint8))
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 2):
        data[i] = (data[i] * 7 + 3) % 256
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_ffmpeg_chatter_of_decord_only_with_verbose(verbose, tmp_path):
    pytest.importorskip("decord")
    clip = _corrupt_h264(tmp_path / "bad.mp4")
    level = logging.DEBUG if verbose else logging.INFO
    code = (
        f"import logging; logging.basicConfig(level={level}); from videosspo.video import read_video\n"
        f"try: read_video({str(clip)!r}, [0, 8, 15], backend='decord')\nexcept Exception: pass"
    )
    stderr = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV).stderr
    assert ("[h264 @" in stderr) == verbose, stderr[-2000:]


def test_divergence_is_warned_once(tiny_config, monkeypatch, caplog):
    from videosspo.trainer import Trainer

    trainer = Trainer(tiny_config(**{"method.name": "sft", "train.max_steps": 4, "train.on_anomaly": "continue"}))
    real_loss = trainer.loss
    monkeypatch.setattr(
        trainer,
        "loss",
        lambda batch: (lambda loss, stats: (loss * float("nan") if trainer.step >= 1 else loss, stats))(
            *real_loss(batch)
        ),
    )
    with caplog.at_level(logging.WARNING, logger="videosspo.health"):
        trainer.fit()
    assert sum("turned anomalous" in r.getMessage() for r in caplog.records) == 1
