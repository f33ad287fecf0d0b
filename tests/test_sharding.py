"""Sharded training (FSDP): what videosspo reads from the denoiser is gathered from the shards, and resume is exact.

Two CPU processes (gloo) run a tiny LoRA SSPO run with EMA under accelerate's FSDP (tests/fsdp_worker.py says how
on CPU): the replay snapshots, the `model/` export, the EMA file and the logged losses must equal one unsharded
process with the same global batch. Without gathering, the unwrapped module holds each process's flat shard.
The same FSDP run stopped after step 2 and resumed must end bit-identical to the uninterrupted one.
benchmarks/fsdp_check.py runs the comparison through `accelerate launch` on GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from benchmarks.fsdp_check import STEPS, _max_diff, compare_runs, snapshots
from conftest import ROOT, run_state
from videosspo.reference import POLICY, with_adapter_name
from videosspo.trainer import ADAPTER_FILE, EMA_FILE, FSDP_OPTIMIZER_FILE


def test_fsdp_equals_one_process_and_resumes_exactly(synth_data, tmp_path):
    worker = ROOT / "tests" / "fsdp_worker.py"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the tree under test, not another
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker)]
    one, two, resumed = tmp_path / "one", tmp_path / "two", tmp_path / "resumed"
    runs = [[sys.executable, str(worker), str(one), str(synth_data), "1", "4"],
            [*torchrun, str(two), str(synth_data), "2", "4"],
            [*torchrun, str(resumed), str(synth_data), "2", "4", "2"],  # stops after step 2 ...
            [*torchrun, str(resumed), str(synth_data), "2", "4"]]  # ... and resumes from its checkpoint to step 3
    for command in runs:
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]

    diff = compare_runs(one, two)
    assert diff["snapshot_steps"] == [[0, 2, 3], [0, 2, 3]]
    assert diff["snapshot_max_abs_diff"] < 1e-5 and diff["export_max_abs_diff"] < 1e-5  # Adam steps are 1e-3
    assert diff["metrics_max_rel_diff"] < 1e-3
    assert diff["reference_differed"]  # a reference other than the policy ran, loaded from the pool
    assert max(v.abs().max() for v in snapshots(two)[3].values()) > 5e-4  # the policy moved: not zeros compared

    final = f"checkpoints/step_{STEPS:08d}"
    ema_one, ema_two = (load_file(run / final / EMA_FILE) for run in (one, two))  # whole tensors, not rank 0's shard
    assert _max_diff(ema_one, ema_two) < 1e-5
    trained = with_adapter_name(load_file(two / final / "accelerate" / ADAPTER_FILE), POLICY)
    assert ema_two.keys() == trained.keys() and _max_diff(ema_two, trained) > 1e-5  # the average, not the weights
    optimizer = torch.load(two / final / "accelerate" / FSDP_OPTIMIZER_FILE, weights_only=True)  # whole, by name
    assert {k: s["exp_avg"].shape for k, s in optimizer["state"].items()} == {k: v.shape for k, v in trained.items()}

    expected, state = run_state(two), run_state(resumed)
    assert state["checkpoint"] == expected["checkpoint"] and state["snapshots"] == expected["snapshots"]
    assert state["files"].keys() == expected["files"].keys()
    assert [name for name in expected["files"] if state["files"][name] != expected["files"][name]] == []
    assert state["metrics"] == expected["metrics"]
