"""Run a study's tasks in parallel, resumably, and write its output folder.

Each task (one run of one configuration) writes ``runs/<key>.json`` through a temporary
file and an atomic rename, so an interrupted sweep never leaves a half-written result
that looks complete; a rerun skips every key whose file exists. Tasks run on local
processes by default, or on a Dask cluster (``dask_address``). A tqdm bar shows the
time left.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd


@dataclass(frozen=True)
class Task:
    """One unit of work: ``run(params)`` of a study module, stored under ``key``."""

    study: str
    key: str
    params: dict[str, Any]


def execute(task: Task, runs_dir: str) -> str:
    """Run one task and store its rows atomically (top-level: picklable for workers)."""
    module = importlib.import_module(f"aggregame.studies.{task.study}")
    rows = module.run(task.params)
    target = Path(runs_dir) / f"{task.key}.json"
    fd, tmp = tempfile.mkstemp(dir=runs_dir, prefix=f".{task.key}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump({"key": task.key, "params": task.params, "rows": rows}, fh)
    os.replace(tmp, target)  # atomic: the file is complete or absent
    return task.key


def run_tasks(tasks: Iterable[Task], runs_dir: Path, workers: int | None = None,
              dask_address: str | None = None, progress: bool = True,
              on_done: Callable[[str], None] | None = None) -> list[str]:
    """Run every task whose result file is missing; returns the keys it ran."""
    from tqdm import tqdm

    runs_dir.mkdir(parents=True, exist_ok=True)
    for stale in runs_dir.glob(".*.tmp"):  # left by an interrupted earlier run
        stale.unlink()
    todo = [t for t in tasks if not (runs_dir / f"{t.key}.json").exists()]
    ran: list[str] = []
    if not todo:
        return ran
    bar = tqdm(total=len(todo), desc="runs", unit="run", disable=not progress)
    try:
        if dask_address:
            from distributed import Client, as_completed as dask_completed

            with Client(dask_address) as client:
                futures = client.map(execute, todo, runs_dir=str(runs_dir), pure=False)
                for fut in dask_completed(futures):
                    ran.append(fut.result())
                    bar.update(1)
        elif workers == 1:
            for task in todo:
                ran.append(execute(task, str(runs_dir)))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(execute, t, str(runs_dir)) for t in todo]
                for fut in as_completed(futures):
                    ran.append(fut.result())
                    bar.update(1)
    finally:
        bar.close()
    return ran


def load_rows(runs_dir: Path, keys: Iterable[str]) -> pd.DataFrame:
    """Every row of the given tasks, in task order (so reruns give identical tables)."""
    rows = []
    for key in keys:
        with (runs_dir / f"{key}.json").open() as fh:
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


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_outputs(out: Path, table: pd.DataFrame, settings: dict[str, Any],
                  seconds: float) -> None:
    """results.csv, results.parquet and settings.json (with versions and time), each
    complete or absent."""
    _atomic(out / "results.csv", lambda p: table.to_csv(p, index=False))
    _atomic(out / "results.parquet", lambda p: table.to_parquet(p, index=False))
    meta = {"settings": settings, "versions": versions(),
            "seconds": round(seconds, 3), "written": time.strftime("%Y-%m-%d %H:%M:%S")}
    _atomic(out / "settings.json",
            lambda p: p.write_text(json.dumps(meta, indent=1, default=str)))
