"""Tag2Text (Huang et al., 2023) with its Swin-B image encoder, VBench's scene captioner, from a
local ``tag2text_swin_14m.pth`` and ``bert-base-uncased``'s ``vocab.txt``.

Modules and parameter names follow VBench's copy (``vbench/third_party/tag2Text``: ``tag2text.py``,
``swin_transformer.py``, ``med.py``, ``config_swinB_384.json``, ``med_config.json``,
``q2l_config.json``), so VBench's file (a ``{"model": state_dict}``; VBench keeps it in
``~/.cache/vbench/caption_model/``) loads unchanged:

  visual_encoder  Swin-B at 384 px: 4 px patches, window 12, stages (2, 2, 18, 2) with heads
                  (4, 8, 16, 32), widths 128 .. 1024, shifted windows on odd blocks (none where a
                  stage is one window), patch merging in (0,0), (1,0), (0,1), (1,1) order; output
                  the mean token followed by the 12 x 12 tokens.
  vision_multi    the tagging head (query2label): 2 BERT layers without self-attention whose
                  queries are ``label_embed`` (one per tag, 3429) cross-attending to the image
                  (4 heads); ``fc`` scores each tag; tags with sigmoid > 0.7 are kept, minus
                  VBench's six deleted ones (numbers and "quarter").
  tag_encoder     a 12-layer BERT over "[ENC] tag | tag | ..." (40 tokens) cross-attending to the
                  image (1024 -> 768 keys, which transformers' BertModel cannot do: its
                  cross-attention keys take ``hidden_size`` inputs). Its first two layers' cross-
                  attention and feed-forward are *the same parameters* as ``vision_multi``'s (VBench
                  ties them), so the file's ``vision_multi`` values win, as in VBench's loading.
  text_decoder    a 12-layer causal BERT (``BertLMHeadModel``, output embedding tied to the word
                  embedding) cross-attending to the tag encoder, beam search from "[DEC] a picture
                  of": 3 beams, max_length 30, min_length 10 (prompt included), repetition penalty
                  1.0 (none), as VBench calls it.

The beam search is transformers 4.33.2's (VBench pins it; decoding here caches keys and values,
where VBench's call recomputes every prefix), re-implemented here because its
semantics differ from today's ``generate``: a finished hypothesis scores sum(log p) / its length
without the end token (prompt included), a batch item stops when its worst kept hypothesis beats
the best open score divided by the next length, and candidates are the top 2 x beams. It also
reproduces what that version does to VBench's call: VBench repeats the tag encoder's output per
beam and ``generate`` repeats it again, and ``med.py`` keeps the first ``frames x beams`` rows, so
beam row q (of frame q // 3) reads frame q // 9's tags: with 16 frames, captions 0-2 describe
frame 0, 3-5 frame 1, ..., 15 frame 5 (VBench's scores come from its first six sampled frames).

The whole BERT is written here (``Bert*`` below, med.py's modules) because three of its four uses
are not transformers' BERT (cross-attention from 1024-wide states, layers without self-attention);
the Swin is written here to keep VBench's parameter names (transformers splits qkv and renames
every module). Where transformers has the same network, tests check the two agree on the same
weights: the Swin against ``SwinModel``, the caption decoder against ``BertLMHeadModel``. Widths,
depths and the vocabulary are read from the file; the head counts are VBench's configs' (12 for
the BERTs, 4 for the tagging head), which no file records.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import Mlp

TAG2TEXT_FILES = ("tag2text_swin_14m.pth", "caption_model/tag2text_swin_14m.pth")
VOCAB_FILES = ("bert-base-uncased/vocab.txt", "caption_model/bert-base-uncased/vocab.txt", "vocab.txt")
IMAGE_SIZE, PATCH, WINDOW = 384, 4, 12  # config_swinB_384.json
FRAMES = 16  # VBench's scene: load_video(num_frames=16), the middle frame of 16 equal intervals
MED_HEADS, Q2L_HEADS = 12, 4  # med_config.json, q2l_config.json
BERT_EPS, MASKED = 1e-12, -10000.0  # BERT's LayerNorm eps; med.py's additive mask value
PROMPT = "a picture of "
TAG_THRESHOLD = 0.7
DELETED_TAGS = (127, 3351, 3265, 3338, 3355, 3359)
TAG_TOKENS = 40  # the tag string is padded / truncated to 40 tokens
NUM_BEAMS, MAX_LENGTH, MIN_LENGTH = 3, 30, 10  # Tag2Text_Caption.generate's defaults, as VBench calls it
_TOKENIZER_LOCK = threading.Lock()  # a fast tokenizer with padding / truncation is not thread-safe


@lru_cache
def tag_names() -> tuple[str, ...]:
    """Tag2Text's 3429 tag names by index (``tag_class.py``'s ``tra_array``; some repeat)."""
    return tuple((Path(__file__).parent / "tag2text_tags.txt").read_text().splitlines())


# ----------------------------------------------------------------------------- Swin-B


def relative_position_index(window: int) -> torch.Tensor:
    """(n, n) index into the (2w-1)^2 bias table of each token pair's offset (dy, dx) in a w x w window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = rearrange(coords[:, :, None] - coords[:, None, :], "two n m -> n m two") + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shift_mask(size: int, window: int, shift: int) -> torch.Tensor:
    """(windows, n, n) additive mask of a cyclically shifted grid: -100 between tokens that came
    from different regions (VBench's nine slices), 0 within one."""
    region = torch.zeros(size, size)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (h, w) in enumerate((h, w) for h in cuts for w in cuts):
        region[h, w] = i
    region = rearrange(region, "(hn wh) (wn ww) -> (hn wn) (wh ww)", wh=window, ww=window)
    return (region[:, None, :] != region[:, :, None]).float() * -100.0


def resample_bias_table(table: torch.Tensor, window: int) -> torch.Tensor:
    """VBench's ``interpolate_relative_pos_embed``: a ((2w'-1)^2, heads) table for another window
    resampled to ``window``. The source offsets are spread on a geometric progression (ratio q by
    bisection so that its extent is window - 1) and each head's grid is fitted with an
    interpolating bicubic spline (VBench: scipy's ``interp2d(kind="cubic")``, the same FITPACK
    spline as ``RectBivariateSpline`` with s = 0), read at the integer offsets -(w-1) .. w-1."""
    from scipy.interpolate import RectBivariateSpline

    src, dst = math.isqrt(table.shape[0]), 2 * window - 1
    if src == dst:
        return table
    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if (1.0 - q ** (src // 2)) / (1.0 - q) > dst // 2:
            right = q
        else:
            left = q
    dis = np.cumsum([q**i for i in range(src // 2)])  # 1, 1 + q, 1 + q + q^2, ...
    coords = np.concatenate([-dis[::-1], [0.0], dis])
    grid = np.arange(-(dst // 2.0), dst // 2.0 + 0.1, 1.0)
    heads = [
        RectBivariateSpline(coords, coords, table[:, h].view(src, src).float().numpy(), kx=3, ky=3, s=0)(grid, grid)
        for h in range(table.shape[1])
    ]
    return torch.from_numpy(np.stack(heads, -1).reshape(dst * dst, -1)).float()


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):  # x: (b windows, n, c); mask: (windows, n, n)
        q, k, v = rearrange(self.qkv(x), "b n (three h e) -> three b h n e", three=3, h=self.heads)
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        attn = attn + rearrange(self.relative_position_bias_table[self.relative_position_index], "n m h -> h n m")
        if mask is not None:
            attn = rearrange(
                rearrange(attn, "(b w) h n m -> b w h n m", w=len(mask)) + mask[:, None], "b w h n m -> (b w) h n m"
            )
        return self.proj(rearrange(attn.softmax(-1) @ v, "b h n e -> b n (h e)"))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention + MLP on a ``size`` x ``size`` grid; a stage that is
    one window wide neither shifts nor splits (the window shrinks to the grid)."""

    def __init__(self, dim: int, size: int, heads: int, window: int, shift: int):
        super().__init__()
        self.size, self.window = size, min(window, size)
        self.shift = 0 if size <= window else shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, self.window, heads)
        self.mlp = Mlp(dim)
        self.register_buffer(
            "attn_mask", shift_mask(size, self.window, self.shift) if self.shift else None, persistent=False
        )

    def forward(self, x):
        grid = rearrange(self.norm1(x), "b (h w) c -> b h w c", h=self.size)
        grid = torch.roll(grid, (-self.shift, -self.shift), (1, 2)) if self.shift else grid
        windows = rearrange(grid, "b (hn wh) (wn ww) c -> (b hn wn) (wh ww) c", wh=self.window, ww=self.window)
        grid = rearrange(
            self.attn(windows, self.attn_mask),
            "(b hn wn) (wh ww) c -> b (hn wh) (wn ww) c",
            hn=self.size // self.window,
            wn=self.size // self.window,
            wh=self.window,
        )
        grid = torch.roll(grid, (self.shift, self.shift), (1, 2)) if self.shift else grid
        x = x + rearrange(grid, "b h w c -> b (h w) c")
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2 x 2 neighbours concatenated in Swin's order (0,0), (1,0), (0,1), (1,1) (row, column
    offsets), LayerNorm, then a linear map 4C -> 2C without bias."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.size = size
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        x = rearrange(x, "b (h dh w dw) c -> b (h w) (dw dh c)", h=self.size // 2, dh=2, dw=2)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    def __init__(self, dim: int, size: int, depth: int, heads: int, window: int, merge: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, size, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)
        )
        self.downsample = PatchMerging(dim, size) if merge else None

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class Swin(nn.Module):
    """VBench's ``SwinTransformer`` (no absolute positions): (b, 3, 384, 384) -> (b, 1 + 144, 8 C),
    the token mean first."""

    def __init__(self, dim: int, depths, heads, window: int = WINDOW, image_size: int = IMAGE_SIZE):
        super().__init__()
        self.patch_embed = nn.Module()  # VBench's PatchEmbed: a strided convolution and a LayerNorm
        self.patch_embed.proj = nn.Conv2d(3, dim, PATCH, PATCH)
        self.patch_embed.norm = nn.LayerNorm(dim)
        size = image_size // PATCH
        self.layers = nn.ModuleList(
            SwinStage(dim * 2**i, size // 2**i, d, h, window, i < len(depths) - 1)
            for i, (d, h) in enumerate(zip(depths, heads, strict=True))
        )
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1))

    def forward(self, images):
        x = self.patch_embed.norm(rearrange(self.patch_embed.proj(images), "b c h w -> b (h w) c"))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        return torch.cat([x.mean(1, keepdim=True), x], 1)


# ----------------------------------------------------------------------------- BERT (med.py)


def additive(mask: torch.Tensor) -> torch.Tensor:
    """med.py's extended mask: 1 (attend) -> 0, 0 (masked) -> -10000."""
    return (1.0 - mask.float()) * MASKED


class BertSelfAttention(nn.Module):
    """Queries from the sequence, keys and values from ``context`` (``kv_width`` wide)."""

    def __init__(self, hidden: int, heads: int, kv_width: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key, self.value = nn.Linear(kv_width, hidden), nn.Linear(kv_width, hidden)

    def kv(self, context):
        """Keys and values of ``context``, (b, h, m, e) each."""
        return (
            rearrange(self.key(context), "b m (h e) -> b h m e", h=self.heads),
            rearrange(self.value(context), "b m (h e) -> b h m e", h=self.heads),
        )

    def forward(self, x, k, v, mask=None):  # mask: additive, broadcastable to (b, h, n, m)
        q = rearrange(self.query(x), "b n (h e) -> b h n e", h=self.heads)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        scores = scores if mask is None else scores + mask
        return rearrange(scores.softmax(-1) @ v, "b h n e -> b n (h e)")


class BertResidual(nn.Module):
    """``dense``, then LayerNorm of (result + the block's input) (BertSelfOutput / BertOutput)."""

    def __init__(self, inner: int, hidden: int):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(inner, hidden), nn.LayerNorm(hidden, eps=BERT_EPS)

    def forward(self, x, residual):
        return self.LayerNorm(self.dense(x) + residual)


class BertAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_width: int):
        super().__init__()
        self.self, self.output = BertSelfAttention(hidden, heads, kv_width), BertResidual(hidden, hidden)

    def forward(self, x, context, mask=None, kv=None):
        """``kv``: the keys and values of ``context`` when already computed."""
        return self.output(self.self(x, *(kv or self.self.kv(context)), mask), x)


class BertLayer(nn.Module):
    """[self-attention] -> cross-attention to the encoder states -> feed-forward (exact GELU);
    the tagging head's layers have no self-attention (VBench deletes it: mode 'mlr')."""

    def __init__(self, hidden: int, heads: int, encoder_width: int, intermediate: int, self_attention: bool = True):
        super().__init__()
        if self_attention:
            self.attention = BertAttention(hidden, heads, hidden)
        self.crossattention = BertAttention(hidden, heads, encoder_width)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, intermediate)
        self.output = BertResidual(intermediate, hidden)

    def forward(self, x, encoder_states, self_mask=None):
        if hasattr(self, "attention"):
            x = self.attention(x, x, self_mask)
        return self.feed_forward(self.crossattention(x, encoder_states))

    def feed_forward(self, x):
        return self.output(F.gelu(self.intermediate.dense(x)), x)

    def step(self, x, cross_kv, past=None, self_mask=None):
        """Decoder layer on new positions ``x`` given the earlier positions' self-attention keys and
        values (``past``) and the encoder's (``cross_kv``); returns the output and the extended past."""
        k, v = self.attention.self.kv(x)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        x = self.attention(x, None, self_mask, kv=(k, v))
        return self.feed_forward(self.crossattention(x, None, kv=cross_kv)), (k, v)


class BertEmbeddings(nn.Module):
    def __init__(self, vocab: int, hidden: int, positions: int):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, hidden)
        self.position_embeddings = nn.Embedding(positions, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=BERT_EPS)

    def forward(self, ids, start: int = 0):
        """Token + absolute position embeddings, positions from ``start``."""
        positions = self.position_embeddings.weight[start : start + ids.shape[1]]
        return self.LayerNorm(self.word_embeddings(ids) + positions)


class BertModel(nn.Module):
    """med.py's ``BertModel`` without pooler: ``embeddings`` (absent in the tagging head, which is
    fed embeddings directly) and ``encoder.layer``."""

    def __init__(
        self,
        layers: int,
        hidden: int,
        heads: int,
        encoder_width: int,
        intermediate: int,
        vocab: int = 0,
        positions: int = 0,
    ):
        super().__init__()
        if vocab:
            self.embeddings = BertEmbeddings(vocab, hidden, positions)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            BertLayer(hidden, heads, encoder_width, intermediate, bool(vocab)) for _ in range(layers)
        )

    def forward(self, x, encoder_states, self_mask=None):
        """``x``: token ids (with embeddings) or embeddings (the tagging head); ``self_mask`` additive."""
        x = self.embeddings(x) if hasattr(self, "embeddings") else x
        for layer in self.encoder.layer:
            x = layer(x, encoder_states, self_mask)
        return x


class BertLMHeadModel(nn.Module):
    """The caption decoder: a causal ``bert`` and ``cls.predictions`` (dense, GELU, LayerNorm, then
    the word embedding's transpose plus ``bias``) -> next-token logits."""

    def __init__(self, layers: int, hidden: int, intermediate: int, vocab: int, positions: int):
        super().__init__()
        self.bert = BertModel(layers, hidden, MED_HEADS, hidden, intermediate, vocab, positions)
        head = nn.Module()
        head.transform = nn.Module()
        head.transform.dense, head.transform.LayerNorm = nn.Linear(hidden, hidden), nn.LayerNorm(hidden, eps=BERT_EPS)
        head.decoder = nn.Linear(hidden, vocab)
        head.bias = head.decoder.bias  # med.py: decoder.bias is predictions.bias
        head.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied (transformers' tie_weights)
        self.cls = nn.Module()
        self.cls.predictions = head

    def forward(self, ids, encoder_states):
        """Next-token logits at every position (b, n, vocab)."""
        return self.logits(self.bert(ids, encoder_states, additive(causal_mask(ids.shape[1], ids.device))))

    def logits(self, x):
        t = self.cls.predictions.transform
        return self.cls.predictions.decoder(t.LayerNorm(F.gelu(t.dense(x))))

    def incremental(self, encoder_states):
        """A ``beam_search`` step: the logits of each row's last token. The first call runs the prompt;
        later ones only the new token, attending to the cached keys and values of earlier positions
        (reordered with the beams) and to the encoder's, computed once. VBench's ``generate`` recomputes
        every prefix at every step (med.py ignores the cache): the same logits, ~20x the work."""
        layers = self.bert.encoder.layer
        cross = [layer.crossattention.self.kv(encoder_states) for layer in layers]
        past = None

        def step(ids, rows):
            nonlocal past
            if past is None:
                x, mask = self.bert.embeddings(ids), additive(causal_mask(ids.shape[1], ids.device))
                past = [None] * len(layers)
            else:
                x, mask = self.bert.embeddings(ids[:, -1:], ids.shape[1] - 1), None
                past = [(k[rows], v[rows]) for k, v in past]
            for i, layer in enumerate(layers):
                x, past[i] = layer.step(x, cross[i], past[i], mask)
            return self.logits(x[:, -1])

        return step


def causal_mask(n: int, device) -> torch.Tensor:
    """(n, n): 1 where position i may attend to j <= i."""
    return torch.ones(n, n, device=device).tril()


class GroupWiseLinear(nn.Module):
    """One linear score per tag: logits[b, k] = W[k] . x[b, k] + b[k]."""

    def __init__(self, classes: int, dim: int):
        super().__init__()
        self.W, self.b = nn.Parameter(torch.zeros(1, classes, dim)), nn.Parameter(torch.zeros(1, classes))

    def forward(self, x):
        return (self.W * x).sum(-1) + self.b


class Tag2Text(nn.Module):
    """VBench's ``Tag2Text_Caption`` (modules registered in its order, which decides what the
    tied parameters load)."""

    def __init__(
        self,
        swin_dim: int,
        depths,
        swin_heads,
        hidden: int,
        intermediate: int,
        vocab: int,
        positions: int,
        decoder_layers: int,
        encoder_layers: int,
        tag_layers: int,
        classes: int,
    ):
        super().__init__()
        width = swin_dim * 2 ** (len(depths) - 1)
        self.visual_encoder = Swin(swin_dim, depths, swin_heads)
        self.text_decoder = BertLMHeadModel(decoder_layers, hidden, intermediate, vocab, positions)
        self.tag_encoder = BertModel(encoder_layers, hidden, MED_HEADS, width, intermediate, vocab, positions)
        self.vision_multi = BertModel(tag_layers, hidden, Q2L_HEADS, width, intermediate)
        self.label_embed = nn.Embedding(classes, hidden)
        self.fc = GroupWiseLinear(classes, hidden)
        for enc, tag in zip(
            self.tag_encoder.encoder.layer, self.vision_multi.encoder.layer, strict=False
        ):  # the first tag_layers
            for name, module in tag.named_modules():  # tie_encoder_decoder_weights: parameters, not heads
                for param_name, param in module.named_parameters(recurse=False):
                    setattr(enc.get_submodule(name), param_name, param)

    def tags(self, image_embeds) -> torch.Tensor:
        """(b, classes) bool: the tags with sigmoid(logit) > 0.7, VBench's deleted ones removed."""
        label = self.label_embed.weight.expand(len(image_embeds), -1, -1)
        hits = torch.sigmoid(self.fc(self.vision_multi(label, image_embeds))) > TAG_THRESHOLD
        hits[:, list(DELETED_TAGS)] = False
        return hits


def load_tag2text(path, device: str = "cpu") -> Tag2Text:
    """Tag2Text from VBench's ``{"model": state_dict}`` file; sizes read from it, heads VBench's,
    relative position tables of another window resampled to 12 as VBench does. Keys VBench drops or ignores (``relative_position_index``, ``attn_mask``, ``position_ids``,
    anything else: it loads with ``strict=False``) are ignored; every parameter must be present."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)

    def count(prefix):
        return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

    for k in [k for k in state if k.endswith("relative_position_bias_table")]:  # VBench's window 12 at 384 px
        state[k] = resample_bias_table(state[k], WINDOW)
    stages = count("visual_encoder.layers.")
    tables = [state[f"visual_encoder.layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]
    words = state["text_decoder.bert.embeddings.word_embeddings.weight"]
    model = Tag2Text(
        swin_dim=state["visual_encoder.patch_embed.proj.weight"].shape[0],
        depths=[count(f"visual_encoder.layers.{i}.blocks.") for i in range(stages)],
        swin_heads=[t.shape[1] for t in tables],
        hidden=words.shape[1],
        intermediate=state["text_decoder.bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        vocab=words.shape[0],
        positions=state["text_decoder.bert.embeddings.position_embeddings.weight"].shape[0],
        decoder_layers=count("text_decoder.bert.encoder.layer."),
        encoder_layers=count("tag_encoder.encoder.layer."),
        tag_layers=count("vision_multi.encoder.layer."),
        classes=state["label_embed.weight"].shape[0],
    )
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise KeyError(f"{path} is not VBench's Tag2Text checkpoint: it lacks {', '.join(missing[:5])}")
    if len(state["label_embed.weight"]) != len(tag_names()):
        raise ValueError(f"{path} scores {len(state['label_embed.weight'])} tags, Tag2Text has {len(tag_names())}")
    return model.eval().to(device)


# ----------------------------------------------------------------------------- tokenizer, captions


def load_tokenizer(vocab_file):
    """bert-base-uncased's WordPiece tokenizer with Tag2Text's two added tokens: ``[DEC]`` (bos,
    id 30522 for bert-base-uncased) and ``[ENC]`` (30523)."""
    from transformers import BertTokenizer

    words = Path(vocab_file).read_text(encoding="utf-8").splitlines()  # one token a line, id = line number
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


def beam_search(
    step,
    prompt: torch.Tensor,
    eos: int,
    num_beams: int = NUM_BEAMS,
    max_length: int = MAX_LENGTH,
    min_length: int = MIN_LENGTH,
) -> list[list[int]]:
    """transformers 4.33.2's beam search (``generate(num_beams=...)``, length penalty 1, no early
    stopping) over ``step(ids (b*beams, L), rows) -> the last position's logits (b*beams, vocab)``,
    ``rows`` saying which earlier row each row extends (None at the first call); ``prompt`` (b, L0).
    Returns each item's best hypothesis (prompt included, end token excluded)."""
    b = len(prompt)
    ids = prompt.repeat_interleave(num_beams, 0)
    beam_scores = torch.zeros(b, num_beams, device=ids.device)
    beam_scores[:, 1:] = -1e9
    beam_scores = beam_scores.view(-1)
    hyps = [[] for _ in range(b)]  # (score, tokens), at most num_beams kept
    done = [False] * b
    rows = None
    while True:
        scores = F.log_softmax(step(ids, rows).float(), -1)
        if ids.shape[1] < min_length:
            scores[:, eos] = -float("inf")
        vocab = scores.shape[-1]
        top, flat = (scores + beam_scores[:, None]).view(b, -1).topk(2 * num_beams, 1)
        next_scores = torch.zeros(b, num_beams, device=ids.device)
        next_tokens = torch.zeros(b, num_beams, dtype=torch.long, device=ids.device)
        next_rows = torch.zeros(b, num_beams, dtype=torch.long, device=ids.device)
        for i in range(b):
            if done[i]:  # finished items are padded (token 0 on row 0), as transformers does
                continue
            kept = 0
            for rank, (score, token) in enumerate(zip(top[i].tolist(), flat[i].tolist(), strict=True)):
                row = i * num_beams + token // vocab
                if token % vocab == eos:
                    if rank < num_beams:
                        add_hypothesis(hyps[i], ids[row].tolist(), score, num_beams)
                else:
                    next_scores[i, kept], next_tokens[i, kept], next_rows[i, kept] = score, token % vocab, row
                    kept += 1
                if kept == num_beams:
                    break
            done[i] = len(hyps[i]) == num_beams and min(s for s, _ in hyps[i]) >= top[i].max().item() / (
                ids.shape[1] + 1
            )
        beam_scores, rows = next_scores.view(-1), next_rows.view(-1)
        ids = torch.cat([ids[rows], next_tokens.view(-1, 1)], 1)
        if all(done) or ids.shape[1] >= max_length:
            break
    for i in range(b):
        if not done[i]:
            for r in range(i * num_beams, (i + 1) * num_beams):
                add_hypothesis(hyps[i], ids[r].tolist(), beam_scores[r].item(), num_beams)
    return [sorted(h, key=lambda s_t: s_t[0])[-1][1] for h in hyps]


def add_hypothesis(hyps: list, tokens: list[int], sum_logprobs: float, num_beams: int) -> None:
    """transformers' ``BeamHypotheses.add``: score = sum of log-probabilities / length; keep the
    ``num_beams`` best (a new one must beat the worst once full)."""
    score = sum_logprobs / len(tokens)
    if len(hyps) < num_beams or score > min(s for s, _ in hyps):
        hyps.append((score, tokens))
        if len(hyps) > num_beams:
            hyps.remove(min(hyps, key=lambda s_t: s_t[0]))


def vbench_beam_frames(frames: int, beams: int = NUM_BEAMS) -> torch.Tensor:
    """The frame whose tag states beam row q (of frame q // beams) reads in VBench's call: q // beams^2.
    VBench repeats the tag states per beam, transformers 4.33's ``generate`` repeats them again and
    med.py's cross-attention keeps the first frames x beams rows."""
    return torch.arange(frames * beams) // beams**2


@torch.no_grad()
def captions(model: Tag2Text, tokenizer, images: torch.Tensor) -> list[str]:
    """VBench's ``model.generate(images, tag_input=None)``: one caption per image (b, 3, 384, 384),
    the prompt "a picture of " cut off."""
    device = images.device
    embeds = model.visual_encoder(images)
    names = tag_names()
    tags = [" | ".join(names[i] for i in row.nonzero()[:, 0].tolist()) for row in model.tags(embeds).cpu()]
    with _TOKENIZER_LOCK:
        tok = tokenizer(tags, padding="max_length", truncation=True, max_length=TAG_TOKENS, return_tensors="pt")
        prompt = tokenizer([PROMPT] * len(images), return_tensors="pt").input_ids[:, :-1]  # no [SEP]
    ids = tok.input_ids.to(device)
    ids[:, 0] = tokenizer.convert_tokens_to_ids("[ENC]")
    tag_states = model.tag_encoder(ids, embeds, additive(tok.attention_mask[:, None, None, :].to(device)))
    context = tag_states[vbench_beam_frames(len(images)).to(device)]
    prompt[:, 0] = tokenizer.bos_token_id
    best = beam_search(model.text_decoder.incremental(context), prompt.to(device), eos=tokenizer.sep_token_id)
    with _TOKENIZER_LOCK:
        return [
            tokenizer.decode(seq, skip_special_tokens=True, clean_up_tokenization_spaces=True)[len(PROMPT) :]
            for seq in best
        ]


def scene_hits(scene: str, caption_list: list[str]) -> int:
    """VBench's ``check_generate``: the captions containing every space-separated word of the
    scene as a substring ("bar" is in "barn")."""
    words = scene.split(" ")
    return sum(all(w in c for w in words) for c in caption_list)


def preprocess(frames: list[np.ndarray]) -> torch.Tensor:
    """VBench's ``tag2text_transform(384)``: each uint8 frame resized to 384 x 384 (aspect ignored,
    PIL bilinear, which antialiases), /255, ImageNet mean/std -> (f, 3, 384, 384)."""
    from PIL import Image

    from .learned import IMAGENET_MEAN, IMAGENET_STD

    x = np.stack([np.asarray(Image.fromarray(f).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)) for f in frames])
    x = torch.from_numpy(x).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    return rearrange(x, "f h w c -> f c h w")
