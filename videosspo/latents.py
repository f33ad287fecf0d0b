"""Latent caching: encode every clip and caption once, store them as safetensors, train without the
VAE encoder and the text encoder.

Writing (``videosspo data cache-latents``, or ``cache_latents``)
    Every frame of every clip (and of its ``loser_video``) is read, resized and centre-cropped to the
    data config's height x width with the same helpers ``VideoDataset`` uses, and encoded by
    ``model.encode_video``; the caption by ``model.encode_prompt`` (``prompt_embeds``, ``l d``).
    A per-frame VAE encodes frames independently, so the latents of frames [i, j, k] are exactly
    the slice [:, [i, j, k]] of the whole clip's latents: one cache serves any ``frames``/``stride``.
    A VAE that compresses time (Wan, CogVideoX, LTX: latent frames mix pixel frames) cannot be
    sliced: the cache holds every window ``frame_windows`` can draw for the data config's ``frames``
    and ``stride`` (recorded and checked), each encoded whole, n = F − (frames − 1)·stride of them
    per clip; cut long clips to the training length before caching. Layout of ``out_dir``::

        000000.safetensors   latents c F h w (+ loser_latents c F' h w); F = the clip's frame count
                             (time-compressing VAE: n c f h w, one per window, + frame_count);
                             prompt_embeds l d
        000001.safetensors   ...
        cache_info.json      encoder identity, height, width, dtype, frames and stride (time-compressing
                             VAE), metadata, records, unreadable rows

    Latents are stored as float32 by default, so a cached latent equals an on-the-fly encoding
    (``dtype=torch.float16`` halves the size, at fp16 rounding of the latents). Each file is written
    to a temporary name and moved into place, so an existing file is complete: a rerun skips it
    (after checking its header names the same clip and caption) and only fills what is missing.
    A clip that cannot be decoded is logged, counted and listed in ``cache_info.json``; it is not fatal.

Reading: ``LatentDataset`` (``videosspo.latent_dataset``).

Memory: one clip is decoded whole as uint8 (F x H x W x 3 bytes; a clip larger than the training size is
shrunk frame by frame as it decodes), then resized and encoded ``batch_frames`` frames at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from videosspo.data import VideoDataset, frame_windows, resize_center_crop
from videosspo.errors import DataError
from videosspo.files import atomic_write_text, chmod_like_open
from videosspo.metadata import Record
from videosspo.video import VideoReadError, count_frames, to_tensor

log = logging.getLogger("videosspo.latents")

INFO_FILE = "cache_info.json"
FORMAT = 2  # 2: + prompt_embeds, windows for time-compressing VAEs (format 1 still reads: captions encoded per step)
# identity fields that change the cached tensors (the family is recorded, but the same VAE and text
# encoder give the same tensors under any family, so it is not compared)
ENCODER_KEYS = (
    "vae",
    "vae_class",
    "scaling_factor",
    "vae_sha256",
    "text_encoder_sha256",
    "tokenizer_sha256",
    "text_length",
)
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def rebuild_hint(cache_dir: str | os.PathLike) -> str:
    return (
        f"rebuild it with: videosspo data cache-latents --config <your config> --out {cache_dir} "
        f"(after deleting that folder), or cache into a new folder and point data.latent_cache there"
    )


def cache_file(cache_dir: Path, index: int) -> Path:
    return cache_dir / f"{index:06d}.safetensors"


# ----------------------------------------------------------------------------- identities


def _jsonable(value):
    """JSON round trip: tuples become lists, so a fresh dict compares equal to one read back."""
    return json.loads(json.dumps(value, default=str))


def _state_hash(module: torch.nn.Module) -> str:
    """sha256 of the state dict's names and float32 values (so an fp32 copy hashes the same wherever it lives)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def encoder_identity(model) -> dict:
    """What determines a model's cached tensors: its VAE's class, config, scaling factor and weights (or
    ``none``); its text encoder's weights, tokenizer vocabulary and prompt length.

    Call it before casting the frozen parts to fp16/bf16: the weight hash is of the values as they are.
    """
    vocab = json.dumps(sorted(model.tokenizer.get_vocab().items())).encode()
    text = {
        "text_encoder_sha256": _state_hash(model.text_encoder),
        "tokenizer_sha256": hashlib.sha256(vocab).hexdigest(),
        "text_length": model.text_length,
        "temporal_factor": model.temporal_factor,
    }
    if model.vae is None:
        return {
            "family": model.family,
            "vae": "none",
            "vae_class": None,
            "scaling_factor": None,
            "vae_sha256": None,
            **text,
        }
    config = {k: v for k, v in dict(model.vae.config).items() if not k.startswith("_")}
    return {
        "family": model.family,
        "vae": _jsonable(config),
        "vae_class": type(model.vae).__name__,
        "scaling_factor": float(model.vae.config.get("scaling_factor", 1.0)),
        "vae_sha256": _state_hash(model.vae),
        **text,
    }


def encoder_mismatch(cached: dict, current: dict) -> list[str]:
    diffs = []
    for key in ENCODER_KEYS:
        a, b = cached.get(key), current.get(key)
        if a == b or key not in cached:  # format 1 has no caption embeddings: no text encoder to compare
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            diffs.append(
                f"VAE config differs in {', '.join(f'{k} (cached {a.get(k)!r}, now {b.get(k)!r})' for k in keys)}"
            )
        elif key == "vae_sha256":
            diffs.append(f"VAE weights differ (sha256 cached {str(a)[:12]}..., now {str(b)[:12]}...)")
        else:
            diffs.append(f"{key}: cached {a!r}, now {b!r}")
    return diffs


def _root(records: Sequence[Record]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for r in records for p in (r.video, r.loser_video) if p is not None]))


def _describe(record: Record, root: Path) -> dict:
    """What a cache file stands for, with paths relative to the data's common folder (so it may move)."""
    rel = lambda p: "" if p is None else os.path.relpath(p, root)  # noqa: E731
    return {"video": rel(record.video), "loser_video": rel(record.loser_video), "caption": record.caption}


def records_fingerprint(records: Sequence[Record]) -> str:
    """sha256 of every record's (video, loser_video, caption), paths relative to the data's common folder."""
    root = _root(records)
    return hashlib.sha256(json.dumps([_describe(r, root) for r in records]).encode()).hexdigest()


def read_info(cache_dir: Path) -> dict | None:
    path = cache_dir / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else None


# ----------------------------------------------------------------------------- writing


def _header(path: Path) -> dict | None:
    """The string metadata of a safetensors file, or None when it cannot be opened."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception:  # truncated or foreign file: encode again
        return None


def _encode_clip(model, dataset: VideoDataset, path: Path, batch_frames: int, dtype: torch.dtype) -> torch.Tensor:
    """All frames of ``path``, read and resized as ``VideoDataset`` does, encoded: ``c F h w`` on CPU."""
    count = count_frames(path)  # the count VideoDataset draws frame indices from
    frames = dataset.read_frames(path, list(range(count)))  # uint8 (F, H', W', 3), H' x W' <= the clip's size
    device = next(model.vae.parameters()).device if model.vae is not None else model.device
    chunks = []
    for start in range(0, count, batch_frames):
        pixels = resize_center_crop(to_tensor(frames[start : start + batch_frames]), dataset.height, dataset.width)
        chunks.append(model.encode_video(pixels[None].to(device))[0].to("cpu", dtype))  # c f h w
    return torch.cat(chunks, dim=1).contiguous()


def _encode_windows(model, dataset: VideoDataset, path: Path, count: int, dtype: torch.dtype) -> torch.Tensor:
    """Every window ``frame_windows(count, frames, stride)`` of ``path``, each encoded whole (a VAE that compresses
    time): ``n c f h w`` on CPU."""
    frames = dataset.read_frames(path, list(range(count)))  # uint8 (F, H', W', 3)
    device = next(model.vae.parameters()).device
    windows = []
    for window in frame_windows(count, dataset.frames, dataset.stride):
        pixels = resize_center_crop(to_tensor(frames[window]), dataset.height, dataset.width)
        windows.append(model.encode_video(pixels[None].to(device))[0].to("cpu", dtype))  # c f h w
    return torch.stack(windows).contiguous()


def _encode_record(model, dataset: VideoDataset, record: Record, batch_frames: int, dtype: torch.dtype) -> dict:
    """The tensors of one cache file: latents (+ loser_latents) and the caption's prompt_embeds."""
    clips = {"latents": record.video, "loser_latents": record.loser_video}
    clips = {key: path for key, path in clips.items() if path is not None}
    if model.temporal_factor > 1:  # windows; winner and loser share the frame indices, as VideoDataset draws them
        count = min(count_frames(path) for path in clips.values())
        tensors = {key: _encode_windows(model, dataset, path, count, dtype) for key, path in clips.items()}
        tensors["frame_count"] = torch.tensor(count)
    else:
        tensors = {key: _encode_clip(model, dataset, path, batch_frames, dtype) for key, path in clips.items()}
    tensors["prompt_embeds"] = model.encode_prompt([record.caption])[0].to("cpu", dtype).contiguous()
    return tensors


def cache_latents(
    model,
    dataset: VideoDataset,
    out_dir: str | os.PathLike,
    batch_frames: int | None = None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
    metadata: str | os.PathLike | None = None,
) -> Path:
    """Encode every record of ``dataset`` into ``out_dir`` (see the module docstring); returns ``out_dir``.

    ``batch_frames`` frames are resized and handed to ``model.encode_video`` at a time (default
    ``4 * model.vae_chunk_frames``); ``metadata`` (the data path) is recorded in ``cache_info.json``.
    Resumable: complete files for the same clip are kept. A folder cached with another VAE, size or
    dtype is an error.
    """
    out_dir = Path(out_dir)
    dtype_name = {v: k for k, v in DTYPES.items()}.get(dtype)
    if dtype_name is None:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype}")
    batch_frames = batch_frames or 4 * model.vae_chunk_frames
    records = dataset.records
    root = _root(records)
    windowed = model.temporal_factor > 1  # the windows depend on frames and stride
    info = {
        "format": FORMAT,
        "encoder": encoder_identity(model),
        "height": dataset.height,
        "width": dataset.width,
        "dtype": dtype_name,
        "frames": dataset.frames if windowed else None,
        "stride": dataset.stride if windowed else None,
        "metadata": None if metadata is None else str(Path(metadata).resolve()),
        "num_records": len(records),
        "records_sha256": records_fingerprint(records),
        "complete": False,
        "unreadable": {},
    }
    previous = read_info(out_dir)
    if previous is not None:
        diffs = encoder_mismatch(previous["encoder"], info["encoder"])
        diffs += [
            f"{k}: cached {previous.get(k)!r}, now {info[k]!r}"
            for k in ("format", "height", "width", "dtype", "frames", "stride")
            if previous.get(k) != info[k]
        ]
        if diffs:
            raise DataError(
                f"{out_dir} already holds latents made differently ({'; '.join(diffs)}); "
                f"cache into another folder or delete this one"
            )
    elif out_dir.exists() and any(p.name.endswith(".safetensors") for p in out_dir.iterdir()):
        raise DataError(f"{out_dir} holds .safetensors files but no {INFO_FILE}; choose an empty or new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.safetensors.*.tmp"):  # left by an interrupted run
        stale.unlink(missing_ok=True)
    atomic_write_text(out_dir / INFO_FILE, json.dumps(info, indent=1) + "\n")

    written = kept = 0
    unreadable: dict[str, str] = {}
    for record in tqdm(records, desc="caching latents", disable=not progress):
        path, header = cache_file(out_dir, record.index), _describe(record, root)
        if path.is_file() and _header(path) == header:
            kept += 1
            continue
        try:
            tensors = _encode_record(model, dataset, record, batch_frames, dtype)
        except VideoReadError as e:
            unreadable[str(record.index)] = str(e)
            log.warning("skipping row %d: %s", record.index, e)
            continue
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata=header)
            chmod_like_open(tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written += 1
    info.update(complete=True, unreadable=unreadable)
    atomic_write_text(out_dir / INFO_FILE, json.dumps(info, indent=1) + "\n")
    if unreadable:
        log.warning(
            "%s: %d of %d clips could not be read and were not cached (listed in %s)",
            out_dir,
            len(unreadable),
            len(records),
            INFO_FILE,
        )
    log.info("%s: %d latent files written, %d already there, %d unreadable", out_dir, written, kept, len(unreadable))
    return out_dir


def encoders_on_cpu(config) -> tuple[str, ...]:
    """The frozen parts a run never needs on the accelerator (`VideoDiffusionModel.to(keep_on_cpu=...)`): with
    `data.latent_cache` the text encoder (UMT5-XXL: 11.4 GB in bf16), since every caption's embedding is cached; the
    few prompts still encoded (the dropped caption "", the negative prompt: once each per run; sample prompts)
    run on the CPU and their embeddings move to the accelerator. The VAE stays: sample videos are decoded there."""
    return ("text_encoder",) if config.data.latent_cache else ()
