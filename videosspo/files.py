"""File modes: files written to a temporary name (tempfile.mkstemp, mode 0600) and moved into place get the
mode a plain `open(path, "w")` would give them (0666 less the umask), so other users and tools can read them."""

from __future__ import annotations

import functools
import os


@functools.cache
def umask() -> int:
    """The process umask (read once: reading it means setting it, which is not thread-safe)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def chmod_like_open(path: str | os.PathLike) -> None:
    """Give a mkstemp file the mode `open()` would have created it with."""
    os.chmod(path, 0o666 & ~umask())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file beside `path` and move it into place: readers never see half a file."""
    import tempfile
    from pathlib import Path

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        chmod_like_open(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
