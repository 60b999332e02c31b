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

``solver_iterations`` sums the solver's own effort: Ipopt or HiGHS iterations over
every solve, SCIP branch-and-bound nodes; it is 0 for the native backend, whose effort
is ``evaluations`` (inner solves); best-response rounds are ``rounds``, apart.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
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
from aggregame.solvers.solver_choice import SolverSpec, Termination

LOG = logging.getLogger(__name__)

__all__ = ["BACKENDS", "METHODS", "NO_SOLVER", "RunRecord", "RunStatus",
           "combination_ok", "run_one"]
#: The solver column of native runs (no solver involved).
NO_SOLVER = "none"


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

    def __call__(self, profile: np.ndarray) -> Certificate:
        start = time.perf_counter()
        # certify builds its own native inners: it shares no state with the run.
        cert = certify(self.game, np.asarray(profile, dtype=float), self.rtol)
        self.seconds += time.perf_counter() - start
        return cert


def combination_ok(method: str, backend: str, solver: str) -> bool:
    """Whether (method, backend, solver) is a run at all: native has no solver, and
    the stacked KKT system is a Pyomo model."""
    if backend == "native":
        return method == "best-response" and solver == NO_SOLVER
    return solver != NO_SOLVER


def run_one(game: Game, method: str, backend: str, solver: SolverSpec | str | None,
            seed: int = 0) -> RunRecord:
    """Run ``method`` ('best-response' or 'kkt') on ``game`` and time it like for like.

    ``solver`` is a SolverSpec (or its name) for the pyomo backend, None or 'none'
    for the native one. Never raises for a solver problem: an unavailable solver, a
    refused problem or a failed solve is a record with that status and its message.
    """
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
    start = time.perf_counter()
    eq = solve_by(game, Method("best-response", backend), DynamicsSettings(seed=seed),
                  spec, certifier=certifier, inners=inners)
    solve = time.perf_counter() - start - certifier.seconds
    iterations = sum(getattr(inner, "counter", None).iterations for inner in inners
                     if getattr(inner, "counter", None) is not None)
    return RunRecord(
        **base, status=_status(eq.converged, eq.certified),
        termination=Termination.OPTIMAL, build_seconds=build, solve_seconds=solve,
        certificate_seconds=certifier.seconds, solver_iterations=int(iterations),
        rounds=eq.iterations, evaluations=eq.evaluations, max_regret=eq.max_regret,
        price=eq.price, profile=tuple(float(v) for v in eq.profile), message=eq.status)


def _kkt(game: Game, spec: SolverSpec | None, seed: int,
         certifier: _TimedCertificate, base: dict) -> RunRecord:
    start = time.perf_counter()
    eq = solve_by(game, Method("kkt", "pyomo"), DynamicsSettings(seed=seed), spec,
                  certifier=certifier)
    solve = time.perf_counter() - start - certifier.seconds
    term = eq.settings.get("ipopt_termination", "")
    try:
        termination = Termination(term)
    except ValueError:
        termination = Termination.ERROR if term.startswith("error") else \
            Termination.OTHER
    return RunRecord(
        **base, status=_status(eq.converged, eq.certified), termination=termination,
        build_seconds=0.0, solve_seconds=solve, certificate_seconds=certifier.seconds,
        solver_iterations=int(eq.settings.get("solver_iterations", 0)),
        rounds=eq.iterations, max_regret=eq.max_regret, price=eq.price,
        profile=tuple(float(v) for v in eq.profile), message=eq.status)
