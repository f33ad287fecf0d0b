"""FSDP on GPUs against one unsharded process: the device-run twin of tests/test_sharding.py.

    python benchmarks/fsdp_check.py                  # every visible GPU (2 or more shard; 1 only wraps)
    python benchmarks/fsdp_check.py --processes 4 --lora-rank 0 --out runs/fsdp_check

Trains the tiny SSPO config for 3 steps twice: `accelerate launch` with configs/accelerate/fsdp_8gpu.yaml on
N processes at batch 1 each (one FSDP unit per transformer block), and one process without FSDP at batch N.
Prints JSON with the largest differences of the replay snapshots, the `model/` export and the logged
losses; exits 1 past --tolerance. `compare_runs` is what the CPU test checks too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_common import ROOT  # noqa: E402

STEPS = 3  # the runs stop there; their checkpoint holds the pool and the export
METRICS = ("loss", "rewards/delta_w", "rewards/delta_l", "grad_norm", "replay/ref_index")


def snapshots(run: Path) -> dict:
    """The replay snapshots of the run's last checkpoint, by step."""
    from safetensors.torch import load_file

    index = json.loads((run / "checkpoints" / f"step_{STEPS:08d}" / "replay" / "index.json").read_text())
    return {e["step"]: load_file(run / "snapshots" / f"{e['digest']}.safetensors") for e in index["snapshots"]}


def _max_diff(a: dict, b: dict) -> float:
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")  # e.g. a process's flat shard where the whole tensor belongs
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def compare_runs(one: Path, two: Path) -> dict:
    """Largest differences between two runs' replay snapshots, `model/` exports and logged metrics."""
    from models import load_model

    s1, s2 = snapshots(one), snapshots(two)
    w1, w2 = (load_model(run / "checkpoints" / f"step_{STEPS:08d}" / "model").unet.state_dict() for run in (one, two))
    m1, m2 = ([json.loads(line) for line in open(run / "metrics.jsonl")] for run in (one, two))
    metric = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for a, b in zip(m1, m2, strict=True) for k in METRICS)
    return {"snapshot_steps": [list(s1), list(s2)],
            "snapshot_max_abs_diff": max(_max_diff(s1[k], s2[k]) for k in s1) if list(s1) == list(s2) else float("inf"),
            "export_max_abs_diff": _max_diff(w1, w2), "metrics_max_rel_diff": metric,
            "reference_differed": any(m["rewards/delta_w"] != 0 for m in m2)}


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=torch.cuda.device_count())
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--out", default="runs/fsdp_check")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("no GPU visible: this check runs accelerate's FSDP, which needs GPUs (tests/test_sharding.py is the CPU one)")
    from videosspo.synth import make_dataset

    out = Path(args.out)
    data = make_dataset(out / "data", n=8, frames=4, height=32, width=32, progress=False)
    common = ["-m", "videosspo.train", "--config", str(ROOT / "configs" / "tiny_animatediff_sspo.yaml"),
              "--data.path", str(data), "--data.frames", "2", "--data.height", "16", "--data.width", "16",
              "--model.lora_rank", str(args.lora_rank), "--train.max_steps", str(STEPS), "--train.checkpoint_every", "0",
              "--train.sample_prompts", "[a]", "--sample.steps", "1", "--loser.steps", "2", "--replay.interval", "1",
              "--replay.size", "3", "--optim.lr", "1e-3", "--optim.warmup_steps", "0", "--method.beta", "50"]
    runs = {"one": out / "one", "fsdp": out / "fsdp"}
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]}
    subprocess.run([sys.executable, *common, "--train.output_dir", str(runs["one"]), "--optim.batch_size",
                    str(args.processes)], check=True, env=env)
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                    str(ROOT / "configs" / "accelerate" / "fsdp_8gpu.yaml"), "--num_processes", str(args.processes),
                    "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP", "--fsdp_transformer_layer_cls_to_wrap",
                    "BasicTransformerBlock", *common, "--train.output_dir", str(runs["fsdp"]), "--optim.batch_size", "1"],
                   check=True)
    result = {"processes": args.processes, "lora_rank": args.lora_rank, "device": torch.cuda.get_device_name(0),
              **compare_runs(runs["one"], runs["fsdp"])}
    result["ok"] = max(result["snapshot_max_abs_diff"], result["export_max_abs_diff"]) <= args.tolerance
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
