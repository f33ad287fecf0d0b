"""Sharded training (FSDP): what videosspo reads from the denoiser is gathered from the shards, and resume is exact.

Two CPU processes (gloo) run a tiny LoRA SSPO run with EMA under accelerate's FSDP (tests/fsdp_worker.py says how
on CPU): the replay snapshots, the `model/` export, the EMA file and the logged losses must equal one unsharded
process with the same global batch. Without gathering, the unwrapped module holds each process's flat shard.
The same FSDP run stopped after step 2 and resumed must end bit-identical to the uninterrupted one.
These are benchmarks/fsdp_check.py's runs (`--cpu`); on GPUs it runs them through `accelerate launch`.
"""

from __future__ import annotations

import argparse
import importlib.util

import pytest
import torch
from conftest import run_state
from safetensors.torch import load_file

from benchmarks.fsdp_check import TOLERANCE, compare_runs, final, max_diff, snapshots, train
from models.lora import POLICY
from videosspo.backend import ADAPTER_FILE, FSDP_OPTIMIZER_FILE
from videosspo.reference import with_adapter_name

CPU = argparse.Namespace(processes=2, lora_rank=4, cpu=True)


def test_fsdp_equals_one_process_and_resumes_exactly(synth_data, tmp_path):
    one, two, resumed = tmp_path / "one", tmp_path / "two", tmp_path / "resumed"
    assert train("one", one, synth_data, CPU)["distributed"] == "NO x 1"
    assert train("fsdp", two, synth_data, CPU)["distributed"] == "FSDP x 2"
    train("fsdp", resumed, synth_data, CPU, steps=2)  # stops after step 2 with a checkpoint ...
    train("fsdp", resumed, synth_data, CPU)  # ... which this run resumes from, to step 3

    diff = compare_runs(one, two)
    assert diff["snapshot_steps"] == [[0, 2, 3], [0, 2, 3]]
    assert (
        max(diff["snapshot_max_abs_diff"], diff["export_max_abs_diff"], diff["ema_max_abs_diff"]) < 1e-5
    )  # Adam: 1e-3
    assert diff["metrics_max_rel_diff"] < 1e-3
    assert diff["reference_differed"]  # a reference other than the policy ran, loaded from the pool
    assert max(v.abs().max() for v in snapshots(two)[3].values()) > 5e-4  # the policy moved: not zeros compared

    trained = with_adapter_name(load_file(final(two) / "accelerate" / ADAPTER_FILE), POLICY)
    ema = load_file(final(two) / "ema.safetensors")  # whole tensors, not process 0's shard
    assert ema.keys() == trained.keys() and max_diff(ema, trained) > 1e-5  # the average, not the trained weights
    optimizer = torch.load(final(two) / "accelerate" / FSDP_OPTIMIZER_FILE, weights_only=True)  # whole, by name
    assert {k: s["exp_avg"].shape for k, s in optimizer["state"].items()} == {k: v.shape for k, v in trained.items()}

    expected, state = run_state(two), run_state(resumed)
    assert state["checkpoint"] == expected["checkpoint"] and state["snapshots"] == expected["snapshots"]
    assert state["files"].keys() == expected["files"].keys()
    assert [name for name in expected["files"] if state["files"][name] != expected["files"][name]] == []
    assert state["metrics"] == expected["metrics"]


DEEPSPEED = pytest.mark.requires("deepspeed", importlib.util.find_spec("deepspeed") is not None)
FULL = argparse.Namespace(processes=2, lora_rank=0, cpu=True)


@pytest.fixture(scope="module")
def zero2_full(synth_data, tmp_path_factory):
    """1 process x batch 2 and `accelerate launch` with configs/accelerate/deepspeed_zero2_8gpu.yaml on DeepSpeed's
    CPU accelerator, 2 processes x batch 1, full fine-tuning: (one, zero2) run folders."""
    one, zero2 = (tmp_path_factory.mktemp(name) for name in ("one", "zero2"))
    assert train("one", one, synth_data, FULL)["distributed"] == "NO x 1"
    assert train("zero2", zero2, synth_data, FULL)["distributed"] == "DEEPSPEED x 2"
    return one, zero2


@DEEPSPEED
def test_deepspeed_zero2_equals_one_process(zero2_full):
    """The same snapshots, export, EMA and losses as 1 process x batch 2."""
    diff = compare_runs(*zero2_full)  # 7.9e-5 measured (full fine-tuning: TOLERANCE says why)
    assert max(diff["snapshot_max_abs_diff"], diff["export_max_abs_diff"], diff["ema_max_abs_diff"]) < TOLERANCE
    assert diff["metrics_max_rel_diff"] < 1e-3 and diff["reference_differed"]


@DEEPSPEED
def test_deepspeed_zero2_resumes_exactly_on_its_process_count_only(zero2_full, synth_data, tmp_path):
    """Stopped after step 2 and resumed (`--train.resume latest`), ZeRO-2 ends bit-identical to the uninterrupted
    run: every checkpoint file (DeepSpeed's partitioned optimizer state too), snapshots, `metrics.jsonl`. Its
    optimizer state is partitioned over the 2 processes: 1 process is refused in one line naming the fix."""
    resumed = tmp_path / "resumed"
    train("zero2", resumed, synth_data, FULL, steps=2)
    train("zero2", resumed, synth_data, FULL)
    expected, state = run_state(zero2_full[1]), run_state(resumed)
    assert any(name.endswith("zero_pp_rank_1_mp_rank_00_optim_states.pt") for name in state["files"])
    assert state["checkpoint"] == expected["checkpoint"] and state["snapshots"] == expected["snapshots"]
    assert state["files"].keys() == expected["files"].keys()
    assert [name for name in expected["files"] if state["files"][name] != expected["files"][name]] == []
    assert state["metrics"] == expected["metrics"]
    with pytest.raises(
        SystemExit,
        match=r"(?s)exit 2\).*videosspo train: cannot resume without DeepSpeed: [^\n]* "
        r"partitioned over its 2 processes; resume under DeepSpeed with 2 processes",
    ):
        train("one", resumed, synth_data, FULL)  # 1 x batch 2: the same global batch


@DEEPSPEED
def test_deepspeed_zero2_with_lora_equals_one_process_and_resumes(synth_data, tmp_path):
    """LoRA under ZeRO-2 (the reference an adapter slot of the same network, snapshots adapters), stopped after step 2
    and resumed: the snapshots, export, EMA and losses of 1 process. Its checkpoints hold the adapter, not the base."""
    lora = argparse.Namespace(processes=2, lora_rank=4, cpu=True)
    one, zero2 = tmp_path / "one", tmp_path / "zero2"
    train("one", one, synth_data, lora)
    train("zero2", zero2, synth_data, lora, steps=2)
    assert train("zero2", zero2, synth_data, lora)["distributed"] == "DEEPSPEED x 2"
    diff = compare_runs(one, zero2)  # 7.1e-6 measured
    assert max(diff["snapshot_max_abs_diff"], diff["export_max_abs_diff"], diff["ema_max_abs_diff"]) < TOLERANCE
    assert diff["metrics_max_rel_diff"] < 1e-3 and diff["reference_differed"]
    assert max(v.abs().max() for v in snapshots(zero2)[3].values()) > 5e-4  # the policy moved: not zeros compared

    adapter = with_adapter_name(load_file(final(zero2) / "accelerate" / ADAPTER_FILE), POLICY)
    module = torch.load(
        final(zero2) / "accelerate" / "pytorch_model" / "mp_rank_00_model_states.pt", weights_only=False
    )["module"]  # DeepSpeed's own copy of the module: the adapter and buffers
    assert max_diff({k: module[k] for k in adapter}, adapter) == 0
    assert [k for k in module.keys() - adapter.keys() if k.endswith((".weight", ".bias"))] == []  # no frozen base
