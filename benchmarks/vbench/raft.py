"""RAFT (Teed & Deng, ECCV 2020), the optical flow VBench uses for dynamic degree and its static
filter, from a local ``raft-things.pth``.

Modules and names follow VBench's copy of RAFT (``vbench/third_party/RAFT/core``, the full model:
128-d hidden and context, 4 correlation levels of radius 4), so ``raft-things.pth`` (RAFT's
``models.zip``; VBench keeps it in ``~/.cache/vbench/raft_model/models/``) loads as it is from
``--weights DIR/raft-things.pth`` or ``DIR/raft_model/models/raft-things.pth``. Inference as VBench
runs it: frames on 0..255 padded (replicate) to a multiple of 8, 20 refinement iterations, the
convex-upsampled flow at the padded size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .scorers import Unavailable

RAFT_FILES = ("raft-things.pth", "raft_model/models/raft-things.pth")
ITERS = 20  # VBench: model(image1, image2, iters=20, test_mode=True)
MIN_SIDE = 128  # padded: 4 correlation levels from 1/8 resolution; smaller frames give NaN or fail, in VBench too


def _norm(kind: str, planes: int) -> nn.Module:
    return {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}[kind](planes)


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1, self.norm2 = _norm(norm, planes), _norm(norm, planes)
        self.downsample = None
        if stride != 1:
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3)

    def forward(self, x):
        y = F.relu(self.norm2(self.conv2(F.relu(self.norm1(self.conv1(x))))))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class BasicEncoder(nn.Module):
    """7x7 stem, three stages of two residual blocks (64, 96, 128 channels), 1/8 resolution."""

    def __init__(self, output_dim: int, norm: str):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(3, 64, 7, stride=2, padding=3), _norm(norm, 64)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64, norm), ResidualBlock(64, 64, norm))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, norm, 2), ResidualBlock(96, 96, norm))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, norm, 2), ResidualBlock(128, 128, norm))
        self.conv2 = nn.Conv2d(128, output_dim, 1)

    def forward(self, x):
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class SepConvGRU(nn.Module):
    def __init__(self, hidden: int = 128, inp: int = 256):
        super().__init__()
        for axis, k, p in (("1", (1, 5), (0, 2)), ("2", (5, 1), (2, 0))):
            for gate in "zrq":
                setattr(self, f"conv{gate}{axis}", nn.Conv2d(hidden + inp, hidden, k, padding=p))

    def forward(self, h, x):
        for axis in "12":
            hx = torch.cat([h, x], 1)
            z = torch.sigmoid(getattr(self, f"convz{axis}")(hx))
            r = torch.sigmoid(getattr(self, f"convr{axis}")(hx))
            q = torch.tanh(getattr(self, f"convq{axis}")(torch.cat([r * h, x], 1)))
            h = (1 - z) * h + z * q
        return h


class MotionEncoder(nn.Module):
    def __init__(self, corr_planes: int):
        super().__init__()
        self.convc1, self.convc2 = nn.Conv2d(corr_planes, 256, 1), nn.Conv2d(256, 192, 3, padding=1)
        self.convf1, self.convf2 = nn.Conv2d(2, 128, 7, padding=3), nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow, corr):
        cor = F.relu(self.convc2(F.relu(self.convc1(corr))))
        flo = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([cor, flo], 1))), flow], 1)


class FlowHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(128, 256, 3, padding=1), nn.Conv2d(256, 2, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self, corr_planes: int):
        super().__init__()
        self.encoder, self.gru, self.flow_head = MotionEncoder(corr_planes), SepConvGRU(), FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], 1))
        return net, 0.25 * self.mask(net), self.flow_head(net)


def coords_grid(b: int, h: int, w: int) -> torch.Tensor:
    """(b, 2, h, w) pixel coordinates, x first."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([x, y]).float()[None].repeat(b, 1, 1, 1)


def bilinear_sampler(img: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """grid_sample at pixel coordinates (x, y) (align_corners=True)."""
    h, w = img.shape[-2:]
    x, y = coords.split([1, 1], dim=-1)
    return F.grid_sample(img, torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], -1), align_corners=True)


class CorrPyramid:
    """All-pairs correlation of two feature maps, average-pooled into ``levels``, looked up in a
    (2 r + 1)^2 window around each pixel's current match."""

    def __init__(self, f1: torch.Tensor, f2: torch.Tensor, levels: int = 4, radius: int = 4):
        b, d, h, w = f1.shape
        corr = (f1.flatten(2).transpose(1, 2) @ f2.flatten(2)) / d**0.5  # (b, h w, h w)
        corr = corr.reshape(b * h * w, 1, h, w)
        self.radius, self.pyramid = radius, [corr]
        for _ in range(levels - 1):
            self.pyramid.append(F.avg_pool2d(self.pyramid[-1], 2, stride=2))

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        r = self.radius
        coords = coords.permute(0, 2, 3, 1)
        b, h, w, _ = coords.shape
        line = torch.linspace(-r, r, 2 * r + 1)
        delta = torch.stack(torch.meshgrid(line, line, indexing="ij"), -1).view(
            1, 2 * r + 1, 2 * r + 1, 2
        )  # RAFT's order
        out = [
            bilinear_sampler(corr, coords.reshape(b * h * w, 1, 1, 2) / 2**i + delta).view(b, h, w, -1)
            for i, corr in enumerate(self.pyramid)
        ]
        return torch.cat(out, -1).permute(0, 3, 1, 2).contiguous().float()


class RAFT(nn.Module):
    """VBench's RAFT (the full model); ``forward(image1, image2)`` on (b, 3, h, w) 0..255 frames
    with h, w multiples of 8 returns the upsampled flow (b, 2, h, w) after ``iters`` updates."""

    def __init__(self):
        super().__init__()
        self.fnet, self.cnet = BasicEncoder(256, "instance"), BasicEncoder(256, "batch")
        self.update_block = UpdateBlock(4 * 9**2)

    def upsample(self, flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Convex combination of each 3x3 neighbourhood: 1/8 resolution -> full."""
        b, _, h, w = flow.shape
        mask = mask.view(b, 1, 9, 8, 8, h, w).softmax(2)
        up = F.unfold(8 * flow, [3, 3], padding=1).view(b, 2, 9, 1, 1, h, w)
        return (mask * up).sum(2).permute(0, 1, 4, 2, 5, 3).reshape(b, 2, 8 * h, 8 * w)

    def forward(self, image1, image2, iters: int = ITERS):
        image1, image2 = 2 * (image1 / 255.0) - 1.0, 2 * (image2 / 255.0) - 1.0
        f1, f2 = self.fnet(torch.cat([image1, image2])).float().chunk(2)
        corr = CorrPyramid(f1, f2)
        net, inp = self.cnet(image1).split([128, 128], 1)
        net, inp = torch.tanh(net), F.relu(inp)
        b, _, h, w = image1.shape
        coords0 = coords_grid(b, h // 8, w // 8).to(image1.device)
        coords1 = coords0.clone()
        for _ in range(iters):
            net, mask, delta = self.update_block(net, inp, corr(coords1), coords1 - coords0)
            coords1 = coords1 + delta
        return self.upsample(coords1 - coords0, mask)


def load_raft(path, device: str = "cpu") -> RAFT:
    """RAFT from a state dict file (DataParallel's ``module.`` prefix stripped, as VBench does)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = RAFT()
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return model.eval().to(device)


class RaftFlow:
    """Flow backend for the dynamic-degree and static-filter accumulators: full-resolution RGB
    frames, padded (replicate, centred) to a multiple of 8 as VBench's ``InputPadder``; the flow is
    at the padded size and the thresholds use the frame's own min(H, W), as VBench's are."""

    def __init__(self, load):
        self.load = load  # () -> RAFT, shared and loaded on first use

    def prepare(self, frame: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if min(h + ph, w + pw) < MIN_SIDE:
            raise Unavailable(
                f"RAFT needs frames of at least {MIN_SIDE} px once padded, these are {h}x{w}",
                "evaluate larger videos, or leave raft-things.pth out of --weights for the flow proxy",
            )
        return F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate"), min(h, w)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
        model = self.load()
        device = next(model.parameters()).device
        with torch.no_grad():
            return model(a.to(device), b.to(device))[0].permute(1, 2, 0).cpu().numpy()

    def magnitudes(
        self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor | None = None, c_first: bool = False
    ) -> np.ndarray:
        """|flow| per pixel from ``a`` to ``b``, as VBench takes it (RAFT's flow is trusted: the
        third frame ``c``, which the classical flow's tests use, is ignored)."""
        return np.sqrt((self(a, b) ** 2).sum(-1))
