"""Plot preference runs' own logged curves (metrics.jsonl) beside their held-out adherence: docs/guard_curves.png.

    python benchmarks/guard_curves.py \\
        "SSPO (paper, sft switch)=benchmarks/results/alignment_guard/metrics/sspo__seed0.jsonl" \\
        "SSPO, ssr_mode sign=benchmarks/results/alignment_guard/metrics/sspo__ssr=sign__seed0.jsonl" \\
        --runs benchmarks/results/alignment_guard/runs --out docs/guard_curves.png

One row per run: the policy's and the reference's errors on winners and losers; margin, implicit-reward
accuracy and switch fraction; the guard's two signals with their default thresholds (train.guard_drift,
train.guard_loser) and the first alarm; held-out adherence from the study record of the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.guard_calibration import replay  # noqa: E402
from videosspo.config import TrainConfig  # noqa: E402


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs_", nargs="+", metavar="LABEL=METRICS", help="a label and a run's metrics.jsonl")
    p.add_argument("--runs", help="study runs folder: the records with each run's evaluations")
    p.add_argument("--out", default=str(ROOT / "docs" / "guard_curves.png"))
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    defaults = TrainConfig()
    fig, axes = plt.subplots(len(args.runs_), 4, figsize=(17, 3.6 * len(args.runs_)), squeeze=False)
    for row, spec in zip(axes, args.runs_, strict=True):
        label, path = spec.split("=", 1)
        path = Path(path)
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        for key, name, style in (
            ("loss/e_w", "policy, winners", "C0-"),
            ("ref/e_w", "reference, winners", "C0--"),
            ("loss/e_l", "policy, losers", "C3-"),
            ("ref/e_l", "reference, losers", "C3--"),
        ):
            row[0].plot(*series(rows, key), style, label=name)
        row[0].set(yscale="log", title=f"{label}: denoising errors", xlabel="step")
        for key, name in (
            ("rewards/margin", "margin Δ_l − Δ_w"),
            ("rewards/accuracy", "implicit-reward accuracy"),
            ("sspo/switch_frac", "switch fraction"),
        ):
            row[1].plot(*series(rows, key), label=name)
        row[1].set(title="rewards", xlabel="step")
        alarm, guarded = replay(rows, defaults.guard_drift, defaults.guard_loser)  # the guard on the logged rows
        row[2].plot(*series(guarded, "guard/drift"), "C2-", label="winner drift vs θ0 (guard/drift)")
        row[2].plot(*series(guarded, "guard/loser"), "C4-", label="loser ratio − 1 (guard/loser)")
        row[2].axhline(defaults.guard_drift, color="C2", ls=":", label=f"guard_drift {defaults.guard_drift:g}")
        row[2].axhline(defaults.guard_loser, color="C4", ls=":", label=f"guard_loser {defaults.guard_loser:g}")
        row[2].set(
            title="guard signals" + (f": fires at step {alarm}" if alarm else ": silent"),
            xlabel="step",
            ylim=(-0.5, None),
        )
        record = Path(args.runs or "") / path.name.replace(".jsonl", ".json")
        base = Path(args.runs or "") / "base__seed0.json"
        if args.runs and record.is_file():
            evals = json.loads(record.read_text())["evals"]
            pts = sorted((int(k), e["heldout"]["adherence"]) for k, e in evals.items())
            if base.is_file():
                pts = [(0, json.loads(base.read_text())["evals"]["0"]["heldout"]["adherence"])] + pts
            row[3].plot([s for s, _ in pts], [a for _, a in pts], "ko-", label="held-out adherence")
        row[3].set(title="held-out adherence (study evaluation)", xlabel="step", ylim=(0, 0.6))
        for ax in row:
            if alarm:
                ax.axvline(alarm, color="red", lw=1, alpha=0.6)
            ax.legend(fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(args.out)


if __name__ == "__main__":
    main()
