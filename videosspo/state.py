"""The training state: everything a resumed run needs to continue exactly as if never stopped, saved whole.

A checkpoint is one directory, complete or absent (`videosspo.checkpoint`: written to a temporary
name, marked complete, fsynced, renamed into place; verified before resuming); its layout, file by
file, is described once, in docs/checkpoints.md. `TrainingState.state_dict` is its `trainer.json`.
The LR schedule is (config, step): rebuilt at resume (`videosspo.resume`), nothing pickled. Resume refuses
what would not continue the same run: another architecture (`check_resume`), another global batch
(`check_global_batch`), shards or ZeRO state on another process count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from models import save_adapter
from videosspo.backend import check_zero_partitions
from videosspo.checkpoint import (
    CHECKPOINTS,
    STORE,
    CheckpointError,
    SnapshotStore,
    check_space,
    checkpoint_bytes,
    commit,
    first_line,
    latest_checkpoint,
    new_lineage,
    nonfinite,
    prune,
    save_failed,
    stopped,
    store_of,
    write_marker,
)
from videosspo.checkpoint_read import resume_candidates, verify
from videosspo.config import Config, ConfigError, load_config, save_config
from videosspo.ema import EMA
from videosspo.losers import LoserCache
from videosspo.resume import check_resume, log_changes, lr_schedule
from videosspo.shards import ShardDataset
from videosspo.stream import stream_shift

if TYPE_CHECKING:
    from videosspo.trainer import Trainer

log = logging.getLogger("videosspo.state")

SLOW_REFERENCE_FILE = "reference_ema.safetensors"  # sspo-ema: the moving average the replay pool snapshots
EMA_FILE = "ema.safetensors"  # optim.ema_decay > 0: the moving average of the trainable weights


class TrainingState:
    """Saves and restores a trainer's whole state (the layout above); `state_dict` is trainer.json's part.

    `lineage` / `parent` name the run and where it branched from (`videosspo.checkpoint`); `resumed` is the
    checkpoint of this output folder the run resumed from (never rewritten).
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.lineage, self.parent = new_lineage(), None  # resume keeps or branches them (checkpoint.py)
        self.resumed: Path | None = None

    def state_dict(self, stream_skips: list[int]) -> dict:
        """trainer.json: the small state, JSON; `stream_skips` is every process's `Stream.skips`, by rank."""
        tr = self.trainer
        return {
            "step": tr.step,
            "counters": tr.counters,
            "divergence": tr.health.divergence,
            "unreadable": tr.stream.unreadable.state_dict(),
            "stream_skips": stream_skips,
            "guard": tr.health.guard.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` (the stream's skips: `load`, which needs the saved config to place them)."""
        tr = self.trainer
        tr.step, tr.counters, tr.health.divergence = state["step"], state["counters"], state.get("divergence")
        tr.stream.unreadable.load_state_dict(state.get("unreadable", []))
        tr.health.guard.load_state_dict(state.get("guard", {}))

    def save(self) -> Path:
        """Write the whole training state: complete or not at all, never at the cost of an earlier checkpoint.

        The state goes to a temporary folder, gets its completeness marker and is fsynced, then is
        renamed into place (`videosspo.checkpoint`); snapshots go to the run's store once. On any failure
        the temporary folder is removed and the error says how much space there is and is needed.
        """
        tr = self.trainer
        acc, out = tr.accelerator, tr.out
        final = out / CHECKPOINTS / f"step_{tr.step:08d}"
        tmp = final.with_name(f".tmp-{final.name}")
        store = SnapshotStore(out / STORE)
        if any(tr.backend.gather(nonfinite(tr.model.unet.named_parameters()))):  # every process's shard
            raise stopped(tr.step, "non-finite weights", latest_checkpoint(out))
        if final == self.resumed:  # a finished run relaunched: its final checkpoint stays as written
            if acc.is_main_process:
                prune(out, tr.config.train.keep_checkpoints, self.lineage, protect=tr.health.kept)
            return final
        previous = latest_checkpoint(out)
        needed = (checkpoint_bytes(previous) if previous else 0) + tr.pool.unstored_bytes(store)
        acc.wait_for_everyone()
        if acc.is_main_process:
            check_space(final, needed)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        stream_skips = tr.backend.gather([tr.stream.skips])  # every process's, by rank
        acc.wait_for_everyone()
        try:
            tr.backend.save_state(tmp / "accelerate")  # every process: sharded states (FSDP/DeepSpeed) need all
            if tr.losers.cache.reuse > 1:  # each process's own cache: its samples are its own
                (tmp / "losers").mkdir(exist_ok=True)
                tr.losers.cache.save(tmp / "losers" / f"rank{acc.process_index}.safetensors")
            with tr.inference_weights():  # every process: gathering the shards is a collective under FSDP
                whole = tr.policy.state() if tr.policy.sharded else None
            acc.wait_for_everyone()
            if acc.is_main_process:
                self._write(tmp, store, stream_skips, whole)
                commit(tmp, final)
        except Exception as e:  # any failure (torch's writer raises RuntimeError on a full disk, not OSError)
            shutil.rmtree(tmp, ignore_errors=True)
            raise save_failed(final, e, needed) from e
        if acc.is_main_process:
            prune(out, tr.config.train.keep_checkpoints, self.lineage, protect=tr.health.kept)
        acc.wait_for_everyone()
        return final

    def _write(self, tmp: Path, store: SnapshotStore, stream_skips: list[int], whole: dict | None) -> None:
        """The main process's part of a checkpoint: replay pool, EMA, export (of `whole`, the state dict
        gathered under FSDP), config, trainer state, marker.

        Exporting builds modules whose random init it overwrites: under `fork_rng`, so the global RNG
        (saved above by `save_state`) does not advance and a resumed run's equals an uninterrupted one's.
        """
        tr = self.trainer
        device = tr.accelerator.device
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            tr.pool.save(tmp, store)
            if tr.ema:  # under FSDP this process's average is its shard: the whole one is in `whole`
                save_file(tr.ema.state_dict(whole), str(tmp / EMA_FILE))
            if tr.slow:
                save_file(tr.slow.state_dict(), str(tmp / SLOW_REFERENCE_FILE))
            with tr.inference_weights():
                if tr.config.train.export == "adapter":
                    save_adapter(tmp / "model", tr.policy.snapshot(whole), tr.config.model)
                else:
                    tr.model.save_pretrained(tmp / "model", unet=tr.policy.merged_unet(whole))
        save_config(tr.config, tmp / "config.yaml")
        (tmp / "trainer.json").write_text(json.dumps(self.state_dict(stream_skips), indent=2))
        snapshots = {d: store.path(d).stat().st_size for d in tr.pool.digests}
        write_marker(tmp, self.lineage, self.parent, snapshots)

    def resume(self, where: str | None) -> None:
        """Restore the whole training state from `train.resume`: `latest` (the newest checkpoint that
        verifies; damaged newer ones are named and skipped) or a checkpoint folder. None starts fresh.
        Refuses what would mix two runs in one output folder (`checkpoint_read.resume_candidates`)."""
        out = self.trainer.out
        candidates = resume_candidates(out, where)
        for tried, path in enumerate(candidates):
            try:
                info = verify(path)
                self.load(path)
            except CheckpointError as e:
                if where != "latest":
                    raise
                log.warning("cannot resume from %s: %s", path.name, e)
                continue
            if tried:
                log.warning("resumed from %s instead: the newest checkpoint that verifies", path)
            same_run = path.parent.resolve() == (out / CHECKPOINTS).resolve()
            self.resumed = out / CHECKPOINTS / path.name if same_run else None
            self.lineage, self.parent = (info["lineage"], info["parent"]) if same_run else (new_lineage(), str(path))
            log.info("resumed from %s at step %d", path, self.trainer.step)
            return
        if candidates:
            raise CheckpointError(
                f"no checkpoint in {out / CHECKPOINTS} can be resumed (each is named above); "
                f"start a new train.output_dir"
            )
        if where == "latest":
            log.info("train.resume=latest but %s has no checkpoint; starting fresh", out / CHECKPOINTS)

    def load(self, path: Path) -> None:
        """Load a verified checkpoint into the trainer; a failure names the checkpoint and the error."""
        tr = self.trainer
        acc, cfg, optim = tr.accelerator, tr.config, tr.config.optim
        saved = load_config(path / "config.yaml")
        changes = check_resume(saved, cfg)
        state = json.loads((path / "trainer.json").read_text())  # parses: `verify` read it
        skips = state.get("stream_skips", [])  # one count per process of the run that wrote it (older: none)
        if skips:
            check_global_batch(saved, len(skips), cfg, acc.num_processes)
            if isinstance(tr.data, ShardDataset) and len(skips) != acc.num_processes:
                raise ConfigError(
                    f"cannot resume on {acc.num_processes} processes: the checkpoint's {len(skips)} "
                    f"processes each read their own WebDataset shards of {cfg.data.path}; "
                    f"resume with {len(skips)} processes"
                )
        check_zero_partitions(path / "accelerate", tr.backend.deepspeed, acc.num_processes)
        tr.stream.skips = stream_shift(
            skips, saved.optim.batch_size, optim.batch_size, acc.num_processes, acc.process_index
        )
        try:
            tr.backend.load_state(path / "accelerate")
            self.load_state_dict(state)
            tr.lr_schedule = lr_schedule(tr.lr_schedule.optimizer, optim, cfg.train.max_steps, tr.step)
            log_changes(changes, path)
            # accelerate's count of micro-batches, which decides where `accumulate` syncs: this layout's (another
            # optim.grad_accum, or a process the saving run did not have and so no count)
            acc.step = tr.step * optim.grad_accum
            tr.pool.load(path, store_of(path))
            if tr.ema and (path / EMA_FILE).is_file():
                tr.ema.load_state_dict(
                    load_file(str(path / EMA_FILE), device=str(acc.device)),
                    write=tr.policy.load if tr.policy.sharded else None,
                )
            elif tr.ema:  # a checkpoint trained without EMA: the average starts at its weights
                log.warning("%s has no %s: the moving average starts at its weights", path.name, EMA_FILE)
                tr.ema = EMA(tr.model.unet, optim.ema_decay)
            tr.losers.cache = LoserCache(cfg.loser.reuse)
            tr.losers.cache.load(path / "losers")
            if tr.slow:
                tr.slow.load_state_dict(load_file(str(path / SLOW_REFERENCE_FILE), device=str(acc.device)))
        except Exception as e:  # a file that verified but does not load: name the checkpoint
            raise CheckpointError(f"{path} could not be loaded ({first_line(e)})") from e


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the lines of steps after `step` from `metrics.jsonl`: a resumed run logs them again."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _logged_step(line) <= step]
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
        log.info("metrics.jsonl: dropped %d lines after step %d (they are logged again)", len(lines) - len(kept), step)


def _logged_step(line: str) -> float:
    """The step of a metrics.jsonl line; infinite for a line cut short by a kill (dropped as well)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def check_global_batch(saved: Config, saved_processes: int, current: Config, processes: int) -> None:
    """Resume refuses another global batch: the data position derives from step x global batch."""

    def global_batch(optim, n: int) -> tuple[int, str]:
        return (
            optim.batch_size * optim.grad_accum * n,
            f"optim.batch_size {optim.batch_size} x optim.grad_accum {optim.grad_accum} x {n} processes",
        )

    (was, was_made), (now, now_made) = (
        global_batch(saved.optim, saved_processes),
        global_batch(current.optim, processes),
    )
    if now != was:
        raise ConfigError(
            f"cannot resume: the global batch is {now} ({now_made}) but the checkpoint's is {was} "
            f"({was_made}); set optim.batch_size x optim.grad_accum x processes to {was}"
        )


def run_key(output_dir: Path) -> str:
    """A name for a run's files in shared node-local folders: its output folder, hashed."""
    return "run-" + hashlib.sha1(str(output_dir.resolve()).encode()).hexdigest()[:12]
