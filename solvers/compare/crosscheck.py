"""Cross-checks between methods: one game solved by best response (on each inner
backend) and by the stacked KKT system, side by side.

``solve_by`` is the one place that knows how to run a method; ``crosscheck`` runs
every method of a game (the command line's ``aggregame crosscheck``), the timed,
like-for-like runs of solvers/compare/timed_run.py run one at a time. A method that
fails (a solver's failure is a verdict) is kept with its one-line reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from aggregame.errors import AggregameError
from aggregame.players import Game
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.results import Equilibrium
from aggregame.solvers.inner.batch import InnerSolver
from aggregame.solvers.kkt.solve import KKTSettings, solve_kkt
from aggregame.solvers.solver_choice import SolverSpec

LOG = logging.getLogger(__name__)

#: Methods agree in the cross-check when their profiles differ by less than this.
AGREEMENT_RTOL = 1e-6
#: The methods, and the inner backends of best response.
METHODS = ("best-response", "kkt")
BACKENDS = ("native", "pyomo")


@dataclass(frozen=True)
class Method:
    """One way to solve a game: best response on an inner backend, or the stacked KKT
    system (a Pyomo model: backend 'pyomo')."""

    kind: str
    backend: str

    def __post_init__(self) -> None:
        if self.kind not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got "
                             f"{self.kind!r}")
        if self.backend not in BACKENDS or (self.kind == "kkt"
                                            and self.backend != "pyomo"):
            raise ValueError(f"no such run: method {self.kind!r} on backend "
                             f"{self.backend!r}")

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.backend}"


def methods_of(backends: Sequence[str]) -> list[Method]:
    """Best response on each of ``backends``, then the stacked KKT system."""
    return [*(Method("best-response", b) for b in backends), Method("kkt", "pyomo")]


def solve_by(game: Game, method: Method, settings: DynamicsSettings | None = None,
             solver: SolverSpec | None = None, *,
             certifier: Callable[[np.ndarray], Any] | None = None,
             inners: list[InnerSolver] | None = None) -> Equilibrium:
    """``game`` solved by ``method``: ``settings`` are the dynamics' (the KKT solve
    takes their certificate tolerance and seed), ``solver`` the Pyomo solver (of
    the pyomo backend's inner problems, or of the KKT system), ``certifier`` replaces
    the certificate, ``inners`` the dynamics' inner solvers."""
    settings = settings or DynamicsSettings()
    if method.kind == "best-response":
        return solve_equilibrium(game, method.backend, settings, inners=inners,
                                 solver=solver if method.backend == "pyomo" else None,
                                 certifier=certifier)
    kkt = KKTSettings(solver=solver, certificate_rtol=settings.certificate_rtol,
                      seed=settings.seed)
    return solve_kkt(game, kkt, certifier=certifier)


def _row(label: str, eq: Equilibrium) -> dict:
    return {"method": label, "profile": np.round(eq.profile, 9).tolist(),
            "price": eq.price, "sum_J": float(np.nansum(eq.welfare)),
            "total_surplus": float(sum(s.sum() for s in eq.surpluses)),
            "max_regret": eq.max_regret, "certificate": _verdict(eq),
            "equilibrium": eq.is_equilibrium, "seconds": eq.seconds}


def _verdict(eq: Equilibrium) -> str:
    """How the regret is known: the worst verdict over the players."""
    return eq.certificate.worst_verdict.value


@dataclass
class Crosscheck:
    """Results of every method on one game, the methods that failed (with their
    reason), and whether they agree."""

    results: dict[str, Equilibrium]
    failed: dict[str, str] = field(default_factory=dict)
    rtol: float = AGREEMENT_RTOL

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([_row(k, v) for k, v in self.results.items()])

    def disagreement(self) -> float:
        """Largest relative profile difference between any two methods."""
        profiles = [eq.profile for eq in self.results.values()]
        scale = max([1.0, *(float(np.max(np.abs(p))) for p in profiles)])
        return max((float(np.max(np.abs(a - b))) / scale for a in profiles
                    for b in profiles), default=0.0)

    def groups(self) -> list[list[str]]:
        """Methods grouped by profile: two profiles are one when they differ by at
        most rtol * max(1, largest purchase)."""
        found: list[tuple[np.ndarray, list[str]]] = []
        for label, eq in self.results.items():
            for profile, members in found:
                scale = self.rtol * max(1.0, float(np.max(np.abs(profile))))
                if float(np.max(np.abs(profile - eq.profile))) <= scale:
                    members.append(label)
                    break
            else:
                found.append((eq.profile, [label]))
        return [members for _, members in found]

    @property
    def not_certified(self) -> list[str]:
        """Methods whose result is not a certified equilibrium."""
        return [k for k, eq in self.results.items() if not eq.is_equilibrium]

    @property
    def ok(self) -> bool:
        """Every method ran and found a certified equilibrium (they may differ:
        ``groups``)."""
        return not self.failed and not self.not_certified

    @property
    def agree(self) -> bool:
        """Every method found a certified equilibrium, the same one."""
        return self.ok and self.disagreement() <= self.rtol


def crosscheck(game: Game, settings: DynamicsSettings | None = None,
               backends: Sequence[str] = BACKENDS, solver: SolverSpec | None = None,
               repeats: int = 1, rtol: float = AGREEMENT_RTOL) -> Crosscheck:
    """Best response on each of ``backends`` and the stacked KKT solve, on ``game``
    (``solve_by``); each method's time is the median of ``repeats`` runs."""
    results, failed = {}, {}
    for method in methods_of(backends):
        LOG.info("crosscheck: %s (%s)", method.label,
                 solver.describe() if solver else "default solver")
        try:
            done = [solve_by(game, method, settings, solver) for _ in range(repeats)]
        except AggregameError as err:  # a solver failure is a verdict, not a crash
            failed[method.label] = str(err)
            continue
        results[method.label] = done[-1]
        results[method.label].seconds = float(np.median([eq.seconds for eq in done]))
    return Crosscheck(results, failed, rtol)
