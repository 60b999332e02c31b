"""The ``aggregame`` subcommands: each reads its arguments, runs, prints, returns an
exit status (0 equilibrium or success, 1 no equilibrium; errors are raised and turned
into statuses by ``aggregame.cli.main``).

With ``--json`` each prints one JSON document on stdout whose ``schema_version`` and
``command`` fields come first; the fields are documented in docs/cli.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

import numpy as np

from aggregame.errors import AggregameError
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
    from aggregame.solvers.dynamics import DynamicsSettings

    settings = scenario.solver.replace(
        **{k: v for k, v in overrides.items() if v is not None})
    if getattr(args, "start", None) is not None and not isinstance(args.start, str) \
            and len(args.start) != len(scenario.game.players):
        raise AggregameError(f"argument --start: needs one purchase per player "
                             f"({len(scenario.game.players)}), got {len(args.start)}")
    settings.check_players(len(scenario.game.players))
    return settings.backend, DynamicsSettings(**settings.dynamics_kwargs())


def _solver_spec(args: argparse.Namespace, scenario, backend: str, kkt: bool):
    """The SolverSpec of the pyomo backend and the KKT system: the scenario's [solver]
    name and options, overridden by --solver and --solver-option. An unknown or
    invalid option, or a solver that is not installed, fails here in one line."""
    from aggregame.errors import SolverOptionError
    from aggregame.solvers.solver_choice import SolverSpec, parse_solver_options

    given = getattr(args, "solver", None) is not None or \
        bool(getattr(args, "solver_option", None))
    if given and backend == "native" and not kkt:
        raise AggregameError("--solver and --solver-option apply to --backend pyomo "
                             "and the KKT system; the native backend calls no solver")
    name = getattr(args, "solver", None) or scenario.solver.name
    options = dict(scenario.solver.options) if name == scenario.solver.name else {}
    if options:  # the file's own options, named by the file and its [solver] table
        try:
            SolverSpec(name, options)
        except SolverOptionError as err:
            raise SolverOptionError(f"{scenario.solver.source}: [solver] options: "
                                    f"{err}") from None
    options.update(parse_solver_options(getattr(args, "solver_option", None) or []))
    spec = SolverSpec(name, options)
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
        raise AggregameError(f"--maxmin {args.maxmin}: scenario {scenario.name!r} has "
                             "no max-min player (alpha = 'inf') to apply it to")
    return replace(scenario, game=with_maxmin_rule(scenario.game, args.maxmin))


def cmd_solve(args: argparse.Namespace) -> int:
    from aggregame.scenario import load_scenario
    from aggregame.solvers.dynamics import solve_equilibrium

    scenario = _with_maxmin(args, load_scenario(args.scenario))
    backend, settings = _settings(args, scenario)
    spec = _solver_spec(args, scenario, backend, args.method == "kkt")
    LOG.info("%s: %d players, %s by %s (%s)", scenario.name,
             len(scenario.game.players), args.method, backend, spec.describe())
    if args.method == "kkt":
        from aggregame.solvers.kkt import solve_kkt

        eq = solve_kkt(scenario.game, start=_kkt_start(scenario.game, settings),
                       certificate_rtol=settings.certificate_rtol, seed=settings.seed,
                       solver=spec)
    else:
        eq = solve_equilibrium(scenario.game, backend=backend, settings=settings,
                               progress=args.progress and not _quiet(args),
                               solver=spec if backend == "pyomo" else None)
    _certify_globally(args, scenario.game, eq)
    if args.json:
        emit(args, {"scenario": scenario.name, "equilibrium": eq.is_equilibrium,
                    "solver": spec.describe() if backend == "pyomo" or
                    args.method == "kkt" else None, **eq.to_dict()})
    else:
        print(f"scenario {scenario.name}: {scenario.description}")
        print(eq.summary())
    if not eq.is_equilibrium:
        print(eq.reason(), file=sys.stderr)
        return 1
    return 0


def _kkt_start(game, settings) -> np.ndarray | None:
    """The stacked KKT solve's start from the dynamics' ``start`` setting: None (its
    default) for 'zero', a seeded random profile, or the purchases given."""
    if settings.start == "zero":
        return None
    if settings.start == "random":
        from aggregame.solvers.compare import random_starts

        return random_starts(game, 1, settings.seed)[0]
    return np.asarray(settings.start, dtype=float)


def _certify_globally(args: argparse.Namespace, game, eq) -> None:
    """Replace ``eq``'s certificate by SCIP's proof when --certify global is asked."""
    if getattr(args, "certify", "scan") != "global":
        return
    from aggregame.solvers.certificate import certify

    LOG.info("global certificate: SCIP on every player's joint best response")
    eq.certificate = certify(game, eq.profile, eq.certificate.rtol, method="global",
                             time_limit=args.certify_time_limit)


def _run_methods(scenario, backends: list[str], settings, spec,
                 repeats: int = 1) -> tuple[dict, dict]:
    """Every method's result (its time the median of ``repeats`` runs), or the
    one-line reason it failed."""
    from aggregame.solvers.dynamics import solve_equilibrium
    from aggregame.solvers.kkt import solve_kkt

    results, failed = {}, {}
    runs = [(f"best-response/{b}", lambda b=b: solve_equilibrium(
        scenario.game, b, settings, solver=spec if b == "pyomo" else None))
        for b in backends]
    runs.append(("kkt/pyomo", lambda: solve_kkt(
        scenario.game, certificate_rtol=settings.certificate_rtol, seed=settings.seed,
        solver=spec)))
    for label, run in runs:
        LOG.info("crosscheck: %s (%s)", label, spec.describe())
        try:
            done = [run() for _ in range(repeats)]
        except AggregameError as err:  # a solver failure is a verdict, not a crash
            failed[label] = str(err)
            continue
        results[label] = done[-1]
        results[label].seconds = float(np.median([eq.seconds for eq in done]))
    return results, failed


def _distinct(results: dict, rtol: float) -> list[list[str]]:
    """Methods grouped by profile: two profiles are one when they differ by at most
    rtol * max(1, largest purchase)."""
    groups: list[tuple[np.ndarray, list[str]]] = []
    for label, eq in results.items():
        for profile, members in groups:
            scale = rtol * max(1.0, float(np.max(np.abs(profile))))
            if float(np.max(np.abs(profile - eq.profile))) <= scale:
                members.append(label)
                break
        else:
            groups.append((eq.profile, [label]))
    return [members for _, members in groups]


def cmd_crosscheck(args: argparse.Namespace) -> int:
    from aggregame.scenario import load_scenario
    from aggregame.solvers.compare import Crosscheck

    scenario = _with_maxmin(args, load_scenario(args.scenario))
    _, settings = _settings(args, scenario)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    bad = [b for b in backends if b not in BACKENDS]
    if bad or not backends:
        raise AggregameError(f"--backends: unknown backend(s) {bad or backends}; use "
                             f"{', '.join(BACKENDS)}")
    spec = _solver_spec(args, scenario, "pyomo", True)
    results, failed = _run_methods(scenario, backends, settings, spec, args.repeats)
    for eq in results.values():
        _certify_globally(args, scenario.game, eq)
    uncertified = [k for k, eq in results.items() if not eq.is_equilibrium]
    groups = _distinct(results, args.rtol)
    ok = not failed and not uncertified
    if args.json:
        emit(args, {"scenario": scenario.name, "rtol": args.rtol, "ok": ok,
                    "solver": spec.describe(), "repeats": args.repeats,
                    "failed": failed, "not_certified": uncertified,
                    "equilibria": [{"methods": g,
                                    "profile": results[g[0]].profile.tolist()}
                                   for g in groups],
                    "methods": Crosscheck(results).table().to_dict(orient="records")})
        return 0 if ok else 1
    print(f"scenario {scenario.name}: {scenario.description}")
    if results:
        print(Crosscheck(results).table().to_string(
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

    from aggregame.scenario import load_scenario
    from aggregame.solvers.compare import probe_uniqueness

    scenario = _with_maxmin(args, load_scenario(args.scenario))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in ("best-response", "kkt")]
    if bad or not methods:
        raise AggregameError(f"--methods: unknown method(s) {bad or methods}; use "
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
                    "clusters": report.table().to_dict(orient="records")})
    else:
        print(f"scenario {scenario.name}: {args.starts} random starts per method "
              f"(seed {args.seed})")
        print(report.table().to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        print(f"{found} distinct equilibri{'um' if found == 1 else 'a'} found; "
              f"{len(report.not_equilibria)} end point(s) that are not equilibria")
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
    import importlib

    from aggregame.studies import STUDIES, run_study
    from aggregame.studies.report import ORDER, write_report

    start = time.perf_counter()
    studies = []
    for name in ORDER:
        runs = args.runs
        if args.quick:
            module = importlib.import_module(f"aggregame.studies.{STUDIES[name]}")
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
        print(f"{row['name']:20s} {row['description']}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    import aggregame
    from aggregame import Game, Player, LinearPrice, quadratic_users
    from aggregame.solvers.native import NativeInner
    from aggregame.solvers.pyomo_inner import PyomoInner

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
    from aggregame.solvers import compiled
    from aggregame.solvers.native import NativeInner

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
    from aggregame.studies.compare import RunStatus, run_compare, settings_from_args

    result = run_compare(settings_from_args(args), args.out, workers=args.workers,
                         progress=not _quiet(args))
    solved = bool(len(result.table)) and bool(
        (result.table["status"] == RunStatus.SOLVED.value).any())
    summary = result.summary()
    if args.json:
        emit(args, {"folder": str(result.folder), "runs": len(result.table),
                    "computed_now": result.ran, "skipped": result.skipped,
                    "any_solved": solved,
                    "summary": summary.to_dict(orient="records")})
    else:
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
            "uniqueness": cmd_uniqueness, "study": cmd_study, "report": cmd_report,
            "scenarios": cmd_scenarios, "check": cmd_check, "schema": cmd_schema,
            "compare": cmd_compare}
