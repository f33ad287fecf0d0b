"""Issue 19.7: the weight-free proxies for imaging quality (MUSIQ) and dynamic degree (RAFT) rank
real footage: scikit-image's bundled photographs (in the wheel, no download; astronaut and rocket
public domain, coffee and chelsea CC0), clean > blurred > noisy > noise, and a camera moving over
them above a static view and above noise. Scores come from the scorers vbench_eval.py builds without
weights, the clips from benchmarks/proxy_ranking.py (which records the numbers)."""

import json

import numpy as np
import pytest

from benchmarks import proxy_ranking as pr
from benchmarks.vbench import classical
from benchmarks.vbench.scorers import feed
from benchmarks.vbench_eval import main
from videosspo.video import write_video


@pytest.mark.parametrize("name", pr.PHOTOS)
def test_imaging_quality_ranks_clean_blurred_noisy_noise_on_real_frames(name):
    clips = pr.quality_set(pr.photo(name), frames=2)
    q = {k: pr.score("imaging_quality", v) for k, v in clips.items()}
    assert q["clean"] > q["blur1"] > q["blur2"] > q["noise30"] > q["pure_noise"] > 0, q
    assert q["clean"] > q["noise15"] > q["noise30"], q
    assert q["smooth_noise3"] < q["blur2"], q  # random blobs are not a sharp picture either


def test_imaging_quality_ranks_a_soft_hd_frame_after_the_resize():
    """A 1280x720 frame is scored at longer side 512, where bilinear resizing halves the noise:
    noise must still cost more than the blur of a sigma-2 (0.8 px once resized) filter."""
    q = {
        k: pr.score("imaging_quality", v)
        for k, v in pr.quality_set(pr.hd_frame(pr.photo("chelsea")), (720, 1280), 1).items()
    }
    assert q["clean"] > q["blur2"] > q["noise15"] > q["noise30"] > q["pure_noise"], q


def test_noise_estimate_ignores_texture_and_reads_added_noise():
    rng = np.random.default_rng(0)
    flat = (128 + rng.normal(0, 10, (256, 256))).astype(np.float32)
    assert classical.noise_sigma(flat) == pytest.approx(10, abs=0.3)
    for name in pr.PHOTOS:
        grey = pr.camera(pr.photo(name), 1)[0].mean(-1).astype(np.float32)
        assert classical.noise_sigma(grey) < 1.5, name  # edges and texture are not noise
        assert classical.noise_sigma(grey + rng.normal(0, 10, grey.shape).astype(np.float32)) == pytest.approx(
            10, abs=1
        ), name


def test_gradient_kurtosis_by_hand_and_on_random_fields():
    # differences along rows: [1, 1, 1] ... a step image: d = 0 except one column of 4s
    step = np.zeros((4, 4), np.float32)
    step[:, 2:] = 4
    d = np.concatenate([np.zeros(12), np.array([0, 4, 0] * 4, np.float64)])
    d -= d.mean()
    assert classical.gradient_kurtosis(step) == pytest.approx((d**4).mean() / (d**2).mean() ** 2)
    smooth = pr.smooth_noise((1, 256, 256, 3), 3)[0, ..., 0].astype(np.float32)
    assert classical.gradient_kurtosis(smooth) == pytest.approx(3, abs=0.2)  # any Gaussian field
    assert classical.gradient_kurtosis(pr.photo("chelsea").mean(-1).astype(np.float32)) > 6
    assert classical.naturalness(smooth) == classical.NATURAL_FLOOR


@pytest.mark.parametrize("name", pr.PHOTOS)
def test_dynamic_degree_real_motion_over_static_and_noise(name):
    clips = pr.motion_set(pr.photo(name), frames=8)
    dd = {k: pr.score("dynamic_degree", clips[k]) for k in pr.MOVING + pr.STILL}
    assert dd == {**dict.fromkeys(pr.MOVING, 1.0), **dict.fromkeys(pr.STILL, 0.0)}


def test_flow_between_noise_frames_is_not_motion():
    """DIS matches two unrelated noise frames with large vectors: none of them explains the pair;
    between smooth noise frames the warp does match, but correspondences are not transitive."""
    flow = classical.Flow()
    noise = [classical.flow_frame(f) for f in pr.pure_noise((2, 256, 256, 3))]
    blobs = [classical.flow_frame(f) for f in pr.smooth_noise((3, 256, 256, 3), 3)]
    pan = [classical.flow_frame(f) for f in pr.camera(pr.photo("coffee"), 3, pan=8)]
    assert classical.top_flow_magnitude(np.linalg.norm(flow(*noise), axis=-1)) > 6  # raw: "moving"
    assert classical.top_flow_magnitude(flow.magnitudes(*noise)) < 1
    assert classical.top_flow_magnitude(flow.magnitudes(*blobs[:2])) > 6  # the warp matches...
    assert classical.top_flow_magnitude(flow.magnitudes(*blobs)) < 6  # ...but a -> b -> c is not a -> c
    for kept in (flow.magnitudes(*pan[:2]), flow.magnitudes(*pan), flow.magnitudes(*pan[::-1])):
        assert np.median(kept[kept > 0]) == pytest.approx(8, abs=0.1) and classical.top_flow_magnitude(kept) > 6


def test_cli_ranks_real_clips_above_noise(tmp_path):
    """Through vbench_eval.py on mp4 files: a panning real clip moves, its static view and noise do
    not; noise scores the lowest imaging quality."""
    image, folder = pr.photo("astronaut"), tmp_path / "v"
    clips = {"pan": pr.camera(image, 8, pan=8), "still": pr.camera(image, 8), "noise": pr.pure_noise((8, 256, 256, 3))}
    for k, v in clips.items():
        write_video(folder / f"{k}-0.mp4", v, fps=8)
    assert (
        main(
            [
                "--videos",
                str(folder),
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
                "--no-report",
                "--dims",
                "dynamic_degree",
                "imaging_quality",
            ]
        )
        == 0
    )
    rows = {
        r["prompt"]: r["scores"] for r in map(json.loads, (tmp_path / "o" / "per_video.jsonl").read_text().splitlines())
    }
    assert {k: s["dynamic_degree"] for k, s in rows.items()} == {"pan": 1.0, "still": 0.0, "noise": 0.0}
    assert min(rows["pan"]["imaging_quality"], rows["still"]["imaging_quality"]) > 10 * rows["noise"]["imaging_quality"]


def test_dynamic_degree_asks_the_backend_for_vbenchs_pairs_forward():
    """Every consecutive sampled pair once, a -> b (RAFT's flows are VBench's exactly), each with a
    third frame for the classical tests: the next, or the one before for the last pair."""
    calls = []

    class Recorder:
        def prepare(self, frame):
            return int(frame[0, 0, 0]), 256

        def magnitudes(self, a, b, c=None, c_first=False):
            calls.append((a, b, c, c_first))
            return np.zeros((4, 4))

    frames = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(4, 1).repeat(4, 2).repeat(3, 3)
    assert feed(classical.DynamicDegree(16, Recorder()), frames) == 0.0  # 16 fps: every other frame
    assert calls == [(0, 2, 4, False), (2, 4, 6, False), (4, 6, 8, False), (6, 8, 4, True)]
