"""AMT-S (Li et al., CVPR 2023), the frame interpolator of VBench's motion smoothness, from a local
``amt-s.pth``.

Modules and names follow VBench's copy of AMT (``vbench/third_party/amt/networks/AMT-S.py`` and its
blocks), so ``amt-s.pth`` (Hugging Face lalala125/AMT; VBench keeps it in
``~/.cache/vbench/amt_model/``) loads as it is from ``--weights DIR/amt-s.pth`` or
``DIR/amt_model/amt-s.pth``. Inference as VBench runs it on CPU (no down-scaling): frames in
[0, 1], padded (replicate, centred) to a multiple of 16, the midpoint (t = 1/2) predicted,
unpadded and converted back to uint8 by truncation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .raft import MIN_SIDE, bilinear_sampler, coords_grid
from .scorers import Unavailable

AMT_FILES = ("amt-s.pth", "amt_model/amt-s.pth")
CHANNELS, SKIP, NUM_FLOWS, RADIUS, LEVELS = (20, 32, 44, 56), 20, 3, 3, 4


def resize(x, scale_factor):
    return F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward warp with a pixel flow (border padding, align_corners=True)."""
    b, _, h, w = flow.shape
    xx = torch.linspace(-1.0, 1.0, w).view(1, 1, 1, w).expand(b, -1, h, -1)
    yy = torch.linspace(-1.0, 1.0, h).view(1, 1, h, 1).expand(b, -1, -1, w)
    grid = torch.cat([xx, yy], 1).to(img)
    flow = torch.cat([flow[:, :1] / ((w - 1.0) / 2.0), flow[:, 1:2] / ((h - 1.0) / 2.0)], 1)
    return F.grid_sample(
        img, (grid + flow).permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=True
    )


def convrelu(cin, cout, k=3, stride=1, padding=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, padding), nn.PReLU(cout))


class Bottleneck(nn.Module):
    """RAFT's small-encoder bottleneck block with instance norm."""

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes // 4, 1)
        self.conv2 = nn.Conv2d(planes // 4, planes // 4, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(planes // 4, planes, 1)
        self.norm1, self.norm2 = nn.InstanceNorm2d(planes // 4), nn.InstanceNorm2d(planes // 4)
        self.norm3 = nn.InstanceNorm2d(planes)
        self.downsample = None
        if stride != 1:
            self.norm4 = nn.InstanceNorm2d(planes)
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride=stride), self.norm4)

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm3(self.conv3(F.relu(self.norm2(self.conv2(y))))))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class SmallEncoder(nn.Module):
    def __init__(self, output_dim: int = 84):
        super().__init__()
        self.conv1, self.norm1 = nn.Conv2d(3, 32, 7, stride=2, padding=3), nn.InstanceNorm2d(32)
        self.layer1 = nn.Sequential(Bottleneck(32, 32), Bottleneck(32, 32))
        self.layer2 = nn.Sequential(Bottleneck(32, 64, 2), Bottleneck(64, 64))
        self.layer3 = nn.Sequential(Bottleneck(64, 96, 2), Bottleneck(96, 96))
        self.conv2 = nn.Conv2d(96, output_dim, 1)

    def forward(self, x):
        return self.conv2(self.layer3(self.layer2(self.layer1(F.relu(self.norm1(self.conv1(x)))))))


class ResBlock(nn.Module):
    """IFRNet's residual block: the last ``side`` channels get their own convolutions."""

    def __init__(self, ch: int, side: int):
        super().__init__()
        self.side = side
        self.conv1, self.conv2 = convrelu(ch, ch), convrelu(side, side)
        self.conv3, self.conv4 = convrelu(ch, ch), convrelu(side, side)
        self.conv5, self.prelu = nn.Conv2d(ch, ch, 3, 1, 1), nn.PReLU(ch)

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv3(torch.cat([out[:, : -self.side], self.conv2(out[:, -self.side :])], 1))
        out = self.conv5(torch.cat([out[:, : -self.side], self.conv4(out[:, -self.side :])], 1))
        return self.prelu(x + out)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        prev = 3
        for i, ch in enumerate(CHANNELS, 1):
            self.register_module(f"pyramid{i}", nn.Sequential(convrelu(prev, ch, 3, 2, 1), convrelu(ch, ch)))
            prev = ch

    def forward(self, x):
        feats = []
        for i in range(len(CHANNELS)):
            x = getattr(self, f"pyramid{i + 1}")(x)
            feats.append(x)
        return feats


class InitDecoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = nn.Sequential(
            convrelu(cin * 2 + 1, cin * 2), ResBlock(cin * 2, SKIP), nn.ConvTranspose2d(cin * 2, cout + 4, 4, 2, 1)
        )

    def forward(self, f0, f1, embt):
        out = self.convblock(torch.cat([f0, f1, embt.repeat(1, 1, *f0.shape[2:])], 1))
        return out[:, :2], out[:, 2:4], out[:, 4:]


class IntermediateDecoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblock = nn.Sequential(
            convrelu(cin * 3 + 4, cin * 3), ResBlock(cin * 3, SKIP), nn.ConvTranspose2d(cin * 3, cout + 4, 4, 2, 1)
        )

    def forward(self, ft, f0, f1, flow0, flow1):
        out = self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        return (out[:, :2] + 2.0 * resize(flow0, 2.0), out[:, 2:4] + 2.0 * resize(flow1, 2.0), out[:, 4:])


class MultiFlowDecoder(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.convblock = nn.Sequential(
            convrelu(cin * 3 + 4, cin * 3), ResBlock(cin * 3, SKIP), nn.ConvTranspose2d(cin * 3, 8 * NUM_FLOWS, 4, 2, 1)
        )

    def forward(self, ft, f0, f1, flow0, flow1):
        n = NUM_FLOWS
        out = self.convblock(torch.cat([ft, warp(f0, flow0), warp(f1, flow1), flow0, flow1], 1))
        d0, d1, mask, res = out.split([2 * n, 2 * n, n, 3 * n], 1)
        return (
            d0 + 2.0 * resize(flow0, 2.0).repeat(1, n, 1, 1),
            d1 + 2.0 * resize(flow1, 2.0).repeat(1, n, 1, 1),
            torch.sigmoid(mask),
            res,
        )


class UpdateBlock(nn.Module):
    """AMT's small update block (hidden 76, flow 20, corr 64, fc 68) at 1/``scale`` of 1/8."""

    def __init__(self, cdim: int, scale: int | None = None):
        super().__init__()
        self.scale = scale
        self.convc1 = nn.Conv2d(2 * LEVELS * (2 * RADIUS + 1) ** 2, 64, 1)
        self.convf1, self.convf2 = nn.Conv2d(4, 40, 7, padding=3), nn.Conv2d(40, 20, 3, padding=1)
        self.conv = nn.Conv2d(64 + 20, 68, 3, padding=1)

        def two(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, 76, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(76, cout, 3, padding=1))

        self.gru, self.feat_head, self.flow_head = two(68 + 4 + cdim, 76), two(76, cdim), two(76, 4)

    def forward(self, net, flow, corr):
        lrelu = lambda x: F.leaky_relu(x, 0.1)  # noqa: E731
        net = resize(net, 1 / self.scale) if self.scale else net
        flo = lrelu(self.convf2(lrelu(self.convf1(flow))))
        inp = lrelu(self.conv(torch.cat([lrelu(self.convc1(corr)), flo], 1)))
        out = self.gru(torch.cat([inp, flow, net], 1))
        d_net, d_flow = self.feat_head(out), self.flow_head(out)
        if self.scale:
            d_net, d_flow = resize(d_net, self.scale), self.scale * resize(d_flow, self.scale)
        return d_net, d_flow


class BidirCorr:
    """All-pairs correlation and its transpose, pooled into LEVELS, looked up around two sets of
    coordinates (RAFT's window order)."""

    def __init__(self, f0, f1):
        b, d, h, w = f0.shape
        corr = ((f0.flatten(2).transpose(1, 2) @ f1.flatten(2)) / d**0.5).view(b, h, w, 1, h, w)
        pyr, pyr_t = [corr.reshape(b * h * w, 1, h, w)], [corr.permute(0, 4, 5, 3, 1, 2).reshape(b * h * w, 1, h, w)]
        for _ in range(LEVELS - 1):
            pyr.append(F.avg_pool2d(pyr[-1], 2, stride=2))
            pyr_t.append(F.avg_pool2d(pyr_t[-1], 2, stride=2))
        self.pyr, self.pyr_t = pyr, pyr_t

    def __call__(self, coords0, coords1):
        line = torch.linspace(-RADIUS, RADIUS, 2 * RADIUS + 1)
        delta = torch.stack(torch.meshgrid(line, line, indexing="ij"), -1).view(1, 2 * RADIUS + 1, 2 * RADIUS + 1, 2)
        outs = []
        for pyr, coords in ((self.pyr, coords0), (self.pyr_t, coords1)):
            c = coords.permute(0, 2, 3, 1)
            b, h, w, _ = c.shape
            lv = [
                bilinear_sampler(corr, c.reshape(b * h * w, 1, 1, 2) / 2**i + delta).view(b, h, w, -1)
                for i, corr in enumerate(pyr)
            ]
            outs.append(torch.cat(lv, -1).permute(0, 3, 1, 2).contiguous().float())
        return outs


class AMTS(nn.Module):
    """VBench's AMT-S; ``forward(img0, img1, embt)`` on (b, 3, h, w) frames in [0, 1] (h, w
    multiples of 16) returns the interpolated frame at time ``embt`` (b, 1, 1, 1), clamped to [0, 1]."""

    def __init__(self):
        super().__init__()
        self.feat_encoder, self.encoder = SmallEncoder(84), Encoder()
        self.decoder4 = InitDecoder(CHANNELS[3], CHANNELS[2])
        self.decoder3 = IntermediateDecoder(CHANNELS[2], CHANNELS[1])
        self.decoder2 = IntermediateDecoder(CHANNELS[1], CHANNELS[0])
        self.decoder1 = MultiFlowDecoder(CHANNELS[0])
        self.update4, self.update3, self.update2 = UpdateBlock(44), UpdateBlock(32, 2), UpdateBlock(20, 4)
        self.comb_block = nn.Sequential(
            nn.Conv2d(3 * NUM_FLOWS, 6 * NUM_FLOWS, 3, 1, 1),
            nn.PReLU(6 * NUM_FLOWS),
            nn.Conv2d(6 * NUM_FLOWS, 3, 3, 1, 1),
        )

    def forward(self, img0, img1, embt):
        mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
        img0, img1 = img0 - mean, img1 - mean
        b, _, h, w = img0.shape
        coord = coords_grid(b, h // 8, w // 8).to(img0.device)
        fmap0, fmap1 = self.feat_encoder(torch.cat([img0, img1])).chunk(2)
        corr_fn = BidirCorr(fmap0, fmap1)
        f0, f1 = self.encoder(img0), self.encoder(img1)

        def refine(update, ft, flow0, flow1, down):
            s0, s1 = (flow0, flow1) if down == 1 else (resize(flow0, 1 / down) / down, resize(flow1, 1 / down) / down)
            corr = torch.cat(corr_fn(coord + s1 / embt, coord + s0 / (1.0 - embt)), 1)
            d_ft, d_flow = update(ft, torch.cat([s0, s1], 1), corr)
            d0, d1 = d_flow.chunk(2, 1)
            return ft + d_ft, flow0 + d0, flow1 + d1

        flow0, flow1, ft = self.decoder4(f0[3], f1[3], embt)
        ft, flow0, flow1 = refine(self.update4, ft, flow0, flow1, 1)
        flow0, flow1, ft = self.decoder3(ft, f0[2], f1[2], flow0, flow1)
        ft, flow0, flow1 = refine(self.update3, ft, flow0, flow1, 2)
        flow0, flow1, ft = self.decoder2(ft, f0[1], f1[1], flow0, flow1)
        ft, flow0, flow1 = refine(self.update2, ft, flow0, flow1, 4)
        flow0, flow1, mask, res = self.decoder1(ft, f0[0], f1[0], flow0, flow1)
        return combine(self.comb_block, img0, img1, flow0, flow1, mask, res, mean).clamp(0, 1)


def combine(comb_block, img0, img1, flow0, flow1, mask, res, mean):
    """Warp both frames with each of the NUM_FLOWS flow pairs, blend by ``mask``, add the residual
    and the mean; average the candidates plus ``comb_block``'s correction."""
    b, _, h, w = flow0.shape
    n = NUM_FLOWS
    warp0 = warp(img0.repeat_interleave(n, 0), flow0.reshape(b * n, 2, h, w))
    warp1 = warp(img1.repeat_interleave(n, 0), flow1.reshape(b * n, 2, h, w))
    m = mask.reshape(b * n, 1, h, w)
    warps = m * warp0 + (1 - m) * warp1 + mean.repeat_interleave(n, 0) + res.reshape(b * n, 3, h, w)
    warps = warps.reshape(b, n, 3, h, w)
    return warps.mean(1) + comb_block(warps.view(b, -1, h, w))


def load_amt(path, device: str = "cpu") -> AMTS:
    """AMT-S from VBench's checkpoint (a dict whose ``state_dict`` holds the weights)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = AMTS()
    model.load_state_dict(state.get("state_dict", state))
    return model.eval().to(device)


def interpolate(model: AMTS, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """VBench's midpoint of two uint8 RGB frames: /255, pad to 16 (replicate), predict t = 1/2,
    unpad, *255 truncated to uint8."""
    h, w = a.shape[:2]
    ph, pw = (-h) % 16, (-w) % 16
    if min(h + ph, w + pw) < MIN_SIDE:  # the same correlation pyramid as RAFT's
        raise Unavailable(
            f"AMT-S needs frames of at least {MIN_SIDE} px once padded, these are {h}x{w}",
            "evaluate larger videos, or leave amt-s.pth out of --weights for the flow proxy",
        )
    pad = [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]
    device = next(model.parameters()).device
    x0, x1 = (
        F.pad(
            torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float() / 255.0, pad, mode="replicate"
        ).to(device)
        for f in (a, b)
    )
    with torch.no_grad():
        mid = model(x0, x1, torch.full((1, 1, 1, 1), 0.5, device=device))
    mid = mid[..., pad[2] : pad[2] + h, pad[0] : pad[0] + w]
    return (mid * 255.0)[0].permute(1, 2, 0).cpu().numpy().clip(0, 255).astype(np.uint8)
