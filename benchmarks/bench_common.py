"""Small helpers shared by the benchmarks: timing (warm-up, repeats, median), memory, tables, environment.

Machines here are noisy, so every number is the median of several repeats after a warm-up, and
comparisons (A vs B) interleave their repeats so that drift hits both sides alike.

Memory on CPU: tracemalloc does not see torch's allocations, and `ru_maxrss` never goes down. On
Linux the peak RSS (`VmHWM`) can be reset by writing 5 to /proc/self/clear_refs, so a peak can be
measured per phase, after `malloc_trim(0)` hands freed heap pages back to the OS so that each
phase's peak is its own (forcing mmap for big blocks instead made steps ~35% slower: page faults).
On CUDA: torch's allocator stats.
"""

from __future__ import annotations

import ctypes
import gc
import math
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- timing


def baseline_tree(rev: str, dest: Path) -> Path:
    """The repository at ``rev``, extracted with git archive."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def summarize(times: list[float]) -> dict:
    """Median, min, max and count of a list of seconds."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def time_fn(fn: Callable[[], object], warmup: int, repeat: int, device=None) -> dict:
    """`fn` run `warmup` times untimed, then `repeat` times timed; `summarize` of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return summarize(times)


def time_pair(
    fn_a: Callable[[], object], fn_b: Callable[[], object], warmup: int, repeat: int, device=None
) -> tuple[dict, dict]:
    """Time two functions with interleaved repeats (a, b, a, b, ...) so machine drift hits both alike."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(repeat):
        for fn, out in ((fn_a, ta), (fn_b, tb)):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            out.append(time.perf_counter() - t0)
    return summarize(ta), summarize(tb)


# ----------------------------------------------------------------------------- memory


def _trim() -> None:
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _status_kb(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


class PeakMemory:
    """`with PeakMemory(device) as m: ...` -> `m.peak_delta_bytes`: peak memory above the level at entry.

    CUDA: `torch.cuda.max_memory_allocated` (exact, torch tensors). CPU: peak RSS (`VmHWM`, reset
    through /proc/self/clear_refs) minus the RSS at entry; falls back to `ru_maxrss` deltas (which
    only see new highs) where the reset is unavailable. `method` says which was used.
    """

    def __init__(self, device):
        self.device = torch.device(device)
        self.peak_delta_bytes = 0
        self.method = ""

    def __enter__(self):
        _trim()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            self.method = "cuda.max_memory_allocated"
            return self
        self._base = _status_kb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM (reset) - VmRSS"
            self._reset = True
        except OSError:
            self._reset = False
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.method = "ru_maxrss delta"
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_delta_bytes = torch.cuda.max_memory_allocated() - self._base
        elif self._reset:
            self.peak_delta_bytes = max(0, (_status_kb("VmHWM") - self._base) * 1024)
        else:
            self.peak_delta_bytes = max(0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self._base) * 1024)
        return False


def module_bytes(module: torch.nn.Module, only_trainable: bool = False) -> int:
    """Bytes of a module's parameters (and buffers, unless `only_trainable`)."""
    total = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad or not only_trainable)
    if not only_trainable:
        total += sum(b.numel() * b.element_size() for b in module.buffers())
    return total


def tensors_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# ----------------------------------------------------------------------------- environment & output


def environment(device: str) -> dict:
    import accelerate
    import diffusers
    import peft
    import transformers

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if torch.device(device).type == "cuda":
        env["cuda_device"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    try:
        env["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        env["git_commit"] = None
    return env


def fmt(value) -> str:
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def table(rows: list[dict], columns: list[str], title: str | None = None) -> str:
    """A Markdown table (also readable as plain aligned text)."""
    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |" for row in cells]
    return "\n".join(lines)


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20
