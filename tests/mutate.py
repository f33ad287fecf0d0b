"""`make mutate`: does the suite catch each bug in tests/mutations.py?

Copies the tree to a temporary folder, checks that the selected tests pass there unmutated, then
applies one mutation at a time and runs only that mutation's tests (stopping at the first failure).
Prints a table of caught / survived and exits 1 if any mutation survived or a selector is broken.
Each pytest run is a child forked from a process that has imported the heavy libraries (torch,
diffusers, transformers) but none of the project's code, so a run costs its tests, not the imports.

    python tests/mutate.py                 # every mutation
    python tests/mutate.py --only rename   # mutations whose name contains "rename"
    python tests/mutate.py --shard 1/2 & python tests/mutate.py --shard 2/2   # both cores, half each
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

os.environ.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")  # before torch loads

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from mutations import MUTATIONS, Mutation  # noqa: E402

SKIP_AT_ROOT = {".git", ".venv", "runs", "data", "eval"}  # outputs and environments, never code
SKIP_ANYWHERE = shutil.ignore_patterns("__pycache__", ".pytest_cache", "*.egg-info")
# pytest exit codes: 1 tests failed, 2 collection error (e.g. the mutant does not import): caught.
CAUGHT = {1: "caught", 2: "caught (collection error)"}


def preload() -> None:
    """Import the heavy third-party code every test run needs (lazy attributes resolved), none of the project's."""
    import accelerate  # noqa: F401
    import av  # noqa: F401
    import diffusers
    import peft  # noqa: F401
    import pytest  # noqa: F401
    import transformers

    for name in (
        "UNet2DConditionModel",
        "UNet3DConditionModel",
        "UNetMotionModel",
        "MotionAdapter",
        "AutoencoderKL",
        "DDPMScheduler",
        "DDIMScheduler",
        "EulerDiscreteScheduler",
        "DPMSolverMultistepScheduler",
    ):
        getattr(diffusers, name)
    for name in ("CLIPTextModel", "CLIPTextConfig", "CLIPTokenizer"):
        getattr(transformers, name)


def copy_tree(dest: Path) -> None:
    def ignore(folder, names):
        skipped = set(SKIP_ANYWHERE(folder, names))
        return skipped | (SKIP_AT_ROOT & set(names) if Path(folder) == ROOT else set())

    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def run_tests(tree: Path, tests: list[str], timeout: float) -> tuple[int, str]:
    """Run `tests` in `tree` in a forked child; (pytest's exit code, or -1 on timeout; its output's tail)."""
    log = tree.parent / "pytest.log"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: output to the log, `tree` first on the path, then pytest
        code = 3
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.chdir(tree)
            sys.path.insert(0, str(tree))
            import pytest

            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests]))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + timeout
    while not (done := os.waitpid(pid, os.WNOHANG))[0]:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -1, ""
        time.sleep(0.1)
    return os.waitstatus_to_exitcode(done[1]), log.read_text()[-2000:]


def run_one(tree: Path, mutation: Mutation, timeout: float) -> tuple[str, float]:
    path = tree / mutation.file
    pristine = path.read_text()
    path.write_text(mutation.apply(pristine))
    try:
        t0 = time.perf_counter()
        code, tail = run_tests(tree, list(mutation.tests), timeout)
    finally:
        path.write_text(pristine)
    if code == -1:
        return f"caught (timeout {timeout:g} s)", timeout
    if code not in (0, *CAUGHT):
        print(f"\n{mutation.name}: pytest exited {code} (broken selector?)\n{tail}", file=sys.stderr)
    return CAUGHT.get(code, "SURVIVED" if code == 0 else f"error (pytest exit {code})"), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the mutations whose name contains this text")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per mutation's tests (default 300)")
    parser.add_argument(
        "--shard",
        default="1/1",
        metavar="K/N",
        help="run every N-th mutation from the K-th (one process per core: --shard 1/2, --shard 2/2)",
    )
    args = parser.parse_args(argv)
    try:
        k, n = map(int, args.shard.split("/"))
        assert 1 <= k <= n
    except (ValueError, AssertionError):
        parser.error(f"--shard {args.shard!r}: expected K/N with 1 <= K <= N, e.g. 1/2")
    chosen = [m for m in MUTATIONS if args.only in m.name][k - 1 :: n]
    if not chosen:
        parser.error(f"--only {args.only!r} matches no mutation; names: {', '.join(m.name for m in MUTATIONS)}")
    for m in chosen:  # fail fast on a stale snippet, before any test runs
        m.apply((ROOT / m.file).read_text())

    preload()
    with tempfile.TemporaryDirectory(prefix="videosspo-mutate-") as tmp:
        tree = Path(tmp) / "tree"
        copy_tree(tree)
        selected = list(dict.fromkeys(t for m in chosen for t in m.tests))
        t0 = time.perf_counter()
        code, tail = run_tests(tree, selected, args.timeout * len(chosen))
        if code != 0:
            print(
                f"the selected tests fail on unmutated code (pytest exit {code}): fix them first\n{tail}",
                file=sys.stderr,
            )
            return 2
        print(f"baseline: {len(selected)} selections pass unmutated ({time.perf_counter() - t0:.0f} s)")
        rows = []
        for m in chosen:
            result, seconds = run_one(tree, m, args.timeout)
            rows.append((m.name, m.file, result, f"{seconds:.0f}", m.breaks))
            print(f"  {result:<10} {seconds:5.0f} s  {m.name}", flush=True)

    header = ("mutation", "file", "result", "s", "breaks")
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    bad = [r for r in rows if not r[2].startswith("caught")]
    print(
        f"\n{len(rows) - len(bad)} of {len(rows)} mutations caught"
        + (f"; NOT caught: {', '.join(r[0] for r in bad)}" if bad else "")
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
