"""Ctrl-C (SIGINT) and SIGTERM as a clean stop: the signal raises `Interrupted` in the main thread, so every
`with` block on the way out runs (the run lock is released, the replay pool's files removed), and the CLI
prints one line and exits 128 + the signal number (130, 143), as a shell reports a process the signal killed.

No checkpoint is written on the way out: the signal can land inside an optimizer step or a checkpoint save,
where the state is not one a run could resume from. Checkpoints are written whole or not at all, so
`--train.resume latest` continues from the newest complete one.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A stop asked for by a signal; a KeyboardInterrupt, so that `except Exception` blocks let it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _raise(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT and SIGTERM raise `Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
