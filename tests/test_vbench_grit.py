"""VBench's GRiT dimensions (issue 11.9): object class, multiple objects, colour and spatial
relationship. The pure-torch ops that replace torchvision's (ROIAlign, NMS) and detectron2's box
rules by hand, VBench's four dimension rules on hand-made detections, the greedy decoder's stop and
repeat rules, and a tiny GRiT in the checkpoint's key layout run from ``--weights``."""

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.vbench import grit_rules as rules
from benchmarks.vbench.grit import (
    GRIT_FILES,
    Grit,
    GritConfig,
    TextualHead,
    apply_deltas,
    greedy_decode,
    load_grit,
    nms,
    pool_levels,
    roi_align,
)
from benchmarks.vbench.learned import grit_frame
from benchmarks.vbench.scorers import ScorerContext, build
from benchmarks.vbench_eval import main

# ----------------------------------------------------------------------------- ops by hand


def test_roi_align_matches_torchvision_aligned_rules_by_hand():
    """f(y, x) = 10 y + x + 1 on a 4 x 4 map. Bilinear sampling is exact on a linear map, so bins
    average the map at their sample points; the half-pixel shift and the edge rules decide which."""
    f = (10 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None, :] + 1)[None]
    # box (1, 1, 3, 3) -> (0.5, 2.5) after the shift: one 2x2-sample bin at 1.0, 2.0 -> f(1.5, 1.5) = 17.5
    assert roi_align(f, torch.tensor([[1.0, 1, 3, 3]]), 1.0, 1).item() == pytest.approx(17.5)
    # 2 x 2 bins of one sample each, at the pixel centres 1 and 2
    assert roi_align(f, torch.tensor([[1.0, 1, 3, 3]]), 1.0, 2)[0, 0].tolist() == [[12, 13], [22, 23]]
    # scale 0.5: box (2, 2, 6, 6) is the same region on the half-size map
    assert roi_align(f, torch.tensor([[2.0, 2, 6, 6]]), 0.5, 1).item() == pytest.approx(17.5)
    # box (-4, -4, 0, 0) -> (-4.5, -0.5): 4x4 samples at -4..-1; only (-1, -1) is inside [-1, h]
    # and reads f(0, 0) = 1; the bin is the mean over all 16 samples
    assert roi_align(f, torch.tensor([[-4.0, -4, 0, 0]]), 1.0, 1).item() == pytest.approx(1 / 16)
    # past the last row/column the last one is read: samples at 3.25..4.0 read row/col 3 -> f(3, 3) = 34
    assert roi_align(f, torch.tensor([[3.5, 3.5, 4.5, 4.5]]), 1.0, 1).item() == pytest.approx(34)
    # a box of zero width pools nothing
    assert roi_align(f, torch.tensor([[2.0, 1, 2, 3]]), 1.0, 2).abs().sum() == 0


def test_nms_keeps_by_score_and_class():
    """IoU(A, B) = 81 / 119 = 0.68: B goes at 0.5, stays at 0.7 or in another class."""
    boxes = torch.tensor([[1.0, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.7).tolist() == [1, 0, 2]
    assert nms(boxes, scores, 0.5, classes=torch.tensor([1, 0, 0])).tolist() == [1, 0, 2]


def test_boxes_pool_from_the_level_of_their_size():
    """detectron2's rule: side s -> level floor(4 + log2(s / 224)), clamped to p3..p5."""
    feats = [torch.full((1, 1, 64, 64), float(level)) for level in (3, 4, 5)]
    sides = [20, 111, 112, 224, 447, 448, 2000]
    boxes = torch.tensor([[0.0, 0.0, s, s] for s in sides])
    pooled = pool_levels(feats, boxes, 1)[:, 0, 0, 0]
    assert pooled.tolist() == [3, 3, 3, 4, 4, 5, 5]


def test_box_deltas_by_hand():
    """Deltas (dx, dy, dw, dh) / weights: centre + d * size, size * exp(d); dw clamped at log(1000/16)."""
    box = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # w 20, h 40, centre (20, 40)
    out = apply_deltas(torch.tensor([[10.0, -5.0, 5 * math.log(2), 0.0]]), box, (10, 10, 5, 5))
    assert out.tolist() == [[20.0, 0.0, 60.0, 40.0]]  # centre (40, 20), w 40, h 40
    big = apply_deltas(torch.tensor([[0.0, 0.0, 100.0, 0.0]]), box, (1, 1, 1, 1))
    assert (big[0, 2] - big[0, 0]).item() == pytest.approx(20 * 1000 / 16)


def test_greedy_decoding_bans_the_last_token_and_stops_at_sep():
    """With every layer's residual branch zeroed and the output biased, the next token is the
    highest bias except the previous token (banned): A (bias 9) then B (8), alternating to 40
    tokens; with [SEP] above B the text stops after A, and ended boxes repeat [SEP]."""
    cfg = GritConfig(channels=8, text_dim=64, text_layers=1, text_heads=1, vocab=120, text_positions=64)
    head = TextualHead(cfg).eval()
    with torch.no_grad():
        for p in head.parameters():
            p.zero_()
        for norm in (head.embedding.layer_norm, *[m for m in head.modules() if isinstance(m, torch.nn.LayerNorm)]):
            norm.weight.fill_(1.0)
        bias = head.output.bias
        bias[110], bias[111], bias[102] = 9.0, 8.0, 1.0
        feats = torch.randn(2, 4, 8)
        assert greedy_decode(head, feats, 101) == [[110, 111] * 19 + [110]] * 2  # 40 tokens with the begin
        bias[102] = 8.5
        assert greedy_decode(head, feats, 101) == [[110, 102]] * 2
        bias[102] = 10.0
        assert greedy_decode(head, feats, 101) == [[], []]  # all [SEP] at once: empty descriptions


# ----------------------------------------------------------------------------- VBench's rules by hand


def _frame(*dets, names=None):
    """A frame's detections: (description, box) pairs, with every box's ObjectDet names."""
    names = names if names is not None else [d for d, _ in dets]
    return [(d, list(b), names) for d, b in dets]


def test_object_class_and_multiple_objects_count_frames():
    frames = [
        _frame(("dog", (0, 0, 4, 4)), ("cat", (5, 5, 9, 9))),
        _frame(("dog", (0, 0, 4, 4))),
        [],
        _frame(("cats", (0, 0, 4, 4))),
    ]
    assert rules.object_class(frames, {"object": "dog"}) == 0.5
    assert rules.object_class(frames, {"object": "cat"}) == 0.25  # exact names: "cats" is not "cat"
    assert rules.multiple_objects(frames, {"object": "dog and cat"}) == 0.25
    assert rules.multiple_objects(frames, {"object": "cat and horse"}) == 0.0


def test_color_pairs_every_phrase_with_the_first_boxs_name():
    """VBench pairs each DenseCap phrase with ``names[0]`` (the first box's ObjectDet name): a red
    car behind a first-ranked "dog" box is not seen as the car."""
    assert rules.color_object("a red car", "red") == "car"
    assert rules.color_object("an orange banana", "orange") == "banana"
    frames = [
        _frame(("a red car", (0, 0, 9, 9)), names=["car"]),  # object + colour
        _frame(("a blue car", (0, 0, 9, 9)), names=["car"]),  # object, other colour
        _frame(("a car", (0, 0, 9, 9)), names=["car"]),  # no colour word: not counted
        _frame(("a dog", (0, 0, 4, 4)), ("a red car", (5, 5, 9, 9)), names=["dog", "car"]),
        [],
    ]
    assert rules.color(frames, {"color": "red"}, "a red car") == 0.5
    assert rules.color(frames, {"color": "blue"}, "a blue car") == 0.5
    assert rules.color(frames[2:], {"color": "red"}, "a red car") is None  # no object frame: left out


def test_position_score_by_hand():
    left, right = (0, 0, 10, 10), (20, 0, 30, 10)
    assert rules.position_score("on the left of", left, right) == 1.0
    assert rules.position_score("on the right of", left, right) == 1.0  # the order is never checked
    assert rules.position_score("on the top of", left, right) == 0.0  # wrong axis
    assert rules.position_score("on the bottom of", (0, 0, 10, 10), (0, 20, 10, 30)) == 1.0
    # overlap: centres 4 apart in x, IoU 60 / 140 -> 0.1 / (3 / 7)
    assert rules.position_score("on the left of", (0, 0, 10, 10), (4, 0, 14, 10)) == pytest.approx(0.7 / 3)
    assert rules.position_score("near", left, right) == 0.0


def test_spatial_relationship_best_pair_per_frame():
    info = {"spatial_relationship": {"object_a": "dog", "object_b": "cat", "relationship": "on the left of"}}
    frames = [
        _frame(("dog", (0, 0, 10, 10)), ("cat", (20, 0, 30, 10))),  # 1
        _frame(("dog", (0, 0, 10, 10)), ("dog", (0, 20, 10, 30))),  # two dogs, wrong axis: 0
        _frame(("dog", (0, 0, 10, 10)), ("car", (20, 0, 30, 10))),  # one box of the pair: 0
        _frame(("dog", (0, 0, 10, 10)), ("cat", (4, 0, 14, 10)), ("cat", (0, 20, 10, 30))),
    ]  # 0.7/3
    assert rules.spatial_frame(frames[3], info["spatial_relationship"]) == pytest.approx(0.7 / 3)
    assert rules.spatial_relationship(frames, info) == pytest.approx((1 + 0.7 / 3) / 4)


def test_frames_over_768_are_scaled_to_720():
    frame = np.zeros((800, 1000, 3), np.uint8)
    assert grit_frame(frame, "object_class").shape == (720, 900, 3)
    assert grit_frame(frame, "color").shape == (720, 900, 3) and grit_frame(frame, "color").dtype == np.uint8
    small = np.zeros((768, 1000, 3), np.uint8)
    assert grit_frame(small, "object_class") is small


# ----------------------------------------------------------------------------- tiny GRiT from --weights

TINY = GritConfig(
    dim=32,
    depth=2,
    heads=2,
    window=3,
    window_blocks=(0,),
    global_grid=4,
    pretrain_grid=2,
    channels=64,
    head_convs=1,
    fc_dim=16,
    text_dim=64,
    text_layers=1,
    text_heads=1,
    vocab=120,
    text_positions=64,
)
DOG, RED = 110, 111


def _tiny_grit() -> Grit:
    """Random weights, except that every point proposes a box 8 strides wide with objectness
    sigmoid(5), every box is an object that the cascade keeps in place, and the text decoder is a bigram model: the next token is the one whose
    embedding matches the current one, ties broken by bias, the previous token banned. [CLS]
    (ObjectDet) shares its embedding with "dog", 104 (DenseCap) with "red"; so ObjectDet says
    "dog" and DenseCap "red dog"."""
    torch.manual_seed(0)
    model = Grit(TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.2)
        head = model.proposal_generator.centernet_head
        head.agn_hm.weight.zero_(), head.agn_hm.bias.fill_(5.0)
        head.bbox_pred.weight.zero_(), head.bbox_pred.bias.fill_(4.0)
        for s in head.scales:
            s.scale.fill_(1.0)
        for predictor in model.roi_heads.box_predictor:
            predictor.cls_score.weight.zero_(), predictor.cls_score.bias.copy_(torch.tensor([5.0, -5.0]))
            predictor.bbox_pred[2].weight.zero_(), predictor.bbox_pred[2].bias.zero_()
        text = model.roi_heads.text_decoder.textual
        for layer in text.transformer.encoder.layer:
            layer.attention.output.dense.weight.zero_(), layer.attention.output.dense.bias.zero_()
            layer.output.dense.weight.zero_(), layer.output.dense.bias.zero_()
        for norm in [m for m in text.modules() if isinstance(m, torch.nn.LayerNorm)]:
            norm.weight.fill_(1.0), norm.bias.zero_()
        text.embedding.positions.weight.zero_()
        words, signs = text.embedding.words.weight, torch.tensor([1.0, -1.0]).repeat(32)
        words.zero_()
        words[[101, DOG]] = signs
        words[[104, RED]] = signs.roll(1) * torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(16)
        bias = text.output.bias
        bias.zero_()
        bias[[101, 104]], bias[DOG], bias[102], bias[RED] = -100.0, 3.0, 2.0, 1.0
    return model


@pytest.fixture(scope="module")
def grit_weights(tmp_path_factory):
    """--weights DIR in VBench's cache layout: grit_model/grit_b_densecap_objectdet.pth as a detectron2
    checkpoint ({"model": state}, with a mask-head key the port ignores) and bert-base-uncased/vocab.txt
    (BERT's special-token ids, then "dog" at 110 and "red" at 111)."""
    root = tmp_path_factory.mktemp("grit")
    (root / "grit_model").mkdir()
    state = {**_tiny_grit().state_dict(), "roi_heads.mask_head.predictor.weight": torch.zeros(1)}
    torch.save({"model": state, "iteration": 0}, root / GRIT_FILES[1])
    vocab = [
        "[PAD]",
        *[f"[unused{i}]" for i in range(99)],
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *[f"[unused{i}]" for i in range(99, 105)],
        "dog",
        "red",
        *[f"w{i}" for i in range(8)],
    ]
    (root / "bert-base-uncased").mkdir()
    (root / "bert-base-uncased" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return root


def test_checkpoint_layout_is_grits(grit_weights):
    state = torch.load(grit_weights / GRIT_FILES[1])["model"]
    for key in (
        "backbone.bottom_up.pos_embed",
        "backbone.bottom_up.blocks.1.attn.rel_pos_w",
        "backbone.fpn_stride_16_8.weight",
        "backbone.fpn_stride32_norm2.bias",
        "backbone.top_block.p7.bias",
        "proposal_generator.centernet_head.bbox_tower.1.weight",
        "proposal_generator.centernet_head.scales.4.scale",
        "proposal_generator.centernet_head.agn_hm.weight",
        "roi_heads.box_head.2.fc2.weight",
        "roi_heads.box_predictor.2.bbox_pred.2.weight",
        "roi_heads.box_predictor.0.cls_score.bias",
        "roi_heads.text_decoder.textual.object_feature_projection.1.weight",
        "roi_heads.text_decoder.textual.transformer.encoder.layer.0.attention.self.query.weight",
        "roi_heads.text_decoder.textual.transformer.encoder.layer.0.output.LayerNorm.weight",
        "roi_heads.text_decoder.textual.embedding.positions.weight",
        "roi_heads.text_decoder.textual.output.bias",
    ):
        assert key in state, key
    assert GritConfig.from_state(state) == TINY
    with torch.device("meta"):  # GRiT-B's shapes, without its memory
        assert GritConfig.from_state(Grit(GritConfig()).state_dict()) == GritConfig()
    assert load_grit(grit_weights / GRIT_FILES[1]).cfg == TINY
    del state["roi_heads.box_head.1.fc1.weight"]
    torch.save(state, grit_weights / "broken.pth")
    with pytest.raises(KeyError, match="box_head.1.fc1.weight"):
        load_grit(grit_weights / "broken.pth")


FULL_INFO = [  # VBench_full_info.json's entries for the four dimensions
    {"prompt_en": "a dog", "dimension": ["object_class"], "auxiliary_info": {"object_class": {"object": "dog"}}},
    {
        "prompt_en": "a dog and a cat",
        "dimension": ["multiple_objects"],
        "auxiliary_info": {"multiple_objects": {"object": "dog and cat"}},
    },
    {"prompt_en": "a red dog", "dimension": ["color"], "auxiliary_info": {"color": {"color": "red"}}},
    {
        "prompt_en": "a dog on the left of a cat",
        "dimension": ["spatial_relationship"],
        "auxiliary_info": {
            "spatial_relationship": {
                "spatial_relationship": {"object_a": "dog", "object_b": "cat", "relationship": "on the left of"}
            }
        },
    },
]


def test_dimensions_run_tiny_grit_from_weights(grit_weights, tmp_path):
    """vbench_eval with --weights and VBench's JSON as --prompts: every frame has boxes, ObjectDet
    names them "dog" and DenseCap says "red dog", so each prompt's auxiliary_info decides its score,
    through VBench's 16 middle frames of each 5-frame clip. A prompt without info is reported."""
    from videosspo.video import write_video

    clip = np.random.default_rng(0).integers(0, 255, (5, 32, 48, 3), dtype=np.uint8)
    for prompt in [e["prompt_en"] for e in FULL_INFO] + ["a cat"]:
        write_video(tmp_path / "v" / f"{prompt}-0.mp4", clip, fps=8)
    (tmp_path / "full.json").write_text(json.dumps(FULL_INFO + [{"prompt_en": "a cat", "dimension": ["object_class"]}]))
    dims = ["object_class", "multiple_objects", "color", "spatial_relationship"]
    main(
        [
            "--videos",
            str(tmp_path / "v"),
            "--prompts",
            str(tmp_path / "full.json"),
            "--weights",
            str(grit_weights),
            "--out",
            str(tmp_path / "run"),
            "--no-progress",
            "--no-report",
            "--dims",
            *dims,
        ]
    )
    rows = {r["prompt"]: r for r in map(json.loads, (tmp_path / "run" / "per_video.jsonl").read_text().splitlines())}
    assert rows["a dog"]["scores"] == {"object_class": 1.0}
    assert rows["a dog and a cat"]["scores"] == {"multiple_objects": 0.0}
    assert rows["a red dog"]["scores"] == {"color": 1.0}
    assert 0.0 <= rows["a dog on the left of a cat"]["scores"]["spatial_relationship"] <= 1.0
    assert "auxiliary_info" in rows["a cat"]["unavailable"]["object_class"]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["dimensions"]
    assert summary["color"]["backend"] == "GRiT (DenseCap) from grit_b_densecap_objectdet.pth"
    assert summary["object_class"]["raw"] == 1.0 and summary["object_class"]["proxy"] is False


def test_grit_needs_the_checkpoint_and_the_tokenizer(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # no cached bert-base-uncased
    skipped = build(["object_class"], ScorerContext(weights=tmp_path))[1]
    assert GRIT_FILES[0] in skipped["object_class"]["fix"]
    (tmp_path / GRIT_FILES[0]).touch()
    skipped = build(["color"], ScorerContext(weights=tmp_path))[1]
    assert "bert-base-uncased/vocab.txt" in skipped["color"]["fix"]
