"""Run a study's tasks in parallel, resumably, and write its output folder.

Each task (one run of one configuration) writes ``runs/<key>.json`` atomically
(studies/files.py), so an interrupted sweep never leaves a half-written result that
looks complete; a rerun skips every key whose file holds a valid result, and recomputes
(with a warning) one that is empty or corrupt. Tasks run on local processes by
default, or on a Dask cluster (``dask_address``). A tqdm bar shows the time left.

Interruptions: local workers ignore SIGINT (Ctrl-C reaches the whole process group)
and the main process, on KeyboardInterrupt, cancels what has not started and
terminates the workers at once, keeping every finished run; a second Ctrl-C during
that second of cleanup is ignored rather than left to hang the pool's shutdown. Each
worker also runs a watchdog thread that ends it when its parent dies (SIGKILL of the
main process), removing the temporary file it was writing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import platform
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from aggregame.errors import AggregameError
from aggregame.studies.files import atomic_write, atomic_write_text

LOG = logging.getLogger(__name__)

#: How often a worker checks that its parent is alive (seconds).
WATCHDOG_PERIOD = 0.2
#: Connect timeout to a Dask scheduler (seconds): an unreachable address fails fast.
DASK_CONNECT_TIMEOUT = 3


@dataclass(frozen=True)
class Task:
    """One unit of work: ``run(params)`` of a study module, stored under ``key``."""

    study: str
    key: str
    params: dict[str, Any]


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


def execute(task: Task, runs_dir: str, cache: str | None = None) -> str:
    """Run one task and store its rows atomically (top-level: picklable for workers);
    its solves are cached in ``cache`` (studies/outcome.py) if given."""
    from aggregame.studies.outcome import cache_folder

    module = importlib.import_module(f"aggregame.studies.{task.study}")
    with cache_folder(cache):
        rows = module.run(task.params)
    doc = {"key": task.key, "params": task.params, "rows": rows}
    write_whole(Path(runs_dir) / f"{task.key}.json", json.dumps(doc))
    return task.key


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


def is_complete(path: Path, key: str) -> bool:
    """Whether ``path`` holds a whole result of task ``key``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as err:
        LOG.warning("%s: unreadable result (%s); computing it again", path, err)
        return False
    if not (isinstance(doc, dict) and doc.get("key") == key
            and isinstance(doc.get("rows"), list)):
        LOG.warning("%s: not a result of task %s; computing it again", path, key)
        return False
    return True


def run_tasks(tasks: Iterable[Task], runs_dir: Path, workers: int | None = None,
              dask_address: str | None = None, progress: bool = True,
              cache: Path | None = None) -> list[str]:
    """Run every task whose result file is missing or broken; returns the keys it
    ran. Workers get absolute paths, so they may run in any directory; ``cache`` is
    the folder of cached solves (None: none)."""
    from tqdm import tqdm

    from aggregame.studies.variants import schedule_rank

    runs_dir = runs_dir.resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if not is_complete(runs_dir / f"{t.key}.json", t.key)]
    # The order of submission only (the table keeps the tasks' order).
    todo.sort(key=lambda t: schedule_rank(t.params))
    ran: list[str] = []
    if not todo:
        return ran
    LOG.info("%d task(s) to run in %s", len(todo), runs_dir)
    client = _dask_client(dask_address) if dask_address else None
    # disable=None: no bar when stderr is not a terminal (a log file, a pipe).
    with tqdm(total=len(todo), desc="runs", unit="run",
              disable=None if progress else True) as bar:
        def done(key: str) -> None:
            ran.append(key)
            bar.update(1)

        where = (str(runs_dir), None if cache is None else str(cache.resolve()))
        if client is not None:
            _run_dask(todo, where, client, done)
        elif workers == 1:
            for task in todo:
                done(execute(task, *where))
        else:
            _run_local(todo, where, workers, done)
    return ran


def _run_local(todo: list[Task], where: tuple[str, str | None], workers: int | None,
               done: Callable[[str], None]) -> None:
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_init)
    try:
        futures = [pool.submit(execute, t, *where) for t in todo]
        for fut in as_completed(futures):
            done(fut.result())
    except BaseException:
        # Ctrl-C or a failed task: stop now, keep the finished runs. The workers are
        # this pool's children started since `before` (public API, no pool internals).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            pool.shutdown(wait=False, cancel_futures=True)
            for child in set(multiprocessing.active_children()) - before:
                child.terminate()
            for child in set(multiprocessing.active_children()) - before:
                child.join(timeout=1)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
    pool.shutdown(wait=True)


def _dask_client(address: str) -> Any:
    """A client of the scheduler at ``address``, or one line saying why not."""
    import dask
    from distributed import Client

    timeout = f"{DASK_CONNECT_TIMEOUT}s"
    try:
        with dask.config.set({"distributed.comm.timeouts.connect": timeout}):
            return Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except (OSError, ValueError, TypeError) as err:
        raise AggregameError(f"--dask {address}: cannot reach a Dask scheduler: "
                             f"{' '.join(str(err).split())}") from None


def _run_dask(todo: list[Task], where: tuple[str, str | None], client: Any,
              done: Callable[[str], None]) -> None:
    from distributed import as_completed as dask_completed

    with client:
        futures = client.map(execute, todo, runs_dir=where[0], cache=where[1],
                             pure=False)
        try:
            for fut in dask_completed(futures):
                done(fut.result())
        except BaseException:
            client.cancel(futures)
            raise


def load_rows(runs_dir: Path, keys: Iterable[str]) -> pd.DataFrame:
    """Every row of the given tasks, in task order (so reruns give identical tables)."""
    rows = []
    for key in keys:
        with (runs_dir / f"{key}.json").open(encoding="utf-8") as fh:
            rows.extend(json.load(fh)["rows"])
    return pd.DataFrame(rows)


def versions() -> dict[str, str]:
    """Versions of everything that can change a number."""
    import matplotlib
    import numpy
    import pyomo
    import scipy

    import aggregame

    return {"aggregame": aggregame.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "scipy": scipy.__version__,
            "pandas": pd.__version__, "pyomo": pyomo.__version__,
            "matplotlib": matplotlib.__version__, "machine": platform.machine()}


def write_outputs(out: Path, table: pd.DataFrame, meta: dict[str, Any]) -> None:
    """results.csv, results.parquet and settings.json, each complete or absent."""
    atomic_write(out / "results.csv", lambda p: table.to_csv(p, index=False))
    atomic_write(out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    atomic_write_text(out / "settings.json", json.dumps(meta, indent=1, default=str))
