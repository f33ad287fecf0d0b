"""Weight-based VBench dimensions through transformers: tiny random CLIPModel / ViTModel saved with
save_pretrained and loaded back via --weights; and generation from a tiny checkpoint."""

import json

import numpy as np
import pytest
import torch

from benchmarks.vbench.learned import load_encoder
from benchmarks.vbench.scorers import ScorerContext, build
from benchmarks.vbench_eval import main
from models.tiny import tiny_tokenizer

LEARNED = [
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "appearance_style",
    "overall_consistency",
    "temporal_style",
    "clip_score",
]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A --weights folder of tiny random models in the documented layout."""
    from transformers import CLIPConfig, CLIPModel, ViTConfig, ViTModel

    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    tok = tiny_tokenizer()
    clip = CLIPModel(
        CLIPConfig(
            text_config=dict(
                vocab_size=len(tok),
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=tok.bos_token_id,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=4,
                image_size=32,
                patch_size=8,
            ),
            projection_dim=16,
        )
    )
    for name in ("clip_vit_b32", "clip_vit_l14"):
        clip.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    ViTModel(
        ViTConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        add_pooling_layer=False,
    ).save_pretrained(root / "dino_vitb16")
    torch.save(torch.nn.Linear(16, 1).state_dict(), root / "sa_0_4_vit_l_14_linear.pth")
    return root


def _clips(n=2, frames=4):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (frames, 40, 48, 3), dtype=np.uint8) for _ in range(n)]


def test_learned_scores_finite_and_in_range(weights):
    scorers, skipped = build(LEARNED, ScorerContext(weights=weights))
    assert not skipped, skipped
    videos, prompts = _clips(), ["a red square moving left", "a blue circle moving up"]
    out = {d: s(videos, prompts, [{}, {}]) for d, s in scorers.items()}
    for d, (scores, info) in out.items():
        assert len(scores) == 2 and all(np.isfinite(scores)), d
        assert info["backend"].startswith("transformers")
    for d in ("subject_consistency", "background_consistency"):
        assert all(0 <= s <= 1 for s in out[d][0])
    for d in ("appearance_style", "overall_consistency", "clip_score"):
        assert all(-1 <= s <= 1 for s in out[d][0])
    assert out["overall_consistency"][1]["proxy"] and not out["appearance_style"][1]["proxy"]


def test_identical_frames_give_consistency_one(weights):
    scorers, _ = build(["subject_consistency", "background_consistency"], ScorerContext(weights=weights))
    still = np.repeat(_clips(1, 1)[0], 6, axis=0)
    for scorer in scorers.values():
        assert scorer([still], ["x"], [{}])[0][0] == pytest.approx(1.0, abs=1e-5)


def test_encoder_is_shared_between_dimensions(weights):
    a = load_encoder(weights / "clip_vit_b32", "clip_b32", "cpu")
    assert load_encoder(weights / "clip_vit_b32", "clip_b32", "cpu") is a


def test_cli_with_weights(weights, tmp_path):
    from videosspo.video import write_video

    folder = tmp_path / "videos"
    for i, clip in enumerate(_clips()):
        write_video(folder / f"a cat-{i}.mp4", clip, fps=8)
    out = tmp_path / "run"
    main(["--videos", str(folder), "--weights", str(weights), "--out", str(out), "--no-progress", "--dims", *LEARNED])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["dimensions"]) == set(LEARNED) and not summary["skipped"]


def test_generate_from_checkpoint_resumable(tmp_path):
    from models import build_model
    from videosspo.config import ModelConfig

    ckpt = tmp_path / "ckpt"
    build_model(ModelConfig(family="animatediff")).save_pretrained(ckpt)
    (tmp_path / "prompts.txt").write_text("a red square moving left\na blue circle moving up\n")
    args = [
        "--checkpoint",
        str(ckpt),
        "--prompts",
        str(tmp_path / "prompts.txt"),
        "--samples",
        "2",
        "--frames",
        "4",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--dims",
        "temporal_flickering",
        "--no-progress",
        "--no-report",
    ]
    main(args)
    videos = sorted(p.name for p in (tmp_path / "run" / "videos").iterdir())
    assert videos == [
        "a blue circle moving up-0.mp4",
        "a blue circle moving up-1.mp4",
        "a red square moving left-0.mp4",
        "a red square moving left-1.mp4",
    ]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "videos").iterdir()}
    main(args)  # resumed: nothing is generated again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run" / "videos").iterdir()} == mtimes
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_videos"] == 4 and "temporal_flickering" in summary["dimensions"]


def test_dino_sees_the_whole_frame_like_vbench(weights):
    """VBench's dino_transform resizes the shorter side only (no centre crop): the ViT interpolates
    its position embeddings, so pixels a crop would cut off change the features."""
    from benchmarks.vbench.learned import preprocess

    assert tuple(preprocess(np.zeros((1, 40, 64, 3), np.uint8), 32, (0,) * 3, (1,) * 3, crop=False).shape) == (
        1,
        3,
        32,
        51,
    )
    enc = load_encoder(weights / "dino_vitb16", "dino", "cpu")
    a = np.random.default_rng(0).integers(0, 255, (2, 32, 64, 3), dtype=np.uint8)
    b = a.copy()
    b[:, :, :8] = 0  # outside a 32 x 32 centre crop
    assert not torch.allclose(enc.images(a), enc.images(b))


def test_consistency_dimension_mean_weights_frames(weights, tmp_path):
    """VBench averages subject / background consistency over all frames of all videos."""
    from videosspo.video import write_video

    folder = tmp_path / "videos"
    rng = np.random.default_rng(1)
    for i, frames in enumerate((3, 5)):
        write_video(folder / f"a cat-{i}.mp4", rng.integers(0, 255, (frames, 32, 32, 3), dtype=np.uint8), fps=8)
    out = tmp_path / "run"
    main(
        [
            "--videos",
            str(folder),
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--dims",
            "subject_consistency",
            "background_consistency",
        ]
    )
    rows = [json.loads(line) for line in (out / "per_video.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    for dim in ("subject_consistency", "background_consistency"):
        per_video = [r["scores"][dim] for r in rows]
        assert [r["notes"][dim]["frame_pairs"] for r in rows] == [2, 4]
        assert summary["dimensions"][dim]["raw"] == pytest.approx((2 * per_video[0] + 4 * per_video[1]) / 6)
        assert per_video[0] != pytest.approx(per_video[1])


@pytest.fixture(scope="module")
def musiq_weights(tmp_path_factory):
    """--weights DIR with a tiny random MUSIQ (pyiqa's module layout) under VBench's file name."""
    from benchmarks.vbench.musiq import MUSIQ, MUSIQ_FILE

    root = tmp_path_factory.mktemp("musiq")
    torch.manual_seed(0)
    model = MUSIQ(hidden_size=48, mlp_dim=64, num_layers=1)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    torch.save(model.state_dict(), root / MUSIQ_FILE)
    return root


def test_imaging_quality_runs_musiq_from_weights(musiq_weights):
    """Issue 11.9: MUSIQ loads from --weights and scores each frame after VBench's resize (longer
    side <= 512, bilinear without antialiasing), mean / 100."""
    import torch.nn.functional as F

    from benchmarks.vbench.learned import load_network
    from benchmarks.vbench.musiq import MUSIQ_FILE

    scorer = build(["imaging_quality"], ScorerContext(weights=musiq_weights))[0]["imaging_quality"]
    assert scorer.info["backend"].startswith("MUSIQ") and scorer.info["proxy"] is False
    frame = np.random.default_rng(0).integers(0, 255, (1, 96, 640, 3), dtype=np.uint8)
    (score,), _ = scorer([frame], ["x"], [{}])
    x = torch.from_numpy(frame[0]).permute(2, 0, 1)[None].float()
    x = F.interpolate(x, size=(76, 512), mode="bilinear", align_corners=False) / 255.0
    with torch.no_grad():
        expected = float(load_network("musiq", musiq_weights / MUSIQ_FILE, "cpu")(x)) / 100.0
    assert np.isfinite(score) and score == pytest.approx(expected, rel=1e-6)


def test_raft_from_weights_for_dynamic_degree_and_static_filter(tmp_path):
    """Issue 11.4 / 11.9: VBench's RAFT (random weights, its module names, DataParallel prefix)
    from --weights DIR/raft_model/models/raft-things.pth drives dynamic degree and the static
    filter; frames are padded to a multiple of 8 as VBench's InputPadder does."""
    from benchmarks.vbench.raft import RAFT, RaftFlow
    from videosspo.video import write_video

    weights = tmp_path / "w"
    (weights / "raft_model" / "models").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(
        {f"module.{k}": v for k, v in RAFT().state_dict().items()},
        weights / "raft_model" / "models" / "raft-things.pth",
    )
    rep, side = RaftFlow(None).prepare(np.zeros((130, 150, 3), np.uint8))
    assert tuple(rep.shape) == (1, 3, 136, 152) and side == 130
    write_video(
        tmp_path / "v" / "a cat-0.mp4",
        np.random.default_rng(0).integers(0, 255, (3, 128, 128, 3), dtype=np.uint8),
        fps=8,
    )
    out = tmp_path / "run"
    main(
        [
            "--videos",
            str(tmp_path / "v"),
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--dims",
            "dynamic_degree",
            "temporal_flickering",
            "--static-filter",
            "on",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    dd = summary["dimensions"]["dynamic_degree"]
    assert dd["backend"].startswith("RAFT") and dd["proxy"] is False and dd["raw"] in (0.0, 1.0)
    flicker = summary["dimensions"].get("temporal_flickering") or summary["skipped"]["temporal_flickering"]
    assert "(RAFT from raft-things.pth" in json.dumps(flicker)
    write_video(tmp_path / "small" / "a cat-0.mp4", np.zeros((3, 64, 64, 3), np.uint8), fps=8)
    main(
        [
            "--videos",
            str(tmp_path / "small"),
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "s"),
            "--no-progress",
            "--no-report",
            "--dims",
            "dynamic_degree",
        ]
    )
    skipped = json.loads((tmp_path / "s" / "summary.json").read_text())["skipped"]["dynamic_degree"]
    assert "RAFT needs frames of at least 128 px once padded, these are 64x64" in skipped["reason"]


def test_motion_smoothness_runs_amt_from_weights(tmp_path):
    """Issue 11.9: VBench's AMT-S (random weights, its module names, {"state_dict": ...}) from
    --weights DIR/amt-s.pth interpolates the odd frames: the score is VBench's
    (255 - mean MAE(odd, AMT midpoint)) / 255 of the same model."""
    from benchmarks.vbench.amt import AMTS, interpolate, load_amt

    torch.manual_seed(0)
    torch.save({"state_dict": AMTS().state_dict()}, tmp_path / "amt-s.pth")
    scorer = build(["motion_smoothness"], ScorerContext(weights=tmp_path))[0]["motion_smoothness"]
    assert scorer.info == {"backend": "AMT-S from amt-s.pth", "proxy": False}
    clip = np.random.default_rng(0).integers(0, 255, (3, 120, 136, 3), dtype=np.uint8)  # padded to 128 x 144
    (score,), _ = scorer([clip], ["x"], [{}])
    mid = interpolate(load_amt(tmp_path / "amt-s.pth"), clip[0], clip[2])
    assert mid.shape == (120, 136, 3) and mid.dtype == np.uint8
    assert score == pytest.approx((255 - np.abs(clip[1].astype(float) - mid).mean()) / 255, abs=1e-12)


class AngleEncoder:
    """Stands in for DINO / CLIP: a frame of constant grey level g is the unit vector at angle g degrees
    (so cosines are known by hand); every prompt is the unit vector (1, 0)."""

    def images(self, frames, batch=32):
        angle = torch.from_numpy(frames[:, 0, 0, 0].astype(np.float64)).deg2rad()
        return torch.stack([angle.cos(), angle.sin()], -1).float()

    def texts(self, prompts):
        return torch.tensor([[1.0, 0.0]] * len(prompts))


def test_learned_dimensions_by_hand_on_known_embeddings(weights, tmp_path, monkeypatch):
    """Frames at 0, 60 and 150 degrees (cos(f1, f0) = 1/2, cos(f2, f1) = 0, cos(f2, f0) = -√3/2):

    consistency = mean_i>0 (max(0, cos(f_i, f_i-1)) + max(0, cos(f_i, f_0))) / 2 = ((1/2 + 1/2)/2 + (0 + 0)/2) / 2 = 1/4
    text score  = mean_i cos(f_i, text) = (1 + 1/2 − √3/2) / 3
    aesthetic   = mean_i (w·f_i + b) / 10 with w = (2, 4), b = 1: (3 + (2 + 2√3) + (1 − √3 + 2)) / 30
    """
    import benchmarks.vbench.learned as learned

    monkeypatch.setattr(learned, "load_encoder", lambda path, kind, device: AngleEncoder())
    head = tmp_path / "sa_0_4_vit_l_14_linear.pth"
    torch.save({"weight": torch.tensor([[2.0, 4.0]]), "bias": torch.tensor([1.0])}, head)
    for name in ("dino_vitb16", "clip_vit_b32", "clip_vit_l14"):
        (tmp_path / name).symlink_to(weights / name)
    scorers, skipped = build(LEARNED, ScorerContext(weights=tmp_path))
    assert not skipped, skipped
    video = np.stack([np.full((8, 8, 3), g, np.uint8) for g in (0, 60, 150)])
    scores = {d: s([video], ["a cat"], [{}])[0][0] for d, s in scorers.items()}
    r3 = 3**0.5
    expected = {"subject_consistency": 0.25, "background_consistency": 0.25, "aesthetic_quality": (8 + r3) / 30}
    expected.update(
        dict.fromkeys(["appearance_style", "overall_consistency", "temporal_style", "clip_score"], (1.5 - r3 / 2) / 3)
    )
    assert scores == pytest.approx(expected, abs=1e-6)
