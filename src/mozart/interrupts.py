"""Ctrl-C: every command stops, exits 130 and leaves nothing half-written.

Python's own handler raises KeyboardInterrupt wherever the main thread happens to be, and there
it can be lost: raised inside code whose errors the caller ignores (a ``__del__``, a callback from
C, a library's broad ``except``), it is printed as "Exception ignored" or not at all, and the
command runs on.  So the CLI's handler (``install``) also remembers the Ctrl-C, and the long
loops (training steps, sampling steps, scoring batches, worker results) call
``raise_if_interrupted`` to raise it again.  Library use keeps Python's handler: ``install`` is
the CLI's, and ``raise_if_interrupted`` then never raises.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

_installed = False
_interrupted = False


def install() -> None:
    """Handle Ctrl-C as Python does (KeyboardInterrupt) and remember it.  Main thread only."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        _installed = True


def _on_sigint(signum, frame) -> None:
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def interrupt_requested() -> bool:
    """Whether Ctrl-C was pressed (under the CLI's handler): then any error that follows is its doing,
    such as an extension whose import it cut short ("ImportError: initialization failed")."""
    return _interrupted


def exit_interrupted() -> NoReturn:
    """End the command as a Ctrl-C ends it: one line on stderr, exit status 130."""
    _close_progress_bars()
    print("mozart: interrupted", file=sys.stderr, flush=True)
    sys.exit(130)


def _close_progress_bars() -> None:
    """Close the progress bars a Ctrl-C left open (a library's, such as the Trainer's), so that they
    redraw now, not at interpreter exit after the "interrupted" line, which must be the last."""
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar half-built when the Ctrl-C came: nothing of it is worth the exit
            pass


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed: a loop's check that no Ctrl-C was lost."""
    if _interrupted:
        raise KeyboardInterrupt


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that arrives inside the block and raise it right after: for steps that must
    not be cut in half (starting a worker process, which would otherwise run untracked; moving a
    finished dataset into place).  Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []

    def hold(signum, frame) -> None:
        global _interrupted
        if _installed:
            _interrupted = True
        pending.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt
