"""Reproductions of the paper's Section IV: the only code that writes result files.

Each study is a module with ``DESCRIPTION``, ``DEFAULT_RUNS``, ``CONFIG_KEYS`` (the
columns that name a configuration), ``tasks(runs, seed, backend)``, ``run(params) ->
rows`` and ``figures(table, out)``; ``run_study`` runs its tasks (in parallel,
resumably: studies/runner.py) and writes one folder per study: results.csv and
.parquet, the figures as PNG and SVG, and settings.json with the exact settings and
versions. Tasks cover the default domain and the robustness variants
(studies/variants.py); the shared choices are in studies/common.py. The same seed and
code give the same files, bit for bit: no file holds a time or a date.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

LOG = logging.getLogger(__name__)

#: Study names (as the CLI takes them) and the module that makes each; a module can
#: make two figures of the paper from the same runs.
STUDIES = {"fig3": "fig3", "fig4": "fig4", "fig5": "fig5", "fig6": "fig6",
           "fig7": "fig6", "fig8": "fig8", "fig9": "fig8", "fig10": "fig10",
           "fig11": "fig10", "fig12": "fig12", "fig13": "fig12", "conj1": "conj1"}
#: Modules of studies/ whose code shapes every study's rows.
ROW_CODE = ("common", "outcome", "variants", "stats", "uniqueness")
#: The folder under ``out`` where solves are cached for every study of a report
#: (studies/outcome.py).
SOLVED = "solved"


#: Most runs per configuration a study takes: it keeps a task and a result file per
#: run and configuration (up to ~30 configurations), so 10^4 runs already make 3e5
#: files; a larger number is a typo, refused before anything is allocated.
MAX_RUNS = 10_000


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


def output_folder(out: Path | str, module_name: str = "") -> Path:
    """``out``/``module_name`` (``out`` itself without a name) as an absolute path
    (Dask workers run elsewhere), created; an ``out`` that is a file or cannot be
    written is refused."""
    from aggregame.errors import AggregameError

    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise AggregameError(f"--out {out}: is a file, not a folder")
    folder = out / module_name if module_name else out
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise AggregameError(f"--out {out}: cannot create {folder}: "
                             f"{err.strerror or err}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AggregameError(f"--out {out}: {folder} is not writable")
    return folder


def code_version(module_name: str) -> str:
    """aggregame's version and a digest of the code that computes a study's numbers
    (game definition, models, solvers, the studies' shared code and the study)."""
    import aggregame

    from aggregame.studies.outcome import solver_code

    files = [path for _, path in solver_code()]
    here = Path(__file__).parent
    files += [here / f"{name}.py" for name in (*ROW_CODE, module_name)]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"{aggregame.__version__}+{digest.hexdigest()[:16]}"


def _bind(folder: Path, settings: dict, code: str) -> dict:
    """Bind ``folder`` to ``settings`` and ``code``: write settings.json with their
    fingerprint, or refuse a folder that holds results of anything else."""
    from aggregame.errors import AggregameError
    from aggregame.studies.files import atomic_write_text, read_regular

    fingerprint = hashlib.sha256(json.dumps({"settings": settings, "code": code},
                                            sort_keys=True, default=str).encode()
                                 ).hexdigest()
    path = folder / "settings.json"
    if os.path.lexists(path):
        try:
            meta = json.loads(read_regular(path))
        except (OSError, ValueError):  # a link too: the folder is not ours
            meta = {}
        if isinstance(meta, dict) and meta.get("fingerprint") == fingerprint:
            return meta
        old = meta.get("settings", {}) if isinstance(meta, dict) else {}
        new = json.loads(json.dumps(settings, default=str))  # tuples read as lists
        changed = sorted(k for k in new if old.get(k) != new[k]) or (
            ["code version"] if isinstance(meta, dict) and meta.get("code") != code
            else ["settings.json"])
        raise AggregameError(
            f"{folder} holds results of other settings (changed: "
            f"{', '.join(changed)}); use another --out, or delete the folder to "
            f"start again")
    if any((folder / "runs").glob("*.json")):
        raise AggregameError(f"{folder} holds runs without a settings.json; use "
                             f"another --out, or delete the folder to start again")
    meta = {"settings": settings, "code": code, "fingerprint": fingerprint}
    atomic_write_text(path, json.dumps(meta, indent=1, default=str))
    return meta


def run_study(name: str, out: Path | str = "results", runs: int | None = None,
              seed: int = 0, workers: int | None = None,
              dask_address: str | None = None,
              backend: str = "native", progress: bool = True,
              users: int | None = None) -> StudyResult:
    """Run (or resume) study ``name`` and write its folder under ``out``.

    ``users`` replaces the paper's number of small users (for quick checks and tests);
    it is saved with the settings and is part of every task's key. The folder is
    locked for the run, and bound to the study's settings and code version: a folder
    written with other settings is refused, never mixed.
    """
    from aggregame.errors import AggregameError
    from aggregame.settings import BACKENDS
    from aggregame.studies.common import CHOICES
    from aggregame.studies.files import FolderLock, remove_stale_temps
    from aggregame.studies.registry import STUDY_MODULES
    from aggregame.studies.runner import Task, load_rows, run_tasks, versions, \
        write_outputs
    from aggregame.studies.variants import ROBUST_RUNS, VARIANTS

    if name not in STUDIES:
        raise AggregameError(f"unknown study {name!r}; studies are {list(STUDIES)}")
    if runs is not None and not 1 <= runs <= MAX_RUNS:
        raise AggregameError(f"--runs must be an integer from 1 to {MAX_RUNS} (a "
                             f"study keeps a file per run), got {runs}")
    if workers is not None and workers < 1:
        raise AggregameError(f"--workers must be >= 1, got {workers}")
    if backend not in BACKENDS:
        raise AggregameError(f"--backend must be one of {', '.join(BACKENDS)}, got "
                             f"{backend!r}")
    module_name = STUDIES[name]
    module = STUDY_MODULES[module_name]
    runs = runs or module.DEFAULT_RUNS
    folder = output_folder(out, module_name)
    params = module.tasks(runs, seed, backend)
    if users is not None:
        params = [dict(p, users=users) for p in params]
    params = [p for p in params if getattr(module, "applies", lambda p: True)(p)]
    tasks = [Task(module.run, task_key(p), p) for p in params]
    settings = {"study": module_name, "description": module.DESCRIPTION, "runs": runs,
                "seed": seed, "backend": backend, "users": users or "paper",
                "tasks": len(tasks), "choices": CHOICES.describe(),
                "robust runs": min(runs, ROBUST_RUNS),
                "variants": {v.name: v.domain.describe() for v in VARIANTS}}
    with FolderLock(folder):
        if remove_stale_temps(folder):
            LOG.info("%s: removed temporary files of an interrupted run", folder)
        meta = _bind(folder, settings, code_version(module_name))
        start = time.perf_counter()
        ran = run_tasks(tasks, folder / "runs", workers, dask_address, progress,
                        cache=folder.parent / SOLVED)
        table = load_rows(folder / "runs", [t.key for t in tasks])
        figures = module.figures(table, folder)
        write_outputs(folder, table, {**meta, "versions": versions()})
        seconds = time.perf_counter() - start
    return StudyResult(module_name, folder, table, figures, seconds, len(ran))
