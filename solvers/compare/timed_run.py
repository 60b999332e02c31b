"""One timed run of one (method, backend, solver) on one game, like for like.

Every run is split the same way, whatever the method:

* ``build_seconds``: building the models (the inner models of every player for best
  response on the pyomo backend, the native arrays otherwise; KKT builds its stacked
  model inside its solve, since it rebuilds it whenever the priced-out status changes,
  so its build is counted in ``solve_seconds``);
* ``solve_seconds``: the method itself, without any certificate;
* ``certificate_seconds``: the common certificate, the native regret certificate
  (solvers/certify/) of the final profile, the same for every method, so that
  "solved" (converged and certified) means the same everywhere.

The method itself runs as in the cross-check (solvers/compare/crosscheck.py,
``solve_by``), with the certificate and the inner solvers passed in.

Like for like also means: a warm-up run of each (method, backend, solver) once per
process, on the same game and not counted (``warmup_seconds`` says what it took: the
first run in a process pays imports, compiled kernels and the solver's library
load, measured 1.007 s against 0.018 s); CPU time beside wall time
(``solve_cpu_seconds``: this process and its children, so an Ipopt executable
counts); and a failed run keeps its time to failure (``solve_seconds``).

``solver_iterations`` sums the solver's own effort: Ipopt or HiGHS iterations over
every solve, SCIP branch-and-bound nodes; it is 0 for the native backend, whose effort
is ``evaluations`` (inner solves); best-response rounds are ``rounds``, apart.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from enum import Enum
from typing import Any

import numpy as np

from aggregame.errors import (
    AggregameError,
    SolverUnavailableError,
    UnsupportedProblemError,
)
from aggregame.players import Game
from aggregame.solvers.certify.scan import CERTIFICATE_RTOL, Certificate, certify
from aggregame.solvers.compare.crosscheck import BACKENDS, METHODS, Method, solve_by
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, make_inners
from aggregame.solvers.solver_choice import SolverName, SolverSpec, Termination

LOG = logging.getLogger(__name__)

__all__ = ["BACKENDS", "METHODS", "NO_SOLVER", "RunRecord", "RunStatus",
           "combination_ok", "run_one"]
#: The solver column of native runs (no solver involved).
NO_SOLVER = "none"
#: Where one relative tolerance goes in each solver's own options (compare
#: --solver-rtol): Ipopt's (scaled) optimality tolerance, SCIP's relative gap,
#: HiGHS's primal and dual feasibility tolerances (its QP solver has no gap).
RTOL_OPTIONS: dict[SolverName, tuple[str, ...]] = {
    SolverName.CYIPOPT: ("tol",), SolverName.IPOPT: ("tol",),
    SolverName.SCIP: ("limits/gap",),
    SolverName.HIGHS: ("primal_feasibility_tolerance", "dual_feasibility_tolerance")}


def rtol_options(solver: str, rtol: float) -> dict[str, float]:
    """The options of ``solver`` that set the common relative tolerance ``rtol``."""
    return {key: float(rtol) for key in RTOL_OPTIONS[SolverName.parse(solver)]}


def tolerance_rule(rtol: float | None) -> str:
    """The tolerance of a comparison, in words (stated in compare's output)."""
    if rtol is None:
        return "tolerances: each solver's own defaults (--solver-rtol sets one)"
    mapped = "; ".join(f"{name.value}: {', '.join(keys)}"
                       for name, keys in RTOL_OPTIONS.items())
    return f"tolerance: relative {rtol:g} for every solver ({mapped})"


#: (method, backend, solver) already run in this process: its warm-up is done.
_WARMED: set[tuple[str, str, str]] = set()


def cpu_seconds() -> float:
    """CPU time of this process (all threads, ns resolution) and of its finished
    children (user + system; clock ticks)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


class RunStatus(str, Enum):
    """How a run ended, judged by the common certificate."""

    SOLVED = "solved"                # converged and certified
    NOT_CERTIFIED = "not-certified"  # the method converged, the regret is too large
    NOT_CONVERGED = "not-converged"  # round limit, cycling, KKT residual
    FAILED = "failed"                # a solve raised (the message says which)
    UNAVAILABLE = "unavailable"      # the solver is not installed here
    UNSUPPORTED = "unsupported"      # the solver cannot take this problem


@dataclass(frozen=True)
class RunRecord:
    """One run, independent of Equilibrium (so failures have records too)."""

    method: str
    backend: str
    solver: str
    seed: int
    status: RunStatus
    termination: Termination
    build_seconds: float = math.nan
    solve_seconds: float = math.nan
    certificate_seconds: float = math.nan
    solve_cpu_seconds: float = math.nan
    warmup_seconds: float = 0.0
    solver_iterations: int = 0
    rounds: int = 0
    evaluations: int = 0
    max_regret: float = math.nan
    price: float = math.nan
    profile: tuple[float, ...] = ()
    message: str = ""

    @property
    def solved(self) -> bool:
        return self.status is RunStatus.SOLVED

    @property
    def total_seconds(self) -> float:
        return self.build_seconds + self.solve_seconds + self.certificate_seconds

    def to_row(self) -> dict[str, Any]:
        """A flat dict for tables (enums as their values, the profile as a list)."""
        row = asdict(self)
        row.update(status=self.status.value, termination=self.termination.value,
                   profile=list(self.profile), total_seconds=self.total_seconds)
        return row


@dataclass
class _TimedCertificate:
    """The common certificate (native backend), with the time spent in it."""

    game: Game
    rtol: float = CERTIFICATE_RTOL
    seconds: float = 0.0
    cpu: float = 0.0

    def __call__(self, profile: np.ndarray) -> Certificate:
        start, cpu = time.perf_counter(), cpu_seconds()
        # certify builds its own native inners: it shares no state with the run.
        cert = certify(self.game, np.asarray(profile, dtype=float), self.rtol)
        self.seconds += time.perf_counter() - start
        self.cpu += cpu_seconds() - cpu
        return cert


def combination_ok(method: str, backend: str, solver: str) -> bool:
    """Whether (method, backend, solver) is a run at all: native has no solver, and
    the stacked KKT system is a Pyomo model."""
    if backend == "native":
        return method == "best-response" and solver == NO_SOLVER
    return solver != NO_SOLVER


def run_one(game: Game, method: str, backend: str, solver: SolverSpec | str | None,
            seed: int = 0, warm_up: bool = True) -> RunRecord:
    """Run ``method`` ('best-response' or 'kkt') on ``game`` and time it like for like.

    ``solver`` is a SolverSpec (or its name) for the pyomo backend, None or 'none'
    for the native one. Never raises for a solver problem: an unavailable solver, a
    refused problem or a failed solve is a record with that status, its message and
    its time to failure. ``warm_up``: the first run of this (method, backend,
    solver) in the process is preceded by one untimed run (module docstring).
    """
    key = (method, backend, str(solver))
    warmup = 0.0
    if warm_up and key not in _WARMED:
        _WARMED.add(key)
        start = time.perf_counter()
        run_one(game, method, backend, solver, seed, warm_up=False)
        warmup = time.perf_counter() - start
    record = _run_timed(game, method, backend, solver, seed)
    return replace(record, warmup_seconds=warmup)


def _run_timed(game: Game, method: str, backend: str,
               solver: SolverSpec | str | None, seed: int) -> RunRecord:
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    spec = None if solver in (None, NO_SOLVER) else (
        solver if isinstance(solver, SolverSpec) else SolverSpec(solver))
    label = NO_SOLVER if spec is None else spec.describe()
    base = dict(method=method, backend=backend, solver=label, seed=seed)
    if not combination_ok(method, backend, NO_SOLVER if spec is None else label):
        raise ValueError(f"no such run: method {method!r} on backend {backend!r} with "
                         f"solver {label!r}")
    certifier = _TimedCertificate(game)
    start = time.perf_counter()
    try:
        if method == "best-response":
            return _best_response(game, backend, spec, seed, certifier, base)
        return _kkt(game, spec, seed, certifier, base)
    except SolverUnavailableError as err:
        return RunRecord(**base, status=RunStatus.UNAVAILABLE,
                         termination=Termination.OTHER, message=str(err))
    except UnsupportedProblemError as err:
        return RunRecord(**base, status=RunStatus.UNSUPPORTED,
                         termination=Termination.OTHER, message=str(err))
    except (AggregameError, RuntimeError, ValueError) as err:
        LOG.info("%s/%s/%s failed: %s", method, backend, label, err)
        return RunRecord(**base, status=RunStatus.FAILED,
                         termination=Termination.ERROR,
                         solve_seconds=time.perf_counter() - start - certifier.seconds,
                         message=str(err).splitlines()[0][:300])


def _status(converged: bool, certified: bool) -> RunStatus:
    if not converged:
        return RunStatus.NOT_CONVERGED
    return RunStatus.SOLVED if certified else RunStatus.NOT_CERTIFIED


def _best_response(game: Game, backend: str, spec: SolverSpec | None, seed: int,
                   certifier: _TimedCertificate, base: dict) -> RunRecord:
    start = time.perf_counter()
    inners = make_inners(game, backend, solver=spec)
    build = time.perf_counter() - start
    start, cpu = time.perf_counter(), cpu_seconds()
    eq = solve_by(game, Method("best-response", backend), DynamicsSettings(seed=seed),
                  spec, certifier=certifier, inners=inners)
    solve = time.perf_counter() - start - certifier.seconds
    cpu = cpu_seconds() - cpu - certifier.cpu
    iterations = sum(getattr(inner, "counter", None).iterations for inner in inners
                     if getattr(inner, "counter", None) is not None)
    return RunRecord(
        **base, status=_status(eq.converged, eq.certified),
        termination=Termination.OPTIMAL, build_seconds=build, solve_seconds=solve,
        certificate_seconds=certifier.seconds, solve_cpu_seconds=cpu, solver_iterations=int(iterations),
        rounds=eq.iterations, evaluations=eq.evaluations, max_regret=eq.max_regret,
        price=eq.price, profile=tuple(float(v) for v in eq.profile), message=eq.status)


def _kkt(game: Game, spec: SolverSpec | None, seed: int,
         certifier: _TimedCertificate, base: dict) -> RunRecord:
    start, cpu = time.perf_counter(), cpu_seconds()
    eq = solve_by(game, Method("kkt", "pyomo"), DynamicsSettings(seed=seed), spec,
                  certifier=certifier)
    solve = time.perf_counter() - start - certifier.seconds
    cpu = cpu_seconds() - cpu - certifier.cpu
    term = eq.settings.get("ipopt_termination", "")
    try:
        termination = Termination(term)
    except ValueError:
        termination = Termination.ERROR if term.startswith("error") else \
            Termination.OTHER
    return RunRecord(
        **base, status=_status(eq.converged, eq.certified), termination=termination,
        build_seconds=0.0, solve_seconds=solve, certificate_seconds=certifier.seconds,
        solve_cpu_seconds=cpu,
        solver_iterations=int(eq.settings.get("solver_iterations", 0)),
        rounds=eq.iterations, max_regret=eq.max_regret, price=eq.price,
        profile=tuple(float(v) for v in eq.profile), message=eq.status)
