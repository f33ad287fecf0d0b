"""Checkpoints from someone else's disk (issue 24): no code runs on resume, any flipped byte is found, flags given
on resume take effect or are refused, interrupted writes are skipped, divergence and a full disk stop in one line;
and a finished run relaunched (issue 21) leaves every file as it was and extends exactly."""

from __future__ import annotations

import errno
import json
import logging
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_state, tiny

from videosspo.checkpoint import MARKER, CheckpointError, checkpoints, latest_checkpoint, sha256
from videosspo.checkpoint_read import verify
from videosspo.config import save_config
from videosspo.trainer import Trainer
from videosspo.upgrade import upgrade


@pytest.fixture(scope="module")
def two_checkpoints(synth_data, tmp_path_factory):
    """An SSPO run of 2 steps with a checkpoint each (EMA, losers reused over 2 steps): `(config overrides, folder)`."""
    overrides = {"train.checkpoint_every": 1, "train.keep_checkpoints": 0, "loser.reuse": 2, "optim.ema_decay": 0.9}
    folder = tmp_path_factory.mktemp("trust") / "run"
    Trainer(tiny(synth_data, folder, **overrides)).fit()
    return overrides, folder


def copy_run(two_checkpoints, tmp_path) -> Path:
    shutil.copytree(two_checkpoints[1], tmp_path / "run")
    return tmp_path / "run"


def reseal(checkpoint: Path, name: str) -> None:
    """Rewrite COMPLETE.json as an attacker would: `name` listed with its size and SHA-256."""
    info = json.loads((checkpoint / MARKER).read_text())
    info["files"][name] = (checkpoint / name).stat().st_size
    info["sha256"][name] = sha256(checkpoint / name)
    (checkpoint / MARKER).write_text(json.dumps(info))


class Canary:
    """Unpickled, it creates the file `path`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize(
    "name",
    [
        "accelerate/custom_checkpoint_0.pkl",
        "accelerate/optimizer.bin",
        "accelerate/random_states_0.pkl",
        "accelerate/extra.pt",
    ],
)
def test_a_crafted_pickle_never_runs(two_checkpoints, synth_data, tmp_path, name):
    """A pickle that creates a file when loaded, placed in the newest checkpoint with its marker fixed to match:
    resuming refuses it (or loads it with weights_only=True, which fails) and the file is never created."""
    run, canary = copy_run(two_checkpoints, tmp_path), tmp_path / "canary"
    pickle.loads(pickle.dumps(Canary(tmp_path / "live")))
    assert (tmp_path / "live").exists()  # the payload is live
    newest = latest_checkpoint(run)
    (newest / name).write_bytes(pickle.dumps(Canary(canary)))
    reseal(newest, name)
    trainer = Trainer(tiny(synth_data, run, **two_checkpoints[0], **{"train.resume": str(newest)}))
    expected = (
        "is a pickle videosspo does not load"
        if name.endswith(("custom_checkpoint_0.pkl", "extra.pt"))
        else "could not be loaded|is damaged"
    )
    with pytest.raises(CheckpointError, match=expected):
        trainer.state.resume(str(newest))
    assert not canary.exists()


def test_an_earlier_checkpoint_with_a_pickled_lr_schedule_is_upgraded_without_reading_it(
    two_checkpoints, synth_data, tmp_path, capsys
):
    """What videosspo wrote before (accelerate's custom_checkpoint_0.pkl, a marker without digests) is refused with
    the fix named; `upgrade-checkpoints` deletes the pickle unread, adds the digests, and the run resumes."""
    from videosspo.cli import main

    run = copy_run(two_checkpoints, tmp_path)
    for checkpoint in checkpoints(run):
        (checkpoint / "accelerate/custom_checkpoint_0.pkl").write_bytes(pickle.dumps(Canary(tmp_path / "canary")))
        info = json.loads((checkpoint / MARKER).read_text())
        info["files"]["accelerate/custom_checkpoint_0.pkl"] = (
            (checkpoint / "accelerate/custom_checkpoint_0.pkl").stat().st_size
        )
        del info["sha256"]
        (checkpoint / MARKER).write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match=f"upgrade-checkpoints {run}` drops it unread"):
        verify(latest_checkpoint(run))
    main(["upgrade-checkpoints", str(run)])
    assert capsys.readouterr().out.count("its pickled LR schedule state deleted unread; file digests added") == 2
    assert not (tmp_path / "canary").exists() and not list(run.glob("checkpoints/*/accelerate/custom_*"))
    assert all("sha256" in verify(c) for c in checkpoints(run))
    trainer = Trainer(tiny(synth_data, run, **two_checkpoints[0], **{"train.resume": "latest"}))
    trainer.state.resume("latest")
    assert trainer.step == 2


KINDS = {
    "weights": "accelerate/model.safetensors",
    "optimizer": "accelerate/optimizer.bin",
    "rng": "accelerate/random_states_0.pkl",
    "ema": "ema.safetensors",
    "losers": "losers/rank0.safetensors",
    "trainer state": "trainer.json",
    "export": "model/unet/diffusion_pytorch_model.safetensors",
    "replay snapshot": "snapshot",
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_flipped_byte_in_any_file_falls_back_naming_it(two_checkpoints, synth_data, tmp_path, caplog, kind):
    """One byte flipped in the tensor data (or text) of one file of the newest checkpoint, size unchanged:
    `latest` resumes the previous checkpoint, with a WARNING naming the file."""
    run = copy_run(two_checkpoints, tmp_path)
    newest = latest_checkpoint(run)
    if kind == "replay snapshot":  # the one only the newest checkpoint refers to (named by its SHA-256)
        older = json.loads((checkpoints(run)[0] / MARKER).read_text())["snapshots"]
        digest = next(d for d in json.loads((newest / MARKER).read_text())["snapshots"] if d not in older)
        damaged = run / "snapshots" / f"{digest}.safetensors"
    else:
        damaged = newest / KINDS[kind]
    data = bytearray(damaged.read_bytes())
    data[-len(data) // 3] ^= 0x01
    damaged.write_bytes(bytes(data))
    trainer = Trainer(tiny(synth_data, run, **two_checkpoints[0], **{"train.resume": "latest"}))
    with caplog.at_level(logging.WARNING, logger="videosspo.state"):
        trainer.state.resume("latest")
    assert trainer.step == 1
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and str(damaged) in r.getMessage()]
    assert len(warned) == 1 and "SHA-256 differs" in warned[0].getMessage()


def test_a_damaged_rng_state_without_digests_falls_back(two_checkpoints, synth_data, tmp_path, caplog):
    """A checkpoint marked before digests existed, its RNG state garbage of the right size: accelerate would skip it
    with a line at INFO and resume with another RNG; it falls back with a WARNING naming the file instead."""
    run = copy_run(two_checkpoints, tmp_path)
    newest = latest_checkpoint(run)
    info = json.loads((newest / MARKER).read_text())
    del info["sha256"]
    (newest / MARKER).write_text(json.dumps(info))
    rng = newest / "accelerate/random_states_0.pkl"
    rng.write_bytes(bytes(rng.stat().st_size))
    trainer = Trainer(tiny(synth_data, run, **two_checkpoints[0], **{"train.resume": "latest"}))
    with caplog.at_level(logging.WARNING, logger="videosspo.state"):
        trainer.state.resume("latest")
    assert trainer.step == 1 and f"{rng} is damaged" in caplog.text


def test_a_file_added_after_the_marker_is_refused(two_checkpoints, tmp_path):
    run = copy_run(two_checkpoints, tmp_path)
    (latest_checkpoint(run) / "accelerate/notes.txt").write_text("added later")
    with pytest.raises(CheckpointError, match=r"accelerate/notes.txt is not listed in .*COMPLETE.json"):
        verify(latest_checkpoint(run))


# -- flags given on resume -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_sft(synth_data, tmp_path_factory):
    """An SFT run of 2 steps at lr 1e-3 (constant), its final checkpoint at step 2."""
    folder = tmp_path_factory.mktemp("flags") / "run"
    Trainer(tiny(synth_data, folder, **{"method.name": "sft"})).fit()
    return folder


# flag -> (value, what the 2 resumed steps do: the lr each leaves for the next, or another observable)
RESUMABLE = {
    "optim.lr": (5e-4, [5e-4, 5e-4]),
    "optim.schedule": ("linear", [1e-3 * 1 / 4, 0.0]),  # (max_steps - s) / max_steps after steps 3, 4
    "optim.warmup_steps": (4, [1e-3 * 3 / 4, 1e-3]),  # s / warmup_steps, then 1
    "optim.weight_decay": (0.5, 0.5),
    "train.max_steps": (3, 3),
    "train.log_every": (2, [1, 2, 4]),
}


@pytest.mark.parametrize("flag", RESUMABLE)
def test_each_resumable_flag_changes_what_the_resumed_run_does(finished_sft, synth_data, tmp_path, caplog, flag):
    value, expected = RESUMABLE[flag]
    shutil.copytree(finished_sft, tmp_path / "run")
    lrs = []
    trainer = Trainer(
        tiny(
            synth_data,
            tmp_path / "run",
            **{"method.name": "sft", "train.max_steps": 4, "train.resume": "latest", flag: value},
        )
    )
    with caplog.at_level(logging.INFO, logger="videosspo.resume"):
        trainer.fit(on_step=lambda t: lrs.append(t.optimizer.param_groups[0]["lr"]))
    assert f"{flag}: " in caplog.text  # logged as a change
    if flag.startswith("optim.") and isinstance(expected, list):
        assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
        logged = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
        assert [m["lr"] for m in logged[2:]] == pytest.approx(expected, rel=1e-12, abs=0)
    elif flag == "optim.weight_decay":
        assert trainer.optimizer.param_groups[0]["weight_decay"] == expected and lrs == [1e-3, 1e-3]
    elif flag == "train.max_steps":
        assert trainer.step == 3 and latest_checkpoint(trainer.out).name == "step_00000003"
    else:
        assert [json.loads(line)["step"] for line in open(tmp_path / "run" / "metrics.jsonl")] == expected


@pytest.mark.parametrize(
    "flag, value",
    [
        ("data.frames", 3),
        ("data.height", 24),
        ("data.width", 24),
        ("model.lora_rank", 4),
        ("method.name", "dpo"),
        ("model.family", "sd"),
        ("data.buckets", "auto"),
        ("model.size", "medium"),
    ],
)
def test_each_refused_flag_is_one_line_and_exit_2(finished_sft, synth_data, tmp_path, capsys, flag, value):
    from videosspo.cli import main

    shutil.copytree(finished_sft, tmp_path / "run")
    save_config(
        tiny(
            synth_data,
            tmp_path / "run",
            **{"method.name": "sft", "train.max_steps": 3, "train.resume": "latest", flag: value},
        ),
        tmp_path / "c.yaml",
    )
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith(f"videosspo train: cannot resume with {flag}={value!r}: the checkpoint was trained with")
    )
    assert [c.name for c in checkpoints(tmp_path / "run")] == ["step_00000002"]


# -- interrupted writes ----------------------------------------------------------------------------


def test_an_unmarked_newest_checkpoint_is_skipped_and_upgrade_refuses_a_partial_one(
    two_checkpoints, synth_data, tmp_path, caplog
):
    """The newest checkpoint without COMPLETE.json beside a marked one (and half deleted: no EMA, no losers) is
    an interrupted write: `latest` names it and resumes the previous one; `upgrade` leaves it unmarked."""
    run = copy_run(two_checkpoints, tmp_path)
    newest = latest_checkpoint(run)
    for name in (MARKER, "ema.safetensors", "losers/rank0.safetensors"):
        (newest / name).unlink()
    assert upgrade(run) == [
        f"{newest}: not upgraded, it lacks ema.safetensors, losers/rank0.safetensors (a run "
        f"stopped while writing or deleting it); delete it"
    ]
    assert not (newest / MARKER).exists()
    trainer = Trainer(tiny(synth_data, run, **two_checkpoints[0], **{"train.resume": "latest"}))
    with caplog.at_level(logging.WARNING, logger="videosspo.checkpoint"):
        trainer.state.resume("latest")
    assert trainer.step == 1
    assert f"skipping {newest}: it has no {MARKER} beside complete checkpoints" in caplog.text


# -- divergence and a full disk --------------------------------------------------------------------


def cli_train(cfg, tmp_path, capsys) -> tuple[int, str]:
    from videosspo.cli import main

    save_config(cfg, tmp_path / "c.yaml")
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", str(tmp_path / "c.yaml")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_.value.code, err.strip().splitlines()[-1]


def test_a_divergent_run_stops_in_one_line_and_never_checkpoints_it(tiny_config, tmp_path, capsys):
    """lr 1e4: the loss turns non-finite at step 2; the run stops there (exit 2) naming step 1, the last
    checkpoint, whose weights are finite; no later checkpoint exists."""
    cfg = tiny_config(**{"method.name": "sft", "optim.lr": 1e4, "train.max_steps": 6, "train.checkpoint_every": 1})
    code, line = cli_train(cfg, tmp_path, capsys)
    out = Path(cfg.train.output_dir)
    assert (
        code == 2
        and line.startswith("videosspo train: training diverged at step 2 (")
        and f"the last good checkpoint is {out / 'checkpoints/step_00000001'}" in line
    )
    assert [c.name for c in checkpoints(out)] == ["step_00000001"]
    from safetensors.torch import load_file

    assert all(
        torch.isfinite(t).all()
        for t in load_file(out / "checkpoints/step_00000001/accelerate/model.safetensors").values()
    )


def test_non_finite_weights_are_never_checkpointed(tiny_config, tmp_path, capsys, monkeypatch):
    """Even with train.on_anomaly: continue, a save of non-finite weights stops the run instead (exit 2)."""
    real = Trainer.optimizer_step

    def poisons_step_2(self, batches):
        stats = real(self, batches)
        if self.step == 1:
            next(p for p in self.model.unet.parameters() if p.requires_grad).data[0] = float("inf")
        return stats

    monkeypatch.setattr(Trainer, "optimizer_step", poisons_step_2)
    cfg = tiny_config(
        **{"method.name": "sft", "train.max_steps": 3, "train.checkpoint_every": 1, "train.on_anomaly": "continue"}
    )
    code, line = cli_train(cfg, tmp_path, capsys)
    out = Path(cfg.train.output_dir)
    assert code == 2 and line.startswith("videosspo train: training diverged at step 2 (non-finite weights)")
    assert [c.name for c in checkpoints(out)] == ["step_00000001"]


@pytest.mark.parametrize("writer", ["metrics.jsonl", "tensorboard"])
def test_a_full_disk_between_checkpoints_is_one_line(tiny_config, tmp_path, capsys, monkeypatch, writer):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real_log = Trainer.log

    def log(self, stats):  # the disk fills after step 1's checkpoint
        if self.step == 2:
            if writer == "tensorboard":
                monkeypatch.setattr("tensorboard.summary.writer.event_file_writer.EventFileWriter.flush", full)
            else:
                monkeypatch.setattr("videosspo.trainer.open", full, raising=False)
        real_log(self, stats)

    monkeypatch.setattr(Trainer, "log", log)
    cfg = tiny_config(**{"method.name": "sft", "train.max_steps": 3, "train.checkpoint_every": 1})
    code, line = cli_train(cfg, tmp_path, capsys)
    out = Path(cfg.train.output_dir)
    assert code == 2 and f"videosspo train: writing under {out} failed (OSError: [Errno 28] No space left" in line
    assert f"the checkpoints in {out / 'checkpoints'} are intact" in line
    assert [c.name for c in checkpoints(out)] == ["step_00000001"] and verify(out / "checkpoints/step_00000001")


# -- a finished run relaunched (issue 21) ----------------------------------------------------------

# Runs a config in a fresh process, SIGKILLed at the n-th file operation (argv[2]) of its final checkpoint save.
KILL_IN_FINAL_SAVE = """
import json, os, signal, sys
from videosspo.config import load_config
from videosspo.state import TrainingState
from videosspo.trainer import Trainer

cfg, at, events, saving = load_config(sys.argv[1]), int(sys.argv[2]), [], [False]
real_save = TrainingState.save

def save(self):
    saving[0] = self.trainer.step == cfg.train.max_steps
    try:
        return real_save(self)
    finally:
        saving[0] = False

def audit(name, args):
    path = os.fspath(args[0]) if args and isinstance(args[0], (str, os.PathLike)) else ""
    if saving[0] and name in ("open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree") \\
            and path.startswith(cfg.train.output_dir):
        events.append(name)
        if len(events) == at:
            os.kill(os.getpid(), signal.SIGKILL)

TrainingState.save = save
sys.addaudithook(audit)
Trainer(cfg).fit()
print("EVENTS", json.dumps(events))
"""


def every_file(run: Path) -> dict[str, bytes]:
    """Every file of a run folder, less what names the folder or the moment (config.yaml, the lineage in markers,
    timings in summary.json and metrics.jsonl, TensorBoard's events)."""
    files = {}
    for p in sorted(run.rglob("*")):
        name = p.relative_to(run).as_posix()
        if not p.is_file() or p.name in ("summary.json", "config.yaml") or "logs" in p.parts:
            continue
        if p.name == MARKER:  # less config.yaml's size and digest
            info = json.loads(p.read_text())
            files[name] = [
                info["parent"],
                info["snapshots"],
                *({k: v for k, v in info[key].items() if k != "config.yaml"} for key in ("files", "sha256")),
            ]
        elif p.name == "metrics.jsonl":
            files[name] = run_state(run)["metrics"]
        else:
            files[name] = p.read_bytes()
    return files


def test_a_finished_run_killed_in_its_final_save_relaunched_and_extended_is_the_same_run(synth_data, tmp_path):
    """SSPO with losers reused over 3 steps, EMA, keep 2: the run is SIGKILLed at a file operation of its final
    save past the publication of the final checkpoint (pruning the oldest one), relaunched (nothing left to train)
    and extended by a step inside the losers' window. Every file equals the uninterrupted run's at each stage."""
    common = {
        "train.checkpoint_every": 1,
        "train.keep_checkpoints": 2,
        "loser.reuse": 3,
        "optim.ema_decay": 0.9,
        "train.max_steps": 4,
    }
    straight = tmp_path / "straight"
    Trainer(tiny(synth_data, straight, **common)).fit()
    finished = every_file(straight)
    Trainer(tiny(synth_data, straight, **(common | {"train.max_steps": 5, "train.resume": "latest"}))).fit()
    extended = every_file(straight)

    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    run = tmp_path / "run"
    save_config(tiny(synth_data, run, **common), tmp_path / "c.yaml")
    count = subprocess.run(
        [sys.executable, "-c", KILL_IN_FINAL_SAVE, str(tmp_path / "c.yaml"), "0"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert count.returncode == 0, count.stderr[-3000:]
    events = json.loads(count.stdout.split("EVENTS")[-1])
    at = len(events) - events[::-1].index("shutil.rmtree")  # pruning: step_2 renamed to .del-*, not yet deleted
    shutil.rmtree(run)
    killed = subprocess.run(
        [sys.executable, "-c", KILL_IN_FINAL_SAVE, str(tmp_path / "c.yaml"), str(at)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    Trainer(tiny(synth_data, run, **common, **{"train.resume": "latest"})).fit()  # relaunched: nothing to train
    assert every_file(run).keys() == finished.keys()
    assert [name for name in finished if every_file(run)[name] != finished[name]] == []
    Trainer(tiny(synth_data, run, **(common | {"train.max_steps": 5, "train.resume": "latest"}))).fit()
    state = every_file(run)
    assert state.keys() == extended.keys() and [name for name in extended if state[name] != extended[name]] == []
