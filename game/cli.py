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
    solve.add_argument("--method", choices=["best-response"], default="best-response",
                       help="equilibrium method (default best-response)")
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

    sub.add_parser("scenarios", help="list the scenario files shipped in data/")
    sub.add_parser("check", help="check that Ipopt, cyipopt and PyNumero work here")
    return parser


def _settings(args: argparse.Namespace, scenario) -> tuple[str, object]:
    from aggregame.solvers.dynamics import DynamicsSettings

    cfg = dict(scenario.solver)
    backend = args.backend or cfg.pop("backend", "native")
    cfg.pop("backend", None)
    if args.dynamics:
        cfg["method"] = args.dynamics
    for key in ("best_response", "tol", "max_rounds", "seed"):
        value = getattr(args, key)
        if value is not None:
            cfg[key] = value
    if args.start is not None:
        if args.start in ("zero", "random"):
            cfg["start"] = args.start
        else:
            try:
                cfg["start"] = tuple(float(v) for v in args.start.split(","))
            except ValueError:
                raise AggregameError(
                    f"--start must be 'zero', 'random' or numbers separated by commas, "
                    f"got {args.start!r}") from None
    try:
        return backend, DynamicsSettings(**cfg)
    except TypeError as err:
        raise AggregameError(f"{scenario.path}: [solver]: {err}") from None


def _cmd_solve(args: argparse.Namespace) -> int:
    from aggregame.scenario import load_scenario
    from aggregame.solvers.dynamics import solve_equilibrium

    scenario = load_scenario(args.scenario)
    backend, settings = _settings(args, scenario)
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
    handler = {"solve": _cmd_solve, "scenarios": _cmd_scenarios, "check": _cmd_check}
    try:
        return handler[args.command](args)
    except AggregameError as err:
        print(f"aggregame: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aggregame: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
