"""`vbench_eval.py --compare`: the side-by-side table's numbers, checked against the runs' raw scores
and VBench's normalisation computed by hand."""

from __future__ import annotations

import json

import pytest

from benchmarks.vbench_eval import main

# VBench's normalisation bounds (VBENCH_FACTS.md): temporal flickering [0.6293, 1.0], motion smoothness
# [0.706, 0.9975], both weight 1 in Quality.
RAW = {
    "base": {"temporal_flickering": 0.90, "motion_smoothness": 0.95},
    "sspo": {"temporal_flickering": 0.80, "motion_smoothness": 0.99},
}


def quality_by_hand(raw: dict) -> float:
    return (
        (raw["temporal_flickering"] - 0.6293) / (1.0 - 0.6293) + (raw["motion_smoothness"] - 0.706) / (0.9975 - 0.706)
    ) / 2


def test_compare_table_numbers(tmp_path):
    runs = []
    for name, raw in RAW.items():
        (tmp_path / name).mkdir()
        summary = {
            "name": name,
            "requested": list(raw),
            "skipped": {},
            "dimensions": {
                d: {"raw": v, "backend": "pixel", "proxy": d == "motion_smoothness"} for d, v in raw.items()
            },
        }
        (tmp_path / name / "summary.json").write_text(json.dumps(summary))
        runs.append(str(tmp_path / name))
    main(["--compare", *runs, "--out", str(tmp_path / "cmp")])
    table = {}
    for line in (tmp_path / "cmp" / "compare.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3:
            table[cells[0]] = cells[1:]
    assert table["temporal_flickering"] == ["90.00%", "80.00%"]
    assert table["motion_smoothness"] == ["95.00% (proxy)", "99.00% (proxy)"]
    got = [float(c.rstrip("%")) / 100 for c in table["**quality**"]]
    assert got == pytest.approx([quality_by_hand(RAW["base"]), quality_by_hand(RAW["sspo"])], abs=5e-5)
    assert got == pytest.approx([0.7836, 0.7174], abs=1e-4)
