"""Shared fixtures: a tiny synthetic dataset (written once per session) and tiny training configs.

Safe under pytest-xdist (`make test` runs `-n 2`): each worker has its own `tmp_path_factory` folder, so session
fixtures write per worker; the one expensive run that several modules share (`two_processes`) is made once per
test run and reused by every worker (`shared_folder`); launchers that need a TCP port get a free one
(`free_port`), never a fixed one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Optional dependencies that must be present, comma-separated (CI sets VIDEOSSPO_REQUIRE=decord in
# .ci/run): a test marked `requires(name, available)` fails instead of skipping when one is missing.
REQUIRED = {name for name in os.environ.get("VIDEOSSPO_REQUIRE", "").split(",") if name}


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "requires(name, available): skip unless the optional dependency is "
        "available; fail instead where VIDEOSSPO_REQUIRE names it",
    )


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        name, available = mark.args
        if available:
            continue
        if name in REQUIRED:
            pytest.fail(
                f"{name} is not installed but VIDEOSSPO_REQUIRE={os.environ['VIDEOSSPO_REQUIRE']} requires "
                f"it: pip install -e '.[dev]'",
                pytrace=False,
            )
        pytest.skip(f"{name} not installed")


def run_state(output_dir: Path) -> dict:
    """What a resumed run must reproduce bit for bit: every file of the final checkpoint (but its config, which names
    the run folder, and its marker, which names the lineage), the snapshots it refers to, metrics.jsonl less timings."""
    from videosspo.checkpoint import MARKER, latest_checkpoint

    final = latest_checkpoint(output_dir)
    files = {
        p.relative_to(final).as_posix(): p.read_bytes()
        for p in sorted(final.rglob("*"))
        if p.is_file() and p.name not in ("config.yaml", MARKER)
    }
    metrics = [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in open(output_dir / "metrics.jsonl")
    ]
    return {
        "checkpoint": final.name,
        "files": files,
        "snapshots": json.loads((final / MARKER).read_text())["snapshots"],
        "metrics": metrics,
    }


def free_port() -> int:
    """A TCP port free now on localhost, for launchers that otherwise take a fixed one (accelerate's default 29500
    would make two tests launching at once on two xdist workers collide)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shared_folder(tmp_path_factory, name: str, make) -> Path:
    """`name`'s folder, filled once per test run by `make(folder)` and reused by every xdist worker (each of which
    has its own basetemp under the run's): a file lock lets one worker make it, `.done` marks it complete."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            make(folder)
            (folder / ".done").touch()
    return folder


def trained_lora(cfg):
    """`cfg`'s model (a ModelConfig with a LoRA rank) with its LoRA's B no longer zero, as after training (seeded)."""
    import torch

    from models import build_model
    from models.lora import add_lora

    model = build_model(cfg)
    model.unet.requires_grad_(False)
    add_lora(model.unet, cfg.lora_rank, cfg.lora_alpha, model.lora_scope)
    gen = torch.Generator().manual_seed(0)
    for name, p in model.unet.named_parameters():
        if "lora_B" in name:
            p.data = torch.randn(p.shape, generator=gen) * 0.2
    return model


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Tiny models gain nothing from intra-op threads; on a busy 2-core machine they are far slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _quiet_hf():
    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    logging.getLogger("accelerate").setLevel(logging.WARNING)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state per process whose precision cannot change: start and leave it fresh
    (for runs in bf16 among tests in fp32)."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """Six 4-frame 32x32 clips of the synthetic world, paired with losers (for DPO)."""
    from videosspo.synth import make_dataset

    return make_dataset(
        tmp_path_factory.mktemp("synth"), n=6, frames=4, height=32, width=32, paired=True, progress=False
    )


@pytest.fixture(scope="session")
def mixed_data(tmp_path_factory):
    """Clips of two shapes in one metadata file (paired, for DPO): rows 0-3 four 32x32 frames, rows 4-7 six 32x64
    frames (`data.buckets` tests)."""
    from videosspo.synth import make_dataset

    root = tmp_path_factory.mktemp("mixed")
    parts = [
        make_dataset(root / "square", n=4, frames=4, height=32, width=32, paired=True, progress=False),
        make_dataset(root / "wide", n=4, frames=6, height=32, width=64, seed=1, paired=True, progress=False),
    ]
    rows = []
    for part in parts:
        for line in (part / "metadata.jsonl").read_text().splitlines():
            row = json.loads(line)
            rows.append(
                json.dumps({**row, "video": str(part / row["video"]), "loser_video": str(part / row["loser_video"])})
            )
    (root / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return root


def tiny(data: Path, output_dir: Path, config: str = "tiny_animatediff_sspo.yaml", **overrides):
    """The demo config (or another of configs/) shrunk to run in about a second, on `data`, writing to `output_dir`;
    loaded as a command loads it (the family's rules checked: `models.load_checked_config`)."""
    from models import load_checked_config

    base = {
        "data.path": str(data),
        "data.frames": 2,
        "data.height": 16,
        "data.width": 16,
        "train.output_dir": str(output_dir),
        "train.max_steps": 2,
        "train.checkpoint_every": 0,
        "train.sample_prompts": ["a red square moving left"],
        "sample.steps": 2,
        "loser.steps": 2,
        "replay.interval": 1,
        "replay.size": 3,
        "optim.lr": 1e-3,
        "optim.warmup_steps": 0,
        "method.beta": 50.0,
    }
    base.update(overrides)
    nested: dict = {}
    for key, value in base.items():
        section, name = key.split(".")
        nested.setdefault(section, {})[name] = value
    return load_checked_config(ROOT / "configs" / config, nested)


@pytest.fixture
def tiny_config(synth_data, tmp_path):
    """`tiny_config(**{"method.name": "sft", ...})`: `tiny` on the synthetic clips, into tmp_path/run
    (`tiny_config("tiny_wan22_sspo.yaml", ...)`: from that config)."""
    return lambda config="tiny_animatediff_sspo.yaml", **overrides: tiny(
        synth_data, tmp_path / "run", config, **overrides
    )


def with_broken_clips(data: Path, folder: Path, rows: list[int]) -> Path:
    """A metadata file listing `data`'s clips but with rows `rows` pointing at undecodable files in `folder`."""
    from videosspo.metadata import load_metadata

    lines = []
    for r in load_metadata(data):
        video = r.video
        if r.index in rows:
            video = folder / f"broken{r.index}.mp4"
            video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
        lines.append(json.dumps({"video": str(video), "caption": r.caption, "loser_video": str(r.loser_video)}) + "\n")
    (folder / "broken.jsonl").write_text("".join(lines))
    return folder / "broken.jsonl"


@pytest.fixture(scope="session")
def hub_layout(tmp_path_factory):
    """`hub_layout("ali-vilab/text-to-video-ms-1.7b")`: that repository's real-layout folder (tests/hub_layouts.py)."""
    from hub_layouts import hub_folder

    root = tmp_path_factory.mktemp("hub")
    return lambda hub_id: hub_folder(hub_id, root)


class TwoProcesses:
    """Launches `tests/crash_run.py` (`videosspo train` + a chosen SIGKILL) as torchrun with 2 CPU processes."""

    def __init__(self, data: Path, bad_rows: list[int]):
        self.data, self.bad_rows = data, bad_rows
        self.args = [
            "--config",
            str(ROOT / "configs/tiny_animatediff_sspo.yaml"),
            "--data.path",
            str(data),
            "--data.frames",
            "2",
            "--data.height",
            "16",
            "--data.width",
            "16",
            "--data.max_bad_fraction",
            "0.5",
            "--train.max_steps",
            "3",
            "--train.checkpoint_every",
            "1",
            "--train.keep_checkpoints",
            "2",
            "--replay.interval",
            "1",
            "--replay.size",
            "3",
            "--loser.steps",
            "2",
            "--loser.reuse",
            "2",
            "--loser.guidance",
            "3",
            "--sample.steps",
            "1",
            "--train.sample_prompts",
            "[a]",
            "--optim.lr",
            "1e-4",
            "--optim.warmup_steps",
            "0",
            "--method.beta",
            "50",
        ]
        self.env = {
            **os.environ,
            "ACCELERATE_USE_CPU": "true",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }

    def launch(self, output_dir: Path, *extra: str, **crash) -> subprocess.CompletedProcess:
        """2 processes x batch 1 into `output_dir`; `crash`: CRASH_RANK, CRASH_AT, CRASH_LOG (tests/crash_run.py)."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node",
                "2",
                str(ROOT / "tests/crash_run.py"),
                *self.args,
                "--optim.batch_size",
                "1",
                "--train.output_dir",
                str(output_dir),
                *extra,
            ],
            env={**self.env, **{k: str(v) for k, v in crash.items()}},
            capture_output=True,
            text=True,
        )

    def one(self, output_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        """The same run by 1 process x batch 2 (the same global batch) into `output_dir`."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "videosspo.train",
                *self.args,
                "--optim.batch_size",
                "2",
                "--train.output_dir",
                str(output_dir),
                *extra,
            ],
            env=self.env,
            capture_output=True,
            text=True,
        )


@pytest.fixture(scope="session")
def two_processes(synth_data, tmp_path_factory):
    """One uninterrupted 2-process SSPO run (3 steps, a checkpoint each) on `synth_data` whose first global
    batch is two undecodable clips (rank 0 reads one, rank 1 the other), shared by the DDP tests:
    `.baseline` its folder, `.events` each rank's kill moments (tests/crash_run.py), `.launch` for more."""
    from videosspo.rng import epoch_order

    bad = [int(i) for i in epoch_order(0, 0, 6)[:2]]  # train.seed 0: global batch 0 = positions 0, 1 of 6 clips

    def make(root: Path) -> None:
        done = TwoProcesses(with_broken_clips(synth_data, root, bad), bad).launch(root / "baseline", CRASH_LOG=root)
        assert done.returncode == 0, done.stderr[-3000:]

    root = shared_folder(tmp_path_factory, "two_processes", make)  # one run, whichever worker gets here first
    runs = TwoProcesses(root / "broken.jsonl", bad)
    runs.baseline = root / "baseline"
    runs.events = [json.loads((root / f"rank{r}.json").read_text()) for r in (0, 1)]
    return runs
