"""The run lock: one live run writes a run folder (`train.output_dir`) at a time.

`.lock` in the run folder holds the holder's host and pid; an flock on it is what excludes, so a lock
left by a dead run is reported and taken over (docs/checkpoints.md: two runs on one folder).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from videosspo.errors import UserError

log = logging.getLogger("videosspo.runlock")

LOCK = ".lock"


class RunLocked(UserError):
    """Another live run holds the output folder."""


class RunLock:
    """An exclusive lock on a run folder, held while a run writes there.

    `.lock` holds the holder's host and pid; an flock on it is what excludes (the kernel drops it
    when its process dies), so a lock file whose flock is free was left by a dead run: stale,
    reported, and taken over.
    """

    def __init__(self, folder: str | Path):
        self.path = Path(folder) / LOCK
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise RunLocked(
                    f"train.output_dir={str(self.path.parent)!r} is in use by another run ({holder}); "
                    f"wait for it to end or choose another train.output_dir"
                ) from None
            if _same_file(self.path, fd):
                break
            os.close(fd)  # the holder released and removed the file between our open and flock: retry
        stale = _holder(fd)
        if stale:
            log.warning("%s: stale lock of %s, which is no longer running; taking it over", self.path, stale)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None


def _same_file(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd` (it may be removed, or replaced, at any moment)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> str:
    """'pid P on host H since T' from a lock file's content, '' when empty."""
    raw = os.pread(fd, 4096, 0)
    if not raw:
        return ""
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on host {info['host']} since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return f"lock file content {raw[:80]!r}"
