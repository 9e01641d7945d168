"""Piano rolls drawn in a helper process, for the commands that write samples.

``generate``, ``infill`` and ``accompany`` start a :class:`PlotProcess` before they import torch and load
the model: the helper imports matplotlib meanwhile (about a second on 2 cores), and draws each piano roll
while the command samples the next piece or renders the audio, on the other core.  Drawn in the command's
own process, the rolls cost it the import and 0.2-0.5 s a piece on its critical path.

The helper ignores Ctrl-C (the command handles it and closes the helper) and exits when the command's
process ends, even by ``kill -9``.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path


class PlotProcess:
    """One helper process that draws piano rolls (PNG, written atomically) on request."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_prepare)
        self._pool.submit(_ready)  # starts the process (and its imports) now, not at the first roll
        self._asked = False

    def plot(self, source: str | os.PathLike, out: str | os.PathLike) -> Future:
        """Draw ``source`` into ``out``: token text (a ``str``: no title, as ``mozart.plot`` of its
        Score) or a MIDI or token file (a path: its name as the title)."""
        self._asked = True
        return self._pool.submit(_plot, source if isinstance(source, str) else Path(source), Path(out))

    def close(self) -> None:
        """Finish the rolls asked for and end the helper."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PlotProcess:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self._asked:
            # the command failed before asking for a roll: end the helper now rather than wait for its
            # imports (a second on 2 cores, added to every error); it has no file open
            for process in list(self._pool._processes.values()):  # 3.14 names this terminate_workers()
                process.terminate()
        self.close()


def _prepare() -> None:
    """In the helper: leave Ctrl-C to the command, end with it, and import the drawing code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:  # the pool's queues would keep an orphan waiting for ever
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    from . import pianoroll  # noqa: F401 - the import is the point: it overlaps the command's own


def _exit_with(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _ready() -> bool:
    return True


def _plot(source: str | Path, out: Path) -> None:
    from . import decode, plot

    plot(decode(source) if isinstance(source, str) else source, out)
