"""Benchmark: the solver comparison study on shipped scenarios and random games.

studies/compare.py into benchmarks/results/compare_runs/ (resumable) on the shipped
scenarios fig4, fig4_proportional (201 members; alpha 0, 1) and two_equilibria, and
on random games of three sizes (random-5, random-20, random-50: two social-welfare
aggregators of 2N paper users + the large user): every method, backend and solver
(cyipopt, scip, highs; ipopt where on PATH), one run each (REPEATS = 1 keeps the
whole benchmark near ten minutes). fig4_maxmin (max-min) runs without SCIP, into
compare_runs_maxmin/: SCIP's best response there had not finished after 5 minutes
(derivative-free golden-section search, two SCIP solves per evaluation).

Writes benchmarks/results/compare.md (medians, failures) and compare_profile.png/.svg
(the Dolan-More profile over both runs). Run: python benchmarks/bench_compare.py
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path

import pandas as pd

from aggregame.studies.compare import (
    CompareSettings,
    draw_profile,
    failures_markdown,
    run_compare,
    summary_table,
)

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "compare_runs"
REPEATS = 1
SOLVERS = ("cyipopt", "scip", "highs") + (("ipopt",) if shutil.which("ipopt") else ())
SETTINGS = CompareSettings(("fig4", "fig4_proportional", "two_equilibria", "random-5",
                            "random-20", "random-50"),
                           solvers=SOLVERS, repeats=REPEATS, seed=0)
MAXMIN = CompareSettings(("fig4_maxmin",), solvers=("cyipopt", "highs"),
                         repeats=REPEATS, seed=0)


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    rows = ["| " + " | ".join(map(str, df.columns)) + " |",
            "|" + "---|" * len(df.columns)]
    rows += ["| " + " | ".join(fmt(v) for v in r) + " |"
             for r in df.itertuples(index=False)]
    return "\n".join(rows)


def main() -> None:
    start = time.perf_counter()
    parts = [run_compare(SETTINGS, RUNS),
             run_compare(MAXMIN, RESULTS / "compare_runs_maxmin")]
    table = pd.concat([p.table for p in parts], ignore_index=True)
    skipped = parts[0].skipped
    draw_profile(table, RUNS)  # over both parts, then next to the table
    for ext in ("png", "svg"):
        shutil.copyfile(RUNS / f"profile.{ext}", RESULTS / f"compare_profile.{ext}")
    summary = summary_table(table)
    lines = [
        "# Solver comparison (benchmarks/bench_compare.py)", "",
        f"{platform.machine()}, Python {platform.python_version()}; {REPEATS} run per "
        f"combination, one at a time; this invocation "
        f"{time.perf_counter() - start:.0f} s (runs already in compare_runs/ are "
        "resumed, not re-timed; a fresh run took about 8 minutes). Times in seconds, medians. 'solved' = "
        "converged and certified by the one native regret certificate. build: inner "
        "models (KKT builds inside its solve); iterations: Ipopt/HiGHS iterations "
        "summed, SCIP nodes (0 for native).", "",
        "fig4_maxmin ran without SCIP (see the script's docstring). HiGHS takes only alpha = 0 with quadratic members and never the KKT system; "
        "SCIP takes the stacked KKT system only up to 4 members.", "",
        markdown(summary), "",
        "![performance profile](compare_profile.png)", "",
        "## Runs that did not end solved, and skipped solvers", "",
        failures_markdown(table, skipped),
    ]
    (RESULTS / "compare.md").write_text("\n".join(lines))
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
