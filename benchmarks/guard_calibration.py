"""Calibrate the preference guard (`train.guard`, videosspo/guard.py) on the alignment study's runs.

Replays the guard (`videosspo.guard.Guard` itself) on each run's own metrics.jsonl (`guard/e_fixed`, the
fixed batch's error measured every 5 steps, and `loss/e_l`, `ref/e_l`, logged every `train.log_every` = 5
steps by the study) over a grid of thresholds, and compares the first alarm
with the run's held-out adherence curve (its study record, evaluated every `--eval-every` steps):

- a run *collapses* when its last evaluation is more than `COLLAPSE` below the base's adherence; the
  guard must fire on it before it has lost half of that eventual drop (the half-drop step is
  interpolated linearly between evaluations);
- a run that stays *level* (within `LEVEL` of the base) must see no alarm (else a false alarm);
- runs in between (they *degrade*: lose more than `LEVEL`, not more than `COLLAPSE`) are reported apart:
  an alarm there is neither required nor false.

    python benchmarks/guard_calibration.py --metrics benchmarks/results/alignment_guard/metrics \\
        --runs benchmarks/results/alignment_guard/runs benchmarks/results/alignment_study/runs

Writes `<out>/calibration.json` and `<out>/calibration.md`. The replay reads logged steps only: its loser
window spans 5 logged steps (25 steps) where a live guard sums the last 5 steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_common import table  # noqa: E402
from videosspo.config import TrainConfig  # noqa: E402
from videosspo.guard import Guard  # noqa: E402

DEFAULTS = TrainConfig()  # train.guard_drift, train.guard_loser

COLLAPSE = 0.1  # adherence below the base's at the last evaluation that makes a run a collapsing one
LEVEL = 0.05  # within this of the base's a run is level (the sampling noise of one seed's mean is about this)
DRIFTS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1e9)
LOSERS = (0.5, 1.0, 2.0, 3.0, 5.0, 1e9)


def load_stream(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def replay(stream: list[dict], drift: float, loser: float) -> tuple[int | None, list[dict]]:
    """The guard run over a logged stream (each row a measurement of the fixed batch): its first alarm's step
    (None: silent) and the `guard/*` stats it computes per row."""
    rows = [r for r in stream if "guard/e_fixed" in r]
    current = {"guard/e_fixed": rows[0]["guard/e_fixed_theta0"]}
    guard = Guard("warn", every=1, drift=drift, loser=loser)
    guard.attach(lambda: lambda: [current["guard/e_fixed"]], step=0)  # θ0's mean error, then each row's
    out = []
    for row in rows:
        current = row
        stats = {k: row[k] for k in ("loss/e_l", "ref/e_l") if k in row}
        guard.observe(row["step"], stats)
        out.append({"step": row["step"], **stats})
    return guard.fired, out


def first_alarm(stream: list[dict], drift: float, loser: float) -> int | None:
    return replay(stream, drift, loser)[0]


def half_drop_step(curve: list[tuple[int, float]]) -> float | None:
    """Where adherence has first lost half of its drop to the last point (linear between points)."""
    (_, a0), (_, end) = curve[0], curve[-1]
    half = a0 - (a0 - end) / 2
    for (sa, a), (sb, b) in itertools.pairwise(curve):
        if b <= half < a:
            return sa + (sb - sa) * (a - half) / (a - b)
    return None


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--metrics", required=True, help="folder of <variant>__seed<k>.jsonl (the runs' metrics.jsonl)")
    p.add_argument("--runs", nargs="+", required=True, help="study runs folders (records with the evaluations)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "alignment_guard"))
    args = p.parse_args(argv)

    records = {}
    for folder in args.runs:
        for path in sorted(Path(folder).glob("*.json")):
            r = json.loads(path.read_text())
            records.setdefault((r["variant"], r["seed"]), r)
    base = next(r for (v, _), r in records.items() if v == "base")["evals"]["0"]["heldout"]["adherence"]
    runs = []
    for path in sorted(Path(args.metrics).glob("*.jsonl")):
        variant, seed = path.stem.rsplit("__seed", 1)
        variant, record = variant.replace("__", "/"), records.get((variant.replace("__", "/"), int(seed)))
        curve = [(0, base)] + sorted(
            (int(k), e["heldout"]["adherence"]) for k, e in (record or {}).get("evals", {}).items()
        )
        drop = base - curve[-1][1]
        runs.append(
            {
                "variant": variant,
                "seed": int(seed),
                "stream": load_stream(path),
                "curve": curve,
                "collapses": drop > COLLAPSE,
                "drop": drop,
                "half_drop_step": half_drop_step(curve) if drop > COLLAPSE else None,
            }
        )
    grid = []
    for drift, loser in itertools.product(DRIFTS, LOSERS):
        alarms = {(r["variant"], r["seed"]): first_alarm(r["stream"], drift, loser) for r in runs}
        caught = [
            r
            for r in runs
            if r["collapses"]
            and alarms[r["variant"], r["seed"]] is not None
            and alarms[r["variant"], r["seed"]] <= (r["half_drop_step"] or 0)
        ]
        false = [r for r in runs if r["drop"] <= LEVEL and alarms[r["variant"], r["seed"]] is not None]
        degrading = [r for r in runs if LEVEL < r["drop"] <= COLLAPSE]
        grid.append(
            {
                "drift": drift,
                "loser": loser,
                "caught": len(caught),
                "collapsing": sum(r["collapses"] for r in runs),
                "false_alarms": len(false),
                "level": sum(r["drop"] <= LEVEL for r in runs),
                "alarms_on_degrading": f"{sum(alarms[r['variant'], r['seed']] is not None for r in degrading)}"
                f"/{len(degrading)}",
                "false_alarm_runs": [f"{r['variant']} {r['seed']}" for r in false],
            }
        )
    per_run = [
        {
            "variant": r["variant"],
            "seed": r["seed"],
            "Δ adherence": f"{-r['drop']:+.3f}",
            "collapses": r["collapses"],
            "half-drop step": "" if r["half_drop_step"] is None else f"{r['half_drop_step']:.0f}",
            "max drift": f"{max(x['guard/drift'] for x in replay(r['stream'], 1e9, 1e9)[1]):+.2f}",
            "max loser": f"{max((x.get('guard/loser', float('nan')) for x in replay(r['stream'], 1e9, 1e9)[1][4:]), default=float('nan')):.2f}",
            "alarm (defaults)": first_alarm(r["stream"], DEFAULTS.guard_drift, DEFAULTS.guard_loser),
        }
        for r in runs
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "collapse": COLLAPSE,
        "level": LEVEL,
        "base_adherence": base,
        "runs": per_run,
        "grid": grid,
        "curves": {f"{r['variant']} {r['seed']}": r["curve"] for r in runs},
    }
    (out / "calibration.json").write_text(json.dumps(result, indent=1))
    good = [g for g in grid if g["caught"] == g["collapsing"] and g["false_alarms"] == 0]
    text = "\n".join(
        [
            f"# Guard calibration ({len(runs)} runs; base held-out adherence {base:.3f})",
            "",
            table(per_run, list(per_run[0]), title="runs"),
            "",
            table(
                [g for g in grid if g["drift"] < 1e9 or g["loser"] < 1e9],
                [
                    "drift",
                    "loser",
                    "caught",
                    "collapsing",
                    "false_alarms",
                    "level",
                    "false_alarm_runs",
                    "alarms_on_degrading",
                ],
                title="threshold grid (caught: alarm at or before the half-drop step)",
            ),
            "",
            f"thresholds that catch every collapsing run with no false alarm: "
            f"{[(g['drift'], g['loser']) for g in good]}",
        ]
    )
    (out / "calibration.md").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
