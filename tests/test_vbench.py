"""VBench-style evaluation: weight-free dimensions, synthetic-world dimensions, aggregation,
skipped dimensions, outputs and reports."""
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.vbench import classical, synthetic
from benchmarks.vbench.aggregate import final_scores
from benchmarks.vbench.scorers import ScorerContext, build
from benchmarks.vbench_eval import main
from videosspo import synth
from videosspo.video import read_video, write_video


def moving_square(frames=16, size=64, speed=3, color=(220, 40, 40)):
    video = np.full((frames, size, size, 3), 30, np.uint8)
    for i in range(frames):
        video[i, 20:36, 4 + speed * i:20 + speed * i] = color
    return video


# ----------------------------------------------------------------------------- temporal flickering

def test_flickering_static_clip_is_one():
    assert classical.temporal_flickering_score(moving_square(speed=0)) == 1.0


def test_flickering_alternating_clips_hand_computed():
    black_white = np.zeros((6, 8, 8, 3), np.uint8)
    black_white[1::2] = 255
    assert classical.temporal_flickering_score(black_white) == 0.0
    dim = np.zeros((5, 8, 8, 3), np.uint8)
    dim[1::2] = 51  # every consecutive pair differs by 51 everywhere
    assert classical.temporal_flickering_score(dim) == pytest.approx((255 - 51) / 255)


def test_flickering_matches_vbench_formula_on_mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    rng = np.random.default_rng(0)
    write_video(path, (moving_square() + rng.integers(0, 20, (16, 64, 64, 3))).astype(np.uint8), fps=8)
    frames = read_video(path)
    diffs = [np.abs(frames[i].astype(float) - frames[i + 1].astype(float)).mean() for i in range(len(frames) - 1)]
    assert classical.temporal_flickering_score(frames) == pytest.approx((255.0 - np.mean(diffs)) / 255.0, abs=1e-12)


# ----------------------------------------------------------------------------- flow dimensions

@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_dynamic_degree_static_and_moving(method):
    assert classical.dynamic_degree_score(moving_square(speed=0), fps=8, method=method) == 0.0
    assert classical.dynamic_degree_score(moving_square(speed=3), fps=8, method=method) == 1.0


def test_dynamic_degree_samples_at_8_fps():
    # at 24 fps every third frame is kept: 1 px/frame becomes 3 px per kept pair (> 1.5 px threshold)
    slow = moving_square(frames=24, speed=1)
    assert classical.dynamic_degree_score(slow, fps=8) == 0.0
    assert classical.dynamic_degree_score(slow, fps=24) == 1.0


def test_motion_smoothness_static_one_and_smooth_beats_jitter():
    assert classical.motion_smoothness_score(moving_square(speed=0)) == 1.0
    smooth = moving_square(speed=2)
    jitter = smooth.copy()
    jitter[1::2] = np.roll(jitter[1::2], 6, axis=1)  # odd frames jump off the trajectory
    assert classical.motion_smoothness_score(smooth) > 0.99
    assert classical.motion_smoothness_score(jitter) < classical.motion_smoothness_score(smooth)


def test_brisque_proxy_prefers_sharp_image():
    import cv2
    from skimage.data import astronaut

    sharp = astronaut()  # a natural photograph bundled with scikit-image
    model = __import__("brisque").BRISQUE(url=False)
    s_sharp = classical.brisque_to_unit(classical.brisque_score(sharp, model))
    s_blur = classical.brisque_to_unit(classical.brisque_score(cv2.GaussianBlur(sharp, (9, 9), 4), model))
    assert 0 <= s_blur < s_sharp <= 1


# ----------------------------------------------------------------------------- synthetic world

def _world_clips(n=24):
    rng = np.random.default_rng(1)
    for _ in range(n):
        spec = synth.random_spec(rng, 64, 64, 12)
        yield spec, rng


def test_synthetic_generator_clips_score_one():
    for spec, _ in _world_clips():
        scores = synthetic.score_clip(synth.render_clip(spec, 12, 64, 64), synth.parse_caption(spec.caption),
                                      synth.COLORS, synth.DIRECTIONS)
        assert scores == {k: 1.0 for k in scores} and len(scores) == 4, (spec, scores)


def test_synthetic_mismatched_attribute_scores_zero():
    """The generator's mismatched clips (one of colour / shape / direction changed) score 0 on it."""
    for spec, rng in _world_clips(48):
        wrong = synth.mismatched_spec(spec, rng, 64, 64, 12)
        changed = next(a for a in ("color", "shape", "direction") if getattr(wrong, a) != getattr(spec, a))
        scores = synthetic.score_clip(synth.render_clip(wrong, 12, 64, 64), synth.parse_caption(spec.caption),
                                      synth.COLORS, synth.DIRECTIONS)
        assert scores[f"synthetic_{changed}"] == 0.0, (spec, wrong, scores)


def test_synthetic_wrong_direction_zero_through_mp4(tmp_path):
    spec = synth.ClipSpec("red", "square", "right", "gray", 12, 16, 32, 2.0)
    write_video(tmp_path / "a.mp4", synth.render_clip(spec, 12, 64, 64), fps=8)
    video = read_video(tmp_path / "a.mp4")
    right = synthetic.score_clip(video, synth.parse_caption(spec.caption), synth.COLORS, synth.DIRECTIONS)
    left = synthetic.score_clip(video, synth.parse_caption("a red square moving left"), synth.COLORS, synth.DIRECTIONS)
    assert right == {k: 1.0 for k in right}
    assert left["synthetic_direction"] == 0.0


# ----------------------------------------------------------------------------- aggregation

def test_normalisation_and_scores_hand_computed():
    raw = {"subject_consistency": 0.9, "background_consistency": 0.95, "temporal_flickering": 0.97,
           "motion_smoothness": 0.98, "dynamic_degree": 0.5, "aesthetic_quality": 0.6, "imaging_quality": 0.65,
           "object_class": 0.5, "multiple_objects": 0.5, "human_action": 0.5, "color": 0.5,
           "spatial_relationship": 0.5, "scene": 0.4, "appearance_style": 0.2, "temporal_style": 0.25,
           "overall_consistency": 0.27}
    quality = (0.7538 / 0.8538 + 0.6885 / 0.7385 + 0.3407 / 0.3707 + 0.274 / 0.2915 + 0.5 * 0.5
               + 0.6 + 0.65) / 6.5
    semantic = (5 * 0.5 + 0.4 / 0.8222 + 0.1991 / 0.2846 + 0.25 / 0.364 + 0.27 / 0.364) / 9
    s = final_scores(raw)
    assert s["normalised"]["dynamic_degree"] == pytest.approx(0.25)
    assert s["quality"] == pytest.approx(quality)
    assert s["semantic"] == pytest.approx(semantic)
    assert s["total"] == pytest.approx((4 * quality + semantic) / 5)
    assert s["missing"] == {"quality": [], "semantic": []}


def test_missing_dimensions_are_named_not_zeroed():
    s = final_scores({"temporal_flickering": 1.0, "dynamic_degree": 1.0})
    assert s["quality"] is None and s["semantic"] is None and s["total"] is None
    assert "subject_consistency" in s["missing"]["quality"] and len(s["missing"]["semantic"]) == 9
    assert s["partial"]["quality"] == pytest.approx((1.0 + 0.5) / 1.5)


def test_skipped_dimension_reports_reason_and_fix(tmp_path):
    scorers, skipped = build(["subject_consistency", "object_class", "temporal_flickering"], ScorerContext())
    assert list(scorers) == ["temporal_flickering"]
    assert "no --weights DIR" in skipped["subject_consistency"]["reason"]
    assert "dino_vitb16" in skipped["subject_consistency"]["fix"]
    assert "GRiT" in skipped["object_class"]["reason"] and "--backend official" in skipped["object_class"]["fix"]
    _, skipped = build(["subject_consistency"], ScorerContext(weights=tmp_path))
    assert str(tmp_path) in skipped["subject_consistency"]["reason"]


# ----------------------------------------------------------------------------- CLI, outputs, report

@pytest.fixture
def synth_dataset(tmp_path):
    return synth.make_dataset(tmp_path / "data", 4, frames=8, height=64, width=64, progress=False)


def _html_refs_exist(html_path: Path):
    refs = re.findall(r'(?:src|href)="([^"]+)"', html_path.read_text())
    for ref in refs:
        assert ref.startswith("data:") or (html_path.parent / ref).is_file(), ref
    return refs


def test_cli_writes_vbench_results_summary_and_report(synth_dataset, tmp_path):
    out = tmp_path / "run"
    assert main(["--videos", str(synth_dataset), "--out", str(out), "--no-progress"]) == 0
    results = json.loads((out / "run_eval_results.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    mean, rows = results["temporal_flickering"]
    expected = [classical.temporal_flickering_score(read_video(r["video_path"])) for r in rows]
    assert [r["video_results"] for r in rows] == pytest.approx(expected) and mean == pytest.approx(np.mean(expected))
    assert len(rows) == 4
    dims = summary["dimensions"]
    assert dims["temporal_flickering"]["proxy"] is False and dims["imaging_quality"]["proxy"] is True
    assert "brisque" in dims["imaging_quality"]["backend"] and "proxy" in dims["dynamic_degree"]["backend"]
    assert dims["synthetic_color"]["raw"] == 1.0 and dims["synthetic_direction"]["raw"] == 1.0
    assert "subject_consistency" in summary["skipped"] and "subject_consistency" not in results
    assert summary["scores"]["total"] is None
    for name in ("report.md", "report.html", "radar.png", "frames.png", "per_video.jsonl"):
        assert (out / name).is_file(), name
    assert any(r.startswith("data:image/png") for r in _html_refs_exist(out / "report.html"))
    assert "(proxy for MUSIQ)" in (out / "report.md").read_text()


def test_compare_and_limit(synth_dataset, tmp_path):
    for name in ("base", "sspo"):
        main(["--videos", str(synth_dataset), "--out", str(tmp_path / name), "--limit", "2",
              "--dims", "temporal_flickering", "dynamic_degree", "synthetic_color", "--no-progress"])
    assert json.loads((tmp_path / "base" / "summary.json").read_text())["n_videos"] == 2
    main(["--compare", str(tmp_path / "base"), str(tmp_path / "sspo"), "--out", str(tmp_path / "cmp")])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| dimension | base | sspo |" in md and "dynamic_degree" in md
    _html_refs_exist(tmp_path / "cmp" / "compare.html")


def test_vbench_naming_and_image_case(tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        iio.imwrite(folder / f"a red square moving left-{i}.png", moving_square(frames=1)[0])
    out = tmp_path / "img_run"
    main(["--videos", str(folder), "--out", str(out), "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["dimensions"]) == {"imaging_quality", "synthetic_color", "synthetic_shape"}
    assert "temporal_flickering" not in summary["skipped"] and "aesthetic_quality" in summary["skipped"]
    rows = [json.loads(line) for line in (out / "per_video.jsonl").read_text().splitlines()]
    assert rows[0]["prompt"] == "a red square moving left"
    _html_refs_exist(out / "report.html")


def test_help_runs_as_module():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "benchmarks.vbench_eval", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0 and "--weights" in res.stdout and "proxy" in res.stdout


def test_two_processes_equal_one_process(tmp_path):
    """accelerate's split (5 videos over 2 processes, uneven) gathers the same results as 1 process."""
    import subprocess
    import sys

    synth.make_dataset(tmp_path / "five", 5, frames=8, progress=False)
    root = Path(__file__).resolve().parents[1]
    common = ["benchmarks/vbench_eval.py", "--videos", str(tmp_path / "five"), "--no-progress", "--no-report",
              "--dims", "temporal_flickering", "synthetic_color", "--name", "r"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    res = subprocess.run(launch + common + ["--out", str(tmp_path / "two")], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    main(common[1:] + ["--out", str(tmp_path / "one")])
    two, one = (json.loads((tmp_path / d / "r_eval_results.json").read_text()) for d in ("two", "one"))
    assert two == one and len(one["temporal_flickering"][1]) == 5


def test_official_backend_without_vbench_is_a_clear_error(synth_dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vbench", None)  # unimportable, whether or not it is installed
    assert main(["--videos", str(synth_dataset), "--out", str(tmp_path / "o"), "--backend", "official"]) == 2
    assert "pip install vbench" in capsys.readouterr().err


def test_full_info_scopes_dimensions_per_prompt(tmp_path):
    """With VBench_full_info.json, a VBench dimension is scored only on its prompts' videos."""
    folder = tmp_path / "v"
    write_video(folder / "still-0.mp4", moving_square(frames=8, speed=0), fps=8)
    write_video(folder / "moving-0.mp4", moving_square(frames=8, speed=3), fps=8)
    info = [{"prompt_en": "still", "dimension": ["temporal_flickering"]},
            {"prompt_en": "moving", "dimension": ["dynamic_degree"]}]
    (tmp_path / "VBench_full_info.json").write_text(json.dumps(info))
    main(["--videos", str(folder), "--prompts", str(tmp_path / "VBench_full_info.json"), "--out",
          str(tmp_path / "o"), "--dims", "temporal_flickering", "dynamic_degree", "--no-progress", "--no-report"])
    res = json.loads((tmp_path / "o" / "o_eval_results.json").read_text())
    assert [r["video_path"].endswith("still-0.mp4") for r in res["temporal_flickering"][1]] == [True]
    assert res["dynamic_degree"][0] == 1.0 and len(res["dynamic_degree"][1]) == 1
