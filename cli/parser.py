"""The argument parser of the ``aggregame`` command: every value checked as it is read.

A bad value ends as one line (``aggregame: error: argument --seed: ...``) and exit
status 2, never as argparse's two-line usage message: :class:`Parser` turns argparse's
errors into :class:`UsageError`, which ``main`` reports like any other bad input.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable, NoReturn

from aggregame import __version__
from aggregame.errors import AggregameError
from aggregame.settings import BACKENDS, METHODS, MIN_TOL, STRATEGIES, Backend

EPILOG = """\
examples:
  aggregame scenarios                       list the scenario files shipped in data/
  aggregame solve fig4                      equilibrium of the paper's Fig. 4 setting
  aggregame solve fig4 --backend pyomo      the same through Pyomo + Ipopt
  aggregame solve my.toml --json > eq.json  machine-readable result
  aggregame solve fig4 --method kkt         the stacked KKT system instead
  aggregame solve fig4 --method aggregate   the search over the total purchase
  aggregame equilibria two_equilibria       every equilibrium, and whether that is
                                            proved to be all of them
  aggregame crosscheck fig4_proportional    every method side by side
  aggregame uniqueness fig4 --starts 5      look for more than one equilibrium
  aggregame study fig6 --runs 50            the paper's Figs. 6-7 (results/fig6/)
  aggregame report --quick                  short studies + results/report.html
  aggregame check                           is Ipopt reachable from Pyomo here?
  aggregame schema                          JSON Schema of scenario files

exit status: 0 equilibrium (or success), 1 no equilibrium, 2 bad input or
environment, 3 internal error (a bug: rerun with --debug for the traceback),
130 interrupted.

Scenario files are TOML; their format is documented in data/README.md, the command
line and its JSON output in docs/cli.md.
"""


class UsageError(ValueError, AggregameError):
    """A command-line argument is missing or invalid."""

    kind = "usage"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are exceptions (one line, exit 2 in ``main``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text!r}")
    return value


def _integer(minimum: int) -> Callable[[str], int]:
    """A type that takes whole numbers >= ``minimum`` ("3", not "3.5" or "-1")."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _integer_upto(minimum: int, maximum: int, why: str) -> Callable[[str], int]:
    """Whole numbers in [minimum, maximum]; ``why`` says why the maximum."""
    parse_min = _integer(minimum)

    def parse(text: str) -> int:
        value = parse_min(text)
        if value > maximum:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {minimum} to {maximum} ({why}), got {text!r}")
        return value

    parse.__name__ = f"integer in [{minimum}, {maximum}]"
    return parse


def _open_unit(text: str) -> float:
    value = _number(text, "tolerance")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def _stopping_tolerance(text: str) -> float:
    value = _number(text, "tolerance")
    if not MIN_TOL <= value < 1:
        raise argparse.ArgumentTypeError(
            f"must be in [{MIN_TOL:g}, 1) (below {MIN_TOL:g} the rounds would see the "
            f"best response's rounding), got {text!r}")
    return value


def _address(text: str) -> str:
    """A Dask scheduler address: not empty (an empty one would run locally)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "must be a scheduler address such as tcp://host:8786, got an empty one")
    return text.strip()


def _start(text: str) -> str | tuple[float, ...]:
    """'zero', 'random', or purchases separated by commas (finite, >= 0)."""
    if text in ("zero", "random"):
        return text
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = (math.nan,)
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be 'zero', 'random' or purchases >= 0 separated by commas, "
            f"got {text!r}")
    return values


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options taken before or after the command. In the subcommands their defaults
    are suppressed, so an option given before the command is not reset after it."""
    common = argparse.ArgumentParser(add_help=False)
    default = {"default": argparse.SUPPRESS} if suppress else {}
    common.add_argument("-v", "--verbose", action="count",
                        help="log progress (-vv: debug details)",
                        **(default or {"default": 0}))
    common.add_argument("-q", "--quiet", action="store_true",
                        help="log errors only; no progress bars", **default)
    common.add_argument("--debug", action="store_true",
                        help="print the traceback of an internal error", **default)
    common.add_argument("--json", action="store_true",
                        help="print the result as JSON on stdout (docs/cli.md)",
                        **default)
    return common


def build_parser() -> Parser:
    """The ``aggregame`` parser with every subcommand."""
    parser = Parser(
        prog="aggregame", parents=[_common(suppress=False)],
        description="Strategic, alpha-fair energy aggregators competing in a wholesale "
                    "market: equilibria by best response (native numpy or Pyomo+Ipopt), "
                    "with a regret certificate.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"aggregame {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    common = [_common(suppress=True)]
    _solve(sub.add_parser(
        "solve", parents=common, help="find and certify an equilibrium of a scenario",
        description="Run best-response dynamics on SCENARIO and certify the end point "
                    "by each player's regret. Exit 0 for a certified equilibrium, 1 "
                    "when none was found (the reason is printed), 2 for bad input."))
    _crosscheck(sub.add_parser(
        "crosscheck", parents=common,
        help="solve by best response (both backends) and by KKT, compare",
        description="Solve SCENARIO by best response with each backend and by the "
                    "stacked KKT system; print a side-by-side table. Exit 0 when every "
                    "method ends at a certified equilibrium (if their profiles differ, "
                    "the game has multiple equilibria and they are listed); exit 1 "
                    "when a method failed or its end point is not certified."))
    _equilibria(sub.add_parser(
        "equilibria", parents=common,
        help="every equilibrium, and whether they are proved to be all",
        description="Find every equilibrium of SCENARIO by a search over the total "
                    "purchase Y: each equilibrium total is a root of Z(Y) = sum_j "
                    "b_j(Y) - Y (b_j: player j's backward reply at the price Y "
                    "makes); each root's profile is certified. 'complete' is claimed "
                    "only with a proof (every reply falls with Y, or interval bounds "
                    "for one-member games); otherwise the equilibria were found, not "
                    "proved to be all. Exit 0 when complete (zero equilibria, "
                    "complete, is a valid answer), 1 when not, 2 for bad input."))
    _uniqueness(sub.add_parser(
        "uniqueness", parents=common,
        help="probe for several equilibria from random starts (a probe, not a "
             "proof: see `equilibria`)",
        description="Run best response (scan strategy) and the KKT solve from N random "
                    "starting profiles, cluster the end points, certify each cluster by "
                    "regret and report how many distinct equilibria were found. A KKT "
                    "point with positive regret is listed, not counted. Starts find "
                    "equilibria; they never show there are no others: `aggregame "
                    "equilibria` proves that where it can."))
    study = sub.add_parser(
        "study", parents=common,
        help="run one of the paper's Section IV studies (fig3 ... fig13)",
        description="Run a study of the paper's Section IV and write its folder: tidy "
                    "results (CSV, Parquet), the figure(s) (PNG, SVG) and settings.json "
                    "(settings, versions, fingerprint). Runs in parallel; an interrupted "
                    "study resumes where it stopped; a folder holds one set of settings.")
    study.add_argument("name", help="fig3, fig4, fig5, fig6/fig7, fig8/fig9, "
                                    "fig10/fig11, fig12/fig13 or conj1 (Conjecture 1)")
    _study_options(study)
    report = sub.add_parser(
        "report", parents=common, help="run missing studies and write one HTML report",
        description="Write DIR/report.html with every figure and, for each claim of "
                    "the paper's Section IV, our numbers and whether they support it. "
                    "Studies missing from DIR are run first.")
    _study_options(report)
    report.add_argument("--quick", action="store_true",
                        help="a short version: at most 3 runs per study")
    report.add_argument("--markdown", metavar="FILE",
                        help="also write the report in Markdown to FILE (it is always "
                             "written to DIR/studies.md)")
    sub.add_parser("scenarios", parents=common,
                   help="list the scenario files shipped in data/")
    sub.add_parser("check", parents=common,
                   help="check that Ipopt, cyipopt and PyNumero work here")
    compare = sub.add_parser(
        "compare", parents=common,
        help="compare methods, backends and solvers on scenarios (times, profiles)",
        description="Run every (scenario, method, backend, solver) that makes sense, "
                    "time build, solve and certificate apart, judge every entry by one "
                    "common certificate; write CSV, Parquet, a failures table and a "
                    "Dolan-More performance profile to --out. Resumable.")
    from aggregame.studies.compare import add_compare_arguments

    add_compare_arguments(compare)
    compare.add_argument("--allow-outside", dest="allow_outside", action="store_true",
                         help="let scenarios read data files outside their own folder")
    compare.add_argument("--allow-code", dest="allow_code", action="store_true",
                         help=ALLOW_CODE_HELP)
    sub.add_parser("schema", parents=common,
                   help="print the JSON Schema of scenario files (for editors)")
    return parser


#: --allow-code: a scenario's [market] model runs Python code (docs/cli.md).
ALLOW_CODE_HELP = ("let the scenario's [market] model = 'module:function' run that "
                   "module (a .py file beside the scenario); only for files you "
                   "trust")


def scenario_arguments(p: argparse.ArgumentParser, nargs: str | None = None) -> None:
    """The scenario argument(s), --allow-outside and --allow-code (every command
    that loads one)."""
    p.add_argument("scenario" if nargs is None else "scenarios", nargs=nargs,
                   metavar="SCENARIO",
                   help="path to a TOML file, or the name of a shipped one (see "
                        "`aggregame scenarios`)")
    p.add_argument("--allow-outside", dest="allow_outside", action="store_true",
                   help="let the scenario read data files outside its own folder "
                        "(by default a path elsewhere, '..' or a link leading out "
                        "is refused)")
    p.add_argument("--allow-code", dest="allow_code", action="store_true",
                   help=ALLOW_CODE_HELP)


def _solve(p: argparse.ArgumentParser) -> None:
    scenario_arguments(p)
    p.add_argument("--backend", choices=BACKENDS,
                   help="inner solver: native numpy (fast) or pyomo (Ipopt, the "
                        "reference); default: the scenario's, else native")
    p.add_argument("--method", choices=["best-response", "kkt", "aggregate"],
                   default="best-response",
                   help="best-response dynamics (default); the stacked KKT system "
                        "solved by Ipopt; or aggregate: a root search over the total "
                        "purchase Y of sum_j b_j(Y) = Y (each player's backward reply "
                        "at the price Y makes), no rounds, native backend. Every "
                        "method's point is certified by regret")
    _maxmin_option(p)
    _dynamics_options(p)
    _certificate_options(p)
    solver_arguments(p)
    p.add_argument("--progress", action="store_true",
                   help="show a progress bar (round, largest step, final regret)")
    _dask_option(p)


def _maxmin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--maxmin", choices=["leximin", "total-surplus"],
                   help="reading of max-min (alpha = inf) players, overriding the "
                        "scenario's: leximin (sorted surpluses compared "
                        "lexicographically, the alpha -> inf limit; native backend "
                        "only) or total-surplus (the minimum, ties broken by total "
                        "surplus)")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _certificate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--certify", choices=["scan", "global"], default="scan",
                   help="scan: sample every player's feasible interval on points "
                        "of its own and bound the payoff between them ('proved' "
                        "where the bounds close, 'bounded by X' where they do not, "
                        "'refuted' where a deviation gains); global: SCIP bounds "
                        "every player's best response ('proved', 'bounded by X', "
                        "or 'failed' with the reason)")
    p.add_argument("--certify-time-limit", dest="certify_time_limit", type=_positive,
                   default=5.0, metavar="SECONDS",
                   help="SCIP time limit per player for --certify global (default 5)")


def _dynamics_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dynamics", choices=METHODS,
                   help="update order of the best-response rounds")
    p.add_argument("--best-response", dest="best_response",
                   choices=STRATEGIES,
                   help="bisection trusts quasiconcavity; scan does not; auto starts "
                        "with bisection and switches if the certificate fails")
    p.add_argument("--tol", type=_stopping_tolerance,
                   help=f"stopping tolerance on purchases, in [{MIN_TOL:g}, 1)")
    p.add_argument("--max-rounds", type=_integer(1), help="round limit")
    p.add_argument("--start", type=_start,
                   help="'zero', 'random', or comma-separated purchases")
    p.add_argument("--seed", type=_integer(0), help="seed of a random start")


def solver_arguments(p: argparse.ArgumentParser) -> None:
    """--solver and --solver-option: the solver of the pyomo backend and of the
    stacked KKT system (overriding the scenario's [solver] name and options)."""
    p.add_argument("--solver", choices=["cyipopt", "ipopt", "scip", "highs"],
                   help="solver of the pyomo backend and the KKT system (default: "
                        "the scenario's, else cyipopt)")
    p.add_argument("--solver-option", dest="solver_option", action="append",
                   default=[], metavar="KEY=VALUE",
                   help="a solver option, e.g. tol=1e-8 (repeatable; the value is "
                        "read as an integer, a number or a string)")
    p.add_argument("--allow-file-options", dest="allow_file_options",
                   action="store_true",
                   help="accept --solver-option options that read or write files or "
                        "load libraries (output_file, option_file_name, log_file...; "
                        "docs/cli.md); a scenario file may never set them")


def _crosscheck(p: argparse.ArgumentParser) -> None:
    scenario_arguments(p)
    p.add_argument("--rtol", type=_open_unit, default=1e-6,
                   help="two profiles differ when their purchases differ by more than "
                        "this (relative, default 1e-6)")
    p.add_argument("--backends", default="native,pyomo",
                   help="best-response backends to run (default native,pyomo)")
    p.add_argument("--repeats", type=_integer(1), default=1,
                   help="runs of each method; the table shows the median time "
                        "(default 1)")
    _maxmin_option(p)
    _dynamics_options(p)
    _certificate_options(p)
    solver_arguments(p)


def _equilibria(p: argparse.ArgumentParser) -> None:
    scenario_arguments(p)
    _maxmin_option(p)
    _dask_option(p)


def _dask_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dask", metavar="ADDRESS", type=_address,
                   help="compute the players' backward replies on the Dask cluster "
                        "whose scheduler is at ADDRESS (e.g. tcp://host:8786), one "
                        "shard of players per worker")


def _uniqueness(p: argparse.ArgumentParser) -> None:
    scenario_arguments(p)
    p.add_argument("--starts", type=_integer(1), default=10,
                   help="random starts per method")
    p.add_argument("--seed", type=_integer(0), default=0,
                   help="seed of the random starts")
    p.add_argument("--methods", default="best-response,kkt",
                   help="comma-separated: best-response, kkt")
    _maxmin_option(p)


def _study_options(p: argparse.ArgumentParser) -> None:
    from aggregame.studies import MAX_RUNS

    p.add_argument("--runs", type=_integer_upto(1, MAX_RUNS, "a study keeps a file "
                                                        "per run"),
                   help="runs per configuration (default: the study's, 50 where the "
                        "paper used 50)")
    p.add_argument("--seed", type=_integer(0), default=0,
                   help="base seed: run r uses seed+r")
    p.add_argument("--workers", type=_integer(1),
                   help="local processes (default: all cores)")
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--backend", choices=BACKENDS, default=Backend.NATIVE.value)
    p.add_argument("--dask", metavar="ADDRESS", type=_address,
                   help="run on a Dask cluster (scheduler address, e.g. "
                        "tcp://host:8786) instead")
