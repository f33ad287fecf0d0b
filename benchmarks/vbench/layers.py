"""Layers the ported VBench models share."""

from __future__ import annotations

from torch import nn


class Mlp(nn.Module):
    """A ViT block's feed-forward, fc2(GELU(fc1(x))), hidden width 4 x dim unless given; `fc1` / `fc2`
    are the checkpoints' own names (UMT, MUSIQ, Tag2Text's Swin, GRiT's ViTDet)."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 4 * dim
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))
