"""VBench's scene dimension with Tag2Text from --weights (issue 11.9): a tiny random-weight Tag2Text
in the real checkpoint's key layout (VBench's module names, small widths and depths) saved as
VBench's file is, loaded and run end to end on generated clips; the rules (scene-word matching,
frame sampling, preprocessing, tag threshold, beam search, weight tying, Swin's windows and patch
merging) checked by hand; the caption decoder against transformers' BertLMHeadModel."""

import json
import math

import numpy as np
import pytest
import torch

from benchmarks.vbench import tag2text
from benchmarks.vbench.scorers import ScorerContext, build
from benchmarks.vbench.tag2text import (
    PatchMerging,
    Swin,
    Tag2Text,
    beam_search,
    captions,
    load_tag2text,
    load_tokenizer,
    preprocess,
    relative_position_index,
    resample_bias_table,
    scene_hits,
    shift_mask,
    vbench_beam_frames,
)
from benchmarks.vbench_eval import main
from videosspo.video import write_video

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "picture", "of", "alley", "barn", "street", "|", "##s"]
ALLEY = VOCAB.index("alley")
TINY = dict(
    swin_dim=8,
    depths=[1, 1, 2, 1],
    swin_heads=[1, 1, 2, 2],
    hidden=24,
    intermediate=48,
    vocab=len(VOCAB) + 2,
    positions=64,
    decoder_layers=2,
    encoder_layers=3,
    tag_layers=2,
    classes=3429,
)


def vbench_keys(depths, decoder_layers, encoder_layers, tag_layers) -> set[str]:
    """The keys of VBench's Tag2Text_Caption state dict (swin_b), buffers included, from its modules."""

    def linear(p, bias=True):
        return {f"{p}.weight", f"{p}.bias"} if bias else {f"{p}.weight"}

    def attention(p):
        return set().union(
            *(linear(f"{p}.self.{n}") for n in ("query", "key", "value")),
            linear(f"{p}.output.dense"),
            linear(f"{p}.output.LayerNorm"),
        )

    def bert_layer(p, self_attention=True):
        return set().union(
            attention(f"{p}.attention") if self_attention else set(),
            attention(f"{p}.crossattention"),
            linear(f"{p}.intermediate.dense"),
            linear(f"{p}.output.dense"),
            linear(f"{p}.output.LayerNorm"),
        )

    def embeddings(p):
        return {
            f"{p}.position_ids",
            f"{p}.word_embeddings.weight",
            f"{p}.position_embeddings.weight",
            *linear(f"{p}.LayerNorm"),
        }

    keys = {
        *linear("visual_encoder.patch_embed.proj"),
        *linear("visual_encoder.patch_embed.norm"),
        *linear("visual_encoder.norm"),
        "label_embed.weight",
        "fc.W",
        "fc.b",
        *embeddings("text_decoder.bert.embeddings"),
        *embeddings("tag_encoder.embeddings"),
        "text_decoder.cls.predictions.bias",
        *linear("text_decoder.cls.predictions.transform.dense"),
        *linear("text_decoder.cls.predictions.transform.LayerNorm"),
        *linear("text_decoder.cls.predictions.decoder"),
    }
    for i, depth in enumerate(depths):
        for j in range(depth):
            p = f"visual_encoder.layers.{i}.blocks.{j}"
            keys |= {
                *linear(f"{p}.norm1"),
                *linear(f"{p}.norm2"),
                *linear(f"{p}.attn.qkv"),
                *linear(f"{p}.attn.proj"),
                *linear(f"{p}.mlp.fc1"),
                *linear(f"{p}.mlp.fc2"),
                f"{p}.attn.relative_position_bias_table",
                f"{p}.attn.relative_position_index",
            }
            if j % 2 and i < len(depths) - 1:  # shifted blocks, except the one-window last stage
                keys.add(f"{p}.attn_mask")
        if i < len(depths) - 1:
            keys |= {
                *linear(f"visual_encoder.layers.{i}.downsample.reduction", bias=False),
                *linear(f"visual_encoder.layers.{i}.downsample.norm"),
            }
    keys |= set().union(*(bert_layer(f"text_decoder.bert.encoder.layer.{k}") for k in range(decoder_layers)))
    keys |= set().union(*(bert_layer(f"tag_encoder.encoder.layer.{k}") for k in range(encoder_layers)))
    keys |= set().union(*(bert_layer(f"vision_multi.encoder.layer.{k}", False) for k in range(tag_layers)))
    return keys


def tiny_file(path, seed=0, alley_bias=None):
    """A tiny random Tag2Text saved as VBench's file: ``{"model": state_dict}`` with its buffers,
    the tied copies different in the file (VBench's loading decides which wins). ``alley_bias``
    makes the decoder say "alley" at every step."""
    torch.manual_seed(seed)
    model = Tag2Text(**TINY)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for k in state:  # untie: the file's tag_encoder copies and word embedding differ from the winners
        if k.startswith("tag_encoder.encoder.layer.") or k == "text_decoder.bert.embeddings.word_embeddings.weight":
            state[k] = torch.randn_like(state[k])
    if alley_bias is not None:
        for k in ("text_decoder.cls.predictions.bias", "text_decoder.cls.predictions.decoder.bias"):
            state[k][ALLEY] = alley_bias
    for name, buf in model.named_buffers():  # VBench's file also holds its buffers (its loader drops them)
        if buf is not None:
            state[name] = buf
    for p in ("text_decoder.bert", "tag_encoder"):
        state[f"{p}.embeddings.position_ids"] = torch.arange(TINY["positions"])[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, path)
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """--weights DIR in VBench's cache layout: caption_model/tag2text_swin_14m.pth + the vocabulary."""
    root = tmp_path_factory.mktemp("tag2text")
    tiny_file(root / "caption_model" / "tag2text_swin_14m.pth")
    (root / "bert-base-uncased").mkdir()
    (root / "bert-base-uncased" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return root


def test_checkpoint_has_vbench_keys_and_loads_like_vbench(weights, tmp_path):
    """The file's keys are VBench's; tied parameters take the value VBench's load order leaves
    (vision_multi's over tag_encoder's, the decoder's output matrix over the word embedding)."""
    path = weights / "caption_model" / "tag2text_swin_14m.pth"
    state = torch.load(path)["model"]
    assert set(state) == vbench_keys(TINY["depths"], 2, 3, 2)
    model = load_tag2text(path)
    shared = "encoder.layer.1.crossattention.self.key.weight"
    assert torch.equal(model.tag_encoder.get_parameter(shared), state[f"vision_multi.{shared}"])
    assert not torch.equal(state[f"tag_encoder.{shared}"], state[f"vision_multi.{shared}"])
    assert torch.equal(
        model.tag_encoder.get_parameter("encoder.layer.2.intermediate.dense.weight"),
        state["tag_encoder.encoder.layer.2.intermediate.dense.weight"],
    )  # not tied
    assert model.tag_encoder.encoder.layer[0].crossattention.self.heads == 12  # heads are not tied
    assert model.vision_multi.encoder.layer[0].crossattention.self.heads == 4
    words = model.text_decoder.bert.embeddings.word_embeddings.weight
    assert torch.equal(words, state["text_decoder.cls.predictions.decoder.weight"])
    del state["fc.b"]
    torch.save({"model": state}, tmp_path / "broken.pth")
    with pytest.raises(KeyError, match="fc.b"):
        load_tag2text(tmp_path / "broken.pth")


def test_tokenizer_adds_tag2text_tokens(weights):
    """[DEC] (bos) and [ENC] follow the vocabulary (bert-base-uncased: 30522, 30523); the prompt
    "a picture of " is [CLS] a picture of [SEP]."""
    tok = load_tokenizer(weights / "bert-base-uncased" / "vocab.txt")
    assert (tok.bos_token_id, tok.convert_tokens_to_ids("[ENC]")) == (len(VOCAB), len(VOCAB) + 1)
    assert tok(["a picture of "]).input_ids == [[2, 5, 6, 7, 3]]
    assert (
        tok.decode([len(VOCAB), 5, 6, 7, 8, 11, 10, 12, 3, 0], skip_special_tokens=True)
        == "a picture of alley | streets"
    )


def test_scene_matching_rule_by_hand():
    """VBench's check_generate: every space-separated scene word is a substring of the caption."""
    caps = ["a narrow alley at night", "a shop selling coffee", "a coffee shop", "a red barn", "an alleyway"]
    assert scene_hits("alley", caps) == 2  # "alleyway" contains "alley"
    assert scene_hits("coffee shop", caps) == 2  # the words in any order
    assert scene_hits("bar", caps) == 1  # "bar" is in "barn"
    assert scene_hits("train station platform", caps) == 0
    assert scene_hits("alley", []) == 0


def test_preprocessing_size_and_normalisation_by_hand():
    """384 x 384 whatever the aspect (PIL bilinear), /255, ImageNet mean / std."""
    flat = np.full((40, 48, 3), (128, 64, 255), np.uint8)
    x = preprocess([flat, flat])
    assert x.shape == (2, 3, 384, 384)
    expected = [
        (v / 255 - m) / s for v, m, s in zip((128, 64, 255), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), strict=False)
    ]
    assert x[1, :, 200, 7].tolist() == pytest.approx(expected, abs=1e-6)
    ramp = np.repeat(np.arange(0, 256, 2, dtype=np.uint8)[None, :, None], 3, 2).repeat(4, 0)  # 4 x 128
    row = preprocess([ramp])[0, 0, 0] * 0.229 + 0.485
    assert row[0] * 255 == pytest.approx(0, abs=1e-3) and torch.all(row[1:] >= row[:-1])  # 3x upsampled ramp


def test_scene_scores_16_middle_frames(weights, monkeypatch):
    """The captioner sees VBench's 16 middle frames, in order, as one batch: of 40 frames 0, 3, 5,
    8, ..., 38; of 5 frames all, the last repeated. The score is the matching share of 16."""
    seen = []

    def fake_captions(model, tokenizer, images):
        grey = images[:, 0, 0, 0] * 0.229 + 0.485  # frame i is filled with grey level 5 i
        seen.append([round(float(g) * 255 / 5) for g in grey])
        return ["an alley"] * 4 + ["a street"] * (len(images) - 4)

    monkeypatch.setattr(tag2text, "captions", fake_captions)
    scorer = build(["scene"], ScorerContext(weights=weights))[0]["scene"]
    meta = {"auxiliary_info": {"scene": {"scene": {"scene": "alley"}}}}
    for n in (40, 5):
        clip = np.repeat(np.arange(0, 5 * n, 5, dtype=np.uint8)[:, None, None, None], 3, 3).repeat(8, 1).repeat(8, 2)
        assert scorer([clip], ["alley"], [meta])[0] == [4 / 16]
    assert seen == [[0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38], [0, 1, 2, 3, 4] + [4] * 11]


def test_tag_threshold_and_deleted_tags_by_hand(weights):
    """Tags with sigmoid(logit) > 0.7 (0.85 -> 0.7006 in, 0.84 -> 0.6985 out), minus VBench's six
    deleted ones ("quarter", the numbers)."""
    model = load_tag2text(weights / "caption_model" / "tag2text_swin_14m.pth")
    with torch.no_grad():
        model.fc.W.zero_()
        model.fc.b.fill_(-5.0)
        model.fc.b[0, [3, 5, 127, 3359]] = 5.0
        model.fc.b[0, 7], model.fc.b[0, 8] = 0.85, 0.84
        hits = model.tags(torch.randn(2, 145, 64))
    assert [row.nonzero()[:, 0].tolist() for row in hits] == [[3, 5, 7]] * 2
    assert [tag2text.tag_names()[i] for i in (3, 5, 7, 127)] == ["bicycle", "judge", "granite", "quarter"]


def test_beam_search_follows_transformers_433_by_hand():
    """2 beams, prompt [x], min_length 2, max_length 4, next-token probabilities by last token:
    start (x): eos .5 x .3 y .2 (eos banned: too short); after x: eos .6 x .3 y .1; after y: eos .1
    x .8 y .1. Step 2 finishes "x" (log .18 / 2); step 3 finishes "y x" (log .096 / 3, evicting
    "x x", log .054 / 3) and then "x" (-0.857); at max_length the open "y x x" (log .048 / 4 =
    -0.759) beats both: it is the answer."""
    X, Y, EOS = 2, 3, 1
    table = {X: [0, 0.6, 0.3, 0.1], Y: [0, 0.1, 0.8, 0.1]}

    lengths = []

    def step(ids, rows):
        lengths.append(ids.shape[1])
        return torch.log(torch.tensor([[0, 0.5, 0.3, 0.2] if ids.shape[1] == 1 else table[int(t)] for t in ids[:, -1]]))

    assert beam_search(step, torch.tensor([[X]]), eos=EOS, num_beams=2, max_length=4, min_length=2) == [[X, Y, X, X]]
    assert lengths == [1, 2, 3]
    # without max_length: the open beam "y x x..." ends best at log(.096 .3^(L-3)) / (L + 1), which
    # first falls to the worst kept hypothesis (-0.857) at L = 7: the search stops there, "y x" wins
    lengths.clear()
    assert beam_search(step, torch.tensor([[X]]), eos=EOS, num_beams=2, max_length=30, min_length=2) == [[X, Y, X]]
    assert lengths == [1, 2, 3, 4, 5, 6, 7]


def test_beam_rows_read_the_tags_vbench_reads():
    """VBench's call under transformers 4.33: the tag states are repeated per beam twice and the
    first frames x beams rows kept, so with 3 beams the 12 beam rows of 4 frames read frames
    0 (nine rows) and 1 (three rows): captions 0-2 describe frame 0, caption 3 frame 1."""
    assert vbench_beam_frames(4).tolist() == [0] * 9 + [1] * 3
    assert vbench_beam_frames(16).tolist() == [q // 9 for q in range(48)]
    twice = torch.arange(16).repeat_interleave(3).repeat_interleave(3)[:48]  # what VBench's tensors do
    assert torch.equal(vbench_beam_frames(16), twice)


def test_cached_decoding_equals_recomputing_every_prefix(weights):
    """The incremental step (cached keys and values, reordered with the beams) gives the logits
    VBench's full recomputation of every prefix gives, and the same beam search result."""
    model = load_tag2text(weights / "caption_model" / "tag2text_swin_14m.pth")
    context = torch.randn(2, 40, 24).repeat_interleave(3, 0)  # 2 items x 3 beams
    prompt = torch.tensor([[len(VOCAB), 5, 6, 7]] * 2)
    ids = torch.randint(0, TINY["vocab"], (6, 5), generator=torch.Generator().manual_seed(0))  # prefixes differ
    rows = torch.tensor([2, 0, 0, 5, 3, 3])  # each beam continues another beam of its item
    with torch.no_grad():
        step = model.text_decoder.incremental(context)
        assert torch.allclose(step(ids[:, :4], None), model.text_decoder(ids[:, :4], context)[:, -1], atol=1e-5)
        longer = torch.cat([ids[rows, :4], ids[:, 4:]], 1)
        assert torch.allclose(step(longer, rows), model.text_decoder(longer, context)[:, -1], atol=1e-5)
        full = beam_search(lambda seq, rows: model.text_decoder(seq, context)[:, -1], prompt, eos=3)
        assert beam_search(model.text_decoder.incremental(context), prompt, eos=3) == full


def test_caption_decoder_equals_transformers_bert(weights):
    """The caption decoder is transformers' BertLMHeadModel (causal, cross-attention, tied output)
    with the same weights: the same logits."""
    from transformers import BertConfig, BertLMHeadModel

    model = load_tag2text(weights / "caption_model" / "tag2text_swin_14m.pth")
    config = BertConfig(
        vocab_size=TINY["vocab"],
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=12,
        intermediate_size=48,
        max_position_embeddings=64,
        is_decoder=True,
        add_cross_attention=True,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    reference = BertLMHeadModel(config).eval()
    missing, _ = reference.load_state_dict(model.text_decoder.state_dict(), strict=False)
    assert missing == ["bert.embeddings.token_type_embeddings.weight"]
    with torch.no_grad():
        reference.bert.embeddings.token_type_embeddings.weight.zero_()  # med.py has none
        ids, context = torch.randint(0, TINY["vocab"], (3, 7)), torch.randn(3, 40, 24)
        expected = reference(input_ids=ids, encoder_hidden_states=context).logits
        assert torch.allclose(model.text_decoder(ids, context), expected, atol=1e-4)


def test_swin_windows_and_patch_merging_by_hand():
    """Window 2: offsets (dy, dx) index the 3 x 3 table as (dy + 1) * 3 + dx + 1; a 4 x 4 grid
    shifted by 1 keeps window (0, 0) whole and splits window (1, 1) into four regions; patch
    merging concatenates the (0,0), (1,0), (0,1), (1,1) neighbours (row, column offsets)."""
    index = relative_position_index(2)
    assert index.tolist() == [[4, 3, 1, 0], [5, 4, 2, 1], [7, 6, 4, 3], [8, 7, 5, 4]]
    mask = shift_mask(4, 2, 1)
    assert mask.shape == (4, 4, 4) and not mask[0].any()
    assert mask[3].tolist() == [[0 if i == j else -100 for j in range(4)] for i in range(4)]
    merge = PatchMerging(2, 4)
    merge.norm = torch.nn.Identity()
    with torch.no_grad():
        merge.reduction.weight.copy_(torch.eye(8)[[0, 2, 4, 6]])  # channel 0 of each neighbour
    values = 10 * torch.arange(4.0)[:, None] + torch.arange(4.0)[None]  # 10 y + x
    grid = torch.stack([values, torch.zeros(4, 4)], -1).view(1, 16, 2)
    assert merge(grid)[0].tolist() == [[0, 10, 1, 11], [2, 12, 3, 13], [20, 30, 21, 31], [22, 32, 23, 33]]


def test_swin_equals_transformers_swin():
    """The Swin is transformers' SwinModel (window 12 at 384 px, shifted windows, relative position
    bias, patch merging) with the same weights, qkv split in three: the same tokens, and its pooled
    output as the first token."""
    from transformers import SwinConfig, SwinModel

    torch.manual_seed(0)
    swin = Swin(8, [1, 1, 2, 1], [1, 1, 2, 2]).eval()
    for p in swin.parameters():
        torch.nn.init.normal_(p, std=0.3)
    names = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.o_proj",
        "attn.relative_position_bias_table": "attention.relative_position_bias.relative_position_bias_table",
    }
    state = {}
    for key, value in swin.state_dict().items():
        key = key.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
        key = key.replace("patch_embed.norm", "embeddings.norm").replace("layers.", "encoder.layers.")
        key = "layernorm." + key.split(".")[-1] if key.startswith("norm.") else key
        if ".attn.qkv." in key:
            for name, part in zip("qkv", value.chunk(3), strict=False):
                state[key.replace("attn.qkv", f"attention.{name}_proj")] = part
            continue
        for old, new in names.items():
            key = key.replace(f".{old}", f".{new}")
        state[key] = value
    config = SwinConfig(
        image_size=384,
        patch_size=4,
        embed_dim=8,
        depths=[1, 1, 2, 1],
        num_heads=[1, 1, 2, 2],
        window_size=12,
        drop_path_rate=0.0,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    reference = SwinModel(config).eval()
    missing, unexpected = reference.load_state_dict(state, strict=False)
    assert not unexpected and all("relative_position_index" in k for k in missing)
    x = torch.randn(2, 3, 384, 384)
    with torch.no_grad():
        ours, theirs = swin(x), reference(pixel_values=x)
    assert torch.allclose(ours[:, 1:], theirs.last_hidden_state, atol=1e-4)
    assert torch.allclose(ours[:, 0], theirs.pooler_output, atol=1e-4)


def test_bias_table_of_another_window_resampled_like_vbench():
    """Window 7 -> 12 (VBench's 224 px tables at 384 px): the 13 offsets are spread on a geometric
    progression 1, 1 + q, ... reaching 11, and a cubic spline through them reproduces a linear
    table exactly, so the result is that linear function at the integer offsets -11 .. 11; a
    table of the right size is kept as it is."""
    q = 1.5
    for _ in range(200):  # the ratio with 1 + q + ... + q^5 = 11: q^6 = 11 (q - 1) + 1, by fixed point
        q = (11 * (q - 1) + 1) ** (1 / 6)
    coords = np.concatenate([-np.cumsum(q ** np.arange(6))[::-1], [0], np.cumsum(q ** np.arange(6))])
    dy, dx = np.meshgrid(coords, coords, indexing="ij")
    table = torch.tensor(np.stack([2 * dy + 3 * dx, dy - dx], -1).reshape(169, 2), dtype=torch.float32)
    out = resample_bias_table(table, 12)
    gy, gx = np.meshgrid(np.arange(-11, 12), np.arange(-11, 12), indexing="ij")
    expected = np.stack([2 * gy + 3 * gx, gy - gx], -1).reshape(529, 2)
    assert out.shape == (529, 2) and np.allclose(out.numpy(), expected, atol=1e-3)
    assert resample_bias_table(out, 12) is out


def _clip(seed, frames=20):
    return np.random.default_rng(seed).integers(0, 255, (frames, 40, 48, 3), dtype=np.uint8)


def test_scene_runs_tag2text_from_weights_end_to_end(weights, tmp_path, monkeypatch):
    """VBench's JSON + {prompt}-{i}.mp4 + --weights: each video's score is the share of its 16 sampled
    frames whose caption (the tiny random model's) contains its scene; a prompt without auxiliary
    info is not scored; the dimension is Tag2Text, not a proxy."""
    made = []

    def spy(*args):
        made.append(captions(*args))
        return made[-1]

    monkeypatch.setattr(tag2text, "captions", spy)
    info = [
        {"prompt_en": "alley", "dimension": ["scene"], "auxiliary_info": {"scene": {"scene": {"scene": "alley"}}}},
        {"prompt_en": "barn", "dimension": ["scene"], "auxiliary_info": {"scene": {"scene": {"scene": "a"}}}},
    ]
    (tmp_path / "full.json").write_text(json.dumps(info))
    for i, prompt in enumerate(("alley", "barn", "unlisted")):
        write_video(tmp_path / "v" / f"{prompt}-0.mp4", _clip(i), fps=8)
    out = tmp_path / "run"
    main(
        [
            "--videos",
            str(tmp_path / "v"),
            "--prompts",
            str(tmp_path / "full.json"),
            "--weights",
            str(weights),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--dims",
            "scene",
            "--workers",
            "1",
        ]
    )
    rows = {json.loads(line)["prompt"]: json.loads(line) for line in (out / "per_video.jsonl").read_text().splitlines()}
    assert len(made) == 2 and all(len(caps) == 16 and all(isinstance(c, str) for c in caps) for caps in made)
    for (prompt, scene), caps in zip((("alley", "alley"), ("barn", "a")), made, strict=False):  # videos in path order
        assert rows[prompt]["scores"]["scene"] == scene_hits(scene, caps) / 16
    assert (
        rows["unlisted"]["scores"].get("scene") is None and "auxiliary_info" in rows["unlisted"]["unavailable"]["scene"]
    )
    summary = json.loads((out / "summary.json").read_text())["dimensions"]["scene"]
    assert summary["backend"].startswith("Tag2Text") and summary["proxy"] is False
    assert math.isclose(summary["raw"], (rows["alley"]["scores"]["scene"] + rows["barn"]["scores"]["scene"]) / 2)
    assert 0.0 <= summary["raw"] <= 1.0


def test_scene_is_one_when_every_caption_names_it(tmp_path):
    """A decoder biased to "alley": every caption is "alley alley ...", so scene "alley" scores 1
    (through the loaded file, tags, tag encoder and beam search)."""
    tiny_file(tmp_path / "tag2text_swin_14m.pth", seed=1, alley_bias=50.0)
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    scorer = build(["scene"], ScorerContext(weights=tmp_path))[0]["scene"]
    meta = {"auxiliary_info": {"scene": {"scene": {"scene": "alley"}}}}
    assert scorer([_clip(3, frames=4)], ["alley"], [meta])[0] == [1.0]


def test_scene_weights_tokenizer_and_the_hugging_face_cache(tmp_path, monkeypatch):
    """Without the checkpoint or the vocabulary, scene is skipped naming the file and where it goes;
    VBench's own run leaves vocab.txt in the Hugging Face cache, which is found there (offline)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    skipped = build(["scene"], ScorerContext())[1]
    assert "Tag2Text" in skipped["scene"]["reason"] and "tag2text_swin_14m.pth" in skipped["scene"]["fix"]
    weights = tmp_path / "vbench"
    (weights / "caption_model").mkdir(parents=True)
    (weights / "caption_model" / "tag2text_swin_14m.pth").touch()
    skipped = build(["scene"], ScorerContext(weights=weights))[1]
    assert "bert-base-uncased/vocab.txt" in skipped["scene"]["fix"]
    repo = tmp_path / "hf" / "models--bert-base-uncased"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    scorers, skipped = build(["scene"], ScorerContext(weights=weights))
    assert not skipped and "tag2text_swin_14m.pth" in scorers["scene"].info["backend"]
