"""ViCLIP (Wang et al., InternVid, ICLR 2024), the video-text model of VBench's temporal style and
overall consistency, from a local ``ViClip-InternVid-10M-FLT.pth``.

Modules and names follow VBench's copy (``vbench/third_party/ViCLIP``: ``viclip.py``,
``viclip_vision.py``, ``viclip_text.py``, ``simple_tokenizer.py``), so the checkpoint (Hugging Face
OpenGVLab/VBench_Used_Models; VBench keeps it in ``~/.cache/vbench/ViCLIP/``, a dict whose ``model``
holds the state dict) loads as it is, strictly, from ``--weights DIR/ViClip-InternVid-10M-FLT.pth``
or ``DIR/ViCLIP/ViClip-InternVid-10M-FLT.pth``; the tokenizer's ``bpe_simple_vocab_16e6.txt.gz``
(OpenAI CLIP's, github.com/openai/CLIP) lies beside it.

Vision: a CLIP ViT-L/14 whose patch embedding is a (1, 14, 14) Conv3d over the 8 frames, with a
learned temporal embedding added to every patch token; one CLS token attends over all frames'
patches; ``ln_post(CLS) @ proj``. Text: CLIP's causal transformer over 32 tokens, the end-of-text
token's feature ``@ text_projection``. Sizes (widths, depths, frames, resolution, vocabulary) are
read from the checkpoint; heads are width / 64 as in CLIP (ViT-L/14: 16 vision, 12 text).
"""

from __future__ import annotations

import gzip
import html
from collections import OrderedDict
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import torch
from einops import rearrange, repeat
from torch import nn

VICLIP_FILES = ("ViClip-InternVid-10M-FLT.pth", "ViCLIP/ViClip-InternVid-10M-FLT.pth")
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
HEAD_DIM = 64  # CLIP's heads = width / 64
N_MERGES = 49152 - 256 - 2  # the merges CLIP's vocabulary uses (of the file's ~262k)


# ----------------------------------------------------------------------------- tokenizer


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (the BPE runs on these characters)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    extra = [b for b in range(256) if b not in bs]
    return dict(zip(bs + extra, map(chr, bs + [256 + i for i in range(len(extra))]), strict=True))


class Tokenizer:
    """OpenAI CLIP's ``SimpleTokenizer``: ftfy + HTML unescape, whitespace collapsed, lower case,
    CLIP's word pattern, byte-level BPE with the first ``N_MERGES`` merges of the vocabulary file.
    Ids: 256 bytes, the 256 word-final bytes (``</w>``), one per merge, ``<|startoftext|>``,
    ``<|endoftext|>``."""

    def __init__(self, bpe_path: Path):
        import regex

        lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
        merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]  # line 0 is a version header
        chars = list(bytes_to_unicode().values())
        vocab = (
            chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
        )
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|"""
            r"""[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    @lru_cache(maxsize=4096)
    def bpe(self, token: str) -> tuple[str, ...]:
        """Merge the lowest-ranked adjacent pair, left to right, until no known pair is left."""
        if token in ("<|startoftext|>", "<|endoftext|>"):
            return (token,)
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pair = min(pairwise(word), key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def encode(self, text: str) -> list[int]:
        import ftfy
        import regex

        text = regex.sub(r"\s+", " ", html.unescape(html.unescape(ftfy.fix_text(text))).strip()).strip().lower()
        byte_chars = bytes_to_unicode()
        return [
            self.encoder[piece]
            for word in self.pattern.findall(text)
            for piece in self.bpe("".join(byte_chars[b] for b in word.encode("utf-8")))
        ]

    def __call__(self, texts: list[str], context: int) -> torch.Tensor:
        """(n, context) ids: ``<|startoftext|>`` text ``<|endoftext|>``, zero padded; a longer text is
        cut and ends with ``<|endoftext|>`` (CLIP's ``tokenize(truncate=True)``)."""
        out = torch.zeros(len(texts), context, dtype=torch.long)
        for row, text in zip(out, texts, strict=True):
            ids = [self.sot] + self.encode(text) + [self.eot]
            ids = ids[: context - 1] + [self.eot] if len(ids) > context else ids
            row[: len(ids)] = torch.tensor(ids)
        return out


# ----------------------------------------------------------------------------- model


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """CLIP's pre-norm block on sequence-first ``(n, b, d)`` tokens; ``mask`` is additive."""

    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, width // HEAD_DIM)
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width))
        )

    def forward(self, x, mask=None):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width) for _ in range(layers))

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionEncoder(nn.Module):
    """ViCLIP's ``VisionTransformer`` (``clip_joint_l14``: width 1024, 24 layers, patch 14, 224 px,
    8 frames, output 768)."""

    def __init__(self, width: int, layers: int, patch: int, grid: int, frames: int, out: int, tubelet: int = 1):
        super().__init__()
        self.conv1 = nn.Conv3d(3, width, (tubelet, patch, patch), (tubelet, patch, patch), bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.temporal_positional_embedding = nn.Parameter(torch.zeros(1, frames, width))
        self.ln_pre, self.ln_post = nn.LayerNorm(width), nn.LayerNorm(width)
        self.transformer = Transformer(width, layers)
        self.proj = nn.Parameter(torch.zeros(width, out))

    def forward(self, video):
        """(b, c, t, h, w) normalised frames -> (b, out)."""
        x = rearrange(self.conv1(video), "b d t h w -> b t (h w) d")
        x = x + self.positional_embedding[1:]
        temporal = self.temporal_positional_embedding  # (1, frames, d)
        x = x + rearrange(temporal.mean(1, keepdim=True) if x.shape[1] == 1 else temporal, "1 t d -> 1 t 1 d")
        x = rearrange(x, "b t n d -> b (n t) d")  # ViCLIP's token order: patch-major, then frame
        cls = repeat(self.class_embedding + self.positional_embedding[0], "d -> b 1 d", b=x.shape[0])
        x = self.ln_pre(torch.cat([cls, x], 1))
        x = self.transformer(rearrange(x, "b n d -> n b d"))
        return self.ln_post(x[0]) @ self.proj


class TextEncoder(nn.Module):
    """ViCLIP's ``CLIP_TEXT`` (``clip_text_l14``: width 768, 12 layers, 32-token context, output 768)."""

    def __init__(self, width: int, layers: int, context: int, vocab: int, out: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context, width))
        self.transformer = Transformer(width, layers)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, out))
        self.register_buffer("mask", torch.full((context, context), float("-inf")).triu(1), persistent=False)

    def forward(self, ids):
        """(b, context) token ids -> (b, out): the feature at the end-of-text token (the largest id)."""
        x = self.token_embedding(ids) + self.positional_embedding
        x = self.ln_final(rearrange(self.transformer(rearrange(x, "b n d -> n b d"), self.mask), "n b d -> b n d"))
        return x[torch.arange(len(ids)), ids.argmax(-1)] @ self.text_projection


class ViCLIP(nn.Module):
    """``vision_encoder`` + ``text_encoder`` + the contrastive ``temp`` (unused at inference)."""

    def __init__(self, vision: dict, text: dict):
        super().__init__()
        self.vision_encoder = VisionEncoder(**vision)
        self.text_encoder = TextEncoder(**text)
        self.temp = nn.Parameter(torch.tensor(1 / 100.0))

    @property
    def frames(self) -> int:
        return self.vision_encoder.temporal_positional_embedding.shape[1]

    @property
    def image_size(self) -> int:
        conv = self.vision_encoder.conv1.weight
        return conv.shape[-1] * round((self.vision_encoder.positional_embedding.shape[0] - 1) ** 0.5)

    @property
    def context(self) -> int:
        return self.text_encoder.positional_embedding.shape[0]


def arch_from_state(state: dict) -> tuple[dict, dict]:
    """(vision, text) sizes of a ViCLIP state dict."""

    def layers(prefix):
        return len({k.split(".")[3] for k in state if k.startswith(prefix + ".transformer.resblocks.")})

    conv = state["vision_encoder.conv1.weight"]  # (width, 3, tubelet, patch, patch)
    vision = dict(
        width=conv.shape[0],
        layers=layers("vision_encoder"),
        patch=conv.shape[-1],
        tubelet=conv.shape[2],
        grid=round((state["vision_encoder.positional_embedding"].shape[0] - 1) ** 0.5),
        frames=state["vision_encoder.temporal_positional_embedding"].shape[1],
        out=state["vision_encoder.proj"].shape[1],
    )
    emb = state["text_encoder.token_embedding.weight"]
    text = dict(
        width=emb.shape[1],
        layers=layers("text_encoder"),
        vocab=emb.shape[0],
        context=state["text_encoder.positional_embedding"].shape[0],
        out=state["text_encoder.text_projection"].shape[1],
    )
    return vision, text


def load_viclip(path, device: str = "cpu") -> ViCLIP:
    """ViCLIP from VBench's checkpoint (``{"model": state_dict}``), loaded strictly as VBench does."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    model = ViCLIP(*arch_from_state(state))
    model.load_state_dict(state)
    return model.eval().to(device)
