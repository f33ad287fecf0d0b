"""VBench's video models from --weights (issue 11.9): ViCLIP (temporal style, overall consistency)
and UMT (human action), each as a tiny random-weight model of the real architecture saved in
VBench's checkpoint layout, run through VBench's frame sampling and preprocessing; plus the rules
(sampling, tokenizer, top-5 threshold, label, position table) checked by hand."""

import gzip
import json
import math

import numpy as np
import pytest
import torch

from benchmarks.vbench.learned import (
    SampledFrames,
    crop_offset,
    middle_indices,
    preprocess,
    resized_size,
    umt_clip,
    viclip_similarity,
)
from benchmarks.vbench.scorers import ScorerContext, build, feed
from benchmarks.vbench.umt import UMT, action_label, load_umt, position_table, predicted_actions, sinusoid_table
from benchmarks.vbench.viclip import BPE_FILE, Tokenizer, ViCLIP, load_viclip
from benchmarks.vbench_eval import main

MERGES = ["c a", "ca t</w>", "r e", "re d</w>"]  # 512 byte tokens, then 512..515, then <|startoftext|> <|endoftext|>
SOT, EOT = 516, 517


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    return model


@pytest.fixture(scope="module")
def viclip_weights(tmp_path_factory):
    """--weights DIR/ViCLIP/ with a tiny ViCLIP ({"model": state dict}) and a 4-merge CLIP BPE file."""
    root = tmp_path_factory.mktemp("viclip")
    (root / "ViCLIP").mkdir()
    with gzip.open(root / "ViCLIP" / BPE_FILE, "wt") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES))
    model = ViCLIP(
        dict(width=64, layers=1, patch=8, grid=4, frames=4, out=16),
        dict(width=64, layers=1, context=8, vocab=518, out=16),
    )
    torch.save({"model": _randomise(model).state_dict()}, root / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")
    return root


def _block(prefix):
    return [
        f"{prefix}.{k}"
        for k in (
            "attn.in_proj_weight",
            "attn.in_proj_bias",
            "attn.out_proj.weight",
            "attn.out_proj.bias",
            "ln_1.weight",
            "ln_1.bias",
            "mlp.c_fc.weight",
            "mlp.c_fc.bias",
            "mlp.c_proj.weight",
            "mlp.c_proj.bias",
            "ln_2.weight",
            "ln_2.bias",
        )
    ]


def test_viclip_checkpoint_has_vbench_keys(viclip_weights):
    """The names and shapes of VBench's ViCLIP (viclip.py, viclip_vision.py, viclip_text.py)."""
    state = torch.load(viclip_weights / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")["model"]
    expected = {
        "temp",
        "vision_encoder.class_embedding",
        "vision_encoder.positional_embedding",
        "vision_encoder.temporal_positional_embedding",
        "vision_encoder.conv1.weight",
        "vision_encoder.ln_pre.weight",
        "vision_encoder.ln_pre.bias",
        "vision_encoder.ln_post.weight",
        "vision_encoder.ln_post.bias",
        "vision_encoder.proj",
        *_block("vision_encoder.transformer.resblocks.0"),
        "text_encoder.positional_embedding",
        "text_encoder.text_projection",
        "text_encoder.token_embedding.weight",
        "text_encoder.ln_final.weight",
        "text_encoder.ln_final.bias",
        *_block("text_encoder.transformer.resblocks.0"),
    }
    assert set(state) == expected
    assert state["vision_encoder.conv1.weight"].shape == (64, 3, 1, 8, 8)  # (width, rgb, tubelet, patch, patch)
    assert state["vision_encoder.temporal_positional_embedding"].shape == (1, 4, 64)
    assert state["vision_encoder.positional_embedding"].shape == (17, 64)  # 4 x 4 patches + CLS
    model = load_viclip(viclip_weights / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")
    assert (model.frames, model.image_size, model.context) == (4, 32, 8)
    del state["vision_encoder.ln_post.bias"]
    torch.save({"model": state}, viclip_weights / "broken.pth")
    with pytest.raises(RuntimeError, match="vision_encoder.ln_post.bias"):
        load_viclip(viclip_weights / "broken.pth")


def test_clip_tokenizer_by_hand(viclip_weights):
    """CLIP's byte ids ('a</w>' is 256 + 64 = 320, as in CLIP's real vocabulary), merges in rank
    order, ftfy / whitespace / case cleaning, <|endoftext|> kept when cut."""
    tok = Tokenizer(viclip_weights / "ViCLIP" / BPE_FILE)
    assert tok.encode("a red cat") == [320, 515, 513]
    assert tok.encode("  A\tRED\n cat ") == [320, 515, 513]
    assert tok.encode("re") == [81, 256 + 68]  # 'r', 'e</w>': the merge "r e" is not word-final
    assert tok(["a red cat"], 8).tolist() == [[SOT, 320, 515, 513, EOT, 0, 0, 0]]
    assert tok(["a red cat"], 4).tolist() == [[SOT, 320, 515, EOT]]


def test_middle_frame_sampling_by_hand():
    """VBench's get_frame_indices(sample="middle"): 10 frames in 4 intervals [0,2) [2,5) [5,7) [7,10)
    -> 0, 3, 5, 8; a 2-frame clip is padded with its last frame."""
    assert middle_indices(4, 10) == [0, 3, 5, 8]
    assert middle_indices(4, 2) == [0, 1, 1, 1]
    assert middle_indices(16, 16) == list(range(16))
    clip = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    picked = feed(SampledFrames(10, 4, lambda frames: [int(f[0, 0, 0]) for f in frames]), clip)
    assert picked == [0, 3, 5, 8]


def test_clip_transform_matches_torchvision_rules():
    """torchvision's Resize / CenterCrop arithmetic (40 x 64 -> 32 x 51, crop start round(19 / 2) = 10,
    half to even), and uint8 frames resized as uint8: clamped and rounded before /255."""
    assert resized_size(40, 64, 32) == (32, 51) and resized_size(64, 40, 32) == (51, 32)
    assert crop_offset(51, 32) == 10 and crop_offset(53, 32) == 10 and crop_offset(55, 32) == 12
    frames = np.random.default_rng(0).integers(0, 255, (2, 40, 64, 3), dtype=np.uint8)
    out = preprocess(frames, 32, (0.0,) * 3, (1.0,) * 3, uint8=True) * 255
    assert out.shape == (2, 3, 32, 32) and torch.allclose(out, out.round(), atol=1e-4)
    assert out.min() >= 0 and out.max() <= 255
    floats = preprocess(frames, 32, (0.0,) * 3, (1.0,) * 3) * 255
    assert not torch.allclose(floats, floats.round(), atol=1e-4)  # float frames: no rounding (background consistency)
    # the crop starts at column 10 of the 51 resized columns, not 9
    ramp = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, None, :, None] * 4, (1, 40, 64, 3)).copy()
    col = preprocess(ramp, 32, (0.0,) * 3, (1.0,) * 3, mode="bilinear")[0, 0, 0]
    full = (
        torch.nn.functional.interpolate(
            torch.from_numpy(ramp).permute(0, 3, 1, 2).float(), size=(32, 51), mode="bilinear", align_corners=False
        )[0, 0, 0]
        / 255
    )
    assert torch.allclose(col, full[10:42])


def test_viclip_scores_videos_from_weights(viclip_weights, tmp_path):
    """Both ViCLIP dimensions run through the real architecture from --weights (no longer the CLIP
    proxy): 4 middle frames of the 6-frame clip (0, 1, 3, 4), VBench's clip_transform, cos(video, text)."""
    from videosspo.video import read_video, write_video

    clip = np.random.default_rng(0).integers(0, 255, (6, 40, 48, 3), dtype=np.uint8)
    write_video(tmp_path / "v" / "a red cat-0.mp4", clip, fps=8)
    out = tmp_path / "run"
    main(
        [
            "--videos",
            str(tmp_path / "v"),
            "--weights",
            str(viclip_weights),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--dims",
            "overall_consistency",
            "temporal_style",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    model = load_viclip(viclip_weights / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")
    frames = read_video(tmp_path / "v" / "a red cat-0.mp4")
    expected = viclip_similarity(
        model, Tokenizer(viclip_weights / "ViCLIP" / BPE_FILE), list(frames[[0, 1, 3, 4]]), "a red cat"
    )
    for dim in ("overall_consistency", "temporal_style"):
        info = summary["dimensions"][dim]
        assert info["backend"] == "ViCLIP from ViClip-InternVid-10M-FLT.pth" and info["proxy"] is False
        assert info["raw"] == pytest.approx(expected, abs=1e-6)
    assert -1 <= expected <= 1
    other = viclip_similarity(
        model, Tokenizer(viclip_weights / "ViCLIP" / BPE_FILE), list(frames[[4, 3, 1, 0]]), "a red cat"
    )
    assert other != pytest.approx(expected, abs=1e-6)  # frame order matters: the temporal embedding is used


def test_viclip_without_tokenizer_is_skipped_with_the_fix(viclip_weights, tmp_path):
    (tmp_path / "ViClip-InternVid-10M-FLT.pth").symlink_to(viclip_weights / "ViCLIP" / "ViClip-InternVid-10M-FLT.pth")
    skipped = build(["overall_consistency"], ScorerContext(weights=tmp_path))[1]
    assert BPE_FILE in skipped["overall_consistency"]["fix"]


# ----------------------------------------------------------------------------- UMT


def test_position_table_by_hand():
    """sin / cos of p / 10000^(2i/d); VBench's 8 x 14 x 14 table is used as it is for 8 frames at 14 x 14,
    and linearly resampled in time for 16 (align_corners=False: frame 1 = 3/4 f0 + 1/4 f1)."""
    t = sinusoid_table(2, 4)
    assert t[1].tolist() == pytest.approx([math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)])
    base = position_table(8, 8, 14).view(8, 196, 8)
    assert torch.equal(base.reshape(1, -1, 8), sinusoid_table(1568, 8)[None])
    up = position_table(8, 16, 14).view(16, 196, 8)
    assert torch.allclose(up[0], base[0]) and torch.allclose(up[1], 0.75 * base[0] + 0.25 * base[1], atol=1e-6)
    assert position_table(8, 4, 7).shape == (1, 4 * 49, 8)


def test_top5_threshold_and_label_by_hand():
    """VBench keeps a top-5 class if its sigmoid, rounded to 4 decimals, is >= 0.85: 0.849996 rounds
    to 0.85 (kept), 0.8499 does not; a sixth class above 0.85 is outside the top 5."""
    names = [f"c{i}" for i in range(8)]
    probs = torch.tensor([0.99, 0.849996, 0.8499, 0.98, 0.97, 0.96, 0.95, 0.2])
    assert predicted_actions(torch.logit(probs), names) == ["c0", "c3", "c4", "c5", "c6"]  # c1 is sixth
    probs[5] = probs[6] = 0.5  # now c1 and c2 are in the top 5
    assert predicted_actions(torch.logit(probs), names) == ["c0", "c3", "c4", "c1"]
    assert action_label("A person is riding a bike") == "riding a bike"
    assert action_label("a person is tai chi_2") == "tai chi"


@pytest.fixture(scope="module")
def umt_weights(tmp_path_factory):
    """--weights DIR/umt_model/ with a tiny UMT (width 64, 1 block, 4 frames, 400 classes) whose head
    says "riding a bike" (class 0) whatever the video."""
    root = tmp_path_factory.mktemp("umt")
    (root / "umt_model").mkdir()
    model = _randomise(UMT(dim=64, depth=1, classes=400, frames=4))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-10.0)
        model.head.bias[0] = 10.0
    torch.save(model.state_dict(), root / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth")
    return root


def test_umt_checkpoint_has_vbench_keys(umt_weights, tmp_path):
    """The names of VBench's modeling_finetune.VisionTransformer (mean pooling); pos_embed optional."""
    state = torch.load(umt_weights / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth")
    block = [
        f"blocks.0.{k}"
        for k in (
            "norm1.weight",
            "norm1.bias",
            "attn.q_bias",
            "attn.v_bias",
            "attn.qkv.weight",
            "attn.proj.weight",
            "attn.proj.bias",
            "norm2.weight",
            "norm2.bias",
            "mlp.fc1.weight",
            "mlp.fc1.bias",
            "mlp.fc2.weight",
            "mlp.fc2.bias",
        )
    ]
    assert set(state) == {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "pos_embed",
        *block,
        "fc_norm.weight",
        "fc_norm.bias",
        "head.weight",
        "head.bias",
    }
    assert state["pos_embed"].shape == (1, 4 * 14 * 14, 64)
    assert load_umt(umt_weights / "umt_model" / "l16_ptk710_ftk710_ftk400_f16_res224.pth").frames == 4
    del state["pos_embed"]  # then VBench's computed table for its 16 frames
    torch.save(state, tmp_path / "no_pos.pth")
    model = load_umt(tmp_path / "no_pos.pth")
    assert model.frames == 16 and torch.equal(model.pos_embed, position_table(64, 16, 14))
    del state["head.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(KeyError, match="head.bias"):
        load_umt(tmp_path / "broken.pth")


def test_umt_transform_by_hand():
    """Shorter side 256 already: no resize; the 224 crop of 256 x 300 starts at (16, 38); /255, ImageNet
    mean / std; (1, 3, t, 224, 224). A 40 x 48 frame is resized to 256 x 307 first."""
    frame = np.random.default_rng(0).integers(0, 255, (256, 300, 3), dtype=np.uint8)
    x = umt_clip([frame, frame])
    assert x.shape == (1, 3, 2, 224, 224)
    assert x[0, :, 0, 0, 0].tolist() == pytest.approx(
        [
            (frame[16, 38, c] / 255 - m) / s
            for c, m, s in zip(range(3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=True)
        ],
        abs=1e-6,
    )
    assert umt_clip([frame[:40, :48]]).shape == (1, 3, 1, 224, 224)


def test_human_action_runs_umt_from_weights(umt_weights, tmp_path):
    """The tiny UMT names class 0 ("riding a bike") for every video: a prompt naming that action scores
    1, another 0; both through VBench's 4 middle frames and transform."""
    from videosspo.video import write_video

    clip = np.random.default_rng(0).integers(0, 255, (5, 40, 48, 3), dtype=np.uint8)
    for prompt in ("A person is riding a bike", "A person is marching"):
        write_video(tmp_path / "v" / f"{prompt}-0.mp4", clip, fps=8)
    out = tmp_path / "run"
    main(
        [
            "--videos",
            str(tmp_path / "v"),
            "--weights",
            str(umt_weights),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--dims",
            "human_action",
        ]
    )
    rows = {
        json.loads(line)["prompt"]: json.loads(line)["scores"]["human_action"]
        for line in (out / "per_video.jsonl").read_text().splitlines()
    }
    assert rows == {"A person is riding a bike": 1.0, "A person is marching": 0.0}
    info = json.loads((out / "summary.json").read_text())["dimensions"]["human_action"]
    assert info["backend"].startswith("UMT-L/16") and info["proxy"] is False and info["raw"] == 0.5


def test_model_dimensions_without_weights_say_why():
    skipped = build(["object_class", "scene", "human_action"], ScorerContext())[1]
    assert (
        "GRiT" in skipped["object_class"]["reason"]
        and "grit_b_densecap_objectdet.pth" in skipped["object_class"]["fix"]
    )
    assert "Tag2Text" in skipped["scene"]["reason"] and "--weights" in skipped["scene"]["reason"]
    assert "l16_ptk710_ftk710_ftk400_f16_res224.pth" in skipped["human_action"]["fix"]


def test_vbench_cache_folder_works_as_weights(tmp_path):
    """--weights ~/.cache/vbench: every file VBench's own modules read is found at VBench's cache path
    (networks load on first use, so empty files are enough to choose the backends)."""
    from benchmarks.vbench.learned import AESTHETIC_HEADS
    from benchmarks.vbench.scorers import weight_file

    expected = {
        "imaging_quality": "pyiqa_model/musiq_spaq_ckpt-358bb6af.pth",
        "dynamic_degree": "raft_model/models/raft-things.pth",
        "motion_smoothness": "amt_model/amt-s.pth",
        "overall_consistency": "ViCLIP/ViClip-InternVid-10M-FLT.pth",
        "human_action": "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth",
        "scene": "caption_model/tag2text_swin_14m.pth",
        "color": "grit_model/grit_b_densecap_objectdet.pth",
    }
    for path in [
        *expected.values(),
        f"ViCLIP/{BPE_FILE}",
        "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
        "bert-base-uncased/vocab.txt",
    ]:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    ctx = ScorerContext(weights=tmp_path)
    scorers, skipped = build(list(expected), ctx)
    assert not skipped, skipped
    for dim, path in expected.items():
        assert path.split("/")[-1] in scorers[dim].info["backend"] and scorers[dim].info["proxy"] is False, dim
    assert weight_file(ctx, AESTHETIC_HEADS) == tmp_path / "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth"
