"""The ``aggregame`` subcommands: each reads its arguments, runs, prints, returns an
exit status (0 equilibrium or success, 1 no equilibrium; errors are raised and turned
into statuses by ``aggregame.cli.main``).

With ``--json`` each prints one JSON document on stdout whose ``schema_version`` and
``command`` fields come first; the fields are documented in docs/cli.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
from typing import Any

import numpy as np

from aggregame.checks import printable
from aggregame.cli.parser import UsageError
from aggregame.errors import AggregameError, SettingsError
from aggregame.settings import BACKENDS

LOG = logging.getLogger(__name__)

#: Version of the JSON documents printed with --json (docs/cli.md); raised when a
#: field changes meaning or disappears, not when one is added.
JSON_SCHEMA_VERSION = 1


def emit(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """Print ``doc`` as the command's JSON document."""
    head = {"schema_version": JSON_SCHEMA_VERSION, "command": args.command}
    print(json.dumps({**head, **doc}, indent=1, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)


def _quiet(args: argparse.Namespace) -> bool:
    return getattr(args, "json", False) or getattr(args, "quiet", False)


def _settings(args: argparse.Namespace, scenario) -> tuple[str, object]:
    """Backend and dynamics settings: the scenario's [solver] table, overridden by
    whichever of the command's flags ``args`` has and sets."""
    overrides = {key: getattr(args, key, None) for key in
                 ("best_response", "tol", "max_rounds", "seed", "start")}
    overrides["method"] = getattr(args, "dynamics", None)
    overrides["backend"] = getattr(args, "backend", None)
    from aggregame.solvers.equilibrium.dynamics import DynamicsSettings

    settings = scenario.solver.replace(
        **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "start", None) is not None and not isinstance(args.start, str):
        problem = scenario.game.start_problem(args.start)
        if problem:
            raise UsageError(f"argument --start: {problem}")
    settings.check_players(len(scenario.game.players))
    if not isinstance(settings.start, str):
        problem = scenario.game.start_problem(settings.start)
        if problem:
            raise SettingsError(f"{settings.source}: [solver] start: {problem}").at(
                settings.source, "solver.start")
    return settings.backend, DynamicsSettings(**settings.dynamics_kwargs())


def _solver_spec(args: argparse.Namespace, scenario, backend: str, kkt: bool):
    """The SolverSpec of the pyomo backend and the KKT system: the scenario's [solver]
    name and options, overridden by --solver and --solver-option. An unknown or
    invalid option, or a solver that is not installed, fails here in one line; an
    option that touches files needs --allow-file-options (a scenario file may never
    set one: SolverSettings refuses it)."""
    from aggregame.errors import SolverOptionError
    from aggregame.solvers.solver_choice import SolverSpec, parse_solver_options

    allow_files = bool(getattr(args, "allow_file_options", False))

    given = getattr(args, "solver", None) is not None or \
        bool(getattr(args, "solver_option", None))
    if given and backend == "native" and not kkt:
        raise UsageError("--solver and --solver-option apply to --backend pyomo "
                         "and the KKT system; the native backend calls no solver")
    name = getattr(args, "solver", None) or scenario.solver.name
    options = dict(scenario.solver.options) if name == scenario.solver.name else {}
    if options:  # the file's own options, named by the file and its [solver] table
        try:
            SolverSpec(name, options)
        except SolverOptionError as err:
            raise type(err)(f"{scenario.solver.source}: [solver] options: {err}").at(
                scenario.solver.source, "solver.options") from None
    options.update(parse_solver_options(getattr(args, "solver_option", None) or []))
    spec = SolverSpec(name, options, allow_files=allow_files)
    if backend == "pyomo" or kkt:
        spec.check_available()
    return spec


def _with_maxmin(args: argparse.Namespace, scenario):
    """The scenario with its max-min players read by ``--maxmin``, if given."""
    if getattr(args, "maxmin", None) is None:
        return scenario
    from dataclasses import replace

    from aggregame.leximin import with_maxmin_rule
    if not any(p.fairness.is_maxmin for p in scenario.game.players):
        raise UsageError(f"--maxmin {args.maxmin}: scenario {scenario.name!r} has "
                         "no max-min player (alpha = 'inf') to apply it to")
    return replace(scenario, game=with_maxmin_rule(scenario.game, args.maxmin))


#: Flags of the best-response rounds, which the stacked KKT solve does not read.
ROUND_FLAGS = {"dynamics": "--dynamics", "best_response": "--best-response",
               "tol": "--tol", "max_rounds": "--max-rounds", "progress": "--progress"}


def _load(args: argparse.Namespace):
    """The command's scenario (``--allow-outside`` and ``--allow-code`` honoured),
    its max-min reading overridden by ``--maxmin``."""
    from aggregame.scenario import load_scenario
    from aggregame.solvers.market.scenario_code import read_scenario_market

    return _with_maxmin(args, load_scenario(
        args.scenario, allow_outside=getattr(args, "allow_outside", False),
        allow_code=getattr(args, "allow_code", False),
        market_reader=read_scenario_market))


@contextlib.contextmanager
def _solver_named(label: str):
    """A solver failure inside names the solver that ran (``label``) first."""
    try:
        yield
    except AggregameError as err:
        if not err.solver_failure or str(err).startswith(label):
            raise
        raise type(err)(f"{label}: {err}").at(err.file, err.field) from err


def cmd_solve(args: argparse.Namespace) -> int:
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    if args.method in ("kkt", "aggregate"):
        given = [flag for key, flag in ROUND_FLAGS.items() if getattr(args, key, None)]
        wrong = "native" if args.method == "kkt" else "pyomo"
        if args.backend == wrong:
            given.append(f"--backend {wrong}")
        if given:
            what = ("the stacked KKT system (--method kkt: no best-response rounds, "
                    "solved through Pyomo)" if args.method == "kkt" else
                    "the search over the total (--method aggregate: no rounds, "
                    "native backend)")
            raise UsageError(
                f"{', '.join(given)}: not read by {what}; drop "
                f"{'it' if len(given) == 1 else 'them'} or use --method "
                f"best-response")
    if getattr(args, "dask", None) and args.method != "aggregate":
        raise UsageError("--dask: only the search over the total runs on a cluster; "
                         "add --method aggregate, or drop --dask")
    scenario = _load(args)
    backend, settings = _settings(args, scenario)
    spec = _solver_spec(args, scenario, backend, args.method == "kkt")
    LOG.info("%s: %d players, %s by %s (%s)", scenario.name,
             len(scenario.game.players), args.method, backend, spec.describe())
    if args.method == "aggregate":
        from aggregame.solvers.equilibrium.aggregate import solve_aggregate

        with _solver_named("the native backend"):
            eq = solve_aggregate(scenario.game, _rtol(settings),
                                 dask=getattr(args, "dask", None))
    elif args.method == "kkt":
        from aggregame.solvers.kkt.solve import KKTSettings, solve_kkt

        with _solver_named(f"the stacked KKT system ({spec.describe()})"):
            eq = solve_kkt(scenario.game, KKTSettings(
                solver=spec, certificate_rtol=settings.certificate_rtol,
                seed=settings.seed), start=_kkt_start(scenario.game, settings))
    else:
        label = (f"the pyomo backend ({spec.describe()})" if backend == "pyomo"
                 else "the native backend")
        with _solver_named(label):
            eq = solve_equilibrium(scenario.game, backend=backend, settings=settings,
                                   progress=args.progress and not _quiet(args),
                                   solver=spec if backend == "pyomo" else None)
    _certify_globally(args, scenario.game, eq)
    if args.json:
        emit(args, {"scenario": scenario.name, "equilibrium": eq.is_equilibrium,
                    "solver": spec.describe() if backend == "pyomo" or
                    args.method == "kkt" else None, **eq.to_dict()})
    else:
        print(printable(f"scenario {scenario.name}: {scenario.description}"))
        print(eq.summary())
    if not eq.is_equilibrium:
        print(eq.reason(), file=sys.stderr)
        return 1
    return 0


def _rtol(settings) -> float:
    """The certificate tolerance the settings give (the dynamics' default else)."""
    from aggregame.solvers.certify.certificate import CERTIFICATE_RTOL

    return getattr(settings, "certificate_rtol", None) or CERTIFICATE_RTOL


def cmd_equilibria(args: argparse.Namespace) -> int:
    from aggregame.solvers.equilibrium.aggregate import find_equilibria

    scenario = _load(args)
    _, settings = _settings(args, scenario)
    with _solver_named("the native backend"):
        found = find_equilibria(scenario.game, _rtol(settings), dask=args.dask)
    if args.json:
        emit(args, {"scenario": scenario.name, **found.to_dict()})
    else:
        print(printable(f"scenario {scenario.name}: {scenario.description}"))
        print(f"{found.verdict()}: {found.why}")
        names = scenario.game.names
        for title, group, why in (
                ("equilibrium", found.equilibria, False),
                ("rejected (every first-order condition holds, not certified)",
                 found.rejected, True)):
            for eq in group:
                purchases = ", ".join(f"{n} {v:.6g}" for n, v in zip(names,
                                                                     eq.profile))
                print(printable(f"  {title}: price {eq.price:.6g}; {purchases}"))
                if why:
                    print(printable(f"    {eq.certificate.summary(names)}"))
    return 0 if found.complete else 1


def _kkt_start(game, settings) -> np.ndarray | None:
    """The stacked KKT solve's start from the dynamics' ``start`` setting: None (its
    default) for 'zero', a seeded random profile, or the purchases given."""
    if settings.start == "zero":
        return None
    if settings.start == "random":
        from aggregame.solvers.equilibrium.starts import random_starts

        return random_starts(game, 1, settings.seed)[0]
    return np.asarray(settings.start, dtype=float)


def _certify_globally(args: argparse.Namespace, game, eq) -> None:
    """Replace ``eq``'s certificate by SCIP's proof when --certify global is asked."""
    if getattr(args, "certify", "scan") != "global":
        return
    from aggregame.solvers.certify.scan import certify

    LOG.info("global certificate: SCIP on every player's joint best response")
    with _solver_named("SCIP (the global certificate)"):
        eq.certificate = certify(game, eq.profile, eq.certificate.rtol,
                                 method="global", time_limit=args.certify_time_limit)


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from aggregame.solvers.compare.crosscheck import crosscheck

    scenario = _load(args)
    _, settings = _settings(args, scenario)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise UsageError(f"--backends: unknown backend(s) {bad or backends}; use "
                         f"{', '.join(BACKENDS)}")
    spec = _solver_spec(args, scenario, "pyomo", True)
    check = crosscheck(scenario.game, settings, backends, solver=spec,
                       repeats=args.repeats, rtol=args.rtol)
    for eq in check.results.values():
        _certify_globally(args, scenario.game, eq)
    results, failed = check.results, check.failed
    uncertified, groups, ok = check.not_certified, check.groups(), check.ok
    if args.json:
        emit(args, {"scenario": scenario.name, "rtol": args.rtol, "ok": ok,
                    "solver": spec.describe(), "repeats": args.repeats,
                    "failed": failed, "not_certified": uncertified,
                    "equilibria": [{"methods": g,
                                    "profile": results[g[0]].profile.tolist()}
                                   for g in groups],
                    "methods": check.table().to_dict(orient="records")})
        return 0 if ok else 1
    print(printable(f"scenario {scenario.name}: {scenario.description}"))
    if results:
        print(check.table().to_string(
            index=False, float_format=lambda v: f"{v:.6g}"))
    for label, reason in failed.items():
        print(f"{label} failed: {reason}", file=sys.stderr)
    if uncertified:
        print(f"not a certified equilibrium: {', '.join(uncertified)}", file=sys.stderr)
    if not ok:
        return 1
    if len(groups) > 1:
        print(f"multiple equilibria: the methods end at {len(groups)} different "
              f"certified equilibria (tolerance {args.rtol:g}):")
        for members in groups:
            profile = ", ".join(f"{v:.6g}" for v in results[members[0]].profile)
            print(f"  ({profile}) by {', '.join(members)}")
        return 0
    print(f"all methods agree (tolerance {args.rtol:g}) on a certified equilibrium")
    return 0


def cmd_uniqueness(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from aggregame.solvers.compare.uniqueness import probe_uniqueness

    scenario = _load(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("best-response", "kkt")]
    if bad or not methods:
        raise UsageError(f"--methods: unknown method(s) {bad or methods}; use "
                         f"best-response, kkt")
    if "kkt" in methods:  # before any start runs, not after the first ones
        from aggregame.leximin import refuse
        refuse(scenario.game, "--methods kkt (the stacked KKT system)")
    with tqdm(total=args.starts * len(methods), desc="runs", unit="run",
              disable=True if _quiet(args) else None) as bar:
        report = probe_uniqueness(scenario.game, starts=args.starts, seed=args.seed,
                                  methods=methods,
                                  progress=lambda done, total: bar.update(1))
    found = len(report.equilibria)
    if args.json:
        emit(args, {"scenario": scenario.name, "starts": args.starts,
                    "seed": args.seed, "methods": methods, "equilibria": found,
                    "proof": False,
                    "clusters": report.table().to_dict(orient="records")})
    else:
        print(printable(f"scenario {scenario.name}: {args.starts} random starts per "
                        f"method (seed {args.seed})"))
        print(report.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"probe (random starts, not a proof): {found} distinct "
              f"equilibri{'um' if found == 1 else 'a'} found; "
              f"{len(report.not_equilibria)} end point(s) that are not equilibria; "
              f"`aggregame equilibria` proves the set where it can")
    return 0 if found >= 1 else 1


def _study_doc(result) -> dict[str, Any]:
    return {"name": result.name, "folder": str(result.folder),
            "rows": len(result.table), "figures": result.figures,
            "seconds": result.seconds, "ran": result.ran}


def cmd_study(args: argparse.Namespace) -> int:
    from aggregame.studies import run_study

    result = run_study(args.name, out=args.out, runs=args.runs, seed=args.seed,
                       workers=args.workers, dask_address=args.dask,
                       backend=args.backend, progress=not _quiet(args))
    if args.json:
        emit(args, _study_doc(result))
        return 0
    print(f"{result.name}: {len(result.table)} rows, figures {', '.join(result.figures)}"
          f" in {result.folder} ({result.seconds:.1f} s, {result.ran} runs computed "
          f"now)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from aggregame.studies import STUDIES, run_study
    from aggregame.studies.registry import STUDY_MODULES
    from aggregame.studies.report import ORDER, write_report

    start = time.perf_counter()
    studies = []
    for name in ORDER:
        runs = args.runs
        if args.quick:
            module = STUDY_MODULES[STUDIES[name]]
            # The Conjecture 1 probe is the slowest per run: one seed keeps it < 1 min.
            runs = min(runs or module.DEFAULT_RUNS, 1 if name == "conj1" else 3)
        result = run_study(name, out=args.out, runs=runs, seed=args.seed,
                           workers=args.workers, dask_address=args.dask,
                           backend=args.backend, progress=not _quiet(args))
        studies.append(_study_doc(result))
        if not args.json:
            print(f"{name}: {result.folder} ({result.seconds:.1f} s)")
    path = write_report(args.out, markdown=args.markdown)
    seconds = time.perf_counter() - start
    if args.json:
        emit(args, {"report": str(path), "studies": studies, "seconds": seconds})
    else:
        print(f"report: {path} ({seconds:.1f} s in all)")
    return 0


def cmd_scenarios(args: argparse.Namespace) -> int:
    from aggregame import data
    from aggregame.scenario import load_scenario

    rows = []
    for name in data.scenarios():
        sc = load_scenario(data.path(name))
        rows.append({"name": name.removesuffix(".toml"), "description": sc.description,
                     "path": str(sc.path)})
    if args.json:
        emit(args, {"scenarios": rows})
        return 0
    for row in rows:
        print(printable(f"{row['name']:20s} {row['description']}"))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import aggregame
    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.solvers.inner.native import NativeInner
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    game = Game((Player.aggregator("check", quadratic_users([0.5, 0.3], [4.0, 6.0]),
                                   alpha=1),), LinearPrice(0.01))
    pyomo_sol = PyomoInner(game, 0).solve(np.array([3.0]), 10.0)
    native_sol = NativeInner(game, 0, compiled=False).solve(np.array([3.0]), 10.0)
    gap = float(np.abs(pyomo_sol.x - native_sol.x).max())
    kernels, kernel_gap = _check_kernels()
    ok = gap < 1e-6 and kernel_gap < 1e-9
    if args.json:
        emit(args, {"version": aggregame.__version__, "location": aggregame.__file__,
                    "ok": ok, "ipopt_native_gap": gap, "compiled_kernels": kernels,
                    "compiled_numpy_gap": kernel_gap})
    else:
        print(f"aggregame {aggregame.__version__} at {aggregame.__file__}")
        print(f"Ipopt through Pyomo/cyipopt: {'ok' if gap < 1e-6 else 'DISAGREES'} (a "
              f"2-member inner problem; Ipopt and the native backend differ by "
              f"{gap:.1e})")
        agree = "" if kernel_gap < 1e-9 else "DISAGREE with numpy: "
        print(f"compiled kernels: {agree}{kernels}" + (
            f" (they and numpy differ by {kernel_gap:.1e})" if kernel_gap > 0 else ""))
    return 0 if ok else 1


def _check_kernels() -> tuple[str, float]:
    """(state of the compiled kernels, their largest gap to numpy on small inner
    problems). Compiles them on a machine that has not yet (bootstrap.sh's set-up
    runs this check, so the first real solve does not wait)."""
    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.solvers.inner import compiled
    from aggregame.solvers.inner.native import NativeInner

    if not compiled.ENABLED:
        return ("numpy alone (numba not installed)" if compiled.numba is None else
                "numpy alone (AGGREGAME_JIT=0)"), 0.0
    users = quadratic_users([0.5, 0.3, 0.2], [4.0, 6.0, 1.0], "k")
    gap = 0.0
    for alpha in (0, 1, 0.5, 2, 3, "inf"):
        game = Game((Player.aggregator("k", users, alpha=alpha,
                                       maxmin="total-surplus"),), LinearPrice(0.01))
        ys = np.linspace(0.0, game.feasible_max(0, 10.0), 7)
        fast = NativeInner(game, 0).solve(ys, 10.0)
        slow = NativeInner(game, 0, compiled=False).solve(ys, 10.0)
        gap = max(gap, float(np.abs(fast.x - slow.x).max()))
    return f"numba {compiled.numba.__version__}" + (" ok" if gap < 1e-9 else ""), gap


def cmd_compare(args: argparse.Namespace) -> int:
    from aggregame.studies.compare import (
        MEDIAN_RULE,
        WARM_UP_RULE,
        RunStatus,
        run_compare,
        settings_from_args,
    )

    from aggregame.solvers.compare.timed_run import tolerance_rule

    settings = settings_from_args(args)
    tolerance = tolerance_rule(settings.solver_rtol)
    result = run_compare(settings, args.out, workers=args.workers,
                         progress=not _quiet(args))
    solved = bool(len(result.table)) and bool(
        (result.table["status"] == RunStatus.SOLVED.value).any())
    summary = result.summary()
    if args.json:
        emit(args, {"folder": str(result.folder), "runs": len(result.table),
                    "computed_now": result.ran, "skipped": result.skipped,
                    "any_solved": solved, "median": MEDIAN_RULE,
                    "warm_up": WARM_UP_RULE, "tolerance": tolerance,
                    "summary": summary.to_dict(orient="records")})
    else:
        print(f"times in seconds (wall, and CPU in solve_cpu_s); {MEDIAN_RULE}; "
              f"{WARM_UP_RULE}; {tolerance}")
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print(f"{len(result.table)} runs ({result.ran} computed now), "
              f"{len(result.skipped)} solver(s) skipped; files in {result.folder}")
    return 0 if solved else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from aggregame.schema import json_schema

    # The document is a JSON Schema either way; --json changes nothing here.
    print(json.dumps(json_schema(), indent=1))
    return 0


COMMANDS = {"solve": cmd_solve, "crosscheck": cmd_crosscheck,
            "equilibria": cmd_equilibria, "uniqueness": cmd_uniqueness, "study": cmd_study, "report": cmd_report,
            "scenarios": cmd_scenarios, "check": cmd_check, "schema": cmd_schema,
            "compare": cmd_compare}
