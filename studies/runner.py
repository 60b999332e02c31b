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

import json
import logging
import multiprocessing
import platform
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd

from aggregame.studies.files import atomic_write, atomic_write_text, read_regular
from aggregame.studies.worker import worker_init, write_whole

LOG = logging.getLogger(__name__)

@dataclass(frozen=True)
class Task:
    """One unit of work: ``run(params)``, a study module's entry point (pickled by
    reference for the workers), stored under ``key``."""

    run: Callable[[dict[str, Any]], list[dict[str, Any]]]
    key: str
    params: dict[str, Any]


def execute(task: Task, runs_dir: str, cache: str | None = None) -> str:
    """Run one task and store its rows atomically (top-level: picklable for workers);
    its solves are cached in ``cache`` (studies/outcome.py) if given."""
    from aggregame.studies.outcome import cache_folder

    with cache_folder(cache):
        rows = task.run(task.params)
    doc = {"key": task.key, "params": task.params, "rows": rows}
    write_whole(Path(runs_dir) / f"{task.key}.json", json.dumps(doc))
    return task.key



def is_complete(path: Path, key: str) -> bool:
    """Whether ``path`` holds a whole result of task ``key``."""
    try:
        doc = json.loads(read_regular(path))
    except FileNotFoundError:
        return False
    except (OSError, ValueError) as err:  # LinkRefusedError too: the link is replaced
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

    from aggregame.solvers.equilibrium.distributed import connect
    from aggregame.studies.variants import schedule_rank

    # A bad address ("" would run locally, silently) fails before anything runs,
    # even when every result is there already.
    client = connect(dask_address) if dask_address is not None else None
    runs_dir = runs_dir.resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    todo = [t for t in tasks if not is_complete(runs_dir / f"{t.key}.json", t.key)]
    # The order of submission only (the table keeps the tasks' order).
    todo.sort(key=lambda t: schedule_rank(t.params))
    ran: list[str] = []
    if not todo:
        if client is not None:
            client.close()
        return ran
    LOG.info("%d task(s) to run in %s", len(todo), runs_dir)
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
        rows.extend(json.loads(read_regular(runs_dir / f"{key}.json"))["rows"])
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
