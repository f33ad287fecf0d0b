"""UMT-L/16 (Li et al., Unmasked Teacher, ICCV 2023) fine-tuned on Kinetics-400, the action
classifier of VBench's human action, from a local ``l16_ptk710_ftk710_ftk400_f16_res224.pth``.

Modules and names follow VBench's copy (``vbench/third_party/umt/models/modeling_finetune.py``,
``vit_large_patch16_224`` with 16 frames, tubelet 1, mean pooling, 400 classes), so the checkpoint
(Hugging Face OpenGVLab/VBench_Used_Models; VBench keeps it in ``~/.cache/vbench/umt_model/``, a
plain state dict) loads from ``--weights DIR/l16_ptk710_ftk710_ftk400_f16_res224.pth`` or
``DIR/umt_model/...``. VBench loads it with ``strict=False``; here every weight must be present
except ``pos_embed``, which VBench's model computes when the file has none: the sine-cosine table of
8 frames x 14 x 14 patches, interpolated to the model's grid (bicubic) and frames (linear).

The ViT: a (1, 16, 16) Conv3d patch embedding of 224 x 224 frames, the position table added to
every (frame, patch) token, pre-norm blocks (LayerNorm eps 1e-6, q and v biases, exact GELU), the
mean token through ``fc_norm`` and the linear ``head``. Width, depth, frames and classes are read
from the checkpoint; heads are width / 64 (ViT-L: 16).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import Mlp

UMT_FILES = ("l16_ptk710_ftk710_ftk400_f16_res224.pth", "umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth")
IMAGE_SIZE, RESIZE = 224, 256  # VBench: Resize(256, bilinear) then CenterCrop(224)
FRAMES = 16  # VBench's all_frames (used when the checkpoint has no pos_embed to read it from)
TABLE_FRAMES, TABLE_GRID = 8, 14  # the pretraining position table VBench interpolates from
HEAD_DIM = 64
TOP_K, THRESHOLD = 5, 0.85  # VBench: a class counts if it is in the top 5 with sigmoid >= 0.85 (4 decimals)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) transformer position table: sin(p / 10000^(2i/dim)) on even dims, cos on odd."""
    angle = torch.arange(n, dtype=torch.float64)[:, None] / 10000 ** (2 * (torch.arange(dim) // 2) / dim)
    table = angle.clone()
    table[:, 0::2], table[:, 1::2] = angle[:, 0::2].sin(), angle[:, 1::2].cos()
    return table.float()


def position_table(dim: int, frames: int, grid: int) -> torch.Tensor:
    """VBench's ``get_sinusoid_encoding_table``: the 8 x 14 x 14 table resized to ``grid`` (bicubic)
    and then ``frames`` (linear), as (1, frames * grid * grid, dim) in (t h w) order."""
    table = rearrange(
        sinusoid_table(TABLE_FRAMES * TABLE_GRID**2, dim), "(t h w) d -> t d h w", t=TABLE_FRAMES, h=TABLE_GRID
    )
    if grid != TABLE_GRID:
        table = F.interpolate(table, size=(grid, grid), mode="bicubic", align_corners=False)
    if frames != TABLE_FRAMES:
        table = rearrange(table, "t d h w -> (h w) d t")
        table = rearrange(F.interpolate(table, size=frames, mode="linear"), "(h w) d t -> t d h w", h=grid)
    return rearrange(table, "t d h w -> 1 (t h w) d")


class Attention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.heads = dim // HEAD_DIM
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(dim)), nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])  # no key bias
        q, k, v = rearrange(
            F.linear(x, self.qkv.weight, bias), "b n (three h e) -> three b h n e", three=3, h=self.heads
        )
        return self.proj(rearrange(F.scaled_dot_product_attention(q, k, v), "b h n e -> b n (h e)"))


class Block(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = Attention(dim), Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UMT(nn.Module):
    """VBench's UMT ``VisionTransformer`` with mean pooling: (b, 3, t, 224, 224) -> (b, classes) logits."""

    def __init__(self, dim: int, depth: int, classes: int, frames: int = FRAMES, patch: int = 16):
        super().__init__()
        self.patch_embed = nn.Module()  # VBench's PatchEmbed: only its ``proj`` holds weights
        self.patch_embed.proj = nn.Conv3d(3, dim, (1, patch, patch), (1, patch, patch))
        self.pos_embed = nn.Parameter(position_table(dim, frames, IMAGE_SIZE // patch))
        self.blocks = nn.ModuleList(Block(dim) for _ in range(depth))
        self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, classes)

    @property
    def frames(self) -> int:
        grid = IMAGE_SIZE // self.patch_embed.proj.weight.shape[-1]
        return self.pos_embed.shape[1] // grid**2

    def forward(self, video):
        x = rearrange(self.patch_embed.proj(video), "b d t h w -> b (t h w) d") + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.fc_norm(x.mean(1)))


def load_umt(path, device: str = "cpu") -> UMT:
    """UMT from VBench's state dict file; its frame count from ``pos_embed`` (else VBench's 16)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    proj = state["patch_embed.proj.weight"]  # (dim, 3, 1, patch, patch)
    grid = IMAGE_SIZE // proj.shape[-1]
    frames = state["pos_embed"].shape[1] // grid**2 if "pos_embed" in state else FRAMES
    model = UMT(
        proj.shape[0],
        len({k.split(".")[1] for k in state if k.startswith("blocks.")}),
        state["head.weight"].shape[0],
        frames,
        proj.shape[-1],
    )
    missing, _ = model.load_state_dict(state, strict=False)  # VBench: strict=False (extra keys ignored)
    missing = [k for k in missing if k != "pos_embed"]
    if missing:
        raise KeyError(f"{path} is not VBench's UMT checkpoint: it lacks {', '.join(missing[:5])}")
    return model.eval().to(device)


@lru_cache
def kinetics_classes() -> tuple[str, ...]:
    """Kinetics-400 class names by index, lower case (VBench's ``kinetics_400_categories.txt``)."""
    rows = [
        line.split("\t") for line in (Path(__file__).parent / "kinetics_400_categories.txt").read_text().splitlines()
    ]
    names = {int(index): name.strip().lower() for name, index in rows}
    return tuple(names[i] for i in range(len(names)))


def action_label(prompt: str) -> str:
    """The action VBench reads from a human-action file name ``A person is {action}-{i}.mp4``."""
    return prompt.lower().split("-")[0].split("person is ")[-1].split("_")[0]


def predicted_actions(logits: torch.Tensor, classes=None) -> list[str]:
    """VBench's rule on one video's (classes,) logits: the top-5 sigmoid probabilities, rounded to
    4 decimals, that are >= 0.85, as class names."""
    classes = classes or kinetics_classes()
    probs, idx = torch.sigmoid(logits.float()).topk(TOP_K)
    return [classes[i] for p, i in zip(probs.tolist(), idx.tolist(), strict=True) if round(p, 4) >= THRESHOLD]
