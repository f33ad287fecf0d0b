"""Sharded training against one unsharded process: the device-run twin of tests/test_sharding.py.

    python benchmarks/fsdp_check.py                        # every visible GPU (2 or more shard; 1 only wraps)
    python benchmarks/fsdp_check.py --processes 4 --lora-rank 0 --out runs/fsdp_check
    python benchmarks/fsdp_check.py --cpu --processes 2    # the same runs and checks on CPU (gloo), minutes

Trains the tiny SSPO config (EMA on) for 3 steps at a global batch of N, four ways:

    one      one process at batch N, unsharded: the reference
    fsdp     `accelerate launch` with configs/accelerate/fsdp_8gpu.yaml, N processes at batch 1, one FSDP unit
             per transformer block
    resumed  the fsdp run stopped after step 2 (its final checkpoint), then resumed to step 3
    zero2    `accelerate launch` with configs/accelerate/deepspeed_zero2_8gpu.yaml, N processes at batch 1
             (skipped when deepspeed is not installed)

and checks fsdp and zero2 against one (replay snapshots, `model/` export, EMA file: largest absolute
differences; logged metrics: largest relative one) and resumed against fsdp (every tensor of the final
checkpoint and its snapshots). Prints JSON and a table; exits 1 when a difference passes --tolerance
(default 5e-4, half an Adam step: TOLERANCE; metrics: 1e-3 relative).

--cpu: accelerate turns FSDP on only for accelerators, so the fsdp runs go through tests/fsdp_worker.py
(accelerate's state set to FSDP by hand, as in the CPU test); zero2 runs `accelerate launch` on
DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu, gloo).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_common import ROOT, table  # noqa: E402

STEPS = 3  # the runs stop there; their checkpoint holds the pool, the export and the EMA
METRICS = ("loss", "rewards/delta_w", "rewards/delta_l", "grad_norm", "replay/ref_index")
METRICS_TOLERANCE = 1e-3  # relative: losses are reduced across processes in another order
# Weights: half an Adam step at the runs' lr 1e-3. Measured on CPU: LoRA 5e-6; full fine-tuning 1.0e-4, under FSDP
# and ZeRO-2 alike (Adam turns the reduction order of near-zero gradients into a fraction of a step). A sharding
# bug (a shard read as the whole, a gradient not reduced) is off by whole steps, or by shapes.
TOLERANCE = 5e-4
ACCELERATE = ROOT / "configs" / "accelerate"


def train_args(data: Path, out: Path, lora_rank: int, batch: int, steps: int = STEPS) -> list[str]:
    """`videosspo train` arguments of every run: the tiny SSPO config, a snapshot every step, EMA, resumable."""
    return [
        "--config",
        str(ROOT / "configs" / "tiny_animatediff_sspo.yaml"),
        "--data.path",
        str(data),
        "--data.frames",
        "2",
        "--data.height",
        "16",
        "--data.width",
        "16",
        "--model.lora_rank",
        str(lora_rank),
        "--train.max_steps",
        str(steps),
        "--train.checkpoint_every",
        "0",
        "--train.sample_prompts",
        "[a]",
        "--train.resume",
        "latest",
        "--train.output_dir",
        str(out),
        "--sample.steps",
        "1",
        "--loser.steps",
        "2",
        "--replay.interval",
        "1",
        "--replay.size",
        "3",
        "--optim.lr",
        "1e-3",
        "--optim.warmup_steps",
        "0",
        "--optim.ema_decay",
        "0.9",
        "--optim.batch_size",
        str(batch),
        "--method.beta",
        "50",
    ]


def final(run: Path) -> Path:
    return run / "checkpoints" / f"step_{STEPS:08d}"


def snapshots(run: Path) -> dict:
    """The replay snapshots of the run's last checkpoint, by step."""
    from safetensors.torch import load_file

    index = json.loads((final(run) / "replay" / "index.json").read_text())
    return {e["step"]: load_file(run / "snapshots" / f"{e['digest']}.safetensors") for e in index["snapshots"]}


def max_diff(a: dict, b: dict) -> float:
    """Largest absolute difference of two state dicts; infinite when their keys or shapes differ."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")  # e.g. a process's flat shard where the whole tensor belongs
    return max((float((a[k].float() - b[k].float()).abs().max()) for k in a), default=0.0)


def compare_runs(one: Path, two: Path) -> dict:
    """Largest differences between two runs' replay snapshots, `model/` exports, EMA files and logged metrics."""
    from safetensors.torch import load_file

    from models import load_model

    s1, s2 = snapshots(one), snapshots(two)
    w1, w2 = (load_model(final(run) / "model").unet.state_dict() for run in (one, two))
    e1, e2 = (load_file(final(run) / "ema.safetensors") for run in (one, two))
    m1, m2 = ([json.loads(line) for line in open(run / "metrics.jsonl")] for run in (one, two))
    metric = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-6) for a, b in zip(m1, m2, strict=True) for k in METRICS)
    return {
        "snapshot_steps": [list(s1), list(s2)],
        "snapshot_max_abs_diff": max(max_diff(s1[k], s2[k]) for k in s1) if list(s1) == list(s2) else float("inf"),
        "export_max_abs_diff": max_diff(w1, w2),
        "ema_max_abs_diff": max_diff(e1, e2),
        "metrics_max_rel_diff": metric,
        "reference_differed": any(m["rewards/delta_w"] != 0 for m in m2),
    }


def compare_resumed(uninterrupted: Path, resumed: Path) -> dict:
    """Every tensor of the two runs' final checkpoints (weights or adapter, EMA, export) and of their snapshots."""
    from safetensors.torch import load_file

    def tensors(run):
        files = sorted(final(run).rglob("*.safetensors"))
        return {p.relative_to(final(run)).as_posix(): load_file(p) for p in files} | {
            f"snapshot {step}": state for step, state in snapshots(run).items()
        }

    a, b = tensors(uninterrupted), tensors(resumed)
    diffs = {
        name: max_diff(a[name], b[name]) if name in a and name in b else float("inf")
        for name in sorted(a.keys() | b.keys())
    }
    return {
        "files": len(diffs),
        "files_differing": [name for name, d in diffs.items() if d > 0],
        "max_abs_diff": max(diffs.values(), default=0.0),
    }


def launcher(kind: str, processes: int, cpu: bool) -> tuple[list[str], dict]:
    """The command that runs `videosspo train`'s arguments as `kind` (one | fsdp | zero2), and its environment."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if kind == "one":
        if not cpu:  # one GPU
            env["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        return [sys.executable, "-m", "videosspo.train"], env
    if kind == "fsdp" and cpu:
        env |= {
            "ACCELERATE_USE_CPU": "true",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        }
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(processes),
            str(ROOT / "tests" / "fsdp_worker.py"),
        ], env
    if kind == "zero2" and cpu:
        env |= {"DS_ACCELERATOR": "cpu", "ACCELERATE_USE_CPU": "false"}  # DeepSpeed's CPU accelerator, not --cpu
    config = {"fsdp": "fsdp_8gpu.yaml", "zero2": "deepspeed_zero2_8gpu.yaml"}[kind]
    wrap = (
        [
            "--fsdp_auto_wrap_policy",
            "TRANSFORMER_BASED_WRAP",
            "--fsdp_transformer_layer_cls_to_wrap",
            "BasicTransformerBlock",
        ]
        if kind == "fsdp"
        else []
    )
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(ACCELERATE / config),
        "--num_processes",
        str(processes),
        "--main_process_port",
        "0",
        *wrap,
        "-m",
        "videosspo.train",
    ], env


def train(kind: str, out: Path, data: Path, args, steps: int = STEPS) -> dict:
    """One run; its summary (which says how accelerate distributed it)."""
    command, env = launcher(kind, args.processes, args.cpu)
    batch = args.processes if kind == "one" else 1
    done = subprocess.run(
        [*command, *train_args(data, out, args.lora_rank, batch, steps)], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"the {kind} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads((out / "summary.json").read_text())


def main(argv=None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, default=None, help="default: every visible GPU (--cpu: 2)")
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--out", default="runs/fsdp_check")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE)
    parser.add_argument("--cpu", action="store_true", help="run on CPU processes (gloo): the check of this script")
    args = parser.parse_args(argv)
    args.processes = args.processes or (2 if args.cpu else torch.cuda.device_count())
    if args.processes < 1:
        parser.error("no GPU visible: run with --cpu (or tests/test_sharding.py, the CPU test)")
    from videosspo.synth import make_dataset

    out = Path(args.out)
    data = make_dataset(out / "data", n=8, frames=4, height=32, width=32, progress=False)
    kinds = ["one", "fsdp", "zero2"] if importlib.util.find_spec("deepspeed") else ["one", "fsdp"]
    runs = {kind: train(kind, out / kind, data, args) for kind in kinds}
    train("fsdp", out / "resumed", data, args, steps=STEPS - 1)  # stops with a checkpoint ...
    runs["resumed"] = train("fsdp", out / "resumed", data, args)  # ... which this one resumes from
    checks = [{"check": f"{kind} == one", **compare_runs(out / "one", out / kind)} for kind in kinds[1:]]
    checks.append({"check": "resumed == fsdp", **compare_resumed(out / "fsdp", out / "resumed")})
    for check in checks:
        worst = max(v for k, v in check.items() if k.endswith("_abs_diff"))
        check["ok"] = worst <= args.tolerance and check.get("metrics_max_rel_diff", 0.0) <= METRICS_TOLERANCE
    result = {
        "device": "cpu" if args.cpu else torch.cuda.get_device_name(0),
        "processes": args.processes,
        "lora_rank": args.lora_rank,
        "tolerance": args.tolerance,
        "distributed": {kind: summary["distributed"] for kind, summary in runs.items()},
        "zero2": "ran" if "zero2" in kinds else "skipped: pip install deepspeed",
        "checks": checks,
        "ok": all(check["ok"] for check in checks),
    }
    print(json.dumps(result, indent=2))
    print(
        table(
            checks,
            [
                "check",
                "snapshot_max_abs_diff",
                "export_max_abs_diff",
                "ema_max_abs_diff",
                "metrics_max_rel_diff",
                "max_abs_diff",
                "ok",
            ],
            title=f"{result['device']}, {args.processes} processes",
        )
    )
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
