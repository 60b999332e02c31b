"""The ``aggregame`` command line (the application layer: it may use every package).

Errors a user can cause end as one line on stderr and exit status 2; "no
equilibrium found" is exit status 1; never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from aggregame.errors import AggregameError

EPILOG = """\
examples:
  aggregame scenarios                       list the scenario files shipped in data/
  aggregame solve fig4                      equilibrium of the paper's Fig. 4 setting
  aggregame solve fig4 --backend pyomo      the same through Pyomo + Ipopt
  aggregame solve my.toml --json > eq.json  machine-readable result
  aggregame solve fig4 --method kkt         the stacked KKT system instead
  aggregame crosscheck fig4_proportional    every method side by side
  aggregame uniqueness fig4 --starts 5      look for more than one equilibrium
  aggregame study fig6 --runs 50            the paper's Figs. 6-7 (results/fig6/)
  aggregame report --quick                  short studies + results/report.html
  aggregame check                           is Ipopt reachable from Pyomo here?

Scenario files are TOML; their format is documented in data/README.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregame",
        description="Strategic, alpha-fair energy aggregators competing in a wholesale "
                    "market: equilibria by best response (native numpy or Pyomo+Ipopt), "
                    "with a regret certificate.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    solve = sub.add_parser(
        "solve", help="find and certify an equilibrium of a scenario",
        description="Run best-response dynamics on SCENARIO and certify the end point "
                    "by each player's regret. Exit 0 for a certified equilibrium, 1 "
                    "when none was found (the reason is printed), 2 for bad input.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    solve.add_argument("scenario", help="path to a TOML file, or the name of a shipped "
                                        "one (see `aggregame scenarios`)")
    solve.add_argument("--backend", choices=["native", "pyomo"],
                       help="inner solver: native numpy (fast) or pyomo (Ipopt, the "
                            "reference); default: the scenario's, else native")
    solve.add_argument("--method", choices=["best-response", "kkt"],
                       default="best-response",
                       help="best-response dynamics (default), or the stacked KKT system "
                            "solved by Ipopt (its point is then certified by regret)")
    solve.add_argument("--dynamics", choices=["gauss-seidel", "jacobi"],
                       help="update order of the best-response rounds")
    solve.add_argument("--best-response", dest="best_response",
                       choices=["auto", "bisection", "scan"],
                       help="bisection trusts quasiconcavity; scan does not; auto starts "
                            "with bisection and switches if the certificate fails")
    solve.add_argument("--tol", type=float, help="stopping tolerance on purchases")
    solve.add_argument("--max-rounds", type=int, help="round limit")
    solve.add_argument("--start", help="'zero', 'random', or comma-separated purchases")
    solve.add_argument("--seed", type=int, help="seed of a random start")
    solve.add_argument("--json", action="store_true",
                       help="print the result as JSON on stdout")
    solve.add_argument("--progress", action="store_true", help="show a progress bar")

    cross = sub.add_parser(
        "crosscheck", help="solve by best response (both backends) and by KKT, compare",
        description="Solve SCENARIO by best response with the native and the pyomo "
                    "backend and by the stacked KKT system; print a side-by-side table. "
                    "Exit 1 when the profiles differ by more than --rtol or any result "
                    "is not a certified equilibrium.")
    cross.add_argument("scenario")
    cross.add_argument("--rtol", type=float, default=1e-6,
                       help="agreement tolerance on purchases (relative, default 1e-6)")
    cross.add_argument("--backends", default="native,pyomo",
                       help="best-response backends to run (default native,pyomo)")

    uniq = sub.add_parser(
        "uniqueness", help="probe for several equilibria (the paper's Conjecture 1)",
        description="Run best response (scan strategy) and the KKT solve from N random "
                    "starting profiles, cluster the end points, certify each cluster by "
                    "regret and report how many distinct equilibria were found. A KKT "
                    "point with positive regret is listed, not counted.")
    uniq.add_argument("scenario")
    uniq.add_argument("--starts", type=int, default=10, help="random starts per method")
    uniq.add_argument("--seed", type=int, default=0, help="seed of the random starts")
    uniq.add_argument("--methods", default="best-response,kkt",
                      help="comma-separated: best-response, kkt")
    uniq.add_argument("--json", action="store_true", help="print the clusters as JSON")

    study = sub.add_parser(
        "study", help="run one of the paper's Section IV studies (fig3 ... fig13)",
        description="Run a study of the paper's Section IV and write its folder: tidy "
                    "results (CSV, Parquet), the figure(s) (PNG, SVG) and settings.json "
                    "(settings and versions). Runs in parallel; an interrupted study "
                    "resumes where it stopped.")
    study.add_argument("name", help="fig3, fig4, fig5, fig6/fig7, fig8/fig9, "
                                    "fig10/fig11 or fig12/fig13")
    _study_options(study)

    report = sub.add_parser(
        "report", help="run missing studies and write one HTML report",
        description="Write DIR/report.html with every figure and, for each claim of "
                    "the paper's Section IV, our numbers and whether they support it. "
                    "Studies missing from DIR are run first.")
    _study_options(report)
    report.add_argument("--quick", action="store_true",
                        help="a short version: at most 3 runs per study")

    sub.add_parser("scenarios", help="list the scenario files shipped in data/")
    sub.add_parser("check", help="check that Ipopt, cyipopt and PyNumero work here")
    return parser


def _study_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, help="runs per configuration (default: the "
                                           "study's, 50 where the paper used 50)")
    p.add_argument("--seed", type=int, default=0, help="base seed: run r uses seed+r")
    p.add_argument("--workers", type=int, help="local processes (default: all cores)")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--backend", choices=["native", "pyomo"], default="native")
    p.add_argument("--dask", metavar="ADDRESS",
                   help="run on a Dask cluster (scheduler address) instead")


def _settings(args: argparse.Namespace, scenario) -> tuple[str, object]:
    """Backend and dynamics settings: the scenario's [solver] table, overridden by
    whichever of the solve command's flags ``args`` has and sets."""
    from aggregame.solvers.dynamics import DynamicsSettings

    cfg = dict(scenario.solver)
    backend = getattr(args, "backend", None) or cfg.get("backend", "native")
    cfg.pop("backend", None)
    if getattr(args, "dynamics", None):
        cfg["method"] = args.dynamics
    for key in ("best_response", "tol", "max_rounds", "seed"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    start = getattr(args, "start", None)
    if start is not None:
        if start in ("zero", "random"):
            cfg["start"] = start
        else:
            try:
                cfg["start"] = tuple(float(v) for v in start.split(","))
            except ValueError:
                raise AggregameError(
                    f"--start must be 'zero', 'random' or numbers separated by commas, "
                    f"got {start!r}") from None
    try:
        return backend, DynamicsSettings(**cfg)
    except TypeError as err:
        raise AggregameError(f"{scenario.path}: [solver]: {err}") from None


def _cmd_solve(args: argparse.Namespace) -> int:
    from aggregame.scenario import load_scenario
    from aggregame.solvers.dynamics import solve_equilibrium

    scenario = load_scenario(args.scenario)
    backend, settings = _settings(args, scenario)
    if args.method == "kkt":
        from aggregame.solvers.kkt import solve_kkt

        eq = solve_kkt(scenario.game, certificate_rtol=settings.certificate_rtol)
    else:
        eq = solve_equilibrium(scenario.game, backend=backend, settings=settings,
                               progress=args.progress)
    if args.json:
        print(eq.to_json(indent=1))
    else:
        print(f"scenario {scenario.name}: {scenario.description}")
        print(eq.summary())
    if not eq.is_equilibrium:
        print(eq.reason(), file=sys.stderr)
        return 1
    return 0


def _cmd_crosscheck(args: argparse.Namespace) -> int:
    from aggregame.scenario import load_scenario
    from aggregame.solvers.compare import crosscheck

    scenario = load_scenario(args.scenario)
    _, settings = _settings(args, scenario)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    report = crosscheck(scenario.game, settings, backends)
    report.rtol = args.rtol
    table = report.table()
    print(f"scenario {scenario.name}: {scenario.description}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.6g}"))
    gap = report.disagreement()
    if not report.agree:
        print(f"methods disagree: largest relative profile difference {gap:.3g} "
              f"(tolerance {args.rtol:g}), or a result is not a certified equilibrium",
              file=sys.stderr)
        return 1
    print(f"all methods agree to {gap:.2g} (tolerance {args.rtol:g})")
    return 0


def _cmd_uniqueness(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from aggregame.scenario import load_scenario
    from aggregame.solvers.compare import probe_uniqueness

    if args.starts < 1:
        raise AggregameError(f"--starts must be >= 1, got {args.starts}")
    scenario = load_scenario(args.scenario)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("best-response", "kkt")]
    if bad:
        raise AggregameError(f"--methods: unknown method(s) {bad}; use best-response, kkt")
    with tqdm(total=args.starts * len(methods), desc="runs", unit="run",
              disable=args.json) as bar:
        report = probe_uniqueness(scenario.game, starts=args.starts, seed=args.seed,
                                  methods=methods,
                                  progress=lambda done, total: bar.update(1))
    found = len(report.equilibria)
    if args.json:
        print(report.table().to_json(orient="records"))
    else:
        print(f"scenario {scenario.name}: {args.starts} random starts per method "
              f"(seed {args.seed})")
        print(report.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"{found} distinct equilibri{'um' if found == 1 else 'a'} found; "
              f"{len(report.not_equilibria)} end point(s) that are not equilibria")
    return 0 if found >= 1 else 1


def _cmd_study(args: argparse.Namespace) -> int:
    from aggregame.studies import run_study

    result = run_study(args.name, out=args.out, runs=args.runs, seed=args.seed,
                       workers=args.workers, dask_address=args.dask,
                       backend=args.backend)
    print(f"{result.name}: {len(result.table)} rows, figures {', '.join(result.figures)}"
          f" in {result.folder} ({result.seconds:.1f} s, {result.ran} runs computed "
          f"now)")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import time

    from aggregame.studies import STUDIES, run_study
    from aggregame.studies.report import ORDER, write_report

    start = time.perf_counter()
    for name in ORDER:
        runs = args.runs
        if args.quick:
            import importlib

            module = importlib.import_module(f"aggregame.studies.{STUDIES[name]}")
            runs = min(runs or module.DEFAULT_RUNS, 3)
        result = run_study(name, out=args.out, runs=runs, seed=args.seed,
                           workers=args.workers, dask_address=args.dask,
                           backend=args.backend)
        print(f"{name}: {result.folder} ({result.seconds:.1f} s)")
    path = write_report(args.out, time.perf_counter() - start)
    print(f"report: {path}")
    return 0


def _cmd_scenarios(args: argparse.Namespace) -> int:
    from aggregame import data
    from aggregame.scenario import load_scenario

    for name in data.scenarios():
        sc = load_scenario(data.path(name))
        print(f"{name.removesuffix('.toml'):20s} {sc.description}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    import numpy as np

    import aggregame
    from aggregame import LinearPrice, Player, Game, quadratic_users
    from aggregame.solvers.native import NativeInner
    from aggregame.solvers.pyomo_inner import PyomoInner

    print(f"aggregame {aggregame.__version__} at {aggregame.__file__}")
    game = Game((Player.aggregator("check", quadratic_users([0.5, 0.3], [4.0, 6.0]),
                                   alpha=1),), LinearPrice(0.01))
    pyomo_sol = PyomoInner(game, 0).solve(np.array([3.0]), 10.0)
    native_sol = NativeInner(game, 0).solve(np.array([3.0]), 10.0)
    gap = float(np.abs(pyomo_sol.x - native_sol.x).max())
    print(f"Ipopt through Pyomo/cyipopt: ok (a 2-member inner problem; Ipopt and the "
          f"native backend differ by {gap:.1e})")
    return 0 if gap < 1e-6 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    handler = {"solve": _cmd_solve, "crosscheck": _cmd_crosscheck,
               "uniqueness": _cmd_uniqueness, "study": _cmd_study,
               "report": _cmd_report, "scenarios": _cmd_scenarios,
               "check": _cmd_check}
    try:
        return handler[args.command](args)
    except AggregameError as err:
        print(f"aggregame: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aggregame: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
