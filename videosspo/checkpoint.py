"""Checkpoints on disk: written completely or not at all, pruned only within their run.

docs/checkpoints.md holds the one description of the run folder and of a checkpoint: its files, when it
*verifies* and what each kill point leaves. Here: the snapshot store, writing (`write_marker`, `commit`,
`prune`, `tidy`) and listing (`checkpoints`); `videosspo.checkpoint_read` reads them (`verify`: exactly the
files COMPLETE.json lists, with their sizes and SHA-256, no pickle but `PICKLES`; `resume_candidates`).
The names a save passes through in `checkpoints/`:

    .tmp-step_N/   being written; removed on failure, never resumed from
    .old-step_N/   a checkpoint being replaced; restored if the run died mid-replacement
    .del-*/        a checkpoint being deleted (renamed first: never a partial step_N)

Order of a save: write .tmp-step_N -> marker -> fsync files and folders -> rename an existing step_N
aside -> rename .tmp-step_N to step_N -> fsync checkpoints/ -> delete the old one -> prune.
The run lock is `videosspo.runlock`; checkpoints of an earlier videosspo: `videosspo.upgrade`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import save_file

from videosspo.errors import UserError

log = logging.getLogger("videosspo.checkpoint")

CHECKPOINTS = "checkpoints"
STORE = "snapshots"
MARKER = "COMPLETE.json"
GB = 1e9


class CheckpointError(UserError):
    """A checkpoint cannot be written (disk full, I/O error) or read (missing, damaged, another run's)."""


class Diverged(UserError, FloatingPointError):
    """Training turned non-finite or blew up: stopped before checkpointing it (`train.on_anomaly`)."""


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


# -- durability ------------------------------------------------------------------------------------


def fsync_path(path: str | Path) -> None:
    """Flush a file's or a folder's entry to the disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file and folder under `folder`, so a rename after it publishes only durable data."""
    for parent, _, files in os.walk(folder):
        for name in files:
            fsync_path(os.path.join(parent, name))
        fsync_path(parent)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def free_bytes(path: Path) -> int:
    """Free space on the disk holding `path` (or its nearest existing parent)."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


# -- the snapshot store ----------------------------------------------------------------------------


class SnapshotStore:
    """Replay snapshots stored once, named by the SHA-256 of their safetensors file (they never change)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.safetensors"

    def put(self, tensors: dict | None = None, file: Path | None = None) -> str:
        """Store `tensors` (or a copy of a safetensors `file`) unless already there; return its digest."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".tmp-{uuid.uuid4().hex}.safetensors"
        try:
            if file is not None:
                shutil.copyfile(file, tmp)
            else:
                save_file(tensors, str(tmp))
            digest = hashlib.sha256()
            with open(tmp, "rb") as f:
                while chunk := f.read(1 << 24):
                    digest.update(chunk)
                os.fsync(f.fileno())
        except BaseException:  # a full disk: leave no partial file to keep it full
            tmp.unlink(missing_ok=True)
            raise
        final = self.path(digest.hexdigest())
        if final.is_file():
            tmp.unlink()
        else:
            os.replace(tmp, final)
            fsync_path(self.folder)
        return digest.hexdigest()

    def collect(self, keep: set[str]) -> None:
        """Delete every stored snapshot (and leftover temporary file) whose digest is not in `keep`."""
        for path in self.folder.glob("*.safetensors"):
            if path.stem not in keep:
                path.unlink()


def store_of(checkpoint: Path) -> SnapshotStore:
    """The snapshot store of the run folder holding `checkpoint`."""
    return SnapshotStore(checkpoint.parent.parent / STORE)


# -- writing ---------------------------------------------------------------------------------------


def write_marker(folder: Path, lineage: str, parent: str | None, snapshots: dict[str, int]) -> None:
    """The completeness marker, written last: every file under `folder` with its size and SHA-256 (read back
    from the page cache just after the write), and the snapshots used."""
    paths = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != MARKER]
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in paths}
    digests = {p.relative_to(folder).as_posix(): sha256(p) for p in paths}
    info = {"lineage": lineage, "parent": parent, "files": files, "sha256": digests, "snapshots": snapshots}
    write_json(folder / MARKER, info)


def read_marker(folder: Path) -> dict:
    return json.loads((folder / MARKER).read_text())


def commit(tmp: Path, final: Path) -> None:
    """Publish the written `tmp` as `final`, durably; a `final` already there is deleted only once `tmp` is in place."""
    fsync_tree(tmp)
    aside = final.with_name(f".old-{final.name}")
    if final.exists():
        remove(aside)
        os.replace(final, aside)
    os.replace(tmp, final)
    fsync_path(final.parent)
    remove(aside)


def remove(folder: Path) -> None:
    """Delete a checkpoint folder: renamed to `.del-*` first, so a kill midway never leaves a partial `step_N`."""
    if not folder.exists():
        return
    trash = folder.with_name(f".del-{uuid.uuid4().hex[:8]}-{folder.name.lstrip('.')}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)


def tidy(output_dir: Path) -> None:
    """Undo what a killed save or prune left: restore a checkpoint renamed aside whose replacement never
    arrived; delete temporary and half-deleted folders. Run under the lock, before resuming."""
    root = output_dir / CHECKPOINTS
    for aside in sorted(root.glob(".old-step_*")):
        final = root / aside.name.removeprefix(".old-")
        if (aside / MARKER).is_file() and not (final / MARKER).is_file():
            remove(final)
            os.replace(aside, final)
            log.warning("restored %s: the run that was replacing it stopped midway", final)
        else:
            remove(aside)
    for junk in [*root.glob(".tmp-step_*"), *root.glob(".del-*")]:
        shutil.rmtree(junk, ignore_errors=True)


def checkpoint_bytes(folder: Path) -> int:
    """A complete checkpoint's own size from its marker (the stored snapshots it shares not included)."""
    return sum(read_marker(folder)["files"].values())


def check_space(final: Path, needed: int) -> None:
    """Refuse to start writing `final` when its disk has less than `needed` bytes free."""
    free = free_bytes(final.parent)
    if free < needed:
        raise CheckpointError(
            f"not enough disk space for checkpoint {final}: {free / GB:.2f} GB free, about "
            f"{needed / GB:.2f} GB needed (the previous checkpoint's size and new snapshots); free "
            f"some space or lower "
            f"train.keep_checkpoints; earlier checkpoints are intact"
        )


def save_failed(final: Path, error: BaseException, needed: int) -> CheckpointError:
    """The one-line report of a failed save (its temporary folder already removed)."""
    return CheckpointError(
        f"writing checkpoint {final} failed ({first_line(error)}); {free_bytes(final.parent) / GB:.2f} "
        f"GB free on its disk, about {needed / GB:.2f} GB needed; the temporary folder was removed "
        f"and earlier checkpoints in {final.parent} are intact"
    )


def prune(output_dir: Path, keep: int, lineage: str, protect: str | None = None) -> None:
    """Keep the newest `keep` complete checkpoints of `lineage` (0: all) and `protect`; then delete the
    snapshots no remaining checkpoint refers to."""
    ours = [c for c in checkpoints(output_dir) if read_marker(c)["lineage"] == lineage]
    for old in ours[:-keep] if keep else []:
        if old.name != protect:
            remove(old)
    used = {digest for c in checkpoints(output_dir) for digest in read_marker(c)["snapshots"]}
    SnapshotStore(output_dir / STORE).collect(used)


def nonfinite(named_tensors) -> list[str]:
    """The names of the tensors holding a NaN or an infinity (never checkpointed); of a DTensor (FSDP), its shard;
    float8 storage (`model.fp8_base`), which torch cannot test, read up-cast."""

    def finite(t):
        t = t.to_local() if hasattr(t, "to_local") else t
        return bool(torch.isfinite(t.float() if t.element_size() == 1 and t.is_floating_point() else t).all())

    return [name for name, t in named_tensors if not finite(t)]


def stopped(step: int, why: str, last_good: Path | None) -> Diverged:
    """The one line a run stopped by divergence ends with, naming the checkpoint to continue from."""
    where = (
        f"the last good checkpoint is {last_good}: continue from it with a lower optim.lr or method.beta "
        f"(--train.resume latest --optim.lr ...)"
        if last_good
        else "no checkpoint was written before it"
    )
    return Diverged(
        f"training diverged at step {step} ({why}) and stopped without checkpointing it; {where}; "
        f"train.on_anomaly: continue trains on"
    )


@contextlib.contextmanager
def disk_full(output_dir: Path):
    """A full disk (or quota) met outside a checkpoint save (TensorBoard's events, metrics.jsonl, samples) is one
    line: the checkpoints, written whole or not at all, are intact."""
    try:
        yield
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise CheckpointError(
            f"writing under {output_dir} failed ({first_line(e)}; {free_bytes(output_dir) / GB:.2f} "
            f"GB free): free some space, then continue with --train.resume latest; the checkpoints "
            f"in {output_dir / CHECKPOINTS} are intact"
        ) from e


# -- listing ---------------------------------------------------------------------------------------


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoints of a run folder, oldest first."""
    done = [p for p in (Path(output_dir) / CHECKPOINTS).glob("step_*") if (p / MARKER).is_file()]
    return sorted(done, key=lambda p: p.name)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    done = checkpoints(output_dir)
    return done[-1] if done else None


def write_json(path: Path, data: dict) -> None:
    """`data` as JSON at `path`, replacing it whole (written to a temporary name, then renamed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def new_lineage() -> str:
    return uuid.uuid4().hex[:12]
