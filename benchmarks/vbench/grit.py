"""GRiT (Wu et al., "GRiT: A Generative Region-to-text Transformer", 2022), the detector behind
VBench's object class, multiple objects, colour and spatial relationship, as a pure-torch
inference port of VBench's copy (``vbench/third_party/grit_src``: detectron2 + CenterNet2 + GRiT),
loaded from a local ``grit_b_densecap_objectdet.pth`` (Hugging Face OpenGVLab/VBench_Used_Models;
VBench keeps it in ``~/.cache/vbench/grit_model/``; a detectron2 checkpoint, ``{"model": state}``).

The path VBench runs (``image_dense_captions.setup_cfg`` on ``GRiT_B_DenseCap_ObjectDet.yaml``):

- input: the frame as given, RGB float 0..255; VBench's ``SingleDefaultPredictor`` computes the
  test resize and then discards it, so there is none. Normalised with ImageNet's mean/std on the
  0..255 scale, zero-padded at the bottom/right to a multiple of 32.
- backbone: ViT-B/16 (ViTDet: windowed attention of 14 x 14 in blocks 0,1,3,4,6,7,9,10, global
  in 2,5,8,11, decomposed relative positions, the 14 x 14 pretraining position table resized
  bicubic) and GRiT's simple pyramid: p3 (deconv x2), p4, p5 (max-pool), each 1x1 + 3x3 convs
  with channel LayerNorms, p6 / p7 from p5 (3x3 stride-2 convs, ReLU between).
- proposals: CenterNet's class-agnostic heat map on p3..p7 (4 conv+GN+ReLU, ltrb regression
  times the stride), points above 1e-4, the top 1000 per level, score sqrt(sigmoid), NMS 0.9,
  the best 256 (ties kept).
- boxes: three cascade stages (ROIAlignV2 7x7 on p3..p5 by box size, two FC 1024 + ReLU, a
  2-way softmax and class-agnostic deltas with weights (10,10,5,5), (20,20,10,10),
  (30,30,15,15)); score = sqrt(mean of the stages' foreground probabilities x proposal score);
  boxes from the last stage, clipped; score > 0.5, NMS 0.5, at most 256; empty boxes dropped.
- text: each box's 14x14 ROIAlign features through a 6-layer BERT decoder (post-norm, exact
  GELU; the box's 196 tokens attend to each other, the text to them and causally to itself),
  greedy (``BEAM_SIZE = 1``), at most 40 tokens, the previous token banned, begin token [CLS]
  for ObjectDet (a class name) and 104 for DenseCap (a phrase), decoded with bert-base-uncased's
  tokenizer (special tokens skipped).

VBench reads, per frame, ``(description, [int(x0), int(y0), int(x1), int(y1)], det_obj)`` for
each box: the description in the dimension's task, and ``det_obj`` the list of every box's
ObjectDet name (``meta_arch/grit.py`` runs the ROI heads a second time for ObjectDet; the boxes do
not depend on the task, so here they are computed once and only the text is decoded per task).
VBench's mask head and the ``text_decoder_det`` alias of the same decoder are not needed: their
keys may be in the file and are ignored. torchvision's ROIAlign and NMS are replaced by
:func:`roi_align` and :func:`nms` below. Sizes are read from the checkpoint, so smaller models in
the same layout load too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .layers import Mlp

GRIT_FILES = ("grit_b_densecap_objectdet.pth", "grit_model/grit_b_densecap_objectdet.pth")
TOKENIZER_DIRS = ("bert-base-uncased", "bert_base_uncased")  # a folder with bert-base-uncased's vocab.txt

PIXEL_MEAN, PIXEL_STD = (123.675, 116.280, 103.530), (58.395, 57.12, 57.375)  # RGB, 0..255
SIZE_DIVISIBILITY = 32
STRIDES = (8, 16, 32, 64, 128)  # p3..p7
ROI_LEVELS = (3, 5)  # the ROI heads pool from p3..p5
CANONICAL_SIZE, CANONICAL_LEVEL = 224, 4  # detectron2's box-to-level rule
PROPOSAL_THRESH, PRE_NMS_TOPK, PROPOSAL_NMS, POST_NMS_TOPK = 1e-4, 1000, 0.9, 256  # CENTERNET.*_TEST
SCORE_THRESH, NMS_THRESH, DETECTIONS = 0.5, 0.5, 256  # VBench's confidence 0.5; NMS_THRESH_TEST; DETECTIONS_PER_IMAGE
BOX_POOL, OBJECT_POOL = 7, 14
CASCADE_WEIGHTS = ((10.0, 10.0, 5.0, 5.0), (20.0, 20.0, 10.0, 10.0), (30.0, 30.0, 15.0, 15.0))
SCALE_CLAMP = math.log(1000.0 / 16)
MAX_TOKENS = 40  # begin token included
BEGIN_TOKENS = {"ObjectDet": 101, "DenseCap": 104}  # [CLS], and 103 + 1 for the second training task
END_TOKEN = 102  # [SEP]


# ---------------------------------------------------------------- torchvision ops in pure torch


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m) IoU of xyxy boxes (areas (x1 - x0)(y1 - y0), as torchvision)."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    wh = (torch.min(a[:, None, 2:], b[None, :, 2:]) - torch.max(a[:, None, :2], b[None, :, :2])).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, thresh: float, classes: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's (batched) NMS: indices kept, by decreasing score; a box is dropped when its IoU
    with a kept, higher-scoring box of the same class is > ``thresh``."""
    order = scores.argsort(descending=True, stable=True)
    iou = box_iou(boxes[order], boxes[order]).cpu()
    if classes is not None:
        iou = iou * (classes[order][:, None] == classes[order][None, :]).cpu()
    alive = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if alive[i]:
            alive[i + 1 :] &= ~(iou[i, i + 1 :] > thresh)  # a NaN IoU (empty boxes) suppresses nothing
    return order[alive.to(order.device)]


def roi_align(features: torch.Tensor, boxes: torch.Tensor, scale: float, size: int) -> torch.Tensor:
    """torchvision's ``roi_align(aligned=True, sampling_ratio=0)`` on one image: (c, h, w) features,
    (r, 4) xyxy boxes in image pixels -> (r, c, size, size).

    Each box, shifted by half a pixel (``x * scale - 0.5``), is cut into size x size bins; a bin is
    the mean of ceil(box side / size) x ceil(...) bilinear samples at its sub-bin centres (a box of
    side <= 0 gives 0s). A sample outside [-1, h] x [-1, w] is 0; inside, its coordinates are
    clamped to [0, h - 1] x [0, w - 1] (so one in [-1, 0] reads row 0 and one past the last row
    reads the last), which is ``grid_sample``'s border padding with aligned corners.
    """
    c, h, w = features.shape
    out = features.new_zeros(len(boxes), c, size, size)
    if len(boxes) == 0:
        return out
    x0, y0, x1, y1 = (boxes * scale - 0.5).unbind(1)
    grids = torch.stack([((y1 - y0) / size).ceil(), ((x1 - x0) / size).ceil()], 1).long().clamp(min=0)
    for gy, gx in grids.unique(dim=0).tolist():  # boxes sharing a sample grid are done together
        if gy == 0 or gx == 0:
            continue
        idx = ((grids[:, 0] == gy) & (grids[:, 1] == gx)).nonzero()[:, 0]
        ys = _sample_coords(y0[idx], y1[idx], size, gy)[:, :, None].expand(-1, -1, size * gx)
        xs = _sample_coords(x0[idx], x1[idx], size, gx)[:, None, :].expand(-1, size * gy, -1)
        valid = (ys >= -1) & (ys <= h) & (xs >= -1) & (xs <= w)
        grid = torch.stack([_normalise(xs, w), _normalise(ys, h)], -1)  # (n, size gy, size gx, 2) as (x, y)
        samples = F.grid_sample(
            features[None],
            rearrange(grid, "n p q two -> 1 (n p) q two"),
            mode="bilinear",
            padding_mode="border",
            align_corners=True,
        )
        samples = rearrange(samples[0], "c (n p) q -> n c p q", n=len(idx)) * valid[:, None]
        out[idx] = F.avg_pool2d(samples, (gy, gx))
    return out


def _sample_coords(lo: torch.Tensor, hi: torch.Tensor, size: int, grid: int) -> torch.Tensor:
    """(n, size * grid) sample positions: lo + (bin + (k + 0.5) / grid) * (hi - lo) / size."""
    steps = (torch.arange(size)[:, None] + (torch.arange(grid)[None, :] + 0.5) / grid).reshape(-1).to(lo)
    return lo[:, None] + steps[None, :] * ((hi - lo) / size)[:, None]


def _normalise(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Pixel coordinate -> grid_sample's [-1, 1] (aligned corners), clamped to the first/last pixel."""
    return coord.clamp(0, n - 1) * (2 / (n - 1)) - 1 if n > 1 else torch.zeros_like(coord)


def pool_levels(features: list[torch.Tensor], boxes: torch.Tensor, size: int) -> torch.Tensor:
    """detectron2's ``ROIPooler`` (ROIAlignV2) over p3..p5 of one image: a box of side s = sqrt(area)
    goes to level floor(4 + log2(s / 224 + 1e-8)), clamped to 3..5. -> (r, c, size, size)."""
    lo, hi = ROI_LEVELS
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    level = (CANONICAL_LEVEL + torch.log2(area.sqrt() / CANONICAL_SIZE + 1e-8)).floor().clamp(lo, hi).long() - lo
    out = features[0].new_zeros(len(boxes), features[0].shape[1], size, size)
    for i, feat in enumerate(features):
        idx = (level == i).nonzero()[:, 0]
        if len(idx):
            out[idx] = roi_align(feat[0], boxes[idx], 1.0 / STRIDES[i], size)
    return out


def apply_deltas(deltas: torch.Tensor, boxes: torch.Tensor, weights) -> torch.Tensor:
    """detectron2's ``Box2BoxTransform.apply_deltas`` (dw, dh clamped at log(1000/16))."""
    wx, wy, ww, wh = weights
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    cx, cy = boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=SCALE_CLAMP), (deltas[:, 3] / wh).clamp(max=SCALE_CLAMP)
    px, py, pw, ph = dx * widths + cx, dy * heights + cy, dw.exp() * widths, dh.exp() * heights
    return torch.stack([px - 0.5 * pw, py - 0.5 * ph, px + 0.5 * pw, py + 0.5 * ph], 1)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    h, w = hw
    return torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1
    )


# ---------------------------------------------------------------- ViTDet backbone + simple pyramid


@dataclass(frozen=True)
class GritConfig:
    """GRiT-B's architecture (VBench's ``build_vit_fpn_backbone`` and ``Base.yaml``); ``from_state``
    reads every size from a checkpoint."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    window: int = 14
    window_blocks: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    global_grid: int = 64  # 1024 / 16: the relative-position table size of global blocks
    patch: int = 16
    pretrain_grid: int = 14  # the MAE position table (14 x 14 + a cls slot)
    channels: int = 256  # FPN.OUT_CHANNELS
    head_convs: int = 4  # CENTERNET.NUM_BOX_CONVS
    fc_dim: int = 1024
    stages: int = 3
    text_dim: int = 768
    text_layers: int = 6
    text_heads: int = 12
    vocab: int = 30522
    text_positions: int = 1024

    @classmethod
    def from_state(cls, state: dict) -> GritConfig:
        def count(prefix):
            return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

        vit, text = "backbone.bottom_up.", "roi_heads.text_decoder.textual."
        tables = [state[f"{vit}blocks.{i}.attn.rel_pos_h"] for i in range(count(f"{vit}blocks."))]
        small, large = min(t.shape[0] for t in tables), max(t.shape[0] for t in tables)
        dim, head_dim = state[f"{vit}patch_embed.proj.weight"].shape[0], tables[0].shape[1]
        text_dim = state[f"{text}embedding.words.weight"].shape[1]
        return cls(
            dim=dim,
            depth=len(tables),
            heads=dim // head_dim,
            window=(small + 1) // 2,
            window_blocks=tuple(i for i, t in enumerate(tables) if small < large and t.shape[0] == small),
            global_grid=(large + 1) // 2,
            patch=state[f"{vit}patch_embed.proj.weight"].shape[-1],
            pretrain_grid=math.isqrt(state[f"{vit}pos_embed"].shape[1] - 1),
            channels=state["backbone.fpn_stride8_conv1.weight"].shape[0],
            head_convs=count("proposal_generator.centernet_head.bbox_tower.") // 2,  # conv + norm
            fc_dim=state["roi_heads.box_head.0.fc1.weight"].shape[0],
            stages=count("roi_heads.box_head."),
            text_dim=text_dim,
            text_layers=count(f"{text}transformer.encoder.layer."),
            text_heads=max(1, text_dim // 64),
            vocab=state[f"{text}embedding.words.weight"].shape[0],
            text_positions=state[f"{text}embedding.positions.weight"].shape[0],
        )


def rel_pos_table(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """ViTDet's ``get_rel_pos``: the (q, k, c) relative-position embeddings, the table resized
    (linear) to 2 max(q, k) - 1 entries when it has another length."""
    n = int(2 * max(q_size, k_size) - 1)
    if table.shape[0] != n:
        table = F.interpolate(table.T[None], size=n, mode="linear")[0].T
    q = torch.arange(q_size, device=table.device)[:, None] * max(k_size / q_size, 1.0)
    k = torch.arange(k_size, device=table.device)[None, :] * max(q_size / k_size, 1.0)
    return table[((q - k) + (k_size - 1) * max(q_size / k_size, 1.0)).long()]


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, grid: int):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid - 1, dim // heads))

    def forward(self, x):  # (b, h, w, d)
        b, h, w, _ = x.shape
        q, k, v = rearrange(self.qkv(x), "b h w (three n e) -> three (b n) (h w) e", three=3, n=self.heads)
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        rq = rearrange(q, "b (h w) e -> b h w e", h=h)
        rel_h = torch.einsum("bhwc,hkc->bhwk", rq, rel_pos_table(h, h, self.rel_pos_h))
        rel_w = torch.einsum("bhwc,wkc->bhwk", rq, rel_pos_table(w, w, self.rel_pos_w))
        attn = rearrange(attn, "b (qh qw) (kh kw) -> b qh qw kh kw", qh=h, kh=h)
        attn = rearrange(attn + rel_h[..., :, None] + rel_w[..., None, :], "b qh qw kh kw -> b (qh qw) (kh kw)")
        x = attn.softmax(-1) @ v
        return self.proj(rearrange(x, "(b n) (h w) e -> b h w (n e)", n=self.heads, h=h))


class Block(nn.Module):
    """Pre-norm ViT block; with ``window`` > 0 attention runs in zero-padded window x window tiles."""

    def __init__(self, dim: int, heads: int, window: int, grid: int):
        super().__init__()
        self.window = window
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = Attention(dim, heads, window or grid), Mlp(dim)

    def forward(self, x):
        y, (h, w), s = self.norm1(x), x.shape[1:3], self.window
        if s:
            y = F.pad(y, (0, 0, 0, -w % s, 0, -h % s))
            y = rearrange(y, "b (i s) (j t) d -> (b i j) s t d", s=s, t=s)
        y = self.attn(y)
        if s:
            y = rearrange(y, "(b i j) s t d -> b (i s) (j t) d", i=(h + s - 1) // s, j=(w + s - 1) // s)[:, :h, :w]
        x = x + y
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """ViTDet's single-scale ViT: (b, 3, H, W) -> (b, d, H/16, W/16)."""

    def __init__(self, cfg: GritConfig):
        super().__init__()
        self.patch_embed = nn.Module()  # detectron2's PatchEmbed: only ``proj`` holds weights
        self.patch_embed.proj = nn.Conv2d(3, cfg.dim, cfg.patch, cfg.patch)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pretrain_grid**2 + 1, cfg.dim))  # with the cls slot
        self.blocks = nn.ModuleList(
            Block(cfg.dim, cfg.heads, cfg.window if i in cfg.window_blocks else 0, cfg.global_grid)
            for i in range(cfg.depth)
        )

    def forward(self, x):
        x = rearrange(self.patch_embed.proj(x), "b d h w -> b h w d")
        table = self.pos_embed[:, 1:]
        n = math.isqrt(table.shape[1])
        table = rearrange(table, "1 (h w) d -> 1 d h w", h=n)
        if x.shape[1:3] != (n, n):
            table = F.interpolate(table, size=x.shape[1:3], mode="bicubic", align_corners=False)
        x = x + rearrange(table, "1 d h w -> 1 h w d")
        for block in self.blocks:
            x = block(x)
        return rearrange(x, "b h w d -> b d h w")


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (b, c, h, w)."""

    def forward(self, x):
        return rearrange(super().forward(rearrange(x, "b c h w -> b h w c")), "b h w c -> b c h w")


class Backbone(nn.Module):
    """GRiT's ``ViT_FPN``: the ViT's stride-16 map -> p3..p7 (``LastLevelP6P7_P5`` as ``top_block``)."""

    def __init__(self, cfg: GritConfig):
        super().__init__()
        d, c = cfg.dim, cfg.channels
        self.bottom_up = ViT(cfg)
        self.fpn_stride_16_8 = nn.ConvTranspose2d(d, d, 2, stride=2, bias=False)
        for s in (8, 16, 32):
            setattr(self, f"fpn_stride{s}_conv1", nn.Conv2d(d, c, 1, bias=False))
            setattr(self, f"fpn_stride{s}_norm1", ChannelNorm(c))
            setattr(self, f"fpn_stride{s}_conv2", nn.Conv2d(c, c, 3, padding=1, bias=False))
            setattr(self, f"fpn_stride{s}_norm2", ChannelNorm(c))
        self.top_block = nn.Module()
        self.top_block.p6, self.top_block.p7 = nn.Conv2d(c, c, 3, 2, 1), nn.Conv2d(c, c, 3, 2, 1)

    def level(self, x, s):
        x = getattr(self, f"fpn_stride{s}_norm1")(getattr(self, f"fpn_stride{s}_conv1")(x))
        return getattr(self, f"fpn_stride{s}_norm2")(getattr(self, f"fpn_stride{s}_conv2")(x))

    def forward(self, x) -> list[torch.Tensor]:
        x = self.bottom_up(x)
        p3, p4, p5 = self.level(self.fpn_stride_16_8(x), 8), self.level(x, 16), self.level(F.max_pool2d(x, 2, 2), 32)
        p6 = self.top_block.p6(p5)
        return [p3, p4, p5, p6, self.top_block.p7(F.relu(p6))]


# ---------------------------------------------------------------- CenterNet proposals


class CenterNetHead(nn.Module):
    """CenterNet2's head with ``ONLY_PROPOSAL``: a conv tower (3x3 conv, GroupNorm 32, ReLU) -> the
    agnostic heat-map logit and ReLU(scale_l * ltrb) per level (the class tower is empty)."""

    def __init__(self, cfg: GritConfig, levels: int = len(STRIDES)):
        super().__init__()
        c = cfg.channels
        groups = 32 if c % 32 == 0 else 25
        self.bbox_tower = nn.Sequential(
            *[
                m
                for _ in range(cfg.head_convs)
                for m in (nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(groups, c), nn.ReLU())
            ]
        )
        self.bbox_pred, self.agn_hm = nn.Conv2d(c, 4, 3, padding=1), nn.Conv2d(c, 1, 3, padding=1)
        self.scales = nn.ModuleList(nn.Module() for _ in range(levels))
        for s in self.scales:
            s.scale = nn.Parameter(torch.ones(1))

    def forward(self, features):
        out = []
        for feat, s in zip(features, self.scales, strict=True):
            t = self.bbox_tower(feat)
            out.append((self.agn_hm(t), F.relu(self.bbox_pred(t) * s.scale)))
        return out


def centernet_proposals(head_out) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet2's ``predict_instances`` for one image: (boxes (n, 4), scores (n,)), n <= 256 (ties kept)."""
    boxes, scores = [], []
    for (logit, reg), stride in zip(head_out, STRIDES, strict=True):
        h, w = logit.shape[-2:]
        heat, reg = logit[0, 0].sigmoid().reshape(-1), rearrange(reg[0], "f h w -> (h w) f") * stride
        ys, xs = torch.meshgrid(*(torch.arange(n, device=logit.device) * stride for n in (h, w)), indexing="ij")
        grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float() + stride // 2
        idx = (heat > PROPOSAL_THRESH).nonzero()[:, 0]
        if len(idx) > PRE_NMS_TOPK:
            idx = idx[heat[idx].topk(PRE_NMS_TOPK).indices]
        g, r = grid[idx], reg[idx]
        b = torch.cat([g - r[:, :2], g + r[:, 2:]], 1)
        b[:, 2], b[:, 3] = torch.max(b[:, 2], b[:, 0] + 0.01), torch.max(b[:, 3], b[:, 1] + 0.01)
        boxes.append(b)
        scores.append(heat[idx].sqrt())
    boxes, scores = torch.cat(boxes), torch.cat(scores)
    keep = nms(boxes, scores, PROPOSAL_NMS)
    boxes, scores = boxes[keep], scores[keep]
    if len(scores) > POST_NMS_TOPK:
        kth = torch.kthvalue(scores, len(scores) - POST_NMS_TOPK + 1).values
        boxes, scores = boxes[scores >= kth], scores[scores >= kth]
    return boxes, scores


# ---------------------------------------------------------------- cascade ROI heads


class BoxHead(nn.Module):
    """detectron2's ``FastRCNNConvFCHead`` with two FC layers: flatten -> fc1 -> ReLU -> fc2 -> ReLU."""

    def __init__(self, cfg: GritConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.channels * BOX_POOL**2, cfg.fc_dim)
        self.fc2 = nn.Linear(cfg.fc_dim, cfg.fc_dim)

    def forward(self, x):
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))


class BoxPredictor(nn.Module):
    """GRiT's ``GRiTFastRCNNOutputLayers``: (object, background) logits and 4 agnostic deltas (an MLP)."""

    def __init__(self, cfg: GritConfig):
        super().__init__()
        self.cls_score = nn.Linear(cfg.fc_dim, 2)
        self.bbox_pred = nn.Sequential(nn.Linear(cfg.fc_dim, cfg.fc_dim), nn.ReLU(), nn.Linear(cfg.fc_dim, 4))

    def forward(self, x):
        return self.cls_score(x), self.bbox_pred(x)


# ---------------------------------------------------------------- text decoder


class BertLayer(nn.Module):
    """A post-norm BERT layer with detectron2-GRiT's names (``attention.self.query``, ...)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.self, name, nn.Linear(dim, dim))
        self.attention.output = nn.Module()
        self.attention.output.dense, self.attention.output.LayerNorm = nn.Linear(dim, dim), nn.LayerNorm(dim, eps=1e-12)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, 4 * dim)
        self.output = nn.Module()
        self.output.dense, self.output.LayerNorm = nn.Linear(4 * dim, dim), nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x, mask):
        att = self.attention
        q, k, v = (
            rearrange(getattr(att.self, n)(x), "b t (h e) -> b h t e", h=self.heads) for n in ("query", "key", "value")
        )
        y = rearrange(F.scaled_dot_product_attention(q, k, v, attn_mask=mask), "b h t e -> b t (h e)")
        x = att.output.LayerNorm(att.output.dense(y) + x)
        return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(x))) + x)


class TextualHead(nn.Module):
    """GRiT's ``TransformerDecoderTextualHead`` (decoder_type ``bert_en``): box features projected
    (Linear + LayerNorm) to 196 memory tokens, then [memory; words + positions] through the BERT layers
    with the memory blind to the text and the text causal; logits from the tied word embedding."""

    def __init__(self, cfg: GritConfig):
        super().__init__()
        d = cfg.text_dim
        self.object_feature_projection = nn.Sequential(nn.Linear(cfg.channels, d), nn.LayerNorm(d))
        self.embedding = nn.Module()
        self.embedding.words = nn.Embedding(cfg.vocab, d)
        self.embedding.positions = nn.Embedding(cfg.text_positions, d)
        self.embedding.layer_norm = nn.LayerNorm(d, eps=1e-8)
        self.transformer = nn.Module()
        self.transformer.encoder = nn.Module()
        self.transformer.encoder.layer = nn.ModuleList(BertLayer(d, cfg.text_heads) for _ in range(cfg.text_layers))
        self.output = nn.Linear(d, cfg.vocab)
        self.output.weight = self.embedding.words.weight

    def forward(self, memory, tokens):
        """(n, m, d) projected memory, (n, t) tokens -> (n, vocab) logits of the next token."""
        m, t = memory.shape[1], tokens.shape[1]
        e = self.embedding
        text = e.layer_norm(e.words(tokens) + e.positions(torch.arange(t, device=tokens.device)))
        x = torch.cat([memory, text], 1)
        mask = torch.zeros(m + t, m + t, device=x.device)
        mask[:m, m:] = float("-inf")
        mask[m:, m:] = torch.full((t, t), float("-inf"), device=x.device).triu(1)
        for layer in self.transformer.encoder.layer:
            x = layer(x, mask)
        return self.output(x[:, -1])


def greedy_decode(textual: TextualHead, object_features: torch.Tensor, begin: int) -> list[list[int]]:
    """GRiT's ``AutoRegressiveBeamSearch`` with beam 1: per box, the argmax token each step with the
    previous token banned, stopping at [SEP] or 40 tokens; the tokens after the begin token."""
    memory = textual.object_feature_projection(object_features)
    tokens = torch.full((len(memory), 1), begin, dtype=torch.long, device=memory.device)
    first = textual(memory, tokens).argmax(1)
    if (first == END_TOKEN).all():
        return [[] for _ in first]  # GRiT returns the lone [SEP]s, without the begin token: ""
    tokens = torch.cat([tokens, first[:, None]], 1)
    while tokens.shape[1] < MAX_TOKENS and not (tokens[:, -1] == END_TOKEN).all():
        last = tokens[:, -1]
        logits = textual(memory, tokens).scatter(1, last[:, None], -10000.0)
        nxt = torch.where(last == END_TOKEN, END_TOKEN, logits.argmax(1))  # ended boxes repeat [SEP]
        tokens = torch.cat([tokens, nxt[:, None]], 1)
    return tokens[:, 1:].tolist()


# ---------------------------------------------------------------- the detector


class Grit(nn.Module):
    """GRiT with the names of its detectron2 checkpoint: ``backbone``, ``proposal_generator``,
    ``roi_heads`` (``box_head``, ``box_predictor``, ``text_decoder.textual``)."""

    def __init__(self, cfg: GritConfig = GritConfig()):
        super().__init__()
        self.cfg = cfg
        self.backbone = Backbone(cfg)
        self.proposal_generator = nn.Module()
        self.proposal_generator.centernet_head = CenterNetHead(cfg)
        self.roi_heads = nn.Module()
        self.roi_heads.box_head = nn.ModuleList(BoxHead(cfg) for _ in range(cfg.stages))
        self.roi_heads.box_predictor = nn.ModuleList(BoxPredictor(cfg) for _ in range(cfg.stages))
        self.roi_heads.text_decoder = nn.Module()
        self.roi_heads.text_decoder.textual = TextualHead(cfg)

    @torch.no_grad()
    def boxes(self, frame) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One RGB frame (h, w, 3), 0..255 -> (kept boxes (n, 4) in frame pixels, p3..p5 features)."""
        device = self.backbone.bottom_up.pos_embed.device
        x = torch.as_tensor(frame, dtype=torch.float32, device=device)
        hw = tuple(x.shape[:2])
        x = (x - torch.tensor(PIXEL_MEAN, device=device)) / torch.tensor(PIXEL_STD, device=device)
        x = rearrange(x, "h w c -> 1 c h w")
        x = F.pad(x, (0, -hw[1] % SIZE_DIVISIBILITY, 0, -hw[0] % SIZE_DIVISIBILITY))
        features = self.backbone(x)
        boxes, proposal_scores = centernet_proposals(self.proposal_generator.centernet_head(features))
        rois, probs = features[:3], 0.0
        for k, (head, predictor) in enumerate(zip(self.roi_heads.box_head, self.roi_heads.box_predictor, strict=True)):
            if k:
                boxes = clip_boxes(boxes, hw)
            logits, deltas = predictor(head(pool_levels(rois, boxes, BOX_POOL)))
            probs = probs + logits.softmax(-1)
            boxes = apply_deltas(deltas, boxes, CASCADE_WEIGHTS[k])
        scores = ((probs * (1.0 / len(self.roi_heads.box_head)))[:, 0] * proposal_scores) ** 0.5
        valid = torch.isfinite(boxes).all(1) & torch.isfinite(scores)
        boxes, scores = clip_boxes(boxes[valid], hw), scores[valid]
        keep = scores > SCORE_THRESH
        boxes, scores = boxes[keep], scores[keep]
        boxes = boxes[nms(boxes, scores, NMS_THRESH)[:DETECTIONS]]
        nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])  # detector_postprocess
        return boxes[nonempty], rois

    @torch.no_grad()
    def describe(self, rois, boxes, task: str) -> list[list[int]]:
        """Each box's token ids in ``task`` (ObjectDet: class names, DenseCap: phrases)."""
        if len(boxes) == 0:
            return []
        feats = rearrange(pool_levels(rois, boxes, OBJECT_POOL), "n c h w -> n (h w) c")
        return greedy_decode(self.roi_heads.text_decoder.textual, feats, BEGIN_TOKENS[task])


def load_grit(path, device: str = "cpu") -> Grit:
    """GRiT from VBench's detectron2 checkpoint (``{"model": state}`` or a bare state dict); every
    weight the inference path uses must be in it; others (the mask head, ``text_decoder_det``) are
    ignored, as detectron2's non-strict loader does."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    model = Grit(GritConfig.from_state(state))
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != "roi_heads.text_decoder.textual.output.weight"]  # tied to the words
    if missing:
        raise KeyError(f"{path} is not VBench's GRiT checkpoint: it lacks {', '.join(missing[:5])}")
    return model.eval().to(device)


def detections(model: Grit, tokenizer, frame, task: str) -> list[tuple[str, list[int], list[str]]]:
    """VBench's ``dense_pred_to_caption_tuple`` of one frame: ``(description in task, [x0, y0, x1,
    y1] truncated to int, every box's ObjectDet name)`` per box, by decreasing score."""
    boxes, rois = model.boxes(frame)

    def text(ids):
        return [tokenizer.decode(t, skip_special_tokens=True, clean_up_tokenization_spaces=True) for t in ids]

    names = text(model.describe(rois, boxes, "ObjectDet"))
    descriptions = names if task == "ObjectDet" else text(model.describe(rois, boxes, task))
    return [(d, [int(v) for v in b.tolist()], names) for d, b in zip(descriptions, boxes.cpu(), strict=True)]
