"""Dimensions that need model weights, from a local ``--weights DIR``.

Per dimension: what ``--weights DIR`` must hold ("here"), and the file VBench uses with the
address its ``utils.init_submodules`` downloads it from into ``~/.cache/vbench/`` on first use
("VBench"). Every file VBench's own modules read is also found at its path in that cache, so
``--weights ~/.cache/vbench`` works for them once VBench has run (DINO and CLIP excepted: VBench
keeps them as torch.hub / OpenAI ``.pt`` files, here they are transformers folders):

    subject_consistency
        here    dino_vitb16/: a transformers ViTModel folder of the same weights (facebook/dino-vitb16)
        VBench  torch.hub facebookresearch/dino:main dino_vitb16; local mode: https://dl.fbaipublicfiles.com/
                dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth
    background_consistency, appearance_style
        here    clip_vit_b32/: a transformers CLIPModel + tokenizer folder (openai/clip-vit-base-patch32)
        VBench  https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt
    aesthetic_quality
        here    clip_vit_l14/ (openai/clip-vit-large-patch14) + sa_0_4_vit_l_14_linear.pth
                (or aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth)
        VBench  https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt
                + https://raw.githubusercontent.com/LAION-AI/aesthetic-predictor/main/sa_0_4_vit_l_14_linear.pth
    imaging_quality (musiq.py; else the blur x noise proxy)
        here    musiq_spaq_ckpt-358bb6af.pth or pyiqa_model/musiq_spaq_ckpt-358bb6af.pth
        VBench  https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth
    dynamic_degree, the static filter (raft.py; else the OpenCV flow proxy)
        here    raft-things.pth or raft_model/models/raft-things.pth
        VBench  https://dl.dropboxusercontent.com/s/4j4z58wuv8o0mfz/models.zip, unzipped
    motion_smoothness (amt.py; else the OpenCV flow proxy)
        here    amt-s.pth or amt_model/amt-s.pth
        VBench  https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth
    temporal_style, overall_consistency (viclip.py; else the CLIP ViT-B/32 frame-text proxy)
        here    ViClip-InternVid-10M-FLT.pth or ViCLIP/ViClip-InternVid-10M-FLT.pth, with
                bpe_simple_vocab_16e6.txt.gz beside it (or in DIR)
        VBench  https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth
                + https://raw.githubusercontent.com/openai/CLIP/main/clip/bpe_simple_vocab_16e6.txt.gz
    human_action (umt.py)
        here    l16_ptk710_ftk710_ftk400_f16_res224.pth or umt_model/l16_ptk710_ftk710_ftk400_f16_res224.pth
        VBench  https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/l16_ptk710_ftk710_ftk400_f16_res224.pth
    object_class, multiple_objects, color, spatial_relationship (grit.py; need each prompt's
    auxiliary_info, from --prompts VBench_full_info.json)
        here    grit_b_densecap_objectdet.pth or grit_model/grit_b_densecap_objectdet.pth, and
                bert-base-uncased's vocab.txt (found as for scene)
        VBench  https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/grit_b_densecap_objectdet.pth
                + the tokenizer of BertTokenizer.from_pretrained("bert-base-uncased"), as for scene
    scene (tag2text.py; needs each prompt's auxiliary_info, from --prompts VBench_full_info.json)
        here    tag2text_swin_14m.pth or caption_model/tag2text_swin_14m.pth, and bert-base-uncased's
                vocab.txt at bert-base-uncased/vocab.txt (or caption_model/bert-base-uncased/, or DIR;
                else the Hugging Face cache's copy, where VBench's own run puts it)
        VBench  https://huggingface.co/spaces/xinyu1205/recognize-anything/resolve/main/tag2text_swin_14m.pth
                + the tokenizer BertTokenizer.from_pretrained("bert-base-uncased") fetches from the
                Hugging Face Hub (vocab.txt: https://huggingface.co/bert-base-uncased/resolve/main/vocab.txt);
                VBench also fetches bert-base-uncased's weights, only to initialise the tagging head
                the checkpoint then overwrites (not needed here)

Without its file a dimension falls back to its labelled proxy where one is named above, and is
skipped otherwise. MUSIQ, RAFT, AMT-S, ViCLIP, UMT, Tag2Text and GRiT are this project's ports of
VBench's modules, with its names, so VBench's files load as they are; DINO and CLIP run through
transformers.

Preprocessing follows VBench's: DINO frames have their shorter side resized to the model's
``image_size`` (bilinear, no crop; the ViT interpolates its position embeddings), CLIP frames are
resized (bicubic) and centre-cropped to ``image_size``; both without antialiasing, normalised with
``preprocessor_config.json``'s mean/std when present. ViCLIP sees the model's 8 frames at the
middles of 8 equal intervals (VBench's ``read_frames_decord_by_fps(sample="middle")``) through the
same CLIP transform on uint8 frames; UMT its 16 such frames, shorter side 256 (OpenCV bilinear),
centre crop 224, ImageNet mean/std; Tag2Text its 16 such frames resized to 384 x 384 (PIL bilinear,
aspect ignored), ImageNet mean/std; GRiT its 16 such frames at their own size (scaled to a shorter
side of 720 when it is over 768). Frames are encoded ``batch_frames`` at a time as they stream in
(the video models keep only their sampled frames); models load on first use, once per file and device.
"""

from __future__ import annotations

import functools
import importlib
import json
import threading
from itertools import pairwise
from pathlib import Path

import numpy as np

from .classical import IQ_LONGER_SIDE
from .inputs import auxiliary_info
from .scorers import Refused, Scorer, ScorerContext, Unavailable, register, weight_file

MODEL_DIRS = {
    "dino": ("dino_vitb16", "dino-vitb16", "facebook--dino-vitb16"),
    "clip_b32": ("clip_vit_b32", "clip-vit-base-patch32", "openai--clip-vit-base-patch32"),
    "clip_l14": ("clip_vit_l14", "clip-vit-large-patch14", "openai--clip-vit-large-patch14"),
}
AESTHETIC_HEADS = (
    "sa_0_4_vit_l_14_linear.pth",
    "aesthetic_model/emb_reader/sa_0_4_vit_l_14_linear.pth",
    "aesthetic_head.pth",
    "aesthetic_head.safetensors",
)
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


def resized_size(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision's ``Resize(size)``: the shorter side becomes ``size``, the longer ``int(size * long / short)``."""
    return (size, int(size * w / h)) if h <= w else (int(size * h / w), size)


def crop_offset(length: int, size: int) -> int:
    """torchvision's ``CenterCrop`` start: ``int(round((length - size) / 2))`` (halves round to even)."""
    return int(round((length - size) / 2.0))


def preprocess(frames: np.ndarray, size: int, mean, std, crop: bool = True, mode: str = "bicubic", uint8: bool = False):
    """uint8 (f, h, w, 3) -> float tensor (f, 3, h', w'): shorter side resized to ``size`` (no
    antialiasing, as torchvision's ``Resize(antialias=False)``), centre-cropped to ``size`` x ``size``
    when ``crop``, then /255 and normalised. VBench resizes float frames (no clamping) except where
    it reads uint8 tensors (ViCLIP's ``read_frames_decord_by_fps``): then ``uint8`` clamps and
    rounds the resized pixels as torchvision does for uint8 input."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=resized_size(*x.shape[-2:], size), mode=mode, align_corners=False)
    if uint8:
        x = x.clamp(0, 255).round()
    x = x / 255.0
    if crop:
        top, left = crop_offset(x.shape[-2], size), crop_offset(x.shape[-1], size)
        x = x[..., top : top + size, left : left + size]
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
                if self.kind == "dino":  # VBench: Resize(224) only, the ViT interpolates its positions
                    x = preprocess(
                        frames[i : i + batch], self.size, self.mean, self.std, crop=False, mode="bilinear"
                    ).to(self.device)
                    f = self.model(pixel_values=x, interpolate_pos_encoding=True).last_hidden_state[:, 0]
                else:  # VBench's clip_transform: bicubic Resize(224), CenterCrop(224)
                    x = preprocess(frames[i : i + batch], self.size, self.mean, self.std).to(self.device)
                    f = _pooled(self.model.get_image_features(pixel_values=x))
                feats.append(torch.nn.functional.normalize(f.float(), dim=-1).cpu())
        return torch.cat(feats)

    def texts(self, prompts: list[str]):
        """(n, d) unit-norm CLIP text features."""
        import torch

        if self.tokenizer is None:
            raise RuntimeError("this CLIP folder has no tokenizer")
        tok = self.tokenizer(
            prompts,
            padding=True,
            truncation=True,
            max_length=self.model.config.text_config.max_position_embeddings,
            return_tensors="pt",
        ).to(self.device)
        with torch.no_grad():
            f = _pooled(self.model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]))
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


_LOAD_LOCK = threading.Lock()  # clips are scored in threads: load each model once


def load_encoder(path: Path, kind: str, device: str) -> ImageEncoder:
    """One shared encoder per folder and device (several dimensions use CLIP ViT-B/32)."""
    with _LOAD_LOCK:
        return _load_encoder(path, kind, device)


@functools.lru_cache(maxsize=4)
def _load_encoder(path: Path, kind: str, device: str) -> ImageEncoder:
    return ImageEncoder(path, kind, device)


def consistency(feats) -> float | None:
    """VBench's subject/background consistency of unit-norm frame features (f, d):
    mean over i > 0 of (max(0, cos(f_i, f_{i-1})) + max(0, cos(f_i, f_0))) / 2."""
    if len(feats) < 2:
        return None
    prev = (feats[1:] * feats[:-1]).sum(-1).clamp(min=0)
    first = (feats[1:] * feats[:1]).sum(-1).clamp(min=0)
    return float(((prev + first) / 2).mean())


class Encoded:
    """Accumulator for a learned dimension: frames are buffered and encoded ``batch`` at a time
    (the clip is never held whole); ``result`` = ``reduce(features (f, d))``. With
    ``frame_pairs`` the video's f - 1 is noted (VBench weights consistency by frames)."""

    def __init__(self, encode, batch: int, reduce, frame_pairs: bool = False):
        self.encode, self.batch, self.reduce, self.frames, self.feats = encode, batch, reduce, [], []
        self.frame_pairs, self.notes = frame_pairs, {}

    def update(self, frame):
        self.frames.append(frame)
        if len(self.frames) == self.batch:
            self._flush()

    def _flush(self):
        if self.frames:
            self.feats.append(self.encode(np.stack(self.frames)))
            self.frames = []

    def result(self):
        import torch

        self._flush()
        if not self.feats:
            return None
        feats = torch.cat(self.feats)
        if self.frame_pairs:
            self.notes["frame_pairs"] = len(feats) - 1
        return self.reduce(feats)


def _images(ctx: ScorerContext, path: Path, kind: str):
    """Frames -> unit-norm features with the shared encoder, loaded on first use."""
    return lambda frames: load_encoder(path, kind, ctx.device).images(frames, ctx.batch_frames)


def _consistency_scorer(ctx, kind, what, backend):
    path = find_weights(ctx, kind, what)
    encode = _images(ctx, path, kind)
    return Scorer(
        lambda p, m: Encoded(encode, ctx.batch_frames, consistency, frame_pairs=True),
        {"backend": backend, "proxy": False},
    )


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
    encode = _images(ctx, path, "clip_b32")

    def start(prompt, meta):
        text = load_encoder(path, "clip_b32", ctx.device).texts([prompt])[0]
        return Encoded(encode, ctx.batch_frames, lambda f: float((f @ text).mean()))

    return Scorer(
        start, {"backend": backend + (f" (proxy for {proxy_for})" if proxy_for else ""), "proxy": bool(proxy_for)}
    )


@register("appearance_style", "clip_score")
def make_appearance_style(ctx: ScorerContext):
    return _text_scorer(ctx, None)


def middle_indices(num: int, count: int) -> list[int]:
    """VBench's ``get_frame_indices(num, count, sample="middle")``: split the clip into ``min(num,
    count)`` equal intervals and take each one's middle frame; a short clip is padded with its last."""
    bounds = np.linspace(0, count, min(num, count) + 1).astype(int)
    picked = [int(a + b - 1) // 2 for a, b in pairwise(bounds)]
    return picked + picked[-1:] * (num - len(picked))


def frame_count(meta: dict) -> int:
    """The clip's frame count: given in ``meta`` for in-memory clips, else probed (decoded once, cached)."""
    from videosspo.video import count_frames

    return meta.get("frames") or count_frames(meta["video"])


class SampledFrames:
    """VBench's ``num`` middle frames of a streamed clip (``middle_indices``); ``result`` is
    ``finish(frames)`` on those uint8 frames, in order (repeats included)."""

    def __init__(self, count: int, num: int, finish):
        self.wanted, self.finish, self.kept, self.index = middle_indices(num, count), finish, {}, 0

    def update(self, frame):
        if self.index in self.wanted:
            self.kept[self.index] = frame
        self.index += 1

    def result(self):
        return self.finish([self.kept[i] for i in self.wanted]) if self.kept else None


def viclip_similarity(model, tokenizer, frames: list[np.ndarray], prompt: str) -> float:
    """VBench's temporal style / overall consistency of one video: cos(ViCLIP video feature, ViCLIP
    text feature), the frames through ``clip_transform`` (bicubic shorter side, centre crop, CLIP
    mean/std) at the model's resolution."""
    import torch
    from einops import rearrange

    device = next(model.parameters()).device
    video = preprocess(np.stack(frames), model.image_size, CLIP_MEAN, CLIP_STD, uint8=True)
    with torch.no_grad():
        v = model.vision_encoder(rearrange(video, "t c h w -> 1 c t h w").to(device))
        t = model.text_encoder(tokenizer([prompt], model.context).to(device))
    return float(torch.nn.functional.cosine_similarity(v.float(), t.float())[0])


@functools.lru_cache(maxsize=2)
def _bpe_tokenizer(path: Path):
    from .viclip import Tokenizer

    return Tokenizer(path)


def _viclip_scorer(ctx: ScorerContext, path: Path) -> Scorer:
    from .viclip import BPE_FILE

    bpe = next((p for p in (path.parent / BPE_FILE, Path(ctx.weights) / BPE_FILE) if p.is_file()), None)
    if bpe is None:
        raise Unavailable(
            f"ViCLIP's tokenizer {BPE_FILE} is not beside {path}",
            f"put {BPE_FILE} (github.com/openai/CLIP, clip/{BPE_FILE}) next to {path.name}",
        )

    def start(prompt, meta):
        model = load_network("viclip", path, ctx.device)
        return SampledFrames(
            frame_count(meta),
            model.frames,
            lambda frames: viclip_similarity(model, _bpe_tokenizer(bpe), frames, prompt),
        )

    return Scorer(start, {"backend": f"ViCLIP from {path.name}", "proxy": False})


@register("overall_consistency", "temporal_style")
def make_overall_consistency(ctx: ScorerContext):
    """VBench's ViCLIP when ``--weights`` holds its checkpoint, else CLIP frame-text cosine (a proxy)."""
    from .viclip import BPE_FILE, VICLIP_FILES

    path = weight_file(ctx, VICLIP_FILES)
    if path is not None:
        return _viclip_scorer(ctx, path)
    try:
        return _text_scorer(ctx, "ViCLIP")
    except Unavailable as e:
        raise Unavailable(
            e.reason, f"put VBench's {VICLIP_FILES[0]} and {BPE_FILE} at --weights DIR/ (or, for a CLIP proxy: {e.fix})"
        ) from None


def umt_clip(frames: list[np.ndarray]):
    """VBench's human-action transform: shorter side to 256 (OpenCV bilinear on uint8, skipped when
    it is 256 already), centre crop 224 (offsets rounded), /255, ImageNet mean/std -> (1, 3, t, 224, 224)."""
    import cv2
    import torch
    from einops import rearrange

    from .umt import IMAGE_SIZE, RESIZE

    h, w = frames[0].shape[:2]
    if min(h, w) != RESIZE:
        h, w = (int(RESIZE * h / w), RESIZE) if w < h else (RESIZE, int(RESIZE * w / h))
        frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
    top, left = crop_offset(h, IMAGE_SIZE), crop_offset(w, IMAGE_SIZE)
    x = torch.from_numpy(np.stack([f[top : top + IMAGE_SIZE, left : left + IMAGE_SIZE] for f in frames])).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    return rearrange(x, "t h w c -> 1 c t h w")


@register("human_action")
def make_human_action(ctx: ScorerContext):
    """VBench's human action: 1 when the action named in the prompt ("A person is {action}") is among
    UMT's top-5 Kinetics-400 classes with probability >= 0.85, on the model's 16 middle frames."""
    import torch

    from .umt import UMT_FILES, action_label, predicted_actions

    path = weight_file(ctx, UMT_FILES)
    if path is None:
        raise Unavailable(
            "needs VBench's UMT-L/16 Kinetics-400 classifier and --weights has none",
            f"put {UMT_FILES[0]} (huggingface.co/OpenGVLab/VBench_Used_Models) at --weights DIR/",
        )

    def classify(prompt, frames):
        model = load_network("umt", path, ctx.device)
        with torch.no_grad():
            logits = model(umt_clip(frames).to(next(model.parameters()).device))[0].cpu()
        return float(action_label(prompt) in predicted_actions(logits))

    def start(prompt, meta):
        return SampledFrames(
            frame_count(meta), load_network("umt", path, ctx.device).frames, lambda frames: classify(prompt, frames)
        )

    return Scorer(start, {"backend": f"UMT-L/16 (Kinetics-400) from {path.name}, top-5 >= 0.85", "proxy": False})


@functools.lru_cache(maxsize=2)
def _bert_tokenizer(vocab: Path):
    from .tag2text import load_tokenizer

    return load_tokenizer(vocab)


def bert_vocab(ctx: ScorerContext, model: str) -> Path:
    """bert-base-uncased's ``vocab.txt`` for ``model``'s tokenizer: in ``--weights``, else where VBench's
    ``BertTokenizer.from_pretrained("bert-base-uncased")`` left it (the Hugging Face cache, offline)."""
    from huggingface_hub import try_to_load_from_cache

    from .tag2text import VOCAB_FILES

    found = weight_file(ctx, VOCAB_FILES)
    if found is not None:
        return found
    cached = try_to_load_from_cache("bert-base-uncased", "vocab.txt")
    if not isinstance(cached, str):
        raise Unavailable(
            f"{model} needs bert-base-uncased's vocab.txt: not in --weights nor the Hugging Face cache",
            f"put huggingface.co/bert-base-uncased's vocab.txt at --weights DIR/{VOCAB_FILES[0]}",
        )
    return Path(cached)


@register("scene")
def make_scene(ctx: ScorerContext):
    """VBench's scene: the share of the video's 16 middle frames whose Tag2Text caption contains
    every word of its prompt's scene (``auxiliary_info["scene"]["scene"]``, e.g. "alley")."""
    from .tag2text import FRAMES, TAG2TEXT_FILES, captions, preprocess, scene_hits

    path = weight_file(ctx, TAG2TEXT_FILES)
    if path is None:
        raise Unavailable(
            "needs VBench's Tag2Text captioner and --weights has none",
            f"put {TAG2TEXT_FILES[0]} (huggingface.co/spaces/xinyu1205/recognize-anything) at "
            f"--weights DIR/ (or DIR/caption_model/)",
        )
    vocab = bert_vocab(ctx, "Tag2Text")

    def score(frames, scene):
        model = load_network("tag2text", path, ctx.device)
        caps = captions(model, _bert_tokenizer(vocab), preprocess(frames).to(next(model.parameters()).device))
        return scene_hits(scene, caps) / len(caps)

    def start(prompt, meta):
        info = auxiliary_info(meta, "scene")
        if info is None:
            return Refused(
                "its prompt has no auxiliary_info for scene (the scene word to look for)",
                "pass --prompts VBench_full_info.json, or give metadata.jsonl rows an auxiliary_info",
            )
        return SampledFrames(frame_count(meta), FRAMES, lambda frames: score(frames, info["scene"]["scene"]))

    return Scorer(
        start,
        {"backend": f"Tag2Text (Swin-B) from {path.name}: captions of 16 frames contain the scene", "proxy": False},
    )


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
    head = weight_file(ctx, AESTHETIC_HEADS)
    if head is None:
        raise Unavailable(
            f"no LAION aesthetic head in {ctx.weights}",
            "put sa_0_4_vit_l_14_linear.pth (LAION aesthetic-predictor) at --weights DIR/",
        )
    encode = _images(ctx, path, "clip_l14")

    def reduce(feats):
        import torch

        with torch.no_grad():
            return float(_aesthetic_head(head)(feats).mean() / 10.0)

    return Scorer(
        lambda p, m: Encoded(encode, ctx.batch_frames, reduce),
        {"backend": "transformers CLIPModel (ViT-L/14) + LAION linear head, score/10", "proxy": False},
    )


@functools.lru_cache(maxsize=2)
def _aesthetic_head(path: Path):
    return load_aesthetic_head(path)


class MusiqFrames:
    """VBench's imaging quality: MUSIQ per frame after the longer side is resized to at most 512
    (bilinear, no antialiasing, as torchvision's Resize on VBench's float frames), mean score / 100."""

    def __init__(self, path: Path, device: str):
        self.path, self.device, self.scores = path, device, []

    def update(self, frame):
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
        h, w = x.shape[-2:]
        if max(h, w) > IQ_LONGER_SIDE:
            scale = IQ_LONGER_SIDE / max(h, w)
            x = F.interpolate(x, size=(int(scale * h), int(scale * w)), mode="bilinear", align_corners=False)
        with torch.no_grad():
            self.scores.append(float(load_network("musiq", self.path, self.device)(x.to(self.device) / 255.0)))

    def result(self):
        return float(np.mean(self.scores)) / 100.0 if self.scores else None


def make_musiq_quality(ctx: ScorerContext, path: Path) -> Scorer:
    """Imaging quality with MUSIQ (SPAQ) from ``path`` (VBench's ``musiq_spaq_ckpt-358bb6af.pth``)."""
    return Scorer(
        lambda p, m: MusiqFrames(path, ctx.device),
        {"backend": f"MUSIQ (SPAQ) from {path.name}, longer side <= {IQ_LONGER_SIDE}", "proxy": False},
    )


def load_network(name: str, path: Path, device: str):
    """One shared network per (architecture, weight file, device): `vbench.<name>.load_<name>`, loaded once
    under the lock (clips are scored in threads). `name`: musiq | raft | amt | viclip | umt | tag2text."""
    with _LOAD_LOCK:
        return _load_network(name, path, device)


@functools.lru_cache(maxsize=6)
def _load_network(name: str, path: Path, device: str):
    module = importlib.import_module(f"{__package__}.{name}")
    return getattr(module, f"load_{name}")(path, device)


def raft_flow(path: Path, device: str):
    """RAFT flow backend over one shared model, loaded on first use."""
    from .raft import RaftFlow

    return RaftFlow(lambda: load_network("raft", path, device))


class AmtInterpolator:
    """VBench's midpoints with AMT-S (one shared model, loaded on first use)."""

    def __init__(self, path: Path, device: str):
        self.path, self.device = path, device

    def prepare(self, frame):
        return None

    def __call__(self, a, ra, b, rb):
        from .amt import interpolate

        return interpolate(load_network("amt", self.path, self.device), a, b)


GRIT_TASKS = {
    "object_class": "ObjectDet",
    "multiple_objects": "ObjectDet",
    "spatial_relationship": "ObjectDet",
    "color": "DenseCap",
}  # VBench: initialize_model_det, except colour's initialize_model
GRIT_FRAMES, GRIT_MAX_SIDE, GRIT_SHORT_SIDE = 16, 768, 720


def grit_frame(frame: np.ndarray, dim: str) -> np.ndarray:
    """VBench's frame for GRiT: when the shorter side is over 768, both sides scaled by 720 / shorter
    (``int``); bilinear, OpenCV on uint8 for colour, float without rounding elsewhere (torchvision's
    ``Resize`` on VBench's float tensors; no antialiasing, as everywhere here)."""
    import cv2
    import torch
    import torch.nn.functional as F

    h, w = frame.shape[:2]
    if min(h, w) <= GRIT_MAX_SIDE:
        return frame
    size = (int(GRIT_SHORT_SIDE / min(h, w) * h), int(GRIT_SHORT_SIDE / min(h, w) * w))
    if dim == "color":
        return cv2.resize(frame, size[::-1], interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].float()
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def make_grit_dimension(ctx: ScorerContext, dim: str) -> Scorer:
    """VBench's object class / multiple objects / colour / spatial relationship: GRiT (``grit.py``)
    on the clip's 16 middle frames, then the dimension's rule (``grit_rules.py``) against the
    prompt's ``auxiliary_info[dim]``."""
    from . import grit_rules
    from .grit import GRIT_FILES, detections

    path = weight_file(ctx, GRIT_FILES)
    if path is None:
        raise Unavailable(
            "needs VBench's GRiT detector and --weights has none",
            f"put {GRIT_FILES[0]} (huggingface.co/OpenGVLab/VBench_Used_Models) at --weights DIR/ (or DIR/grit_model/)",
        )
    vocab = bert_vocab(ctx, "GRiT")
    rule, task = getattr(grit_rules, dim), GRIT_TASKS[dim]

    def score(prompt, info, frames):
        model = load_network("grit", path, ctx.device)
        found = [detections(model, _bert_tokenizer(vocab), grit_frame(f, dim), task) for f in frames]
        return rule(found, info, prompt) if dim == "color" else rule(found, info)

    def start(prompt, meta):
        info = auxiliary_info(meta, dim)
        if info is None:
            return Refused(
                f"its prompt has no auxiliary_info for {dim} (what GRiT's detections are checked against)",
                "pass --prompts VBench_full_info.json, or give metadata.jsonl rows an auxiliary_info",
            )
        return SampledFrames(frame_count(meta), GRIT_FRAMES, lambda frames: score(prompt, info, frames))

    return Scorer(start, {"backend": f"GRiT ({task}) from {path.name}", "proxy": False})


for _dim in GRIT_TASKS:
    register(_dim)(functools.partial(make_grit_dimension, dim=_dim))
