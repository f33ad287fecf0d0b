"""MUSIQ (Ke et al., ICCV 2021), VBench's imaging-quality model, from a local weight file.

The modules, their names and the multi-scale input follow pyiqa's ``MUSIQ`` (the implementation
VBench calls as ``MUSIQ(pretrained_model_path=...)``), so ``musiq_spaq_ckpt-358bb6af.pth`` (pyiqa's
v0.1-weights release; VBench keeps it in ``~/.cache/vbench/pyiqa_model/``) loads as it is from
``--weights DIR/musiq_spaq_ckpt-358bb6af.pth``. pyiqa itself needs torchvision, which breaks
transformers here.

Input: an image in [0, 1] -> (x - 0.5) * 2 -> 32 x 32 patches of the image resized (bicubic,
aspect kept) to longer side 224 and 384 and of the original, each with a hashed 10 x 10 spatial
position, a scale index and a padding mask -> a ResNet stem per patch -> a transformer over all
patches -> the CLS token -> one score (SPAQ: 0..100).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import Mlp

MUSIQ_FILE = "musiq_spaq_ckpt-358bb6af.pth"
MUSIQ_FILES = (MUSIQ_FILE, f"pyiqa_model/{MUSIQ_FILE}")  # DIR/ or VBench's cache layout
RESNET_TOKEN_DIM = 64


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TensorFlow's 'SAME' zero padding (the extra pixel, if any, on the bottom / right)."""
    h, w = x.shape[-2:]
    pad_h = (math.ceil(h / stride) - 1) * stride + kernel - h
    pad_w = (math.ceil(w / stride) - 1) * stride + kernel - w
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))


class StdConv(nn.Conv2d):
    """Convolution with weight standardisation and 'SAME' padding."""

    def forward(self, x):
        w = self.weight - self.weight.mean((1, 2, 3), keepdim=True)
        w = w / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(same_pad(x, self.kernel_size[0], self.stride[0]), w, self.bias, self.stride)


class Bottleneck(nn.Module):
    def __init__(self, inplanes: int, outplanes: int):
        super().__init__()
        self.conv1, self.gn1 = StdConv(inplanes, inplanes, 1, bias=False), nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv2, self.gn2 = StdConv(inplanes, inplanes, 3, bias=False), nn.GroupNorm(32, inplanes, eps=1e-4)
        self.conv3, self.gn3 = StdConv(inplanes, outplanes, 1, bias=False), nn.GroupNorm(32, outplanes, eps=1e-4)
        self.conv_proj = StdConv(inplanes, outplanes, 1, bias=False)
        self.gn_proj = nn.GroupNorm(32, outplanes, eps=1e-4)

    def forward(self, x):
        identity = self.gn_proj(self.conv_proj(x))
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        return F.relu(self.gn3(self.conv3(x)) + identity)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.out = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask):
        q, k, v = (rearrange(f(x), "b n (h d) -> b h n d", h=self.heads) for f in (self.query, self.key, self.value))
        attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        pair = (mask[:, None, :, None] * mask[:, None, None, :]) == 0  # padding on either side
        attn = attn.masked_fill(pair, -1e3).softmax(-1)
        return self.out(rearrange(attn @ v, "b h n d -> b n (h d)"))


class Block(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int):
        super().__init__()
        self.norm1, self.attention = nn.LayerNorm(dim, eps=1e-6), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), Mlp(dim, mlp_dim)

    def forward(self, x, mask):
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PositionEmbs(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, n, dim))


class ScaleEmbs(nn.Module):
    def __init__(self, n: int, dim: int):
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(n, dim))


class Encoder(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, heads: int, layers: int, scales: int, grid: int):
        super().__init__()
        self.posembed_input, self.scaleembed_input = PositionEmbs(grid * grid, dim), ScaleEmbs(scales, dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.encoder_norm = nn.LayerNorm(dim, eps=1e-6)
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": Block(dim, mlp_dim, heads) for i in range(layers)})

    def forward(self, x, spatial, scale, mask):
        x = x + self.posembed_input.position_emb[0][spatial] + self.scaleembed_input.scale_emb[scale]
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


def hashed_positions(grid: int, count_h: int, count_w: int) -> torch.Tensor:
    """Each patch's index in a ``grid`` x ``grid`` table: rows and columns mapped nearest-neighbour."""
    rows = torch.arange(count_h) * grid // count_h
    cols = torch.arange(count_w) * grid // count_w
    return (rows[:, None] * grid + cols[None, :]).reshape(-1)


class MUSIQ(nn.Module):
    """pyiqa's MUSIQ with ``num_class=1`` (SPAQ / KonIQ checkpoints); ``forward`` takes one image
    (1, 3, h, w) in [0, 1] and returns its score (1,)."""

    def __init__(
        self,
        hidden_size=384,
        mlp_dim=1152,
        num_heads=6,
        num_layers=14,
        patch_size=32,
        grid=10,
        longer_side_lengths=(224, 384),
    ):
        super().__init__()
        self.patch, self.grid, self.longer = patch_size, grid, sorted(longer_side_lengths)
        self.conv_root = StdConv(3, RESNET_TOKEN_DIM, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, RESNET_TOKEN_DIM, eps=1e-6)
        self.block1 = Bottleneck(RESNET_TOKEN_DIM, RESNET_TOKEN_DIM * 4)
        self.embedding = nn.Linear(RESNET_TOKEN_DIM * 4 * (patch_size // 4) ** 2, hidden_size)
        self.transformer_encoder = Encoder(hidden_size, mlp_dim, num_heads, num_layers, len(self.longer) + 1, grid)
        self.head = nn.Linear(hidden_size, 1)

    def patches(self, x: torch.Tensor, scale_id: int, max_len: int | None):
        """(patches (n, 3 * p * p), spatial index, scale index, mask) of one scale, padded to ``max_len``."""
        p = self.patch
        h, w = x.shape[-2:]
        ch, cw = math.ceil(h / p), math.ceil(w / p)
        cols = rearrange(F.unfold(same_pad(x, p, p), p, stride=p), "1 d n -> n d")
        spatial = hashed_positions(self.grid, ch, cw)
        mask = torch.ones(len(cols), dtype=torch.long)
        if max_len is not None:
            pad = max(max_len - len(cols), 0)
            cols, spatial, mask = (
                F.pad(t, (0, 0, 0, pad)) if t.ndim == 2 else F.pad(t, (0, pad))
                for t in (cols[:max_len], spatial[:max_len], mask[:max_len])
            )
        return cols, spatial, (scale_id * mask).long(), mask  # padding: position 0, scale 0, mask 0

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image - 0.5) * 2
        h, w = x.shape[-2:]
        scales = []
        for i, side in enumerate(self.longer):
            r = side / max(h, w)
            resized = F.interpolate(x, (round(h * r), round(w * r)), mode="bicubic", align_corners=False)
            scales.append(self.patches(resized, i, math.ceil(side / self.patch) ** 2))
        scales.append(self.patches(x, len(self.longer), None))
        cols, spatial, scale, mask = (torch.cat(t)[None] for t in zip(*scales, strict=True))
        t = rearrange(cols[0], "n (c h w) -> n c h w", c=3, h=self.patch)
        t = self.block1(F.max_pool2d(same_pad(F.relu(self.gn_root(self.conv_root(t))), 3, 2), 3, 2))
        t = rearrange(t, "n c h w -> 1 n (h w c)")  # TensorFlow's channel-last order
        x = self.transformer_encoder(self.embedding(t), spatial.long(), scale.long(), mask)
        return self.head(x[:, 0])[:, 0]


def load_musiq(path, device: str = "cpu", **arch) -> MUSIQ:
    """A MUSIQ from a pyiqa state dict file (a ``module.`` prefix and a ``params`` wrapper tolerated)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("params", state)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if not arch:  # the sizes from the checkpoint (6 heads, pyiqa's default)
        arch = {
            "hidden_size": state["head.weight"].shape[1],
            "mlp_dim": state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0],
            "num_layers": sum(k.endswith("norm1.weight") for k in state),
        }
    model = MUSIQ(**arch)
    model.load_state_dict(state)
    return model.eval().to(device)
