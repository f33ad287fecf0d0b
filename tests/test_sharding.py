"""Sharded training (FSDP): what videosspo reads from the denoiser is gathered from the shards.

Two CPU processes (gloo) run a tiny LoRA SSPO run under accelerate's FSDP (tests/fsdp_worker.py says how
on CPU): the replay snapshots, the `model/` export and the logged losses must equal one unsharded process
with the same global batch. Without gathering, the unwrapped module holds each process's flat shard.
benchmarks/fsdp_check.py runs the same comparison through `accelerate launch` on GPUs.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.fsdp_check import snapshots, compare_runs
from conftest import ROOT


def test_fsdp_snapshots_and_export_equal_one_process(synth_data, tmp_path):
    worker = ROOT / "tests" / "fsdp_worker.py"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # the tree under test, not another
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run([sys.executable, str(worker), str(one), str(synth_data), "1", "4"], check=True, env=env,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
                    str(two), str(synth_data), "2", "4"], check=True, env=env, capture_output=True)
    diff = compare_runs(one, two)
    assert diff["snapshot_steps"] == [[0, 2, 3], [0, 2, 3]]
    assert diff["snapshot_max_abs_diff"] < 1e-5 and diff["export_max_abs_diff"] < 1e-5  # Adam steps are 1e-3
    assert diff["metrics_max_rel_diff"] < 1e-3
    assert diff["reference_differed"]  # a reference other than the policy ran, loaded from the pool
    assert max(v.abs().max() for v in snapshots(two)[3].values()) > 5e-4  # the policy moved: not zeros compared
