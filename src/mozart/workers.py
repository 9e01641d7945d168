"""Supervised worker processes: run a function over many tasks, in parallel, such that a
task that raises, hangs or kills its process becomes a reported failure, not a failed run.

Results come back in task order (a bounded look-ahead keeps memory flat), so whatever
consumes them can write deterministic output while it streams.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .errors import MozartError
from .interrupts import interrupts_deferred, raise_if_interrupted

#: Most worker processes a command may start (each holds a Python interpreter and a task).
MAX_WORKERS = 256
#: Longest per-task timeout accepted, in seconds (a day).
MAX_TIMEOUT = 86400.0
#: How many tasks past the oldest unfinished one may be handed out, per worker.
LOOKAHEAD_PER_WORKER = 16
#: A worker's first message: it started and can take tasks.  A process that dies before sending it
#: could not start at all (no task is to blame), which stops the run with one clear error.
_READY = "ready"
#: Set (to anything) to make every worker exit before it is ready: a test of that error.
START_FAIL_HOOK = "MOZART_TEST_WORKER_START_FAIL"


@dataclass
class Outcome:
    """What became of one task: ``value`` when ``ok``, else a one-line ``reason``."""

    task: Any
    ok: bool
    value: Any = None
    reason: str = ""


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text or type(e).__name__


def _serve(conn: Connection, fn: Callable[[Any], Any]) -> None:
    """Worker loop: receive (index, task), send back (index, ok, value-or-reason)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops us
    if os.environ.get(START_FAIL_HOOK):
        os._exit(3)
    conn.send(_READY)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        index, task = message
        try:
            conn.send((index, True, fn(task)))
        except Exception as e:  # any failure of one task is that task's outcome
            conn.send((index, False, _one_line(e)))


class _Worker:
    def __init__(self, ctx, fn):
        self.conn, self._child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(self._child, fn), daemon=True)
        self.index: int | None = None
        self.started = 0.0
        self.ready = False  # the process said it started (_READY)

    def start(self) -> _Worker:
        """Start the process; call once the worker is in the pool (so a Ctrl-C right after stops it)."""
        with interrupts_deferred():
            self.process.start()
            self._child.close()
        return self

    def give(self, index: int, task: Any) -> None:
        self.index, self.started = index, time.monotonic()
        self.conn.send((index, task))

    def kill(self) -> None:
        """SIGKILL the process (a hung or busy worker stops at once)."""
        if self.process.pid is not None and self.process.is_alive():
            self.process.kill()

    def stop(self) -> None:
        with interrupts_deferred():
            self.kill()
            self.process.join(timeout=5)
            self.conn.close()


def run_tasks(
    fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int, timeout: float | None
) -> Iterator[Outcome]:
    """Yield one :class:`Outcome` per task, in task order.

    ``fn`` runs in ``workers`` separate processes (it must be importable: a module-level
    function).  A task whose call raises, runs longer than ``timeout`` seconds, or whose
    process dies is reported as failed; its worker is replaced and the run goes on.

    Close the generator when done with it (``contextlib.closing``): closing it, or an
    exception (Ctrl-C included) raised while it runs, kills every worker at once.
    """
    ctx = mp.get_context("spawn")
    pool: list[_Worker] = []
    done: dict[int, tuple[bool, Any]] = {}
    next_out = next_in = 0
    lookahead = LOOKAHEAD_PER_WORKER * max(1, workers)
    try:
        for _ in range(max(1, workers)):
            pool.append(_Worker(ctx, fn))
            pool[-1].start()
        while next_out < len(tasks):
            raise_if_interrupted()
            for w in pool:
                if w.index is None and next_in < len(tasks) and next_in - next_out < lookahead:
                    w.give(next_in, tasks[next_in])
                    next_in += 1
            busy = [w for w in pool if w.index is not None]
            pause = 0.5
            if timeout is not None and busy:  # wake up in time for the nearest deadline
                pause = max(0.0, min(pause, min(w.started for w in busy) + timeout - time.monotonic()))
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=pause)
            for i, w in enumerate(pool):
                if w.index is None:
                    continue
                failure = None
                try:
                    while w.index is not None and w.conn.poll():
                        message = w.conn.recv()
                        if message == _READY:
                            w.ready = True
                            continue
                        index, ok, value = message
                        done[index] = (ok, value)
                        w.index = None
                except (EOFError, OSError):
                    failure = "crashed"
                if w.index is None:
                    continue
                if failure or not w.process.is_alive():
                    w.process.join(timeout=5)
                    if not w.ready:
                        raise MozartError(f"cannot start worker processes: one exited with code "
                                          f"{w.process.exitcode} before it was ready")
                    failure = f"worker process crashed (exit code {w.process.exitcode})"
                elif timeout is not None and time.monotonic() - w.started > timeout:
                    failure = f"timed out after {timeout:g} s"
                if failure:
                    done[w.index] = (False, failure)
                    w.stop()
                    pool[i] = _Worker(ctx, fn)
                    pool[i].start()
            while next_out in done:
                ok, value = done.pop(next_out)
                yield Outcome(tasks[next_out], ok, value if ok else None, "" if ok else value)
                next_out += 1
    finally:
        # kill first, all of them, then reap: shutting down takes one join, not one per worker
        with interrupts_deferred():
            for w in pool:
                w.kill()
            for w in pool:
                if w.process.pid is not None:
                    w.process.join(timeout=5)
                w.conn.close()
