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
from concurrent.futures import Future, ProcessPoolExecutor, wait
from pathlib import Path


class PlotProcess:
    """One helper process that draws piano rolls (PNG, written atomically) on request."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        # the helper ends when anything arrives on this pipe (or when this process ends); both ends are
        # kept until close(), since the pool may pickle the reader for its process after this returns
        self._stop_reader, self._stop = context.Pipe(duplex=False)
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context, initializer=_prepare,
                                         initargs=(self._stop_reader,))
        self._ready = self._pool.submit(_ready)  # starts the process (and its imports) now, not at the first roll
        self._rolls: list[Future] = []

    def plot(self, source: str | os.PathLike, out: str | os.PathLike) -> Future:
        """Draw ``source`` into ``out``: token text (a ``str``: no title, as ``mozart.plot`` of its
        Score) or a MIDI or token file (a path: its name as the title)."""
        roll = self._pool.submit(_plot, source if isinstance(source, str) else Path(source), Path(out))
        self._rolls.append(roll)
        return roll

    def close(self) -> None:
        """Finish the rolls asked for and end the helper."""
        wait([self._ready, *self._rolls])
        # then tell the helper to exit at once: a graceful shutdown would wait for its interpreter to tear
        # down matplotlib, 0.35 s of every command that draws on 2 cores
        self._stop.send(None)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._stop.close()
        self._stop_reader.close()

    def __enter__(self) -> PlotProcess:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is not None and not self._rolls:
            # the command failed before asking for a roll: end the helper now rather than wait for its
            # imports (a second on 2 cores, added to every error); it has no file open
            self._stop.send(None)
        self.close()


def _prepare(stop: multiprocessing.connection.Connection) -> None:
    """In the helper: leave Ctrl-C to the command, end with it or when told to on ``stop``, and import
    the drawing code."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    # without the parent's sentinel, the pool's queues would keep an orphan waiting for ever
    waits = [stop] if parent is None else [stop, parent.sentinel]
    threading.Thread(target=_exit_on_any, args=(waits,), daemon=True).start()
    from . import pianoroll  # noqa: F401 - the import is the point: it overlaps the command's own


def _exit_on_any(objects: list) -> None:
    multiprocessing.connection.wait(objects)
    os._exit(0)


def _ready() -> bool:
    return True


def _plot(source: str | Path, out: Path) -> None:
    from . import decode, plot

    plot(decode(source) if isinstance(source, str) else source, out)
