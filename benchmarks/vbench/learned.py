"""Dimensions that need model weights, loaded with transformers from a local ``--weights DIR``.

Expected layout (any ``save_pretrained`` folder works; the Hub names are accepted too)::

    WEIGHTS/dino_vitb16/     ViTModel,  e.g. facebook/dino-vitb16           subject consistency
    WEIGHTS/clip_vit_b32/    CLIPModel, e.g. openai/clip-vit-base-patch32    background consistency,
                                                                             appearance style, overall
                                                                             consistency / temporal
                                                                             style (proxy), clip_score
    WEIGHTS/clip_vit_l14/    CLIPModel, e.g. openai/clip-vit-large-patch14   aesthetic quality
    WEIGHTS/sa_0_4_vit_l_14_linear.pth   LAION aesthetic head (nn.Linear(768, 1) state dict)

Frames are resized (shorter side, bicubic) and centre-cropped to the model's ``image_size`` and
normalised with ``preprocessor_config.json``'s mean/std when present. Models load on first use.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from .scorers import ScorerContext, Unavailable, register

MODEL_DIRS = {
    "dino": ("dino_vitb16", "dino-vitb16", "facebook--dino-vitb16"),
    "clip_b32": ("clip_vit_b32", "clip-vit-base-patch32", "openai--clip-vit-base-patch32"),
    "clip_l14": ("clip_vit_l14", "clip-vit-large-patch14", "openai--clip-vit-large-patch14"),
}
AESTHETIC_HEADS = ("sa_0_4_vit_l_14_linear.pth", "aesthetic_head.pth", "aesthetic_head.safetensors")
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def find_weights(ctx: ScorerContext, kind: str, what: str) -> Path:
    """The folder of model ``kind`` inside ``ctx.weights``, or raise Unavailable with the fix."""
    names = MODEL_DIRS[kind]
    fix = f"put a transformers save_pretrained folder of {what} at --weights DIR/{names[0]}"
    if ctx.weights is None:
        raise Unavailable(f"needs {what} weights and no --weights DIR was given", fix)
    for name in names:
        if (Path(ctx.weights) / name / "config.json").is_file():
            return Path(ctx.weights) / name
    raise Unavailable(f"no {what} weights in {ctx.weights} (looked for {', '.join(names)})", fix)


def _mean_std(path: Path, default):
    cfg = path / "preprocessor_config.json"
    if cfg.is_file():
        data = json.loads(cfg.read_text())
        if "image_mean" in data and "image_std" in data:
            return tuple(data["image_mean"]), tuple(data["image_std"])
    return default


def preprocess(frames: np.ndarray, size: int, mean, std):
    """uint8 (f, h, w, 3) -> float tensor (f, 3, size, size): shorter side to ``size``, centre crop."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = F.interpolate(x, size=(max(size, round(h * scale)), max(size, round(w * scale))),
                      mode="bicubic", align_corners=False).clamp(0, 1)
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    x = x[..., top:top + size, left:left + size]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class ImageEncoder:
    """Normalised per-frame features from a CLIPModel (projected) or a ViTModel (CLS token)."""

    def __init__(self, path: Path, kind: str, device: str):
        import transformers

        self.kind, self.device = kind, device
        if kind == "dino":
            self.model = transformers.ViTModel.from_pretrained(path, add_pooling_layer=False)
            self.mean, self.std = _mean_std(path, (IMAGENET_MEAN, IMAGENET_STD))
            self.size = self.model.config.image_size
        else:
            self.model = transformers.CLIPModel.from_pretrained(path)
            self.mean, self.std = _mean_std(path, (CLIP_MEAN, CLIP_STD))
            self.size = self.model.config.vision_config.image_size
            self.tokenizer = _tokenizer(path)
        self.model.eval().to(device)

    def images(self, frames: np.ndarray, batch: int = 32):
        """(f, d) unit-norm features of uint8 frames."""
        import torch

        feats = []
        with torch.no_grad():
            for i in range(0, len(frames), batch):
                x = preprocess(frames[i:i + batch], self.size, self.mean, self.std).to(self.device)
                if self.kind == "dino":
                    f = self.model(pixel_values=x).last_hidden_state[:, 0]  # CLS token
                else:
                    f = _pooled(self.model.get_image_features(pixel_values=x))
                feats.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu())
        return torch.cat(feats)

    def texts(self, prompts: list[str]):
        """(n, d) unit-norm CLIP text features."""
        import torch

        if self.tokenizer is None:
            raise RuntimeError("this CLIP folder has no tokenizer")
        tok = self.tokenizer(prompts, padding=True, truncation=True,
                             max_length=self.model.config.text_config.max_position_embeddings,
                             return_tensors="pt").to(self.device)
        with torch.no_grad():
            f = _pooled(self.model.get_text_features(input_ids=tok["input_ids"],
                                                     attention_mask=tok["attention_mask"]))
        return torch.nn.functional.normalize(f.float(), dim=-1).cpu()


def _pooled(out):
    """transformers 4 returns the projected features, 5 a ModelOutput holding them as pooler_output."""
    return out if hasattr(out, "ndim") else out.pooler_output


def _tokenizer(path: Path):
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, TypeError):
        return None


@functools.lru_cache(maxsize=4)
def load_encoder(path: Path, kind: str, device: str) -> ImageEncoder:
    """One shared encoder per folder and device (several dimensions use CLIP ViT-B/32)."""
    return ImageEncoder(path, kind, device)


def consistency(feats) -> float | None:
    """VBench's subject/background consistency of unit-norm frame features (f, d):
    mean over i > 0 of (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2."""
    if len(feats) < 2:
        return None
    prev = (feats[1:] * feats[:-1]).sum(-1).clamp(min=0)
    first = (feats[1:] * feats[:1]).sum(-1).clamp(min=0)
    return float(((prev + first) / 2).mean())


def _consistency_scorer(ctx, kind, what, backend):
    path = find_weights(ctx, kind, what)

    def scorer(videos, prompts, meta):
        enc = load_encoder(path, kind, ctx.device)
        return [consistency(enc.images(v, ctx.batch_frames)) for v in videos], \
            {"backend": backend, "proxy": False}

    return scorer


@register("subject_consistency")
def make_subject_consistency(ctx: ScorerContext):
    return _consistency_scorer(ctx, "dino", "DINO ViT-B/16", "transformers ViTModel (DINO ViT-B/16)")


@register("background_consistency")
def make_background_consistency(ctx: ScorerContext):
    return _consistency_scorer(ctx, "clip_b32", "CLIP ViT-B/32", "transformers CLIPModel (ViT-B/32)")


def _text_scorer(ctx, proxy_for: str | None):
    """Mean over frames of cos(CLIP text, CLIP frame): VBench's appearance-style score; a proxy
    for ViCLIP's video-text score when ``proxy_for`` is set."""
    path = find_weights(ctx, "clip_b32", "CLIP ViT-B/32")
    if _tokenizer(path) is None:
        raise Unavailable(f"{path} has no tokenizer", "save the CLIP tokenizer into the same folder")
    backend = "transformers CLIPModel (ViT-B/32) frame-text cosine"
    info = {"backend": backend + (f" (proxy for {proxy_for})" if proxy_for else ""), "proxy": bool(proxy_for)}

    def scorer(videos, prompts, meta):
        enc = load_encoder(path, "clip_b32", ctx.device)
        text = enc.texts(list(prompts))
        return [float((enc.images(v, ctx.batch_frames) @ t).mean()) for v, t in zip(videos, text)], dict(info)

    return scorer


@register("appearance_style", "clip_score")
def make_appearance_style(ctx: ScorerContext):
    return _text_scorer(ctx, None)


@register("overall_consistency", "temporal_style")
def make_overall_consistency(ctx: ScorerContext):
    return _text_scorer(ctx, "ViCLIP")


def load_aesthetic_head(path: Path):
    """LAION's linear aesthetic head (weight (1, d), bias (1,)) from .pth or .safetensors."""
    import torch

    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.split(".")[-1]: v for k, v in state.items()}  # tolerate a "layers.0." style prefix
    head = torch.nn.Linear(state["weight"].shape[1], 1)
    head.load_state_dict({"weight": state["weight"], "bias": state["bias"]})
    return head.eval()


@register("aesthetic_quality")
def make_aesthetic_quality(ctx: ScorerContext):
    path = find_weights(ctx, "clip_l14", "CLIP ViT-L/14")
    heads = [Path(ctx.weights) / n for n in AESTHETIC_HEADS if (Path(ctx.weights) / n).is_file()]
    if not heads:
        raise Unavailable(f"no LAION aesthetic head in {ctx.weights}",
                          "put sa_0_4_vit_l_14_linear.pth (LAION aesthetic-predictor) at --weights DIR/")
    head = []

    def scorer(videos, prompts, meta):
        import torch

        enc = load_encoder(path, "clip_l14", ctx.device)
        if not head:
            head.append(load_aesthetic_head(heads[0]))
        with torch.no_grad():
            scores = [float(head[0](enc.images(v, ctx.batch_frames)).mean() / 10.0) for v in videos]
        return scores, {"backend": "transformers CLIPModel (ViT-L/14) + LAION linear head, score/10",
                        "proxy": False}

    return scorer
