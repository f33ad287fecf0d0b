"""Random Checkpoint Replay (RCR): the pool of policy snapshots SSPO draws its reference from.

A snapshot is a ``dict[str, Tensor]``: LoRA adapter weights or a full state dict; the pool does not
care which. Snapshots are held on CPU (cloned, detached); past ``cpu_budget_gb`` the oldest ones
other than θ₀ are spilled to ``spill_dir`` as safetensors and read back on demand. θ₀, the first
snapshot added, is never evicted and never spilled (every strategy draws it). GB means 1e9 bytes.

With a ``NodeShare`` the processes of a node hold one copy instead of one each: the node's first
process writes every snapshot to a node-local folder once and every process memory-maps that file
(safetensors maps it), so the page cache holds it once.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from videosspo.checkpoint import GB, SnapshotStore, first_line, free_bytes
from videosspo.errors import UserError

STRATEGIES = ("random", "latest", "initial")
EVICTIONS = ("oldest", "random")
INDEX_FILE = "index.json"


@dataclass
class _Snapshot:
    step: int
    tensors: dict[str, Tensor] | None  # None once spilled
    path: Path | None  # the safetensors file once spilled
    digest: str | None = None  # its name in a SnapshotStore, once saved there


@dataclass(frozen=True)
class NodeShare:
    """Where a node keeps its one copy of the pool: ``folder`` (node-local, e.g. /dev/shm/...), written by
    the process with ``writer`` set (local rank 0); ``barrier`` waits for every process of the run."""

    folder: Path
    writer: bool
    barrier: Callable[[], None]


def _nbytes(tensors: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _generator(seed: int, step: int) -> torch.Generator:
    """A generator that is a pure function of (seed, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"replay.{name} must be one of {', '.join(allowed)}; got {value!r}")


class ReplayPool:
    """Up to ``size`` snapshots, θ₀ first, one added every ``interval`` optimizer steps.

    ``strategy`` picks the reference: ``random`` (SSPO, uniform over the k held), ``latest``
    (SPIN-Diffusion-like, k−1), ``initial`` (DITTO-like, 0). When full, ``evict`` removes the oldest
    snapshot after θ₀ (``oldest``) or a uniformly random one after θ₀ (``random``, seeded by step).
    ``size = 1`` holds θ₀ alone.
    """

    def __init__(
        self,
        size: int = 7,
        interval: int = 30,
        strategy: str = "random",
        evict: str = "oldest",
        cpu_budget_gb: float = 8.0,
        spill_dir: str | Path | None = None,
        share: NodeShare | None = None,
    ):
        if size < 1:
            raise ValueError(f"replay.size must be >= 1 (1 holds only θ0); got {size}")
        if interval < 1:
            raise ValueError(f"replay.interval must be >= 1; got {interval}")
        _check_choice("strategy", strategy, STRATEGIES)
        _check_choice("evict", evict, EVICTIONS)
        if cpu_budget_gb < 0:
            raise ValueError(f"replay.cpu_budget_gb must be >= 0; got {cpu_budget_gb}")
        self.size, self.interval, self.strategy, self.evict = size, interval, strategy, evict
        self.cpu_budget_bytes = int(cpu_budget_gb * 1e9)
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.share = share  # when set, snapshots are memory-mapped node files: no CPU budget, no spilling
        self._snaps: list[_Snapshot] = []

    # ---- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._snaps)

    @property
    def steps(self) -> list[int]:
        """The training step each held snapshot was taken at, θ₀ first."""
        return [s.step for s in self._snaps]

    @property
    def cpu_bytes(self) -> int:
        """Bytes of snapshot tensors held in CPU memory (spilled ones excluded)."""
        return sum(_nbytes(s.tensors) for s in self._snaps if s.tensors is not None)

    def due(self, step: int) -> bool:
        """True when a snapshot should be added after optimizer step ``step``: step > 0, step % interval == 0.

        Always False for ``size = 1``, where nothing but θ₀ is kept.
        """
        return self.size > 1 and step > 0 and step % self.interval == 0

    def draw(self, seed: int, step: int) -> int:
        """Reference index for ``step``: latest k−1; initial 0; random ~ U{0, …, k−1}, pure in (seed, step)."""
        if not self._snaps:
            raise RuntimeError("replay pool is empty: add θ0 before drawing")
        k = len(self._snaps)
        if self.strategy == "latest":
            return k - 1
        if self.strategy == "initial":
            return 0
        return int(torch.randint(k, (1,), generator=_generator(seed, step)).item())

    def get(self, index: int) -> dict[str, Tensor]:
        """Snapshot ``index`` (0 is θ₀), read from disk if spilled. Do not modify its tensors in place."""
        snap = self._snaps[index]
        if snap.tensors is None:
            return load_file(snap.path)
        return dict(snap.tensors)

    # ---- updates -------------------------------------------------------------------------------

    def add(self, step: int, snapshot: dict[str, Tensor]) -> None:
        """Store a CPU copy of ``snapshot`` taken at ``step``; the first one added is θ₀.

        When full, evicts per ``evict`` (never θ₀); with ``size = 1`` later adds are ignored.
        """
        if self._snaps and step <= self._snaps[-1].step:
            raise ValueError(f"snapshot steps must increase: got {step} after {self._snaps[-1].step}")
        if len(self._snaps) == self.size:
            if self.size == 1:
                return
            self._remove(self._victim(step))
        tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in snapshot.items()}
        self._insert(step, tensors)

    def _victim(self, step: int) -> int:
        """Index of the snapshot to evict (>= 1: θ₀ stays)."""
        if self.evict == "oldest":
            return 1
        return 1 + int(torch.randint(len(self._snaps) - 1, (1,), generator=_generator(-1, step)).item())

    def _remove(self, index: int) -> None:
        snap = self._snaps.pop(index)
        if snap.path is not None:
            snap.path.unlink(missing_ok=True)
        if self.share is not None and self.share.writer:  # processes still mapping it keep their pages
            self._node_file(snap.step).unlink(missing_ok=True)

    def _node_file(self, step: int) -> Path:
        return self.share.folder / f"snap_{step:08d}.safetensors"

    def _map(self, step: int, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """The node's copy of a snapshot: written once by the node's writer, then memory-mapped by every process."""
        path = self._node_file(step)
        if self.share.writer:
            self.share.folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            save_file(tensors, str(tmp))
            os.replace(tmp, path)
        self.share.barrier()
        return load_file(path)  # safetensors maps the file: its pages are shared by the node's processes

    def close(self) -> None:
        """Remove the node's snapshot files (the writer's job); the mapped tensors stay readable."""
        if self.share is not None and self.share.writer:
            shutil.rmtree(self.share.folder, ignore_errors=True)

    def _insert(self, step: int, tensors: dict[str, Tensor]) -> None:
        """Append a snapshot, spilling the oldest in-memory ones after θ₀ (then the new one) past the budget."""
        if self.share is not None:
            self._snaps.append(_Snapshot(step, self._map(step, tensors), None))
            return
        self._snaps.append(_Snapshot(step, tensors, None))
        # Spill order: oldest after θ0 first, the newest (the one `latest` draws) last.
        for snap in self._snaps[1:]:
            if self.cpu_bytes <= self.cpu_budget_bytes:
                break
            if snap.tensors is not None:
                self._spill(snap)

    def _spill(self, snap: _Snapshot) -> None:
        if self.spill_dir is None:
            raise RuntimeError(
                f"replay pool exceeds its CPU budget ({self.cpu_budget_bytes / 1e9:g} GB): "
                "set replay.spill_dir to spill snapshots to disk, or raise replay.cpu_budget_gb"
            )
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        path = self.spill_dir / f"snap_{snap.step:08d}.safetensors"
        try:
            save_file(snap.tensors, str(path))
        except Exception as e:  # a full disk: the partial file goes, the snapshot stays in memory
            path.unlink(missing_ok=True)
            raise UserError(
                f"replay.spill_dir={self.spill_dir}: spilling the snapshot of step {snap.step} failed "
                f"({first_line(e)}); {free_bytes(self.spill_dir) / GB:.2f} GB free, "
                f"{_nbytes(snap.tensors) / GB:.2g} GB needed; free space, point replay.spill_dir at a "
                f"larger disk or raise replay.cpu_budget_gb"
            ) from e
        snap.path, snap.tensors = path, None

    # ---- state ---------------------------------------------------------------------------------

    def _config(self) -> dict:
        return {"size": self.size, "interval": self.interval, "strategy": self.strategy, "evict": self.evict}

    def _check_config(self, config: dict) -> None:
        mismatched = {k: (v, config.get(k)) for k, v in self._config().items() if config.get(k) != v}
        if mismatched:
            detail = ", ".join(f"{k}: saved {saved!r}, configured {ours!r}" for k, (ours, saved) in mismatched.items())
            raise ValueError(f"replay pool config does not match the saved pool ({detail})")

    @property
    def digests(self) -> list[str | None]:
        """Each snapshot's digest in the store it was last saved to or loaded from (None before)."""
        return [s.digest for s in self._snaps]

    def unstored_bytes(self, store: SnapshotStore) -> int:
        """Bytes that :meth:`save` would add to ``store``: the snapshots not in it yet."""
        return sum(
            _nbytes(s.tensors) if s.tensors is not None else s.path.stat().st_size
            for s in self._snaps
            if s.digest is None or not store.path(s.digest).is_file()
        )

    def save(self, directory: str | Path, store: SnapshotStore | None = None) -> None:
        """Write ``directory/replay/index.json``: the steps and store digests of the snapshots.

        Each snapshot is written to ``store`` (default ``directory/replay``) only if it is not there yet:
        snapshots never change, so checkpoints of one run share them.
        """
        out = Path(directory) / "replay"
        out.mkdir(parents=True, exist_ok=True)
        store = store or SnapshotStore(out)
        for snap in self._snaps:
            if snap.digest is None or not store.path(snap.digest).is_file():
                snap.digest = store.put(snap.tensors, file=snap.path if snap.tensors is None else None)
        entries = [{"step": s.step, "digest": s.digest} for s in self._snaps]
        (out / INDEX_FILE).write_text(json.dumps({"config": self._config(), "snapshots": entries}, indent=2))

    def load(self, directory: str | Path, store: SnapshotStore | None = None) -> None:
        """Replace the pool by the one :meth:`save` wrote into ``directory``; its size, interval, strategy and evict must
        match this pool's."""
        src = Path(directory) / "replay"
        store = store or SnapshotStore(src)
        index = json.loads((src / INDEX_FILE).read_text())
        self._check_config(index["config"])
        for i in reversed(range(len(self._snaps))):
            self._remove(i)
        for entry in index["snapshots"]:
            self._insert(entry["step"], load_file(store.path(entry["digest"])))
            self._snaps[-1].digest = entry["digest"]
