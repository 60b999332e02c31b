"""What a study's worker process does besides its runs: writing a result whole under
SIGTERM, and ending when its parent dies (the watchdog).

A worker writes its results (and cached solves, studies/outcome.py) through
:func:`write_whole`; :func:`worker_init` is the initializer of each local worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from aggregame.studies.files import atomic_write

#: How often a worker checks that its parent is alive (seconds).
WATCHDOG_PERIOD = 0.2


#: The temporary file this worker is writing, removed by the watchdog if the parent
#: dies mid-write and the write does not end within WRITE_GRACE.
_WRITING: list[Path | None] = [None]
#: Held while a result is written; the watchdog takes it before the worker ends, so
#: no write starts (and creates its temporary file) behind its cleanup.
_WRITE_LOCK = threading.Lock()
#: Seconds the watchdog waits for a result being written to be whole.
WRITE_GRACE = 1.0


def _track(tmp: Path | None) -> None:
    _WRITING[0] = tmp


def write_whole(path: Path, text: str) -> None:
    """Write ``path`` atomically, with SIGTERM deferred and the temporary file known to
    the watchdog: a worker ended by Ctrl-C or by its parent's death leaves the file
    whole or absent, never a '.tmp' (results and cached solves alike)."""
    with _WRITE_LOCK, _termination_deferred():
        atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"),
                     on_temp=_track)


@contextlib.contextmanager
def _termination_deferred():
    """SIGTERM waits while a result is written, then takes its default action.

    On Ctrl-C the main process terminates the pool's workers; the default action
    had killed one between its temporary file and the rename, leaving a '.tmp' (seen
    once runs got fast enough to be writing often). Blocking the signal in this
    thread (the watchdog thread blocks it for good) defers it to the end of the
    write, and nowhere else: a worker inside a long C call (SCIP) still ends at
    once, which a Python-level handler would not.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _watchdog(parent: int) -> None:
    # SIGTERM is for the main thread, which defers it while writing a result
    # (_termination_deferred); delivered here, it would not wait.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    while os.getppid() == parent:
        time.sleep(WATCHDOG_PERIOD)
    # The parent is gone: nobody will read this worker's results. A write under way
    # may finish (its result is whole, and kept for a resume); none starts after.
    # Cleaning up without the lock raced with a write that began meanwhile and
    # created its temporary file after the cleanup (a '.tmp' left, seen under load).
    if not _WRITE_LOCK.acquire(timeout=WRITE_GRACE):
        tmp = _WRITING[0]
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    os._exit(1)


def worker_init() -> None:
    """Initializer of each local worker: Ctrl-C is the parent's to handle, SIGTERM
    waits for a result being written, and the worker ends when its parent dies.
    Its certificates run in one thread unless AGGREGAME_THREADS says otherwise: the
    workers already share the cores."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("AGGREGAME_THREADS", "1")
    threading.Thread(target=_watchdog, args=(os.getppid(),), daemon=True,
                     name="aggregame-watchdog").start()
