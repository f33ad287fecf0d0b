"""The estimator (videosspo/memory.py) against torch's measured CPU peak of one training step (forward on 2 winners
+ 2 losers, backward, AdamW update): a medium Wan (3 blocks of width 128, 768 tokens, LoRA 8), checkpointing and fp8
on and off, and offloaded checkpoints (their host copies outside torch's measured memory, as on an accelerator). `python benchmarks/memory_validation.py` -> benchmarks/results/memory/validation_cpu.json + .md."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from benchmarks.bench_common import table

OUT = Path(__file__).resolve().parent / "results" / "memory"


def main() -> list[dict]:
    import pytest
    import test_memory

    rows = []
    for checkpointing, fp8, offload in [(c, f, False) for c in (False, True) for f in (False, True)] + [
        (True, False, True),
        (True, True, True),
    ]:
        case = {"checkpointing": checkpointing, "fp8": fp8, "offload_checkpoints": offload}
        try:
            with pytest.MonkeyPatch.context() as mp:
                test_memory.test_estimate_within_15_percent_of_the_measured_cpu_peak(checkpointing, fp8, offload, mp)
            rows.append({**case, **test_memory.LAST})
        except AssertionError as e:
            rows.append({**case, **test_memory.LAST, "error": str(e)[:200]})
        print(rows[-1], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "validation_cpu.json").write_text(
        json.dumps({"command": "python benchmarks/memory_validation.py", "rows": rows}, indent=2)
    )
    (OUT / "validation_cpu.md").write_text(
        "`python benchmarks/memory_validation.py`\n\n"
        + table(rows, ["checkpointing", "fp8", "offload_checkpoints", "predicted_mb", "measured_mb", "ratio"])
        + "\n"
    )
    return rows


if __name__ == "__main__":
    main()
