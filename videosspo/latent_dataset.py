"""Reading a latent cache (``videosspo.latents`` writes it): ``LatentDataset``, a ``VideoDataset`` without the encoders.

Same interface as ``VideoDataset`` (``get(index, seed)``, ``try_get``, ``records``),
returning ``{"latents", "prompt_embeds", "caption", "index"}`` (+ ``"loser_latents"``). Frames
(or the window) are chosen with the same ``frame_indices`` rule and seed as ``VideoDataset``, so
for the same seed
``LatentDataset.get(i, s)["latents"] == model.encode_video(VideoDataset.get(i, s)["pixels"][None])[0]``
and ``prompt_embeds == model.encode_prompt([caption])[0]``: the trainer runs neither encoder per step.
Construction checks the cache against the data config and, given ``expect=encoder_identity(model)``,
against the current VAE and text encoder; any mismatch is an error naming it and the command that
rebuilds the cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from safetensors import SafetensorError, safe_open

from videosspo.checkpoint import first_line
from videosspo.data import ClipDataset, frame_windows
from videosspo.errors import DataError, PathError
from videosspo.latents import INFO_FILE, cache_file, encoder_mismatch, read_info, rebuild_hint, records_fingerprint
from videosspo.metadata import Record
from videosspo.video import VideoReadError


class LatentDataset(ClipDataset):
    """Cached latents with ``VideoDataset``'s interface: ``{"latents": c f h w, "caption", "index"}`` (+ loser).

    ``metadata`` is the data path (or its records) the cache was built from; ``expect`` is
    ``encoder_identity(model)`` of the model about to train (None skips that check).
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        metadata: str | os.PathLike | Sequence[Record],
        frames: int,
        stride: int = 1,
        *,
        height: int,
        width: int,
        require_loser: bool = False,
        expect: dict | None = None,
    ):
        super().__init__(metadata, frames, stride, height=height, width=width, require_loser=require_loser)
        self.cache_dir = cache_dir = Path(cache_dir)

        info = read_info(cache_dir)
        if info is None:
            raise PathError(
                f"data.latent_cache={str(cache_dir)!r} has no {INFO_FILE}: it is not a latent "
                f"cache; build it with: videosspo data cache-latents --config <your config> "
                f"--out {cache_dir}"
            )
        self.windowed = info.get("frames") is not None  # windows encoded whole (a VAE that compresses time)
        problems = [
            f"{k}: cached {info.get(k)!r}, data config {v!r}"
            for k, v in (("height", height), ("width", width))
            if info.get(k) != v
        ]
        problems += [
            f"{k}: cached windows of data.{k} {info[k]!r}, data config {v!r}"
            for k, v in (("frames", frames), ("stride", stride))
            if self.windowed and info[k] != v
        ]
        if info.get("num_records") != len(self.records) or info.get("records_sha256") != records_fingerprint(
            self.records
        ):
            problems.append(
                f"the metadata differs (cached from {info.get('metadata')} with {info.get('num_records')} "
                f"rows; now {len(self.records)} rows, or changed videos/captions)"
            )
        if expect is not None:
            problems += encoder_mismatch(info["encoder"], expect)
        if problems:
            raise DataError(
                f"latent cache {cache_dir} does not match this run: {'; '.join(problems)}; " + rebuild_hint(cache_dir)
            )
        self.unreadable = {int(k): v for k, v in info.get("unreadable", {}).items()}
        missing = [
            r.index
            for r in self.records
            if r.index not in self.unreadable and not cache_file(cache_dir, r.index).is_file()
        ]
        if missing or not info.get("complete", False):
            why = (
                f"{len(missing)} of {len(self.records)} rows have no file (first: "
                f"{', '.join(cache_file(cache_dir, i).name for i in missing[:3])})"
                if missing
                else "the run that wrote it did not finish"
            )
            raise PathError(
                f"latent cache {cache_dir} is incomplete: {why}; fill it with: videosspo data "
                f"cache-latents --config <your config> --out {cache_dir} (existing files are kept)"
            )

    def get(self, index: int, seed: int) -> dict:
        """``{"latents", "prompt_embeds", "caption", "index"}`` (+ ``"loser_latents"``); raises VideoReadError for
        an unreadable clip."""
        record = self.records[index]
        if index in self.unreadable:
            raise VideoReadError(
                record.video, f"it could not be read when the latent cache was built: {self.unreadable[index]}"
            )
        path = cache_file(self.cache_dir, index)
        try:
            with safe_open(str(path), framework="pt") as f:
                keys = ["latents"] + (["loser_latents"] if record.loser_video is not None else [])
                slices = {k: f.get_slice(k) for k in keys}
                if self.windowed:  # n c f h w: the window VideoDataset would draw, read alone
                    count = int(f.get_tensor("frame_count"))
                    n = frame_windows(count, self.frames, self.stride).index(self._indices(record, count, seed))
                    tensors = {k: s[n : n + 1][0] for k, s in slices.items()}
                else:
                    num_frames = min(s.get_shape()[1] for s in slices.values())  # winner and loser share the indices
                    indices = self._indices(record, num_frames, seed)
                    lo, hi = min(indices), max(indices)
                    picked = [i - lo for i in indices]
                    # read only the span of frames needed, then pick (and repeat) the frames inside it
                    tensors = {k: s[:, lo : hi + 1][:, picked] for k, s in slices.items()}
                if "prompt_embeds" in f.keys():  # format 1 caches have none: the trainer encodes the caption
                    tensors["prompt_embeds"] = f.get_tensor("prompt_embeds")
        except (SafetensorError, OSError) as e:  # truncated, overwritten or not a safetensors file
            raise DataError(
                f"latent cache file {path} is damaged ({first_line(e)}); re-encode it with: videosspo data "
                f"cache-latents --config <your config> --out {self.cache_dir} (damaged files are encoded "
                f"again, the others kept)"
            ) from e
        item = {"caption": record.caption, "index": record.index, **tensors}
        return item
