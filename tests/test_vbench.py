"""VBench-style evaluation: weight-free dimensions, synthetic-world dimensions, aggregation,
skipped dimensions, outputs and reports."""

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.vbench import classical
from benchmarks.vbench.aggregate import final_scores
from benchmarks.vbench.scorers import ScorerContext, build, feed
from benchmarks.vbench_eval import main
from videosspo import synth, synth_scores
from videosspo.video import read_video, write_video


def moving_square(frames=16, size=64, speed=3, color=(220, 40, 40)):
    video = np.full((frames, size, size, 3), 30, np.uint8)
    for i in range(frames):
        video[i, 20:36, 4 + speed * i : 20 + speed * i] = color
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


def _iq(frames) -> float:
    return feed(classical.ImagingQuality(), frames)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "rocket"])
def test_imaging_quality_ranks_sharp_over_blurred_noised_and_noise(name):
    """Issue 11.1: on natural photographs (bundled with scikit-image) sharp > blurred (sigma 4),
    sharp > noised (sigma 15, 30), and every one of them > i.i.d. noise."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(0)
    sharp = getattr(skimage.data, name)()
    noised = {s: np.clip(sharp + rng.normal(0, s, sharp.shape), 0, 255).astype(np.uint8) for s in (15, 30)}
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    noise = rng.integers(0, 256, sharp.shape, dtype=np.uint8)
    q = {
        k: _iq([v])
        for k, v in {"sharp": sharp, "blur": blurred, "n15": noised[15], "n30": noised[30], "noise": noise}.items()
    }
    assert q["sharp"] > q["blur"] and q["sharp"] > q["n15"] > q["n30"], q
    assert min(q["sharp"], q["blur"], q["n15"], q["n30"]) > q["noise"] >= 0, q


def test_blur_effect_equals_scikit_image():
    """The OpenCV blur metric is scikit-image's blur_effect (Crete-Roffet 2007), only faster."""
    import cv2
    from skimage.data import camera
    from skimage.measure import blur_effect

    sharp = camera().astype(np.float32)
    for img in (sharp, cv2.GaussianBlur(sharp, (0, 0), 4), sharp[:40, :70]):
        assert classical.blur_effect(img) == pytest.approx(blur_effect(img), abs=1e-6)


def test_imaging_quality_flat_frames_are_zero_and_counted():
    """Issue 11.2: uniform and black frames (std 0) score 0, never NaN, and are counted."""
    fade = moving_square(frames=4, size=64)
    fade[2:] = 0  # fade to black
    acc = classical.ImagingQuality()
    score = feed(acc, fade)
    assert acc.notes == {"flat_frames": 2}
    assert score == pytest.approx(np.mean([classical.blur_noise_quality(f) for f in fade[:2]]) / 2)
    assert _iq(np.full((3, 32, 32, 3), 128, np.uint8)) == 0.0


def test_imaging_quality_resizes_longer_side_to_512():
    """Issue 11.3: VBench's preprocessing: longer side <= 512 px (bilinear) before scoring."""
    import cv2
    from skimage.data import astronaut

    big = cv2.resize(astronaut(), (1024, 768), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(big, (512, 384), interpolation=cv2.INTER_LINEAR)
    assert _iq([big]) == pytest.approx(classical.blur_noise_quality(small), abs=1e-12)
    assert _iq([big]) != pytest.approx(classical.blur_noise_quality(big), abs=1e-3)


# ----------------------------------------------------------------------------- synthetic world


def _world_clips(n=24):
    rng = np.random.default_rng(1)
    for _ in range(n):
        spec = synth.random_spec(rng, 64, 64, 12)
        yield spec, rng


def test_synthetic_generator_clips_score_one():
    for spec, _ in _world_clips():
        scores = synth_scores.score_clip(
            synth.render_clip(spec, 12, 64, 64), synth.parse_caption(spec.caption), synth.COLORS, synth.DIRECTIONS
        )
        assert scores == {k: 1.0 for k in scores} and len(scores) == 4, (spec, scores)


def test_synthetic_mismatched_attribute_scores_zero():
    """The generator's mismatched clips (one of colour / shape / direction changed) score 0 on it."""
    for spec, rng in _world_clips(48):
        wrong = synth.mismatched_spec(spec, rng, 64, 64, 12)
        changed = next(a for a in ("color", "shape", "direction") if getattr(wrong, a) != getattr(spec, a))
        scores = synth_scores.score_clip(
            synth.render_clip(wrong, 12, 64, 64), synth.parse_caption(spec.caption), synth.COLORS, synth.DIRECTIONS
        )
        assert scores[f"synthetic_{changed}"] == 0.0, (spec, wrong, scores)


def test_synthetic_wrong_direction_zero_through_mp4(tmp_path):
    spec = synth.ClipSpec("red", "square", "right", "gray", 12, 16, 32, 2.0)
    write_video(tmp_path / "a.mp4", synth.render_clip(spec, 12, 64, 64), fps=8)
    video = read_video(tmp_path / "a.mp4")
    right = synth_scores.score_clip(video, synth.parse_caption(spec.caption), synth.COLORS, synth.DIRECTIONS)
    left = synth_scores.score_clip(
        video, synth.parse_caption("a red square moving left"), synth.COLORS, synth.DIRECTIONS
    )
    assert right == {k: 1.0 for k in right}
    assert left["synthetic_direction"] == 0.0


# ----------------------------------------------------------------------------- aggregation


def test_normalisation_and_scores_hand_computed():
    raw = {
        "subject_consistency": 0.9,
        "background_consistency": 0.95,
        "temporal_flickering": 0.97,
        "motion_smoothness": 0.98,
        "dynamic_degree": 0.5,
        "aesthetic_quality": 0.6,
        "imaging_quality": 0.65,
        "object_class": 0.5,
        "multiple_objects": 0.5,
        "human_action": 0.5,
        "color": 0.5,
        "spatial_relationship": 0.5,
        "scene": 0.4,
        "appearance_style": 0.2,
        "temporal_style": 0.25,
        "overall_consistency": 0.27,
    }
    quality = (0.7538 / 0.8538 + 0.6885 / 0.7385 + 0.3407 / 0.3707 + 0.274 / 0.2915 + 0.5 * 0.5 + 0.6 + 0.65) / 6.5
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
    assert (
        "GRiT" in skipped["object_class"]["reason"]
        and "grit_b_densecap_objectdet.pth" in skipped["object_class"]["fix"]
    )
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
    assert "blur effect" in dims["imaging_quality"]["backend"] and "proxy" in dims["dynamic_degree"]["backend"]
    assert dims["synthetic_color"]["raw"] == 1.0 and dims["synthetic_direction"]["raw"] == 1.0
    assert "subject_consistency" in summary["skipped"] and "subject_consistency" not in results
    assert summary["scores"]["total"] is None
    for name in ("report.md", "report.html", "radar.png", "frames.png", "per_video.jsonl"):
        assert (out / name).is_file(), name
    assert any(r.startswith("data:image/png") for r in _html_refs_exist(out / "report.html"))
    assert "(proxy for MUSIQ)" in (out / "report.md").read_text()


def test_compare_and_limit(synth_dataset, tmp_path):
    for name in ("base", "sspo"):
        main(
            [
                "--videos",
                str(synth_dataset),
                "--out",
                str(tmp_path / name),
                "--limit",
                "2",
                "--dims",
                "temporal_flickering",
                "dynamic_degree",
                "synthetic_color",
                "--no-progress",
            ]
        )
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

    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.vbench_eval", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert res.returncode == 0 and "--weights" in res.stdout and "proxy" in res.stdout


def test_two_processes_equal_one_process(tmp_path):
    """accelerate's split (5 videos over 2 processes, uneven) gathers the same results as 1 process."""
    import subprocess
    import sys

    from conftest import free_port

    synth.make_dataset(tmp_path / "five", 5, frames=8, progress=False)
    root = Path(__file__).resolve().parents[1]
    common = [
        "benchmarks/vbench_eval.py",
        "--videos",
        str(tmp_path / "five"),
        "--no-progress",
        "--no-report",
        "--dims",
        "temporal_flickering",
        "synthetic_color",
        "--name",
        "r",
    ]
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--cpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
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
    info = [
        {"prompt_en": "still", "dimension": ["temporal_flickering"]},
        {"prompt_en": "moving", "dimension": ["dynamic_degree"]},
    ]
    (tmp_path / "VBench_full_info.json").write_text(json.dumps(info))
    main(
        [
            "--videos",
            str(folder),
            "--prompts",
            str(tmp_path / "VBench_full_info.json"),
            "--out",
            str(tmp_path / "o"),
            "--dims",
            "temporal_flickering",
            "dynamic_degree",
            "--no-progress",
            "--no-report",
        ]
    )
    res = json.loads((tmp_path / "o" / "o_eval_results.json").read_text())
    assert [r["video_path"].endswith("still-0.mp4") for r in res["temporal_flickering"][1]] == [True]
    assert res["dynamic_degree"][0] == 1.0 and len(res["dynamic_degree"][1]) == 1


VBENCH_INFO = [  # VBench_full_info.json's format, entries as VBench writes them
    {
        "prompt_en": "alley",
        "dimension": ["scene", "background_consistency"],
        "auxiliary_info": {"scene": {"scene": {"scene": "alley"}}},
    },
    {"prompt_en": "a red bicycle", "dimension": ["color"], "auxiliary_info": {"color": {"color": "red"}}},
    {
        "prompt_en": "The bund Shanghai, oil painting",
        "dimension": ["appearance_style"],
        "auxiliary_info": {"appearance_style": {"appearance_style": "oil painting"}},
    },
    {"prompt_en": "The bund Shanghai, oil painting", "dimension": ["overall_consistency", "aesthetic_quality"]},
    {"prompt_en": "a dog", "dimension": ["subject_consistency"]},
]


def test_load_prompts_keeps_auxiliary_info_and_merges_repeated_prompts(tmp_path):
    """Issue 11.9: each prompt keeps VBench's auxiliary_info; a prompt listed twice gets both
    entries' dimensions and info (VBench's standard mode scores its videos for both)."""
    from benchmarks.vbench.inputs import auxiliary_info, load_prompts

    (tmp_path / "full.json").write_text(json.dumps(VBENCH_INFO))
    prompts = load_prompts(str(tmp_path / "full.json"))
    assert [p["prompt"] for p in prompts] == ["alley", "a red bicycle", "The bund Shanghai, oil painting", "a dog"]
    assert prompts[0]["auxiliary_info"] == {"scene": {"scene": {"scene": "alley"}}}
    assert prompts[2]["dimensions"] == ["appearance_style", "overall_consistency", "aesthetic_quality"]
    assert prompts[2]["auxiliary_info"] == {"appearance_style": {"appearance_style": "oil painting"}}
    assert prompts[3]["auxiliary_info"] == {}
    # what VBench's load_dimension_info hands each dimension's module
    assert auxiliary_info(prompts[0], "scene") == {"scene": {"scene": "alley"}}
    assert auxiliary_info(prompts[1], "color") == {"color": "red"}
    assert auxiliary_info(prompts[1], "scene") is None
    (tmp_path / "p.txt").write_text("a cat\n\nalley\n")
    assert load_prompts(str(tmp_path / "p.txt")) == [
        {"prompt": "a cat", "dimensions": None, "auxiliary_info": {}},
        {"prompt": "alley", "dimensions": None, "auxiliary_info": {}},
    ]


def test_auxiliary_info_reaches_each_videos_scorers(tmp_path):
    """Standard layout ({prompt}-{i}.mp4 + VBench's JSON), --checkpoint's plan, and metadata rows:
    each video's scorers see its prompt's auxiliary_info in ``meta``."""
    from benchmarks.vbench.generate import plan
    from benchmarks.vbench.inputs import attach_prompt_info, collect_videos, load_prompts
    from benchmarks.vbench.runner import score_clip
    from benchmarks.vbench.scorers import Scorer

    (tmp_path / "full.json").write_text(json.dumps(VBENCH_INFO))
    prompts = load_prompts(str(tmp_path / "full.json"))
    folder = tmp_path / "v"
    for name in ("alley-0", "alley-1", "a red bicycle-0", "unlisted-0"):
        write_video(folder / f"{name}.mp4", moving_square(frames=2, size=32), fps=8)
    items = attach_prompt_info(collect_videos(folder), prompts)
    assert [it.get("auxiliary_info") for it in items] == [{"color": {"color": "red"}}] + [
        {"scene": {"scene": {"scene": "alley"}}}
    ] * 2 + [None]
    seen = []
    scorer = Scorer(lambda p, m: seen.append((p, m.get("auxiliary_info"))) or _Count(), {"backend": "t"})
    score_clip(items[1], {"scene": scorer})
    assert seen == [("alley", {"scene": {"scene": {"scene": "alley"}}})]
    planned = plan(prompts, 2, tmp_path / "gen")
    assert [(it["video"].split("/")[-1], it["auxiliary_info"].get("color")) for it in planned[2:4]] == [
        ("a red bicycle-0.mp4", {"color": "red"}),
        ("a red bicycle-1.mp4", {"color": "red"}),
    ]
    rows = [
        {"video": "alley-0.mp4", "caption": "alley", "auxiliary_info": {"scene": {"scene": {"scene": "lane"}}}},
        {"video": "unlisted-0.mp4", "caption": "unlisted", "auxiliary_info": {"color": {"color": "blue"}}},
    ]
    (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    items = attach_prompt_info(collect_videos(folder), prompts)  # the JSON's info wins over the row's
    assert [it["auxiliary_info"] for it in items] == [
        {"scene": {"scene": {"scene": "alley"}}},
        {"color": {"color": "blue"}},
    ]


class _Count:
    """A stand-in accumulator: the number of frames fed."""

    def __init__(self):
        self.n = 0

    def update(self, frame):
        self.n += 1

    def result(self):
        return float(self.n)


# ----------------------------------------------------------------------------- issue 11: protocol


def _parse_strict(text: str):
    """json.loads that rejects NaN / Infinity (invalid JSON)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def test_flat_videos_give_valid_json_without_nan(tmp_path):
    """Issue 11.2: uniform, fade-to-black and black clips: finite scores, strict JSON."""
    folder = tmp_path / "v"
    fade = moving_square(frames=6)
    fade[3:] = 0
    write_video(folder / "fade-0.mp4", fade, fps=8)
    write_video(folder / "black-0.mp4", np.zeros((4, 32, 32, 3), np.uint8), fps=8)
    write_video(folder / "grey-0.mp4", np.full((4, 32, 32, 3), 128, np.uint8), fps=8)
    out = tmp_path / "o"
    assert (
        main(
            [
                "--videos",
                str(folder),
                "--out",
                str(out),
                "--no-progress",
                "--no-report",
                "--dims",
                "imaging_quality",
                "temporal_flickering",
                "dynamic_degree",
                "motion_smoothness",
            ]
        )
        == 0
    )
    summary = _parse_strict((out / "summary.json").read_text())
    _parse_strict((out / "o_eval_results.json").read_text())
    for line in (out / "per_video.jsonl").read_text().splitlines():
        _parse_strict(line)
    assert summary["dimensions"]["imaging_quality"]["flat_frames"] == 3 + 4 + 4
    assert all(np.isfinite(d["raw"]) for d in summary["dimensions"].values())


def _still(frames=8, size=32, seed=0):
    """A static textured clip with a little sensor noise."""
    rng = np.random.default_rng(seed)
    base = np.repeat(rng.integers(0, 255, (1, size // 4, size // 4, 3), dtype=np.uint8), 4, 1).repeat(4, 2)
    return np.clip(base + rng.normal(0, 2, (frames, size, size, 3)), 0, 255).astype(np.uint8)


def test_static_check_follows_vbench_rule():
    """Issue 11.4: static_filter.py's rule on the flow proxy: a still clip is static, a moving one not."""
    assert classical.is_static(_still()) is True
    assert classical.is_static(moving_square(frames=8, size=32, speed=3)) is False
    assert classical.is_static(_still(frames=1)) is None


def test_static_filter_scores_first_five_static_videos_per_prompt(tmp_path):
    """Issue 11.4: with more than 5 videos for a prompt (auto), flickering is scored only on static
    videos, at most the first 5 per prompt; with 1 video per prompt the filter is off and labelled."""
    folder = tmp_path / "v"
    for i in range(8):  # indices 1 and 4 move; 0, 2, 3, 5, 6, 7 are static: 0 2 3 5 6 are kept
        clip = moving_square(frames=8, size=32, speed=3) if i in (1, 4) else _still(seed=i)
        write_video(folder / f"a still lake-{i}.mp4", clip, fps=8)
    out = tmp_path / "o"
    main(["--videos", str(folder), "--out", str(out), "--no-progress", "--no-report", "--dims", "temporal_flickering"])
    summary = json.loads((out / "summary.json").read_text())
    kept = [
        Path(r["video_path"]).stem[-1]
        for r in json.loads((out / "o_eval_results.json").read_text())["temporal_flickering"][1]
    ]
    assert kept == ["0", "2", "3", "5", "6"]
    assert summary["dimensions"]["temporal_flickering"]["static_filter"].startswith("applied")
    assert "6 of 8 videos static, 5 scored" in summary["dimensions"]["temporal_flickering"]["static_filter"]
    main(
        [
            "--videos",
            str(folder),
            "--out",
            str(tmp_path / "one"),
            "--no-progress",
            "--no-report",
            "--limit",
            "1",
            "--dims",
            "temporal_flickering",
        ]
    )
    one = json.loads((tmp_path / "one" / "summary.json").read_text())["dimensions"]["temporal_flickering"]
    assert one["static_filter"].startswith("not applied") and "not comparable" in one["static_filter"]


def test_vbench_script_total_counts_missing_as_zero():
    """Issue 11.5: VBench's cal_final_score.py: missing = raw 0, normalised (0 - Min) / (Max - Min)."""
    s = final_scores({"temporal_flickering": 1.0, "dynamic_degree": 1.0})
    quality = (-0.1462 / 0.8538 - 0.2615 / 0.7385 + 1.0 - 0.706 / 0.2915 + 0.5) / 6.5
    semantic = -0.0009 / 0.2846 / 9
    v = s["vbench_script"]
    assert v["quality"] == pytest.approx(quality) and v["semantic"] == pytest.approx(semantic)
    assert v["total"] == pytest.approx((4 * quality + semantic) / 5)
    assert len(v["zeroed"]) == 14 and s["partial"]["quality"] == pytest.approx(1.5 / 1.5)


def test_final_line_labels_partial_and_vbench_script_scores(synth_dataset, tmp_path, capsys):
    """Issue 11.5: the CLI prints both numbers, each labelled."""
    main(
        [
            "--videos",
            str(synth_dataset),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--no-report",
            "--dims",
            "temporal_flickering",
            "dynamic_degree",
        ]
    )
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    total = summary["scores"]["vbench_script"]["total"]
    assert "partial (dimensions present only)" in line
    assert f"VBench's cal_final_score would print total {100 * total:.2f}% (14 missing dimensions counted as 0)" in line
    assert "What VBench's `cal_final_score.py` would print" in "\n".join(
        __import__("benchmarks.vbench.report", fromlist=["_score_lines"])._score_lines(summary)
    )


def test_compare_only_like_with_like(synth_dataset, tmp_path):
    """Issue 11.6: a dimension one run did not request is left out (and said so); the group scores
    are recomputed over the dimensions every run has."""
    common = ["--videos", str(synth_dataset), "--no-progress", "--no-report", "--limit", "2"]
    main(
        common + ["--out", str(tmp_path / "a"), "--dims", "temporal_flickering", "dynamic_degree", "motion_smoothness"]
    )
    main(common + ["--out", str(tmp_path / "b"), "--dims", "temporal_flickering", "motion_smoothness"])
    main(["--compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "cmp")])
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| dynamic_degree |" not in md and "dynamic_degree (b: not requested)" in md
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    quality = final_scores({d: a["dimensions"][d]["raw"] for d in ("temporal_flickering", "motion_smoothness")})
    assert f"| **quality** | {100 * quality['partial']['quality']:.2f}% |" in md
    assert "over these 2 dimensions only" in md


def test_unreadable_videos_on_final_line_and_strict(tmp_path, capsys):
    """Issue 11.8: count and names on the final line; --strict exits non-zero."""
    folder = tmp_path / "v"
    write_video(folder / "good-0.mp4", moving_square(frames=4, size=32), fps=8)
    (folder / "broken-0.mp4").write_bytes(b"not a video at all")
    args = [
        "--videos",
        str(folder),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
        "--no-report",
        "--dims",
        "temporal_flickering",
    ]
    assert main(args) == 0
    assert "1 unreadable videos (broken-0.mp4)" in capsys.readouterr().out.strip().splitlines()[-1]
    assert main(args + ["--strict"]) == 1


class _FakeVBench:
    """Records what the official backend hands VBench and writes a results file like VBench's."""

    calls: list = []

    def __init__(self, device, full_info, out):
        self.full_info, self.out = full_info, Path(out)

    def evaluate(self, videos_path, name, dimension_list, mode, prompt_list=None):
        _FakeVBench.calls.append(
            {"full_info": self.full_info, "dims": dimension_list, "mode": mode, "prompt_list": prompt_list}
        )
        video = str(Path(videos_path) / "a cat-0.mp4")
        results = {
            d: [0.5, [{"video_path": video, "video_results": 50.0 if d == "imaging_quality" else 0.5}]]
            for d in dimension_list
        }
        (self.out / f"{name}_eval_results.json").write_text(json.dumps(results))


def test_official_backend_modes_and_prompt_conversion(tmp_path, monkeypatch):
    """Issue 11.7: custom_input without VBench's JSON (minus the six dimensions it refuses, prompts
    converted to its {file: prompt} map); vbench_standard with it; imaging quality rescaled."""
    import types

    fake = types.ModuleType("vbench")
    fake.VBench, fake.__file__ = _FakeVBench, str(tmp_path / "pkg" / "__init__.py")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "VBench_full_info.json").write_text("[]")
    monkeypatch.setitem(sys.modules, "vbench", fake)
    _FakeVBench.calls = []
    folder = tmp_path / "v"
    write_video(folder / "a cat-0.mp4", moving_square(frames=4, size=32), fps=8)
    dims = ["imaging_quality", "scene", "color", "overall_consistency"]
    main(
        ["--videos", str(folder), "--out", str(tmp_path / "o"), "--backend", "official", "--no-report", "--dims", *dims]
    )
    call = _FakeVBench.calls[-1]
    assert call["mode"] == "custom_input" and call["dims"] == ["imaging_quality", "overall_consistency"]
    assert call["prompt_list"] == {"a cat-0.mp4": "a cat"}
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert set(summary["skipped"]) == {"scene", "color"} and "custom_input" in summary["skipped"]["scene"]["reason"]
    assert summary["dimensions"]["imaging_quality"]["raw"] == 0.5
    assert json.loads((tmp_path / "o" / "o_prompts.json").read_text()) == {"a cat-0.mp4": "a cat"}
    info = tmp_path / "VBench_full_info.json"
    info.write_text(json.dumps([{"prompt_en": "a cat", "dimension": dims}]))
    main(
        [
            "--videos",
            str(folder),
            "--out",
            str(tmp_path / "s"),
            "--backend",
            "official",
            "--no-report",
            "--prompts",
            str(info),
            "--dims",
            *dims,
        ]
    )
    assert _FakeVBench.calls[-1]["mode"] == "vbench_standard" and _FakeVBench.calls[-1]["dims"] == dims
    assert _FakeVBench.calls[-1]["full_info"] == str(info)


def test_official_backend_checks_import_before_generating(tmp_path, capsys, monkeypatch):
    """With --checkpoint, a missing vbench package fails before any video is generated."""
    monkeypatch.setitem(sys.modules, "vbench", None)
    (tmp_path / "p.txt").write_text("a cat\n")
    (tmp_path / "ckpt").mkdir()  # exists (a missing one is its own one-line error), never loaded
    assert (
        main(
            [
                "--checkpoint",
                str(tmp_path / "ckpt"),
                "--prompts",
                str(tmp_path / "p.txt"),
                "--out",
                str(tmp_path / "o"),
                "--backend",
                "official",
            ]
        )
        == 2
    )
    assert "pip install vbench" in capsys.readouterr().err and not (tmp_path / "o" / "videos").exists()
