"""Benchmark: the solver comparison study, like for like, on Fig. 4 and a random game.

studies/compare.py into benchmarks/results/compare_runs/ (resumable) on the shipped
scenario fig4 (two aggregators and the large user, the paper's Fig. 4) and random-5
(two social-welfare aggregators of 10 paper users + the large user): every method,
backend and solver (cyipopt, scip, highs; ipopt where on PATH), REPEATS = 3 runs
each, so the median is the middle run. Each (method, backend, solver) has one untimed
warm-up run in the process first (solvers/compare/timed_run.py); wall and CPU time
are both recorded; a failed run keeps its time to failure. Runs without a solver
call (native best response) are listed apart and left out of the profile.

Tolerances are each solver's own defaults (solvers/solver_choice.py), listed in the
output: not one common relative tolerance (``aggregame compare --solver-rtol`` sets
one; this benchmark has not been run with it yet).

Writes benchmarks/results/compare.md, compare_profile.png/.svg and
compare_profile.csv (the profile's data). Run: python benchmarks/bench_compare.py
(delete compare_runs/ first to time everything again).
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path

import pandas as pd

from aggregame.solvers.compare.timed_run import NO_SOLVER
from aggregame.solvers.solver_choice import DEFAULTS, SolverName
from aggregame.studies.compare import (
    MEDIAN_RULE,
    WARM_UP_RULE,
    CompareSettings,
    draw_profile,
    failures_markdown,
    run_compare,
    summary_table,
)

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "compare_runs"
REPEATS = 3
SOLVERS = ("cyipopt", "scip", "highs") + (("ipopt",) if shutil.which("ipopt") else ())
SETTINGS = CompareSettings(("fig4", "random-5"), solvers=SOLVERS, repeats=REPEATS,
                           seed=0)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    def fmt(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    rows = ["| " + " | ".join(map(str, df.columns)) + " |",
            "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |"
             for r in df.itertuples(index=False)]
    return "\n".join(rows)


def tolerances() -> str:
    return "; ".join(
        f"{name}: " + ", ".join(f"{k} = {v}" for k, v in DEFAULTS[SolverName(name)]
                                .items() if "tol" in k or "gap" in k)
        for name in SOLVERS)


def main() -> None:
    start = time.perf_counter()
    result = run_compare(SETTINGS, RUNS)
    table = result.table
    draw_profile(table, RUNS)
    for ext in ("png", "svg", "csv"):
        shutil.copyfile(RUNS / f"profile.{ext}", RESULTS / f"compare_profile.{ext}")
    summary = summary_table(table)
    with_solver = summary[summary["solver"] != NO_SOLVER]
    native = summary[summary["solver"] == NO_SOLVER]
    lines = [
        "# Solver comparison (benchmarks/bench_compare.py)", "",
        (f"{platform.machine()}, Python {platform.python_version()}, a shared 2-core "
         f"machine; {REPEATS} runs per combination, one at a time; this invocation "
         f"{time.perf_counter() - start:.0f} s (runs already in compare_runs/ are "
         "resumed, not re-timed)."), "",
        (f"Like for like: {WARM_UP_RULE}. Times in seconds: solve_s is wall time, "
         f"solve_cpu_s CPU time (this process and its children; below wall time "
         f"when the machine is shared); {MEDIAN_RULE} (here 3 runs: the middle "
         "one). A failed run's time to failure is failed_after_s, apart. 'solved' = "
         "converged and certified by the one native regret certificate. build: "
         "inner models (KKT builds inside its solve); iterations: Ipopt/HiGHS "
         "iterations summed, SCIP nodes."), "",
        (f"Tolerances: each solver's own defaults, not one common relative "
         f"tolerance ({tolerances()})."), "",
        ("HiGHS takes only alpha = 0 with quadratic members and never the KKT "
         "system; SCIP takes the stacked KKT system only up to 4 members."), "",
        "## Runs that call a solver", "",
        markdown(with_solver), "",
        "![performance profile](compare_profile.png)", "",
        "Profile data: compare_profile.csv (configuration, tau, share).", "",
        "## Native best response (no solver called; not in the profile)", "",
        markdown(native), "",
        "## Runs that did not end solved, and skipped solvers", "",
        failures_markdown(table, result.skipped),
    ]
    (RESULTS / "compare.md").write_text("\n".join(lines))
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
