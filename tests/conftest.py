"""Shared fixtures: a tiny synthetic dataset (written once per session) and tiny training configs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Optional dependencies that must be present, comma-separated (CI sets VIDEOSSPO_REQUIRE=decord in
# .ci/run): a test marked `requires(name, available)` fails instead of skipping when one is missing.
REQUIRED = {name for name in os.environ.get("VIDEOSSPO_REQUIRE", "").split(",") if name}


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(name, available): skip unless the optional dependency is "
                                       "available; fail instead where VIDEOSSPO_REQUIRE names it")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("requires"):
        name, available = mark.args
        if available:
            continue
        if name in REQUIRED:
            pytest.fail(f"{name} is not installed but VIDEOSSPO_REQUIRE={os.environ['VIDEOSSPO_REQUIRE']} requires "
                        f"it: pip install -e '.[dev]'", pytrace=False)
        pytest.skip(f"{name} not installed")


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

    return make_dataset(tmp_path_factory.mktemp("synth"), n=6, frames=4, height=32, width=32, paired=True,
                        progress=False)


@pytest.fixture
def tiny_config(synth_data, tmp_path):
    """`tiny_config(**{"method.name": "sft", ...})`: the demo config shrunk to run in about a second."""
    from videosspo.config import load_config

    def make(**overrides):
        base = {"data.path": str(synth_data), "data.frames": 2, "data.height": 16, "data.width": 16,
                "train.output_dir": str(tmp_path / "run"), "train.max_steps": 2, "train.checkpoint_every": 0,
                "train.sample_prompts": ["a red square moving left"], "sample.steps": 2, "loser.steps": 2,
                "replay.interval": 1, "replay.size": 3, "optim.lr": 1e-3, "optim.warmup_steps": 0,
                "method.beta": 50.0}
        base.update(overrides)
        nested: dict = {}
        for key, value in base.items():
            section, name = key.split(".")
            nested.setdefault(section, {})[name] = value
        return load_config(ROOT / "configs" / "tiny_animatediff_sspo.yaml", nested)

    return make


@pytest.fixture(scope="session")
def hub_layout(tmp_path_factory):
    """`hub_layout("ali-vilab/text-to-video-ms-1.7b")`: that repository's real-layout folder (tests/hub_layouts.py)."""
    from hub_layouts import hub_folder

    root = tmp_path_factory.mktemp("hub")
    return lambda hub_id: hub_folder(hub_id, root)
