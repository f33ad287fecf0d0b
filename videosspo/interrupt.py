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
import sys
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


_received: list[int] = []  # signals received inside `stop_on_signals`


def _raise(signum, frame):
    _received.append(signum)
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise `Interrupted` again if a signal came whose exception was lost: a handler can run inside a `__del__` or
    a garbage-collector callback, where Python drops exceptions. Called at safe points (after each optimizer step)."""
    if _received:
        raise Interrupted(_received[-1])


def _unraisable(hook):
    """sys.unraisablehook that drops our own lost `Interrupted` (`raise_if_interrupted` raises it again) and passes
    anything else to `hook`."""

    def drop_ours(unraisable):
        if not isinstance(unraisable.exc_value, Interrupted):
            hook(unraisable)

    return drop_ours


@contextlib.contextmanager
def stop_on_signals():
    """Within the block, SIGINT and SIGTERM raise `Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received.clear()
    previous = {s: signal.signal(s, _raise) for s in SIGNALS}
    previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        sys.unraisablehook = previous_hook
        _received.clear()
