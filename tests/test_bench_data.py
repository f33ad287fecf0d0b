"""benchmarks/bench_data.py --quick on this tree only: every clip measured, the deep .avi window exact."""

import json


def test_bench_data_quick(tmp_path):
    from benchmarks.bench_data import main

    result = main(["--quick", "--baseline", "none", "--out", str(tmp_path / "b.json")])
    assert json.loads((tmp_path / "b.json").read_text()) == result
    large, avi = result["rows"]
    assert large["side"] == avi["side"] == "today" and "frames_exact" not in large
    assert avi["frames_exact"] and avi["frames_asked"] == avi["frames_got"]
    for row in result["rows"]:
        assert row["peak_rss_mb"] > 0 and 0 < row["second_get_s"] and 0 < row["first_get_s"]
