"""Reproductions of the paper's Section IV: the only code that writes result files.

Each study is a module with ``DESCRIPTION``, ``DEFAULT_RUNS``, ``tasks(runs, seed,
backend)``, ``run(params) -> rows`` and ``figures(table, out)``; ``run_study`` runs
its tasks (in parallel, resumably: studies/runner.py) and writes one folder per study:
results.csv and .parquet, the figures as PNG and SVG, and settings.json with the exact
settings and versions. The shared choices are in studies/common.py.
"""

from __future__ import annotations

import importlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: Study names (as the CLI takes them) and the module that makes each; a module can
#: make two figures of the paper from the same runs.
STUDIES = {"fig3": "fig3", "fig4": "fig4", "fig5": "fig5", "fig6": "fig6",
           "fig7": "fig6", "fig8": "fig8", "fig9": "fig8", "fig10": "fig10",
           "fig11": "fig10", "fig12": "fig12", "fig13": "fig12"}


@dataclass
class StudyResult:
    """Where a study wrote its files, its table, and how long it took."""

    name: str
    folder: Path
    table: pd.DataFrame
    figures: list[str]
    seconds: float
    ran: int


def task_key(params: dict) -> str:
    """A file name that identifies a task by all of its parameters."""
    text = "-".join(f"{k}={params[k]}" for k in sorted(params))
    return re.sub(r"[^A-Za-z0-9=._-]+", "_", text)


def run_study(name: str, out: Path | str = "results", runs: int | None = None,
              seed: int = 0, workers: int | None = None, dask_address: str | None = None,
              backend: str = "native", progress: bool = True,
              users: int | None = None) -> StudyResult:
    """Run (or resume) study ``name`` and write its folder under ``out``.

    ``users`` replaces the paper's number of small users (for quick checks and tests);
    it is saved with the settings and is part of every task's key.
    """
    from aggregame.errors import AggregameError
    from aggregame.studies.common import CHOICES
    from aggregame.studies.runner import Task, load_rows, run_tasks, write_outputs

    if name not in STUDIES:
        raise AggregameError(f"unknown study {name!r}; studies are {list(STUDIES)}")
    if runs is not None and runs < 1:
        raise AggregameError(f"--runs must be >= 1, got {runs}")
    if backend not in ("native", "pyomo"):
        raise AggregameError(f"--backend must be native or pyomo, got {backend!r}")
    module_name = STUDIES[name]
    module = importlib.import_module(f"aggregame.studies.{module_name}")
    runs = runs or module.DEFAULT_RUNS
    folder = Path(out) / module_name
    folder.mkdir(parents=True, exist_ok=True)
    params = module.tasks(runs, seed, backend)
    if users is not None:
        params = [dict(p, users=users) for p in params]
    params = [p for p in params if getattr(module, "applies", lambda p: True)(p)]
    tasks = [Task(module_name, task_key(p), p) for p in params]
    start = time.perf_counter()
    ran = run_tasks(tasks, folder / "runs", workers, dask_address, progress)
    table = load_rows(folder / "runs", [t.key for t in tasks])
    figures = module.figures(table, folder)
    seconds = time.perf_counter() - start
    write_outputs(folder, table, {
        "study": module_name, "description": module.DESCRIPTION, "runs": runs,
        "seed": seed, "backend": backend, "users": users or "paper",
        "tasks": len(tasks), "ran_now": len(ran),
        "choices": CHOICES.describe()}, seconds)
    return StudyResult(module_name, folder, table, figures, seconds, len(ran))
