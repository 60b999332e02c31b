"""Solve the stacked KKT model (models/kkt.py) with Ipopt, and certify the result.

Strategy. The complementarity conditions are smoothed (models/complementarity.py; the
smoothed Fischer-Burmeister equation by default, ``mpec.simple_nonlinear``'s
relaxation on request) and the resulting square system is solved with cyipopt for
the parameter 1e-2, 1e-4, ..., 1e-12, each solve warm-started from the last: the
smoothed problems have interior points Ipopt can follow, and the last one enforces
complementarity to about 1e-10 (docs/pyomo.md, section "pyomo.mpec with cyipopt": the
``standard_form`` and ``mpec.nl`` routes are wrong or fatal with cyipopt). The
priced-out status is then recomputed at the solution's price; if it changed, the
model is rebuilt for the new status and solved again from the current point.

A KKT point need not be an equilibrium (the joint problem is not concave), and from a
poor start Ipopt can end at a point of the smoothed system that is not one (measured:
alpha = 2 aggregators under a steep price end "infeasible" from the neutral start and
converge from a start near the equilibrium). So every attempt carries the regret
certificate, and when the first start does not give a certified KKT point a short
multistart follows: a best-response warm start (a few native Gauss-Seidel rounds),
then seeded random starts. The result says which start worked and how many solves of
the smoothed system were made.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import (
    SettingsError,
    SolverUnavailableError,
    UnsupportedProblemError,
)
from aggregame.models.complementarity import Reformulation, add_reformulation
from aggregame.models.context import muted_logger
from aggregame.models.kkt import PlayerStatus, build_kkt_model, player_status
from aggregame.players import Game
from aggregame.solvers.certify.scan import (
    CERTIFICATE_RTOL,
    Certificate,
    certify,
    check_rtol,
)
from aggregame.solvers.equilibrium.results import Equilibrium
from aggregame.solvers.solver_choice import (
    PyomoSolver,
    SolverName,
    SolverSpec,
    Termination,
)

LOG = logging.getLogger(__name__)

#: Relaxation schedule of the complementarity products a * b <= bound.
RELAXATION = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
#: A KKT point is accepted when the natural residual max |min(a, b)| is below this.
#: Ipopt meets a * b <= 1e-12 only to its constraint tolerance (1e-10), so a member
#: on the edge of being priced out (x and s both ~1e-4) can keep min(a, b) ~ 1e-6
#: (measured); 1e-5 = sqrt(1e-10) is what the relaxation can promise.
KKT_TOL = 1e-5
#: Ipopt iterations allowed per intermediate smoothing stage, and for the last one.
#: An intermediate stage only has to bring the point nearer; capping it stops Ipopt
#: from grinding at a smoothed system it cannot solve well (measured on 2 x 100
#: members, alpha = 0: 64 s with 5000 iterations per stage, 4.9 s with 200, same point).
STAGE_MAX_ITER = 200
FINAL_MAX_ITER = 3000
#: Rebuilds of the model for a changed priced-out status before giving up.
MAX_STATUS_ROUNDS = 8
#: SCIP's time limit per smoothing stage unless the caller sets ``limits/time``. SCIP
#: solves the smoothed system of two one-member players in 0.3 s, but on 2 x 5
#: members it ran for minutes without ending (measured): a global solve of a square
#: nonconvex system, with no objective to prune on.
SCIP_STAGE_SECONDS = 5.0
#: Largest game (members in all) SCIP is given the stacked system of. On 2 x 5 members
#: plus one SCIP ran past its time limit without returning (measured, killed after
#: 5 min); two one-member players solve in 0.3 s.
SCIP_MAX_MEMBERS = 4
#: Native Gauss-Seidel rounds of the best-response warm start. A few rounds bring the
#: profile near an equilibrium (where the smoothed system converges); running them to
#: the end would make the KKT solve a mere check of best response.
WARM_START_ROUNDS = 3
#: Seeded random starts tried after the warm start.
RANDOM_STARTS = 2


class KKTStatus(str, enum.Enum):
    """How one attempt at the stacked KKT system ended."""

    CONVERGED = "converged"
    #: the complementarity residual stayed above KKT_TOL
    KKT_RESIDUAL = "kkt-residual"
    #: the priced-out status kept changing for MAX_STATUS_ROUNDS rebuilds
    STATUS_CYCLING = "status-cycling"
    #: a global solver ran out of time
    TIME_LIMIT = "time-limit"


class StartKind(str, enum.Enum):
    """Where an attempt started."""

    DEFAULT = "default"  # each player buys 1/(players + 1) of what it could alone
    GIVEN = "given"  # the caller's start
    BEST_RESPONSE = "best-response"  # a few native Gauss-Seidel rounds
    RANDOM = "random"  # uniform on each player's feasible interval, seeded


class KKTMethod(str, enum.Enum):
    """How the stacked system's complementarity conditions are solved."""

    #: PATH where its executable is found and no solver is chosen, else REFORMULATION
    AUTO = "auto"
    #: the smoothed (or relaxed) system, by the settings' solver (cyipopt by default)
    REFORMULATION = "reformulation"
    #: PATH on the complementarity model itself (needs the ``pathampl`` executable)
    PATH = "path"


@dataclass(frozen=True)
class KKTSettings:
    """How a stacked KKT solve runs, checked once here: a bad field raises one
    SettingsError that names it.

    Attributes
    ----------
    solver : the solver of the reformulated system, with its options (a SolverSpec,
        or a solver's name); None is cyipopt with its defaults. HiGHS is refused at
        the solve (the system is nonlinear), SCIP is given small games only.
    method : a KKTMethod or its value ('auto', 'reformulation', 'path'); 'path'
        takes no solver.
    reformulation : 'fischer-burmeister' (smoothed, the default) or 'relaxation'
        (mpec.simple_nonlinear's a * b <= mu), for the reformulation method.
    certificate_rtol : the regret certificate's tolerance.
    multistart : when the first start does not end at a certified KKT point, try a
        best-response warm start and RANDOM_STARTS seeded random starts.
    seed : seed of those random starts (an integer >= 0).
    """

    solver: SolverSpec | None = None
    method: KKTMethod = KKTMethod.AUTO
    reformulation: Reformulation = Reformulation.FISCHER_BURMEISTER
    certificate_rtol: float = CERTIFICATE_RTOL
    multistart: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        solver = self.solver
        if solver is not None and not isinstance(solver, SolverSpec):
            solver = _field("solver", lambda: SolverSpec(solver), solver)
        method = _field("method", lambda: KKTMethod(self.method), self.method,
                        [m.value for m in KKTMethod])
        if method is KKTMethod.PATH and solver is not None:
            raise SettingsError(
                f"kkt settings: field 'solver' must be unset for method 'path' (PATH "
                f"solves the complementarity model itself), got {solver.describe()}")
        reformulation = _field("reformulation",
                               lambda: Reformulation(self.reformulation),
                               self.reformulation, [r.value for r in Reformulation])
        rtol = _field("certificate_rtol", lambda: check_rtol(self.certificate_rtol),
                      self.certificate_rtol)
        if not isinstance(self.multistart, bool):
            raise SettingsError(f"kkt settings: field 'multistart' must be true or "
                                f"false, got {self.multistart!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or \
                self.seed < 0:
            raise SettingsError(f"kkt settings: field 'seed' must be an integer >= 0, "
                                f"got {self.seed!r}")
        for name, value in (("solver", solver), ("method", method),
                            ("reformulation", reformulation),
                            ("certificate_rtol", rtol)):
            object.__setattr__(self, name, value)


def _field(name: str, make: Callable[[], Any], value: Any,
           choices: list[str] | None = None) -> Any:
    """``make()``, or SettingsError naming field ``name`` and the value it got."""
    try:
        return make()
    except (ValueError, TypeError) as err:
        if choices:
            why = f"must be one of {choices}, got {value!r}"
        else:  # the checker's own words, which name the value
            text = str(err)
            why = text.split(f"field '{name}' ", 1)[1] if f"field '{name}' " in text \
                else f"is refused: {text}"
        raise SettingsError(f"kkt settings: field '{name}' {why}") from None


@dataclass(frozen=True)
class KKTSetup:
    """The checked solver choice of a stacked KKT solve."""

    spec: SolverSpec
    use_path: bool
    reformulation: Reformulation

    @property
    def solver_label(self) -> str:
        """Name of the solver in messages ('Ipopt solves', 'SCIP solves')."""
        if self.use_path:
            return "PATH"
        return {SolverName.SCIP: "SCIP"}.get(self.spec.name, "Ipopt")


@dataclass(frozen=True)
class StageSolve:
    """One model (fixed status) solved along the smoothing schedule."""

    solves: int
    termination: str
    iterations: int


@dataclass(frozen=True, eq=False)
class KKTAttempt:
    """One start followed to its end, with the certificate of where it ended."""

    kind: StartKind
    start: np.ndarray
    profile: np.ndarray
    path: np.ndarray
    status: KKTStatus
    solves: int
    iterations: int
    residual: float
    termination: str
    certificate: Certificate

    @property
    def is_equilibrium(self) -> bool:
        return self.status is KKTStatus.CONVERGED and self.certificate.certified

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of the attempt."""
        return {"start_kind": self.kind.value, "start": self.start.tolist(),
                "status": self.status.value, "solves": self.solves,
                "kkt_residual": float(self.residual),
                "termination": self.termination,
                "certified": self.certificate.certified,
                "max_regret": float(self.certificate.max_regret)}


def _statuses(game: Game, profile: np.ndarray) -> list[PlayerStatus]:
    total = float(profile.sum())
    price = float(game.price.value(total))
    return [player_status(game, j, price, float(game.price.value(total - profile[j])))
            for j in range(len(game.players))]


def _start_allocation(game: Game, profile: np.ndarray) -> list[np.ndarray]:
    """Each player's allocation of its purchase at ``profile`` (native inner solve)."""
    from aggregame.solvers.inner.native import NativeInner

    out = []
    total = float(profile.sum())
    for j in range(len(game.players)):
        sol = NativeInner(game, j).solve(np.array([profile[j]]), total - profile[j])
        out.append(sol.x[0])
    return out


def _load_start(m: pyo.ConcreteModel, game: Game, alloc: list[np.ndarray]) -> None:
    m.total.set_value(float(sum(a.sum() for a in alloc)))
    for j, player in enumerate(game.players):
        blk = m.player[player.name]
        for k, name in enumerate(blk.MEMBERS):
            if not blk.x[name].fixed:
                blk.x[name].set_value(float(alloc[j][k]))
        if player.fairness.is_maxmin:
            s = np.array([pyo.value(blk.surplus[i] + blk.surplus_floor[i])
                          for i in blk.MEMBERS])
            blk.min_surplus.set_value(float(s.min()))
        blk.kkt.price_gradient.set_value(pyo.value(blk.kkt.price_partial))


def _residual(m: pyo.ConcreteModel) -> float:
    """max over complementarity pairs of |min(a, b)| (0 exactly at a KKT point)."""
    worst = 0.0
    for blk in m.player.values():
        kkt = blk.kkt
        for i in kkt.FREE:
            worst = max(worst,
                        abs(min(blk.x[i].value, -pyo.value(kkt.stationarity[i]))),
                        abs(min(kkt.sigma[i].value, pyo.value(blk.surplus[i]))))
        if hasattr(kkt, "mu"):
            for i in kkt.COUNTED:
                gap = pyo.value(blk.surplus[i] + blk.surplus_floor[i] - blk.min_surplus)
                worst = max(worst, abs(min(kkt.mu[i].value, gap)))
    return worst


def _profile(m: pyo.ConcreteModel, game: Game) -> np.ndarray:
    return np.array([sum(max(m.player[p.name].x[i].value, 0.0)
                         for i in m.player[p.name].MEMBERS) for p in game.players])


def _allocation(m: pyo.ConcreteModel, game: Game) -> list[np.ndarray]:
    return [np.array([max(m.player[p.name].x[i].value, 0.0)
                      for i in m.player[p.name].MEMBERS]) for p in game.players]


def _solve_relaxations(m: pyo.ConcreteModel, solver: PyomoSolver,
                       reformulation: Reformulation | str) -> StageSolve:
    """Follow the smoothing (or relaxation) parameter down RELAXATION; each solve
    starts where the last ended. Intermediate solves may end short (a local
    infeasibility of the smoothed system far from the solution), and near
    mu = 1e-12 Ipopt often stops at its "acceptable" level on this nearly non-smooth
    square system: the caller judges the end point by its own complementarity
    residual, not by Ipopt's label."""
    parameter = add_reformulation(m, reformulation)
    solves, iterations, term = 0, 0, None
    ipopt = solver.spec.name in (SolverName.CYIPOPT, SolverName.IPOPT)
    for stage, value in enumerate(RELAXATION):
        parameter.set_value(value)
        last = stage == len(RELAXATION) - 1
        if ipopt:
            solver.options["max_iter"] = FINAL_MAX_ITER if last else STAGE_MAX_ITER
        stop = False
        with muted_logger():
            try:
                outcome = solver.solve(m)
                term = outcome.termination.value
                iterations += outcome.iterations
                # A global solver out of time: later stages are harder; stop here
                # and let the caller report the residual.
                stop = solver.spec.is_global and \
                    outcome.termination is Termination.TIME_LIMIT
            except Exception as err:  # Ipopt evaluation errors far from the solution
                term = f"error: {err}"
        solves += 1
        if stop:
            break
    return StageSolve(solves, str(term), iterations)


def path_available() -> bool:
    """True where Pyomo finds the PATH solver's AMPL executable (``pathampl``)."""
    import shutil

    return shutil.which("pathampl") is not None


def _solve_with_path(m: pyo.ConcreteModel) -> StageSolve:
    """Hand the complementarity model to PATH as it is (an MCP; no reformulation).
    Not exercised on machines without ``pathampl`` (such as this project's CI)."""
    results = pyo.SolverFactory("path").solve(m, load_solutions=True)
    return StageSolve(1, str(results.solver.termination_condition), 0)


# -- phase 1: the solver choice ---------------------------------------------------
def _setup(game: Game, settings: KKTSettings) -> KKTSetup:
    """What the settings mean for this game, on this machine, before any model is
    built: the solver (refused where it cannot take the system) and PATH or not."""
    spec = settings.solver or SolverSpec(SolverName.CYIPOPT)
    if spec.name is SolverName.HIGHS:
        raise UnsupportedProblemError(
            "solver 'highs' cannot solve the stacked KKT system (nonlinear "
            "equations); use solver 'cyipopt', 'ipopt' or 'scip'")
    members = sum(p.size for p in game.players)
    if spec.name is SolverName.SCIP and members > SCIP_MAX_MEMBERS:
        raise UnsupportedProblemError(
            f"solver 'scip' is given the stacked KKT system only for games of at most "
            f"{SCIP_MAX_MEMBERS} members (this one has {members}): on larger ones it "
            f"does not return; use solver 'cyipopt', or SCIP on the inner problems")
    if spec.name is SolverName.SCIP and "limits/time" not in dict(spec.options):
        spec = SolverSpec(spec.name, {**dict(spec.options),
                                      "limits/time": SCIP_STAGE_SECONDS})
    method = settings.method
    if method is KKTMethod.AUTO:  # a chosen solver means its reformulation
        method = KKTMethod.PATH if settings.solver is None and path_available() \
            else KKTMethod.REFORMULATION
    if method is KKTMethod.PATH and not path_available():
        raise SolverUnavailableError("PATH was asked for, but no `pathampl` executable "
                                     "is on PATH; use method 'reformulation'")
    return KKTSetup(spec, method is KKTMethod.PATH, settings.reformulation)


# -- phase 2: one start followed until the priced-out status settles ----------------
def _descend(game: Game, setup: KKTSetup, nlp: PyomoSolver | None,
             start: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], KKTStatus,
                                         StageSolve, float]:
    """Solve the model for the start's status, rebuild it for the status at the
    solution, until the status agrees (or MAX_STATUS_ROUNDS). Returns the profile,
    its path, the status, the solves summed, and the complementarity residual."""
    profile = np.asarray(start, dtype=float)
    alloc = _start_allocation(game, profile)
    statuses = _statuses(game, profile)
    path = [profile.copy()]
    status, residual = KKTStatus.STATUS_CYCLING, np.inf
    total = StageSolve(0, "", 0)
    for _ in range(MAX_STATUS_ROUNDS):
        m = build_kkt_model(game, statuses)
        _load_start(m, game, alloc)
        stage = (_solve_with_path(m) if setup.use_path else
                 _solve_relaxations(m, nlp, setup.reformulation))
        total = StageSolve(total.solves + stage.solves, stage.termination,
                           total.iterations + stage.iterations)
        profile = _profile(m, game)
        path.append(profile.copy())
        alloc = _allocation(m, game)
        residual = _residual(m)
        if stage.termination == Termination.TIME_LIMIT.value:
            status = KKTStatus.TIME_LIMIT
            break
        new = _statuses(game, profile)
        if new == statuses:
            status = (KKTStatus.CONVERGED if residual <= KKT_TOL
                      else KKTStatus.KKT_RESIDUAL)
            break
        statuses = new
    return profile, path, status, total, float(residual)


def _attempt(game: Game, setup: KKTSetup, nlp: PyomoSolver | None, kind: StartKind,
             start: np.ndarray, certifier: Callable[[np.ndarray], Certificate]
             ) -> KKTAttempt:
    """One start followed to its end, and certified."""
    profile, path, status, solves, residual = _descend(game, setup, nlp, start)
    attempt = KKTAttempt(kind, np.asarray(start, dtype=float), profile,
                         np.array(path), status, solves.solves, solves.iterations,
                         residual, solves.termination, certifier(profile))
    LOG.info("stacked KKT from the %s start: %s after %d %s solves, max regret %.3g",
             kind.value, status.value, attempt.solves, setup.solver_label,
             attempt.certificate.max_regret)
    return attempt


# -- phase 3: the starts ------------------------------------------------------------
def default_start(game: Game) -> np.ndarray:
    """A neutral start: each player buys a share of what it could buy alone."""
    m = len(game.players)
    return np.array([game.feasible_max(j, 0.0) / (m + 1) for j in range(m)])


def _fallback_starts(game: Game, first: np.ndarray, rtol: float, seed: int
                     ) -> Iterator[tuple[StartKind, np.ndarray]]:
    """The multistart after a failed first start, each computed only when asked."""
    from aggregame.solvers.equilibrium.dynamics import (
        DynamicsSettings,
        solve_equilibrium,
    )
    from aggregame.solvers.equilibrium.starts import random_starts

    warm = solve_equilibrium(game, "native", DynamicsSettings(
        max_rounds=WARM_START_ROUNDS, start=tuple(float(v) for v in first),
        certificate_rtol=rtol))
    yield StartKind.BEST_RESPONSE, warm.profile
    for start in random_starts(game, RANDOM_STARTS, seed):
        yield StartKind.RANDOM, start


def _best(attempts: list[KKTAttempt]) -> KKTAttempt:
    """The attempt to report: an equilibrium, else a converged KKT point of least
    regret, else the first."""
    for a in attempts:
        if a.is_equilibrium:
            return a
    converged = [a for a in attempts if a.status is KKTStatus.CONVERGED]
    return min(converged, key=lambda a: a.certificate.max_regret) if converged \
        else attempts[0]


# -- the driver ----------------------------------------------------------------------
def solve_kkt(game: Game, settings: KKTSettings | None = None,
              start: np.ndarray | None = None,
              certifier: Callable[[np.ndarray], Certificate] | None = None
              ) -> KKTEquilibrium:
    """Solve the stacked KKT system from ``start`` (a purchase profile; None: the
    neutral default) and certify it, as ``settings`` say (KKTSettings).

    Returns a KKTEquilibrium (an Equilibrium with ``method='kkt'``); ``converged``
    is True when the priced-out status settled and the complementarity residual is
    below KKT_TOL (``status`` says 'kkt-residual', 'status-cycling' or 'time-limit'
    otherwise); ``certified`` says whether the point is also a Nash equilibrium
    (regret certificate, native backend). ``iterations`` counts the solves of the
    smoothed system (every stage of every start).

    When the first start does not end at a certified KKT point and the settings'
    ``multistart`` is on, a best-response warm start (WARM_START_ROUNDS native
    Gauss-Seidel rounds from the first start) and RANDOM_STARTS random starts (the
    settings' ``seed``) are tried in turn, stopping at the first certified one.
    ``settings['start_kind']`` of the result names the start reported and
    ``settings['attempts']`` lists every start tried. ``certifier(profile)``
    replaces the native certificate (the solver comparison times it apart).
    """
    from aggregame.leximin import refuse
    refuse(game, "the stacked KKT system")  # its epigraph KKT is the minimum only
    settings = settings or KKTSettings()
    setup = _setup(game, settings)
    t0 = time.perf_counter()
    rtol = settings.certificate_rtol
    certifier = certifier or (lambda y: certify(game, y, rtol))
    nlp = None if setup.use_path else setup.spec.make_solver()
    kind = StartKind.DEFAULT if start is None else StartKind.GIVEN
    first = default_start(game) if start is None else np.asarray(start, dtype=float)
    attempts = [_attempt(game, setup, nlp, kind, first, certifier)]
    if settings.multistart and not attempts[0].is_equilibrium and \
            attempts[0].status is not KKTStatus.TIME_LIMIT:
        for kind, point in _fallback_starts(game, first, rtol, settings.seed):
            attempts.append(_attempt(game, setup, nlp, kind, point, certifier))
            if attempts[-1].is_equilibrium:
                break
    return _result(game, setup, attempts, time.perf_counter() - t0)


def _result(game: Game, setup: KKTSetup, attempts: list[KKTAttempt],
            seconds: float) -> "KKTEquilibrium":
    """The reported attempt as an Equilibrium, with every attempt in its settings."""
    from aggregame.solvers.equilibrium.dynamics import make_inners

    best = _best(attempts)
    solves = sum(a.solves for a in attempts)
    return KKTEquilibrium.from_run(
        game, best.profile, make_inners(game, "native"),
        converged=best.status is KKTStatus.CONVERGED, status=best.status.value,
        iterations=solves, path=best.path, certificate=best.certificate,
        backend="pyomo-path" if setup.use_path else "pyomo",
        method="kkt", settings={
            "solver": "path" if setup.use_path else "ipopt",
            "reformulation": None if setup.use_path else setup.reformulation.value,
            "relaxation": list(RELAXATION), "kkt_tol": KKT_TOL,
            "start": best.start.tolist(), "start_kind": best.kind.value,
            "kkt_residual": float(best.residual),
            "ipopt_termination": best.termination,
            "nlp_solver": None if setup.use_path else setup.spec.describe(),
            "solver_label": setup.solver_label, "nlp_solves": solves,
            "solver_iterations": sum(a.iterations for a in attempts),
            "attempts": [a.describe() for a in attempts]},
        seconds=seconds)


class KKTEquilibrium(Equilibrium):
    """An Equilibrium found by the stacked KKT solve: its messages count solves of
    the smoothed system and name the start that gave the point, not dynamics
    rounds."""

    def _solves(self) -> str:
        label = self.settings.get("solver_label", "Ipopt")
        return f"{self.iterations} {label} solve{'s' if self.iterations != 1 else ''}"

    def _starts(self) -> str:
        tried = len(self.settings.get("attempts", ())) or 1
        kind = self.settings.get("start_kind", "given")
        return (f"from the {kind} start" if tried == 1 else
                f"from the {kind} start ({tried} starts tried)")

    def reason(self) -> str:
        """One line on why this is or is not an equilibrium."""
        residual = self.settings.get("kkt_residual", float("nan"))
        if self.is_equilibrium:
            return (f"equilibrium: KKT point (residual {residual:.2g}) after "
                    f"{self._solves()} {self._starts()}, max relative regret "
                    f"{self.max_regret:.3g}")
        if not self.converged:
            return (f"no equilibrium: the stacked KKT solve stopped by {self.status} "
                    f"after {self._solves()} {self._starts()} (residual "
                    f"{residual:.2g}, max relative regret {self.max_regret:.3g})")
        return (f"no equilibrium: KKT point (residual {residual:.2g}) after "
                f"{self._solves()} {self._starts()}, but max relative regret "
                f"{self.max_regret:.3g} exceeds the certificate tolerance "
                f"{self.certificate.rtol:g}")

    def summary(self) -> str:
        """Equilibrium.summary, with one line per start when more than one was
        tried."""
        head = super().summary().split("\n")
        attempts = self.settings.get("attempts", ())
        if len(attempts) < 2:
            return "\n".join(head)
        tried = [f"  {k}. {a['start_kind']} start: {a['status']}, "
                 f"{'certified' if a['certified'] else 'not certified'}, "
                 f"{a['solves']} solves" for k, a in enumerate(attempts, 1)]
        return "\n".join([head[0], "starts tried:", *tried, *head[1:]])
