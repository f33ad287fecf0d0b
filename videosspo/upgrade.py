"""Checkpoints of an earlier videosspo made resumable in place (`videosspo upgrade-checkpoints RUN_DIR`).

Two kinds: pre-marker ones (no COMPLETE.json; their replay snapshots inside them), and marked ones holding
accelerate's pickled custom state (where the LR schedule was kept). docs/checkpoints.md says what is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from videosspo.checkpoint import (
    MARKER,
    STORE,
    CheckpointError,
    SnapshotStore,
    checkpoints,
    fsync_tree,
    new_lineage,
    read_marker,
    write_json,
    write_marker,
)
from videosspo.checkpoint_read import check_file, legacy_checkpoints, verify


def expected_parts(folder: Path) -> list[str]:
    """The parts every checkpoint written with `folder`'s config.yaml and trainer.json holds (alternatives joined
    by ' or '): `upgrade` refuses one that lacks any, e.g. a checkpoint half deleted."""
    from videosspo.config import load_config

    cfg = load_config(folder / "config.yaml")
    processes = range(len(json.loads((folder / "trainer.json").read_text()).get("stream_skips") or [0]))
    weights = "lora_adapter.safetensors" if cfg.model.lora_rank else "model.safetensors"
    parts = [
        f"accelerate/{weights} or accelerate/fsdp_model.safetensors or accelerate/pytorch_model",
        "accelerate/optimizer.bin or accelerate/fsdp_optimizer.bin or accelerate/pytorch_model",
        "model",
        *(f"accelerate/random_states_{r}.pkl" for r in processes),
    ]
    if cfg.optim.ema_decay:
        parts.append("ema.safetensors")
    if cfg.loser.reuse > 1:
        parts += [f"losers/rank{r}.safetensors" for r in processes]
    return parts


def _missing(folder: Path, store: SnapshotStore) -> list[str]:
    """The parts of a pre-marker checkpoint that are not there (its replay snapshots included)."""
    missing = [name for name in ("trainer.json", "config.yaml", "replay/index.json") if not (folder / name).exists()]
    if missing:
        return missing
    missing = [
        part for part in expected_parts(folder) if not any((folder / name).exists() for name in part.split(" or "))
    ]
    for entry in json.loads((folder / "replay" / "index.json").read_text())["snapshots"]:
        snapshot = folder / "replay" / entry["file"] if "file" in entry else store.path(entry["digest"])
        if not snapshot.is_file():
            missing.append(str(snapshot))
    return missing


def _drop_custom_states(folder: Path) -> list[str]:
    """Delete, unread, accelerate's pickled custom states (earlier videosspos kept the LR schedule's there; it is
    now derived from the step and the config)."""
    names = sorted(p.relative_to(folder).as_posix() for p in (folder / "accelerate").glob("custom_checkpoint_*"))
    for name in names:
        (folder / name).unlink()
    return names


def to_upgrade(output_dir: str | Path) -> list[Path]:
    """The checkpoints `upgrade` works on: those without a marker, and marked ones holding a pickled custom state."""
    marked = [c for c in checkpoints(output_dir) if list((c / "accelerate").glob("custom_checkpoint_*"))]
    return sorted([*legacy_checkpoints(output_dir), *marked], key=lambda p: p.name)


def upgrade(output_dir: Path) -> list[str]:
    """Make a run folder's checkpoints of an earlier videosspo resumable, in place; one line per checkpoint saying
    what it did.

    Pre-marker ones: when every part is there (`expected_parts`) and every JSON and safetensors file parses, their
    replay snapshots move into the run's store (`replay/index.json` then names their digests) and their marker
    is written last, under one new lineage for the folder; one that lacks a part or holds a damaged file keeps no
    marker and is named. Any: the pickled LR schedule state (`accelerate/custom_checkpoint_0.pkl`) is deleted
    unread and the marker gains its digests. Rerunning after a kill finishes the job (nothing is deleted before
    its copy is in the store).
    """
    store, lineage, report = SnapshotStore(output_dir / STORE), new_lineage(), []
    for folder in to_upgrade(output_dir):
        if (folder / MARKER).is_file():  # marked: drop the pickle from the marker, then from the disk
            info = read_marker(folder)
            pickles = sorted(p.relative_to(folder).as_posix() for p in (folder / "accelerate").glob("custom_*"))
            info["files"] = {k: v for k, v in info["files"].items() if k not in pickles}
            info.get("sha256", {}).clear()  # recomputed below, once the rest is verified
            write_json(folder / MARKER, info)
            _drop_custom_states(folder)
            try:
                verify(folder)
            except CheckpointError as e:
                report.append(f"{e}: {folder} not upgraded")
                continue
            write_marker(folder, info["lineage"], info["parent"], info["snapshots"])
            report.append(f"{folder}: upgraded (its pickled LR schedule state deleted unread; file digests added)")
            continue
        missing = _missing(folder, store)
        if missing:
            report.append(
                f"{folder}: not upgraded, it lacks {', '.join(missing)} (a run stopped while writing or "
                f"deleting it); delete it"
            )
            continue
        try:
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "custom_checkpoint_" not in path.name:
                    check_file(path)
        except CheckpointError as e:
            report.append(f"{e}: {folder} not upgraded")
            continue
        index_path = folder / "replay" / "index.json"
        index = json.loads(index_path.read_text())
        for entry in index["snapshots"]:
            if "file" in entry:  # else moved by an upgrade that was killed
                entry["digest"] = store.put(file=folder / "replay" / entry.pop("file"))
        write_json(index_path, index)
        for path in (folder / "replay").glob("*.safetensors"):  # now in the store
            path.unlink()
        _drop_custom_states(folder)
        snapshots = {e["digest"]: store.path(e["digest"]).stat().st_size for e in index["snapshots"]}
        write_marker(folder, lineage, None, snapshots)
        fsync_tree(folder)
        report.append(f"{folder}: upgraded ({len(snapshots)} replay snapshots moved to {store.folder})")
    return report
