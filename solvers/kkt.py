"""Solve the stacked KKT model (models/kkt.py) with Ipopt, and certify the result.

Strategy. ``mpec.simple_nonlinear`` turns each ``a >= 0 _|_ b >= 0`` into a >= 0,
b >= 0, a * b <= mpec_bound; we solve that NLP (a feasibility problem) with cyipopt
for mpec_bound = 1e-2, 1e-4, ..., 1e-12, each solve warm-started from the last: the
relaxed problems have interior points Ipopt can follow, and the last one enforces
complementarity to 1e-10 (docs/pyomo.md, section "pyomo.mpec with cyipopt": the
``standard_form`` and ``mpec.nl`` routes
are wrong or fatal with cyipopt). The priced-out status is then recomputed at the
solution's price; if it changed, the model is rebuilt for the new status and solved
again from the current point. A KKT point need not be an equilibrium (the joint
problem is not concave): every result carries the regret certificate.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.models.kkt import PlayerStatus, build_kkt_model, player_status
from aggregame.players import Game
from aggregame.solvers.certificate import CERTIFICATE_RTOL, certify
from aggregame.errors import UnsupportedProblemError
from aggregame.solvers.solver_choice import (PyomoSolver, SolverName, SolverSpec,
                                             Termination)
from aggregame.solvers.results import Equilibrium

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



def _statuses(game: Game, profile: np.ndarray) -> list[PlayerStatus]:
    total = float(profile.sum())
    price = float(game.price.value(total))
    return [player_status(game, j, price, float(game.price.value(total - profile[j])))
            for j in range(len(game.players))]


def _start_allocation(game: Game, profile: np.ndarray) -> list[np.ndarray]:
    """Each player's allocation of its purchase at ``profile`` (native inner solve)."""
    from aggregame.solvers.native import NativeInner

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
            worst = max(worst, abs(min(blk.x[i].value, -pyo.value(kkt.stationarity[i]))),
                        abs(min(kkt.sigma[i].value, pyo.value(blk.surplus[i]))))
        if hasattr(kkt, "mu"):
            for i in kkt.COUNTED:
                gap = pyo.value(blk.surplus[i] + blk.surplus_floor[i] - blk.min_surplus)
                worst = max(worst, abs(min(kkt.mu[i].value, gap)))
    return worst


def _profile(m: pyo.ConcreteModel, game: Game) -> np.ndarray:
    return np.array([sum(max(m.player[p.name].x[i].value, 0.0)
                         for i in m.player[p.name].MEMBERS) for p in game.players])


def smooth_complementarity(m: pyo.ConcreteModel) -> pyo.Param:
    """Replace every active Complementarity ``a >= 0 _|_ b >= 0`` of ``m`` by the
    smoothed Fischer-Burmeister equation a + b - sqrt(a^2 + b^2 + 2 mu) = 0.

    At mu = 0 it holds iff a >= 0, b >= 0, a b = 0; for mu > 0 it is smooth and its
    solutions have a b = mu. Returns the mutable Param ``mu`` (on ``m.fischer``).
    """
    from pyomo.mpec import Complementarity

    pairs = []
    for comp in list(m.component_data_objects(Complementarity, active=True)):
        sides = []
        for rel in comp._args:
            lhs, rhs = rel.args  # ``e >= 0`` is kept as ``0 <= e``
            sides.append(rhs - lhs)
        pairs.append(tuple(sides))
        comp.deactivate()
    m.fischer = pyo.Block(doc="smoothed Fischer-Burmeister form of the complementarity")
    m.fischer.mu = pyo.Param(mutable=True, initialize=RELAXATION[0])
    m.fischer.eq = pyo.Constraint(
        range(len(pairs)),
        rule=lambda b, k: pairs[k][0] + pairs[k][1]
        - pyo.sqrt(pairs[k][0] ** 2 + pairs[k][1] ** 2 + 2 * b.mu) == 0)
    return m.fischer.mu


def _solve_relaxations(m: pyo.ConcreteModel, solver: PyomoSolver, reformulation: str
                       ) -> tuple[int, str, int]:
    """Follow the smoothing (or relaxation) parameter down RELAXATION; each solve
    starts where the last ended. Returns the number of solves, the last termination
    and the solver iterations summed. Intermediate solves may end short (a local
    infeasibility of the smoothed system far from the solution), and near
    mu = 1e-12 Ipopt often stops at
    its "acceptable" level on this nearly non-smooth square system: the caller judges
    the end point by its own complementarity residual, not by Ipopt's label."""
    if reformulation == "fischer-burmeister":
        parameter = smooth_complementarity(m)
    elif reformulation == "relaxation":
        pyo.TransformationFactory("mpec.simple_nonlinear").apply_to(m)
        parameter = m.mpec_bound
    else:
        raise ValueError(f"reformulation must be 'fischer-burmeister' or 'relaxation', "
                         f"got {reformulation!r}")
    m.kkt_objective = pyo.Objective(expr=0.0, doc="feasibility problem")
    solves, iterations = 0, 0
    term = None
    ipopt = solver.spec.name in (SolverName.CYIPOPT, SolverName.IPOPT)
    for stage, value in enumerate(RELAXATION):
        parameter.set_value(value)
        last = stage == len(RELAXATION) - 1
        if ipopt:
            solver.options["max_iter"] = FINAL_MAX_ITER if last else STAGE_MAX_ITER
        core_log = logging.getLogger("pyomo.core")
        level = core_log.level
        core_log.setLevel(logging.ERROR)
        stop = False
        try:
            outcome = solver.solve(m)
            term = outcome.termination.value
            iterations += outcome.iterations
            # A global solver out of time: later stages are harder; stop here and
            # let the caller report the residual.
            stop = solver.spec.is_global and \
                outcome.termination is Termination.TIME_LIMIT
        except Exception as err:  # Ipopt evaluation errors far from the solution
            term = f"error: {err}"
        finally:
            core_log.setLevel(level)
        solves += 1
        if stop:
            break
    return solves, str(term), iterations


def path_available() -> bool:
    """True where Pyomo finds the PATH solver's AMPL executable (``pathampl``)."""
    import shutil

    return shutil.which("pathampl") is not None


def _solve_with_path(m: pyo.ConcreteModel) -> tuple[int, str]:
    """Hand the complementarity model to PATH as it is (an MCP; no reformulation).
    Not exercised on machines without ``pathampl`` (such as this project's CI)."""
    results = pyo.SolverFactory("path").solve(m, load_solutions=True)
    return 1, str(results.solver.termination_condition), 0


def solve_kkt(game: Game, start: np.ndarray | None = None,
              ipopt_options: dict[str, Any] | None = None,
              certificate_rtol: float = CERTIFICATE_RTOL,
              reformulation: str = "fischer-burmeister",
              solver_name: str = "auto", solver: SolverSpec | None = None,
              certifier: Any = None) -> Equilibrium:
    """Solve the stacked KKT system from ``start`` (a purchase profile) and certify it.

    Returns an Equilibrium with ``method='kkt'``; ``converged`` is True when the
    priced-out status settled and the complementarity residual is below KKT_TOL
    (``status`` says 'kkt-residual' or 'status-cycling' otherwise); ``certified`` says
    whether the point is also a Nash equilibrium (regret certificate, native backend).

    ``solver_name``: 'ipopt' (the reformulation above), 'path' (PATH on the
    complementarity model itself; needs the ``pathampl`` executable) or 'auto' (PATH
    where found, else Ipopt). ``solver`` picks the solver of the reformulated system
    (cyipopt by default, the ipopt executable, or SCIP; HiGHS is refused: the system
    is nonlinear); ``ipopt_options`` are options of the default solver. Giving
    ``solver`` means 'ipopt' for ``solver_name='auto'``. ``certifier(profile)``
    replaces the native certificate (the solver comparison times it apart).
    """
    from aggregame.solvers.leximin import refuse
    refuse(game, "the stacked KKT system")  # its epigraph KKT is the minimum only
    spec = solver or SolverSpec(SolverName.CYIPOPT, ipopt_options or {})
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
    if solver is not None and solver_name == "auto":
        solver_name = "ipopt"
    if solver_name not in ("auto", "ipopt", "path"):
        raise ValueError(f"solver_name must be 'auto', 'ipopt' or 'path', got "
                         f"{solver_name!r}")
    use_path = solver_name == "path" or (solver_name == "auto" and path_available())
    if use_path and not path_available():
        from aggregame.errors import SolverUnavailableError

        raise SolverUnavailableError("PATH was asked for, but no `pathampl` executable "
                                     "is on PATH; use solver_name='ipopt'")
    from aggregame.solvers.dynamics import make_inners

    t0 = time.perf_counter()
    m_players = len(game.players)
    if start is None:
        # A neutral start: each player buys a share of what it could buy alone.
        start = np.array([game.feasible_max(j, 0.0) / (m_players + 1)
                          for j in range(m_players)])
    profile = np.asarray(start, dtype=float)
    nlp = None if use_path else spec.make_solver()
    alloc = _start_allocation(game, profile)
    statuses = _statuses(game, profile)
    path = [profile.copy()]
    status, solves, residual, termination = "status-cycling", 0, np.inf, ""
    iterations = 0
    for _ in range(MAX_STATUS_ROUNDS):
        m = build_kkt_model(game, statuses)
        _load_start(m, game, alloc)
        count, termination, its = (_solve_with_path(m) if use_path else
                                   _solve_relaxations(m, nlp, reformulation))
        solves += count
        iterations += its
        profile = _profile(m, game)
        path.append(profile.copy())
        alloc = [np.array([max(m.player[p.name].x[i].value, 0.0)
                           for i in m.player[p.name].MEMBERS]) for p in game.players]
        residual = _residual(m)
        if termination == Termination.TIME_LIMIT.value:
            status = "time-limit"
            break
        new = _statuses(game, profile)
        if new == statuses:
            status = "converged" if residual <= KKT_TOL else "kkt-residual"
            break
        statuses = new
    inners = make_inners(game, "native")
    cert = certifier(profile) if certifier else certify(game, profile,
                                                        certificate_rtol)
    return Equilibrium.from_run(
        game, profile, inners, converged=status == "converged", status=status,
        iterations=solves, path=np.array(path), certificate=cert,
        backend="pyomo-path" if use_path else "pyomo",
        method="kkt", settings={"solver": "path" if use_path else "ipopt",
                                "reformulation": None if use_path else reformulation,
                                "relaxation": list(RELAXATION), "kkt_tol": KKT_TOL,
                                "start": [float(v) for v in start],
                                "kkt_residual": float(residual),
                                "ipopt_termination": termination,
                                "nlp_solver": None if use_path else spec.describe(),
                                "solver_iterations": iterations},
        seconds=time.perf_counter() - t0)
