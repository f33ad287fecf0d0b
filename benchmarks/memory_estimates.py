"""`videosspo estimate` on the real architectures (meta device, no weights), the rows docs/low-memory.md quotes.
`python benchmarks/memory_estimates.py` -> benchmarks/results/memory/estimates.md + estimates.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "memory"
WAN = "--config configs/wan_sspo.yaml --data.frames 33 --data.height 480 --data.width 832 --train.mixed_precision bf16"
LOW = "--model.fp8_base true --model.gradient_checkpointing true"
RUNS = {
    "headline: 14B, fp8 + swap 36 + checkpointing + offloaded checkpoints + cached text": f"{WAN} --model.pretrained Wan-AI/Wan2.1-T2V-14B-Diffusers {LOW} --model.blocks_to_swap 36 "
    "--model.offload_checkpoints true --data.latent_cache cache --gpu-gb 24",
    "14B, fp8 + swap 36 + checkpointing (text encoder on the device, checkpoints kept)": f"{WAN} --model.pretrained Wan-AI/Wan2.1-T2V-14B-Diffusers {LOW} --model.blocks_to_swap 36 --gpu-gb 24",
    "14B, fp8 + swap 30 + checkpointing": f"{WAN} --model.pretrained Wan-AI/Wan2.1-T2V-14B-Diffusers {LOW} "
    "--model.blocks_to_swap 30 --gpu-gb 24",
    "1.3B as shipped": f"{WAN} --model.pretrained Wan-AI/Wan2.1-T2V-1.3B-Diffusers --gpu-gb 24",
    "AnimateDiff as shipped": "--config configs/animatediff_sspo.yaml --model.pretrained guoyww/animatediff-motion-adapter-v1-5-2 "
    "--data.frames 16 --data.height 512 --data.width 512 --train.mixed_precision bf16 --gpu-gb 24",
}


def main() -> dict:
    results, md = (
        {},
        [
            "# `videosspo estimate` on the real architectures (meta device, no weights)",
            "",
            "Peak GPU memory of one SSPO step (LoRA), as `videosspo estimate` prints it (made by "
            "`python benchmarks/memory_estimates.py`); see docs/low-memory.md for the method and its "
            "validation.",
            "",
        ],
    )
    for name, args in RUNS.items():
        out = subprocess.run(
            [sys.executable, "-m", "videosspo", "estimate", *args.split()],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        results[name] = {"command": f"videosspo estimate {args}", "output": out}
        md += [f"## {name}", "", "```", f"videosspo estimate {args}", "", out, "```", ""]
        print(name, out.splitlines()[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "estimates.json").write_text(
        json.dumps({"command": "python benchmarks/memory_estimates.py", "runs": results}, indent=2)
    )
    (OUT / "estimates.md").write_text("\n".join(md))
    return results


if __name__ == "__main__":
    main()
