"""Solver comparison study: every (scenario, method, backend, solver), timed alike.

Each run is ``solvers.compare.timed_run.run_one`` (build, solve and certificate seconds,
solver iterations, a termination enum, and "solved" judged by the one native
certificate for every entry). The study writes into its folder:

* ``runs/<key>.json``: one file per run, atomically; a rerun skips the ones present;
* ``results.csv``, ``results.parquet``: the tidy table, one row per run;
* ``failures.md``: every run that did not end solved, and every solver skipped as
  unavailable here;
* ``profile.png``, ``profile.svg``: Dolan-More performance profile over solve time
  (a failed run counts as infinitely slow) of the runs that call a solver (native
  best response calls none: it is left out), and ``profile.csv``, its data
  (configuration, tau, share);
* ``settings.json``: the settings and versions.

Runs execute one at a time by default (``workers=1``): timings from processes that
share cores would not be like for like. Scenario names are shipped scenarios or TOML
paths, or ``random-N``: two social-welfare aggregators (alpha = 0, so HiGHS takes
part) sharing 2N of the paper's small users, drawn from the study's seed, plus the
large user.
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from aggregame.errors import AggregameError, ScenarioError
from aggregame.players import Game
from aggregame.solvers.compare.timed_run import (
    BACKENDS,
    METHODS,
    NO_SOLVER,
    RunStatus,
    combination_ok,
    rtol_options,
    run_one,
)
from aggregame.solvers.solver_choice import SolverName, SolverSpec

LOG = logging.getLogger(__name__)

DEFAULT_SOLVERS = ("cyipopt", "scip", "highs")
#: Columns that change from run to run on the same machine (left out of "same table").
TIME_COLUMNS = ("build_seconds", "solve_seconds", "certificate_seconds",
                "total_seconds", "solve_cpu_seconds", "warmup_seconds")
#: How the summary's medians read an even count of runs (stated in its output).
MEDIAN_RULE = "median: the middle run; of an even count, the lower of the two middle"
#: The warm-up (solvers/compare/timed_run.py), stated in the output.
WARM_UP_RULE = ("one untimed warm-up run per (method, backend, solver) in each "
                "process, not counted")
_RANDOM = re.compile(r"^random-(\d+)$")


@dataclass(frozen=True)
class CompareSettings:
    """What to compare; checked at construction."""

    scenarios: tuple[str, ...]
    methods: tuple[str, ...] = METHODS
    backends: tuple[str, ...] = BACKENDS
    solvers: tuple[str, ...] = DEFAULT_SOLVERS
    repeats: int = 1
    seed: int = 0
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    allow_outside: bool = False  # scenarios may read files outside their folder
    allow_code: bool = False  # a scenario's [market] model may run its module
    solver_rtol: float | None = None  # one relative tolerance (in options already)

    def __post_init__(self) -> None:
        if not self.scenarios:
            raise ScenarioError("compare: give at least one scenario")
        for field_name, allowed in (("methods", METHODS), ("backends", BACKENDS)):
            bad = [v for v in getattr(self, field_name) if v not in allowed]
            if bad:
                raise ScenarioError(f"compare: --{field_name} {bad[0]!r} is not one "
                                    f"of {list(allowed)}")
        for name in self.solvers:
            SolverName.parse(name)  # SolverOptionError naming it
        if not (isinstance(self.repeats, int) and self.repeats >= 1):
            raise ScenarioError(f"compare: --repeats must be >= 1, got "
                                f"{self.repeats!r}")

    def spec(self, solver: str) -> SolverSpec:
        """The SolverSpec of ``solver``, with this study's options for it."""
        return SolverSpec(solver, dict(dict(self.options).get(solver, ())))

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def load_game(name: str, seed: int, allow_outside: bool = False,
              allow_code: bool = False) -> Game:
    """A shipped scenario, a TOML path, or ``random-N`` (module docstring)."""
    match = _RANDOM.match(name)
    if match:
        from aggregame.studies.common import Domain, aggregated, small_users

        n = int(match.group(1))
        # K = 400, as when benchmarks/results/compare.md was measured.
        return aggregated(small_users(2 * n, seed), alphas=(0.0, 0.0),
                          domain=Domain(large="K=400"))
    from aggregame.scenario import load_scenario
    from aggregame.solvers.market.scenario_code import read_scenario_market

    return load_scenario(name, allow_outside=allow_outside, allow_code=allow_code,
                         market_reader=read_scenario_market).game


def _key(*parts: Any) -> str:
    return "__".join(re.sub(r"[^A-Za-z0-9.=-]+", "-", str(p)) for p in parts)


def plan(settings: CompareSettings) -> tuple[list, list[dict[str, Any]]]:
    """Tasks to run and the failure rows of solvers unavailable here."""
    from aggregame.studies.runner import Task

    tasks, skipped = [], []
    ready = {}
    options = dict(settings.options)
    for solver in settings.solvers:
        spec = settings.spec(solver)
        try:
            spec.check_available()
            ready[solver] = True
        except AggregameError as err:
            LOG.warning("skipping solver %s: %s", solver, err)
            ready[solver] = False
            skipped.append({"scenario": "*", "method": "*", "backend": "pyomo",
                            "solver": solver, "status": RunStatus.UNAVAILABLE.value,
                            "message": str(err)})
    for scenario in settings.scenarios:
        for method in settings.methods:
            for backend in settings.backends:
                names = [NO_SOLVER] if backend == "native" else [
                    s for s in settings.solvers if ready[s]]
                for solver in names:
                    if not combination_ok(method, backend, solver):
                        continue
                    for rep in range(settings.repeats):
                        params = {"scenario": scenario, "method": method,
                                  "backend": backend, "solver": solver,
                                  "options": dict(options.get(solver, ())),
                                  "seed": settings.seed, "repeat": rep}
                        if settings.allow_outside:
                            params["allow_outside"] = True
                        if settings.allow_code:
                            params["allow_code"] = True
                        tasks.append(Task(run, _key(scenario, method, backend,
                                                          solver, settings.seed, rep),
                                          params))
    return tasks, skipped


def run(params: dict[str, Any]) -> list[dict[str, Any]]:
    """One run (the runner's entry point): the record of run_one as a row."""
    game = load_game(params["scenario"], params["seed"],
                     params.get("allow_outside", False),
                     params.get("allow_code", False))
    solver = None if params["solver"] == NO_SOLVER else SolverSpec(
        params["solver"], params.get("options") or {})
    record = run_one(game, params["method"], params["backend"], solver, params["seed"])
    row = {"scenario": params["scenario"], "repeat": params["repeat"],
           **record.to_row()}
    row["solver"] = params["solver"]  # the name; options are in settings.json
    row["profile"] = [round(v, 9) for v in row["profile"]]
    return [row]


def performance_profile(table: pd.DataFrame, column: str = "solve_seconds"
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Dolan-More profile: for each configuration, tau -> share of problems it solved
    within tau times the best configuration's time. A problem is a (scenario,
    repeat); an unsolved run counts as infinitely slow. Runs without a solver call
    (native best response) are left out: the profile compares solvers."""
    table = table[table["solver"] != NO_SOLVER]
    df = table.assign(config=table["method"] + "/" + table["backend"] + "/"
                      + table["solver"])
    times = df.assign(t=np.where(df["status"] == RunStatus.SOLVED.value, df[column],
                                 np.inf))
    wide = times.pivot_table(index=["scenario", "repeat"], columns="config",
                             values="t", aggfunc="min")
    best = wide.min(axis=1).replace(0.0, np.nan)
    ratios = wide.div(best, axis=0)
    out = {}
    for config in ratios.columns:
        r = np.sort(ratios[config].to_numpy(dtype=float))
        r = np.where(np.isnan(r), np.inf, r)
        out[config] = (r, np.arange(1, r.size + 1) / r.size)
    return out


def draw_profile(table: pd.DataFrame, out: Path) -> list[str]:
    """Write profile.png and profile.svg (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    profile = performance_profile(table)
    write_profile_csv(profile, out / "profile.csv")
    finite = [r[np.isfinite(r)] for r, _ in profile.values()]
    top = max([float(f.max()) for f in finite if f.size] + [1.0]) * 2
    fig = Figure(figsize=(7, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for config, (ratios, share) in sorted(profile.items()):
        x = np.concatenate([[1.0], np.minimum(ratios, top), [top]])
        y = np.concatenate([[0.0], np.where(np.isfinite(ratios), share, np.nan),
                            [np.nanmax(np.where(np.isfinite(ratios), share, np.nan))
                             if np.isfinite(ratios).any() else 0.0]])
        y = pd.Series(y).ffill().fillna(0.0).to_numpy()
        ax.step(x, y, where="post", label=config)
    ax.set_xscale("log", base=2)
    ax.set_xlim(1.0, top)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("tau: solve time / best solve time on the problem")
    ax.set_ylabel("share of problems solved within tau")
    ax.set_title("Performance profile (failures count as never solved)")
    if profile:  # only native runs: no solver to profile, an empty figure
        ax.legend(fontsize=7, loc="lower right")
    from aggregame.studies.plots import save

    return save(fig, out, "profile")  # atomically, like every study's figures


def write_profile_csv(profile: dict[str, tuple[np.ndarray, np.ndarray]],
                      path: Path) -> None:
    """The profile's data: one row per (configuration, problem), its ratio tau to
    the best time (inf: not solved) and the share solved within tau."""
    from aggregame.studies.files import atomic_write

    rows = pd.DataFrame([{"config": config, "tau": tau, "share": share}
                         for config, (ratios, shares) in sorted(profile.items())
                         for tau, share in zip(ratios, shares)],
                        columns=["config", "tau", "share"])
    atomic_write(path, lambda p: rows.to_csv(p, index=False))


def lower_median(values: pd.Series) -> float:
    """The middle value of the finite ones; of an even count the lower middle one
    (MEDIAN_RULE): always a time some run took, never a mean of two."""
    v = np.sort(values.to_numpy(dtype=float))
    v = v[np.isfinite(v)]
    return float(v[(v.size - 1) // 2]) if v.size else math.nan


def failures_markdown(table: pd.DataFrame, skipped: Sequence[dict[str, Any]]) -> str:
    """Markdown table of every run that did not end solved, and skipped solvers."""
    cols = ["scenario", "method", "backend", "solver", "status", "message"]
    bad = table[table["status"] != RunStatus.SOLVED.value] if len(table) else table
    rows = [dict(r) for r in bad[cols].to_dict("records")] if len(bad) else []
    rows += [dict(r) for r in skipped]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")).replace("|", "/")[:160]
                                       for c in cols) + " |")
    if not rows:
        lines.append("| (none) |" + " |" * (len(cols) - 1))
    return "\n".join(lines) + "\n"


@dataclass
class CompareResult:
    """The study's table, what it skipped, and where it wrote."""

    table: pd.DataFrame
    skipped: list[dict[str, Any]]
    folder: Path
    ran: int
    seconds: float

    def summary(self) -> pd.DataFrame:
        """Median times and solved share per (scenario, method, backend, solver)."""
        return summary_table(self.table)


SUMMARY_COLUMNS = ("scenario", "method", "backend", "solver", "runs", "solved",
                   "build_s", "solve_s", "solve_cpu_s", "certificate_s",
                   "failed_after_s", "iterations", "rounds", "max_regret")


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:  # every (method, backend) pair was refused: nothing ran
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    failed = table["status"] == RunStatus.FAILED.value
    # A failed run's time is its time to failure, apart from the others'.
    table = table.assign(
        solved_s=table["solve_seconds"].where(~failed),
        solved_cpu_s=table.get("solve_cpu_seconds",
                               pd.Series(math.nan, index=table.index)).where(~failed),
        failed_s=table["solve_seconds"].where(failed))
    group = table.groupby(["scenario", "method", "backend", "solver"], sort=False)
    return group.agg(runs=("status", "size"),
                     solved=("status", lambda s: int((s == "solved").sum())),
                     build_s=("build_seconds", lower_median),
                     solve_s=("solved_s", lower_median),
                     solve_cpu_s=("solved_cpu_s", lower_median),
                     certificate_s=("certificate_seconds", lower_median),
                     failed_after_s=("failed_s", lower_median),
                     iterations=("solver_iterations", lower_median),
                     rounds=("rounds", lower_median),
                     max_regret=("max_regret", "max")).reset_index()


def run_compare(settings: CompareSettings, out: Path | str, workers: int = 1,
                progress: bool = True) -> CompareResult:
    """Run (or resume) the study into ``out`` and write its files."""
    from aggregame.studies import output_folder
    from aggregame.studies.files import atomic_write
    from aggregame.studies.runner import load_rows, run_tasks, write_outputs

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise AggregameError(f"--workers must be an integer >= 1, got {workers!r}")
    start = time.perf_counter()
    given = Path(out).expanduser()
    ours = (given / "settings.json").exists() or (given / "runs").is_dir()
    if given.is_dir() and any(given.iterdir()) and not ours:
        # Not a folder this study wrote (an interrupted one has runs/ and is resumed):
        # its results.csv, figures... are someone's.
        raise AggregameError(f"--out {given}: not empty and not a compare folder (no "
                             "settings.json or runs/): give a new or empty folder")
    out = output_folder(out)
    tasks, skipped = plan(settings)
    if not tasks:
        raise AggregameError(
            f"compare: nothing to run: methods {list(settings.methods)} x backends "
            f"{list(settings.backends)} x solvers {list(settings.solvers)} has no "
            f"combination that can run here (the stacked KKT system needs the pyomo "
            f"backend and a solver of nonlinear systems)")
    ran = run_tasks(tasks, out / "runs", workers=workers, progress=progress)
    table = load_rows(out / "runs", [t.key for t in tasks])
    seconds = time.perf_counter() - start
    write_outputs(out, table, {**settings.describe(), "seconds": seconds})
    text = failures_markdown(table, skipped)
    atomic_write(out / "failures.md", lambda p: p.write_text(text))
    if len(table):
        draw_profile(table, out)
    return CompareResult(table, skipped, out, len(ran), seconds)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``aggregame compare`` arguments, for the CLI to add to its subparser."""
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO",
                        help="shipped scenario names, TOML paths, or random-N")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated: best-response, kkt (default both)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated: native, pyomo (default both)")
    parser.add_argument("--solvers", default=",".join(DEFAULT_SOLVERS),
                        help="comma-separated: cyipopt, ipopt, scip, highs (default "
                             "cyipopt,scip,highs; unavailable ones are skipped)")
    parser.add_argument("--solver", metavar="NAME",
                        help="one solver only (instead of --solvers); it must be "
                             "installed")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each combination (default 1)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of random-N games and of the runs (default 0)")
    parser.add_argument("--solver-option", dest="solver_option", action="append",
                        default=[], metavar="[SOLVER:]KEY=VALUE",
                        help="an option of one solver, e.g. cyipopt:tol=1e-8; "
                             "without SOLVER: of every solver run (repeatable)")
    parser.add_argument("--solver-rtol", dest="solver_rtol", type=float,
                        metavar="RTOL",
                        help="one relative tolerance for every solver, set as each "
                             "solver's own option (Ipopt tol, SCIP limits/gap, HiGHS "
                             "feasibility tolerances); default: each solver's own")
    parser.add_argument("--workers", type=int, default=1,
                        help="parallel runs (default 1: timings stay like for like)")
    parser.add_argument("--out", default="results/compare",
                        help="output folder (default results/compare)")


def settings_from_args(args: argparse.Namespace) -> CompareSettings:
    """CompareSettings from the parsed ``aggregame compare`` arguments."""
    from aggregame.errors import SolverOptionError
    from aggregame.solvers.solver_choice import parse_solver_options

    solvers = tuple(SolverName.parse(s).value for s in _csv(args.solvers))
    if getattr(args, "solver", None):
        if args.solvers != ",".join(DEFAULT_SOLVERS):
            raise SolverOptionError(f"--solver {args.solver} and --solvers "
                                    f"{args.solvers}: give one of them")
        solvers = (SolverName.parse(args.solver).value,)
        SolverSpec(solvers[0]).check_available()  # asked for by name: must be there
    per_solver: dict[str, dict[str, Any]] = {}
    for item in args.solver_option:
        solver, sep, rest = item.partition(":")
        if not sep or "=" in solver:  # KEY=VALUE: an option of every solver run
            if not solvers:
                raise SolverOptionError(f"--solver-option {item!r}: no solver to "
                                        "apply it to")
            for name in solvers:
                per_solver.setdefault(name, {}).update(parse_solver_options([item]))
            continue
        name = SolverName.parse(solver).value
        if name not in solvers:
            raise SolverOptionError(f"--solver-option {item!r}: solver {name!r} is "
                                    f"not among the solvers run ({list(solvers)})")
        per_solver.setdefault(name, {}).update(parse_solver_options([rest]))
    rtol = getattr(args, "solver_rtol", None)
    if rtol is not None:
        if not (math.isfinite(rtol) and 0 < rtol < 1):
            raise SolverOptionError(f"--solver-rtol: must be in (0, 1), got {rtol!r}")
        for name in solvers:  # an option given by name stays the user's
            per_solver[name] = {**rtol_options(name, rtol), **per_solver.get(name, {})}
    for name, opts in per_solver.items():
        SolverSpec(name, opts)  # an invalid option fails here, naming it
    options = tuple(sorted((k, tuple(sorted(v.items())))
                           for k, v in per_solver.items()))
    return CompareSettings(tuple(args.scenarios), _csv(args.methods),
                           _csv(args.backends), solvers, args.repeats, args.seed,
                           options, getattr(args, "allow_outside", False),
                           getattr(args, "allow_code", False), rtol)
