"""Reading checkpoints: which ones a run may resume from, and whether every file of one checks out before
anything in it is loaded (`verify`: exactly the files COMPLETE.json lists, with their sizes and SHA-256; no
pickle but `PICKLES`). docs/checkpoints.md describes the layout; `videosspo.checkpoint` writes it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from accelerate.utils.other import load
from safetensors import safe_open

from videosspo.checkpoint import (
    CHECKPOINTS,
    MARKER,
    CheckpointError,
    checkpoints,
    first_line,
    latest_checkpoint,
    read_marker,
    sha256,
    store_of,
)
from videosspo.errors import PathError

log = logging.getLogger("videosspo.checkpoint")

# The only pickles a checkpoint may hold (relative paths): accelerate loads them with weights_only=True, which builds
# tensors and plain containers, never runs code (as diffusers and transformers load an export's .bin weights).
# DeepSpeed's ZeRO files (accelerate/pytorch_model/) are DeepSpeed's.
PICKLES = re.compile(
    r"accelerate/(optimizer(_\d+)?\.bin|random_states_\d+\.pkl|scaler\.pt|fsdp_optimizer\.bin"
    r"|pytorch_model/.*)|model/.*\.bin"
)
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin", ".pt", ".pth", ".ckpt")


def legacy_checkpoints(output_dir: str | Path) -> list[Path]:
    """The `step_*` folders of a run without COMPLETE.json, oldest first: written before the marker existed."""
    return sorted(p for p in (Path(output_dir) / CHECKPOINTS).glob("step_*") if not (p / MARKER).is_file())


def upgrade_hint(output_dir: Path) -> str:
    return (
        f"written by a videosspo older than checkpoint markers ({MARKER}); make them resumable in place with: "
        f"videosspo upgrade-checkpoints {output_dir}"
    )


def check_file(path: Path) -> None:
    """CheckpointError unless a safetensors header, a JSON file or an RNG state parses (others: not looked into)."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt"):
                pass
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.name.startswith("random_states_"):  # accelerate would skip a damaged one with a line at INFO
            load(path)  # as accelerate loads it: weights_only=True, numpy's arrays allowed
    except Exception as e:  # safetensors, json and torch raise assorted types for damaged files
        raise CheckpointError(f"{path} is damaged ({first_line(e)})") from e


def check_pickles(folder: Path, names) -> None:
    """CheckpointError for a file that could run code when loaded: one of accelerate's custom states (loaded with
    weights_only=False; videosspo writes none) or any pickle outside `PICKLES`."""
    for name in names:
        if Path(name).suffix in PICKLE_SUFFIXES and not PICKLES.fullmatch(name):
            hint = (
                " (an earlier videosspo wrote the LR schedule there: `videosspo upgrade-checkpoints "
                f"{folder.parent.parent}` drops it unread)"
                if "custom_checkpoint_" in name
                else ""
            )
            raise CheckpointError(
                f"{folder / name} is a pickle videosspo does not load: refusing the checkpoint, "
                f"since unpickling it could run code{hint}"
            )


def verify(folder: Path) -> dict:
    """The marker of a checkpoint whose files all check out; else CheckpointError naming the bad file."""
    marker = folder / MARKER
    if not folder.is_dir():
        raise PathError(f"checkpoint {str(folder)!r} does not exist")
    if not marker.is_file():
        run = folder.parent.parent
        if folder.name.startswith("step_"):
            raise CheckpointError(f"{folder} has no {MARKER}: {upgrade_hint(run)}")
        newest = latest_checkpoint(run)
        raise CheckpointError(
            f"{folder} is not a complete checkpoint (a run stopped while writing or deleting it); "
            + (f"use a complete one, e.g. the newest: {newest}" if newest else f"{run} holds no complete checkpoint")
        )
    try:
        info = read_marker(folder)
    except ValueError as e:
        raise CheckpointError(f"{marker} is damaged ({first_line(e)})") from e
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {MARKER, f".{MARKER}.tmp"}
    check_pickles(folder, sorted(present | set(info["files"])))
    unlisted = sorted(present - set(info["files"]))
    if unlisted:
        raise CheckpointError(
            f"{folder / unlisted[0]} is not listed in {marker}: the folder was changed after it was written"
        )
    store, digests = store_of(folder), info.get("sha256", {})  # none in markers written before digests
    expected = {folder / name: (size, digests.get(name)) for name, size in info["files"].items()}
    expected.update({store.path(digest): (size, digest) for digest, size in info["snapshots"].items()})
    for path, (size, digest) in expected.items():
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        if path.stat().st_size != size:
            raise CheckpointError(f"{path} is damaged: {path.stat().st_size} bytes, {size} when it was written")
        if digest is not None and sha256(path) != digest:
            raise CheckpointError(f"{path} is damaged: its SHA-256 differs from when it was written")
        check_file(path)
    return info


def resume_candidates(output_dir: Path, where: str | None) -> list[Path]:
    """The checkpoints to try, in order, for `train.resume=where`; refuses what would mix two runs in one folder.

    None: a fresh start, refused in a folder that holds checkpoints. `latest`: every complete checkpoint,
    newest first (the first that verifies wins). A folder: it alone, refused when a newer checkpoint of
    this folder exists (its run would be overwritten and pruned by ours) or when it belongs to another
    folder while this one holds checkpoints.
    """
    done, legacy = checkpoints(output_dir), legacy_checkpoints(output_dir)
    if legacy and not done and where in (None, "latest"):
        raise CheckpointError(
            f"{output_dir / CHECKPOINTS} holds {', '.join(p.name for p in legacy)}, {upgrade_hint(output_dir)}"
        )
    for folder in legacy if where == "latest" else []:  # beside marked ones: a write or a deletion was cut short
        log.warning(
            "skipping %s: it has no %s beside complete checkpoints, so a run stopped while writing or "
            "deleting it; delete it",
            folder,
            MARKER,
        )
    if where == "latest":
        return done[::-1]
    hint = "continue it with --train.resume latest, or choose a new train.output_dir"
    if where is None:
        if done:
            raise CheckpointError(
                f"train.output_dir={str(output_dir)!r} already holds the checkpoints of a run "
                f"(newest {done[-1].name}): {hint}"
            )
        return []
    path = Path(where)
    if not path.is_dir():
        raise PathError(
            f"train.resume={where!r} does not exist; give a checkpoint folder (…/{CHECKPOINTS}/step_N) or 'latest'"
        )
    if path.resolve().parent != (output_dir / CHECKPOINTS).resolve():
        if done:
            raise CheckpointError(
                f"train.output_dir={str(output_dir)!r} already holds the checkpoints of another run "
                f"(newest {done[-1].name}): resume from {where} into a new train.output_dir"
            )
        return [path]
    later = [c.name for c in done if c.name > path.name]
    if later:
        raise CheckpointError(
            f"train.resume={where!r} is not the newest checkpoint of this run ({later[-1]} is): "
            f"continuing here would overwrite and prune the later ones. Branch instead: "
            f"--train.resume {where} --train.output_dir NEW_FOLDER, or first move "
            f"{', '.join(later)} out of {path.parent}"
        )
    return [path]
