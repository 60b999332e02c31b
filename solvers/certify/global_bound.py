"""Global certificate: a proven upper bound on every player's regret.

``solvers/certify/scan.py`` measures regret_j by a scan of y_j with the native backend:
a search, sound only as far as the scan is dense. This module proves a bound instead.
For each player j it solves the joint best-response problem over (y_j, x_j)
(models/joint.py) with SCIP, a spatial branch-and-bound solver, through Pyomo's
``scip_direct`` (pyomo.contrib.solver). SCIP's dual bound UB_j bounds every deviation:

    regret_j  <=  UB_j - J_j(y_j)  =: regret bound,

where J_j(y_j) is taken from a feasible allocation of the profile's purchase (the
native backend's, re-checked here: sum x = y_j, x >= 0, s >= 0 within FEAS_TOL). Any
feasible allocation gives a lower bound on J_j(y_j), so the bound stays sound even if
that inner solve were suboptimal; the certificate shares no search code with the
dynamics. "Proven" means up to SCIP's own tolerances: its feasibility tolerance
(``numerics/feastol``, 1e-6 by default) relaxes every constraint, which can only
raise UB_j (measured: a 30-member alpha = 2 aggregator, UB 2.7e-3 above the true
maximum of -415.014 at 1e-6, 4e-5 above at 1e-9, which took 8x longer); near an
equilibrium a bound just above rtol is re-solved at 1e-9 (``_solve``). SCIP
computes in floating point, not exact arithmetic.

Gap. SCIP stops when UB_j - incumbent <= gap * R_j (R_j below), an absolute gap
from the native payoffs; its own relative gap divides by |objective|, which the
floor eps and the units of log make arbitrary. PROVED means SCIP reached it.

Max-min players (alpha = inf) play lexicographically: the level min_i(s_i + e_i)
first, the total surplus as tie-break. Stage 1 bounds the level; its gain is the
regret bound. Only when the level is pinned at the floor e (a member priced out,
the level flat in y) and no deviation raises it by more than LEVEL_TOL (relative),
stage 2 bounds the total surplus over deviations whose level is at least
J_t - LEVEL_TOL, and the regret bound is that tie-break gain (as in
solvers/certify/scan.py).

Only the ``floor`` priced-out rule is supported (models/joint.py says why); a player
with another rule gets the verdict FAILED with the reason, never a wrong bound.

Relative regret. regret bound / R_j, with R_j the range of the payoff over the
feasible interval as far as it is known: max(UB_j, J(y_j), J(0), J(y_max)) -
min(J(y_j), J(0), J(y_max)). Dividing by |J| is not scale-free: the alpha = 1
welfare sum_i log(s_i + e_i) shifts by n log k when surplus units change by k, and
can cross zero; the range is invariant under any affine change of Phi.

API for callers (CLI ``--certify global``, certify(method="global"), crosscheck)::

    cert = certify_global(game, profile, time_limit=5.0, gap=1e-6)
    cert.proved               # every player PROVED and relative regret <= rtol
    cert.max_regret_bound     # max_j (UB_j - J_j), absolute
    cert.regret_bounds        # per player, np.ndarray in player order
    cert.max_relative_regret
    cert.players[j].verdict   # Verdict.PROVED / BOUNDED / FAILED, with .message
    cert.to_frame()           # one row per player (pandas)

It raises SolverUnavailableError when pyscipopt is missing, GameDefinitionError for
a malformed profile; every per-player failure is a FAILED verdict, not an exception.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from aggregame.errors import (
    GameDefinitionError,
    GlobalCertificateError,
    SolverUnavailableError,
)
from aggregame.players import Game
from aggregame.solvers.certify.certificate import (
    Certificate,
    CertificateMethod,
    PlayerRegret,
    Verdict,
)

#: Default relative-regret tolerance of ``GlobalCertificate.proved``.
GLOBAL_RTOL = 1e-5
#: Feasibility tolerance of the profile's allocation (relative to max(1, scale)):
#: a feasible allocation lower-bounds J_j(y_j); the native backend meets 1e-13.
FEAS_TOL = 1e-9
#: Max-min: level gains below this (relative to max(1, |level|)) are ties, decided
#: by total surplus. SCIP's feasibility tolerance alone can move the level 1e-6.
LEVEL_TOL = 1e-6
#: Smallest time SCIP gets for a stage (the max-min tie-break, a re-solve) [s].
MIN_STAGE_SECONDS = 1.0
#: SCIP feasibility tolerance of the re-solve of a near-equilibrium player whose
#: proven bound sits just above rtol (see ``_solve``); SCIP's default is 1e-6.
TIGHT_FEASTOL = 1e-9
#: Relative regret bounds above this are real regret, not tolerance slack: no re-solve.
REFINE_BELOW = 1e-3


@dataclass(frozen=True)
class PlayerBound:
    """Bound on one player's regret at the profile.

    Attributes
    ----------
    name, y : player and its purchase in the profile.
    payoff : J_j(y) of a checked feasible allocation (a lower bound on it); -inf
        when no feasible allocation is known (y beyond y_max): regret bound inf.
    upper_bound : UB_j, SCIP's dual bound on max over y_j' of J_j (stage 1).
    best_y, best_payoff : SCIP's best purchase and its objective value (NaN if
        none); for max-min the objective is the level, best_y the tie-break's.
    regret_bound : max(UB_j - J_j, 0), or the tie-break gain (see ``tiebreak``).
    relative_regret : regret_bound / range of the payoff (module docstring).
    gap : (UB - incumbent) / range: what SCIP left open.
    verdict : Verdict: proved (SCIP closed the gap), bounded (stopped at a limit
        with a finite bound, the gap open) or failed (a SCIP error, no finite
        bound, an unsupported model).
    seconds : wall time of this player's SCIP solves and checks.
    tiebreak : True when regret_bound is a max-min player's total-surplus gain.
    tiebreak_payoff, tiebreak_upper_bound : total surplus at the profile and SCIP's
        bound on it among level-keeping deviations (NaN unless max-min).
    message : why a verdict is not PROVED (empty otherwise).
    """

    name: str
    y: float
    payoff: float
    upper_bound: float
    best_y: float
    best_payoff: float
    regret_bound: float
    relative_regret: float
    gap: float
    verdict: Verdict
    seconds: float
    tiebreak: bool = False
    tiebreak_payoff: float = math.nan
    tiebreak_upper_bound: float = math.nan
    message: str = ""


@dataclass(frozen=True)
class GlobalCertificate:
    """Proven regret bounds of every player at ``profile``."""

    profile: np.ndarray
    players: tuple[PlayerBound, ...]
    rtol: float
    time_limit: float
    gap: float

    @property
    def regret_bounds(self) -> np.ndarray:
        """Proven regret bound of each player, in player order."""
        return np.array([p.regret_bound for p in self.players])

    @property
    def max_regret_bound(self) -> float:
        return max((p.regret_bound for p in self.players), default=0.0)

    @property
    def max_relative_regret(self) -> float:
        return max((p.relative_regret for p in self.players), default=0.0)

    @property
    def proved(self) -> bool:
        """Every player PROVED, with relative regret bound <= rtol."""
        return all(p.verdict is Verdict.PROVED and p.relative_regret <= self.rtol
                   for p in self.players)

    def to_frame(self) -> Any:
        """One row per player (a pandas DataFrame)."""
        import pandas as pd

        rows = [{f.name: getattr(p, f.name) for f in fields(p)} | {
            "verdict": p.verdict.value} for p in self.players]
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class _Stage:
    """One SCIP solve: its bound, incumbent, best y and whether it closed the gap."""

    bound: float
    incumbent: float
    best_y: float
    verdict: Verdict
    message: str


def scip_solver() -> Any:
    """Pyomo's ``scip_direct`` (pyomo.contrib.solver), or SolverUnavailableError."""
    import pyomo.environ  # noqa: F401  (registers the contrib solvers)
    from pyomo.contrib.solver.common.factory import SolverFactory

    try:
        opt = SolverFactory("scip_direct")
        ok = opt is not None and bool(opt.available())
    except Exception:  # pyscipopt import failures surface in many types
        ok = False
    if not ok:
        raise SolverUnavailableError(
            "SCIP is not available to Pyomo's scip_direct: "
            "pip install 'pyscipopt>=5.5'")
    return opt


@dataclass(frozen=True)
class _Settings:
    time_limit: float
    gap: float
    rtol: float
    feastol: float | None


@dataclass(frozen=True)
class _Reference:
    """Checked payoffs (welfare, total surplus) at y, 0 and y_max; y's may be -inf."""

    welfare: float
    tiebreak: float
    welfare_ends: tuple[float, float]
    tiebreak_ends: tuple[float, float]
    message: str


def certify_global(game: Game, profile: Any, *, time_limit: float = 5.0,
                   gap: float = 1e-6, rtol: float = GLOBAL_RTOL,
                   feastol: float | None = None) -> GlobalCertificate:
    """Prove a bound on every player's regret at ``profile`` with SCIP.

    Parameters
    ----------
    game : Game
    profile : array-like of float, shape (players,)
        Purchases y_j >= 0.
    time_limit : float
        SCIP time limit per player [s] (a max-min player's tie-break stage gets what
        is left, at least MIN_STAGE_SECONDS).
    gap : float
        Gap at which SCIP stops, relative to the payoff's range over the feasible
        interval (estimated from the native payoffs at y_j, 0 and y_max).
    rtol : float
        Relative-regret tolerance of ``GlobalCertificate.proved``.
    feastol : float, optional
        SCIP's ``numerics/feastol``; None keeps SCIP's default (1e-6). Smaller values
        tighten the bound and cost time.

    Returns
    -------
    GlobalCertificate

    Raises
    ------
    SolverUnavailableError
        pyscipopt is not installed.
    GameDefinitionError
        A malformed profile or setting.
    """
    settings = _check_settings(time_limit, gap, rtol, feastol)
    y = _check_profile(game, profile)
    opt = scip_solver()
    bounds = tuple(_bound_player(opt, game, j, y, settings)
                   for j in range(len(game.players)))
    return GlobalCertificate(y, bounds, float(rtol), float(time_limit), float(gap))


def _check_settings(time_limit: float, gap: float, rtol: float,
                    feastol: float | None) -> _Settings:
    checks = (("time_limit", time_limit, lambda v: v > 0),
              ("gap", gap, lambda v: 0 <= v < 1),
              ("rtol", rtol, lambda v: v > 0),
              ("feastol", 1e-6 if feastol is None else feastol,
               lambda v: 0 < v < 1e-2))
    for name, value, ok in checks:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or not ok(value):
            raise GameDefinitionError(
                f"global certificate: field '{name}' is out of range, got {value!r}")
    return _Settings(float(time_limit), float(gap), float(rtol),
                     None if feastol is None else float(feastol))


def _check_profile(game: Game, profile: Any) -> np.ndarray:
    try:
        y = np.asarray(profile, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise GameDefinitionError(
            f"global certificate: field 'profile' must be numbers, got {profile!r}"
        ) from None
    if y.size != len(game.players) or not np.all(np.isfinite(y)) or np.any(y < 0):
        raise GameDefinitionError(
            f"global certificate: field 'profile' must hold {len(game.players)} "
            f"finite purchases >= 0, got {y.tolist()!r}")
    return y


def _checked_payoff(game: Game, j: int, x: np.ndarray, y: float, price: float
                    ) -> tuple[float, float] | None:
    """(welfare, total surplus) of allocation x of purchase y, None if infeasible.

    Recomputed here from x (not read from the backend): a feasible x lower-bounds
    the inner optimum J_j(y), whatever produced it.
    """
    player = game.players[j]
    fairness = player.fairness
    if not np.all(np.isfinite(x)):
        return None
    util = player.evaluate("U", x)
    surplus = util - price * x
    size = max(1.0, y)
    unit = max(1.0, float(np.max(np.abs(util), initial=0.0)))
    if abs(float(x.sum()) - y) > FEAS_TOL * size or float(x.min()) < -FEAS_TOL * size \
            or float(surplus.min()) < -FEAS_TOL * unit:
        return None
    shifted = surplus + fairness.floor
    if fairness.is_maxmin:
        welfare = float(shifted.min())
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            welfare = float(np.sum(fairness.phi(shifted)))
    return (welfare, float(surplus.sum())) if math.isfinite(welfare) else None


def _reference(game: Game, j: int, others: float, y: float, y_max: float
               ) -> _Reference:
    """Checked payoffs of the native allocations at y (the profile), 0 and y_max."""
    from aggregame.solvers.inner.native import NativeInner

    ys = np.array([y, 0.0, y_max])
    batch = NativeInner(game, j).solve(ys, others)
    out = [_checked_payoff(game, j, batch.x[k], float(ys[k]), float(batch.price[k]))
           for k in range(3)]
    nothing = (-math.inf, -math.inf)
    (w, t), (w0, t0), (w1, t1) = (v if v is not None else nothing for v in out)
    message = "" if out[0] is not None else (
        f"no feasible allocation of y = {y:.6g} is known (y_max = {y_max:.6g}): "
        "payoff taken as -inf")
    return _Reference(w, t, (w0, w1), (t0, t1), message)


def _payoff_range(known: list[float], bound: float) -> float:
    """Range of the payoff over the feasible interval, as far as it is known."""
    finite = [v for v in known if math.isfinite(v)]
    if not finite:
        return math.nan
    top = max(finite + ([bound] if math.isfinite(bound) else []))
    spread = top - min(finite)
    tiny = 1e-12 * max(1.0, max(abs(v) for v in finite))
    return spread if spread > tiny else max(abs(top), tiny)


def _solve(opt: Any, model: Any, settings: _Settings, known: list[float],
           reference: float, start: float) -> _Stage:
    """SCIP on the model's active objective, in the player's time left.

    SCIP's feasibility tolerance relaxes every constraint by ~1e-6 in surplus
    units, which lifts the bound by as much: negligible for large payoffs, but
    enough to push a small-payoff equilibrium (surpluses ~0.01) above rtol. When
    that may be all that is left (relative regret bound in (rtol, REFINE_BELOW])
    and the caller left feastol to SCIP, re-solve with TIGHT_FEASTOL and keep that
    bound if it is proved. Both bounds are valid; the tighter one costs more time.
    """
    def left() -> float:
        return settings.time_limit - (time.perf_counter() - start)

    stage = _run_scip(opt, model, max(left(), MIN_STAGE_SECONDS), settings,
                      _payoff_range(known, math.nan), settings.feastol)
    if stage.verdict is not Verdict.PROVED or settings.feastol is not None or \
            not math.isfinite(reference) or left() < MIN_STAGE_SECONDS:
        return stage
    relative = (stage.bound - reference) / _payoff_range(known, stage.bound)
    if not settings.rtol < relative <= REFINE_BELOW:
        return stage
    tight = _run_scip(opt, model, left(), settings, _payoff_range(known, math.nan),
                      TIGHT_FEASTOL)
    return tight if tight.verdict is Verdict.PROVED else stage


def _run_scip(opt: Any, model: Any, time_limit: float, settings: _Settings,
              scale: float, feastol: float | None) -> _Stage:
    """Solve the model's active objective with SCIP; never raises on SCIP's account."""
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

    # SCIP must print nothing: scip_direct routes its C-level output through a pipe
    # drained by a Python thread, and pyscipopt's optimize() keeps the GIL, so a
    # log longer than the pipe buffer (64 KB: a long branch and bound) deadlocks.
    # Measured: fig4_proportional hung for 10 minutes at 3% CPU before this line.
    options: dict[str, Any] = {"display/verblevel": 0}
    if feastol is not None:
        options["numerics/feastol"] = feastol
    # The gap is meant relative to the payoff's range (module docstring). SCIP's own
    # relative gap divides by |objective|, which the floor eps and, for alpha = 1,
    # the log's units inflate or zero: stop on the absolute gap gap * range, and
    # fall back to SCIP's relative gap only where no range is known.
    known_scale = math.isfinite(scale) and scale > 0
    try:
        res = opt.solve(model, time_limit=time_limit,
                        rel_gap=0.0 if known_scale else settings.gap,
                        abs_gap=settings.gap * scale if known_scale else None,
                        load_solutions=False,
                        raise_exception_on_nonoptimal_result=False,
                        solver_options=options)
    except Exception as err:  # translation or SCIP errors of any type: FAILED
        return _Stage(math.nan, math.nan, math.nan, Verdict.FAILED,
                      f"SCIP failed: {type(err).__name__}: {err}")
    bound = math.nan if res.objective_bound is None else float(res.objective_bound)
    incumbent = (math.nan if res.incumbent_objective is None
                 else float(res.incumbent_objective))
    best_y = math.nan
    if res.solution_status is not SolutionStatus.noSolution:
        res.solution_loader.load_vars()
        best_y = float(model.y.value)
    term = res.termination_condition
    if not math.isfinite(bound):
        return _Stage(bound, incumbent, best_y, Verdict.FAILED,
                      f"SCIP gave no finite bound (termination {term.name})")
    if term is TerminationCondition.convergenceCriteriaSatisfied:
        return _Stage(bound, incumbent, best_y, Verdict.PROVED, "")
    return _Stage(bound, incumbent, best_y, Verdict.BOUNDED,
                  f"SCIP stopped with the gap open (termination {term.name})")


def _worst(*verdicts: Verdict) -> Verdict:
    return max(verdicts, key=lambda v: v.severity)


def _bound_player(opt: Any, game: Game, j: int, profile: np.ndarray,
                  settings: _Settings) -> PlayerBound:
    from aggregame.models.joint import build_joint_best_response

    start = time.perf_counter()
    name, y = game.players[j].name, float(profile[j])
    others = max(float(profile.sum()) - y, 0.0)
    try:
        if game.players[j].fairness.is_leximin and game.players[j].size > 1:
            raise GlobalCertificateError(
                f"player '{name}': SCIP bounds the smallest level only; a leximin "
                "player ranks whole sorted vectors (use the scan certificate)")
        model = build_joint_best_response(game, j, others)
    except GlobalCertificateError as err:
        nan = math.nan
        return PlayerBound(name, y, nan, nan, nan, nan, math.inf, math.inf, nan,
                           Verdict.FAILED, time.perf_counter() - start,
                           message=str(err))
    ref = _reference(game, j, others, y, float(model.y.ub))
    known = [ref.welfare, *ref.welfare_ends]
    stage = _solve(opt, model, settings, known, ref.welfare, start)
    span = _payoff_range(known, stage.bound)
    regret = max(stage.bound - ref.welfare, 0.0) if math.isfinite(stage.bound) \
        else math.inf
    first = dict(payoff=ref.welfare, upper_bound=stage.bound, best_y=stage.best_y,
                 best_payoff=stage.incumbent,
                 gap=(stage.bound - stage.incumbent) / span)
    if _pinned_level(game, j, ref.welfare, regret) and \
            stage.verdict is not Verdict.FAILED:
        return _tiebreak_stage(opt, model, name, y, ref, stage, first, settings, start)
    message = " ".join(m for m in (ref.message, stage.message) if m)
    return PlayerBound(name, y, regret_bound=regret, relative_regret=regret / span,
                       verdict=stage.verdict, seconds=time.perf_counter() - start,
                       message=message, **first)


def _pinned_level(game: Game, j: int, level: float, regret: float) -> bool:
    """True for a max-min player whose level sits at the floor e and cannot rise.

    Under the floor rule the level is flat (= e) once a member is priced out, and
    only then does the total-surplus tie-break decide (fairness.py). Elsewhere the
    level has a proper maximum and the level gain is the regret: a tie-break stage
    there would let y drift by what LEVEL_TOL allows and report that as regret.
    """
    fairness = game.players[j].fairness
    tol = LEVEL_TOL * max(1.0, abs(level))
    return fairness.is_maxmin and level <= fairness.floor + tol and regret <= tol


def _tiebreak_stage(opt: Any, model: Any, name: str, y: float, ref: _Reference,
                    stage: _Stage, first: dict[str, float], settings: _Settings,
                    start: float) -> PlayerBound:
    """Max-min whose level cannot gain: bound the total surplus among deviations
    that keep the level within LEVEL_TOL (the max-min tie-break)."""
    model.obj.deactivate()
    model.obj_tiebreak.activate()
    model.ineq_level_floor.activate()
    model.level_floor.set_value(ref.welfare - LEVEL_TOL * max(1.0, abs(ref.welfare)))
    known = [ref.tiebreak, *ref.tiebreak_ends]
    second = _solve(opt, model, settings, known, ref.tiebreak, start)
    span = _payoff_range(known, second.bound)
    regret = max(second.bound - ref.tiebreak, 0.0) if math.isfinite(second.bound) \
        else math.inf
    first = {**first, "best_y": second.best_y,
             "gap": max(first["gap"], (second.bound - second.incumbent) / span)}
    message = " ".join(m for m in (ref.message, stage.message, second.message) if m)
    return PlayerBound(name, y, regret_bound=regret, relative_regret=regret / span,
                       verdict=_worst(stage.verdict, second.verdict),
                       seconds=time.perf_counter() - start, tiebreak=True,
                       tiebreak_payoff=ref.tiebreak,
                       tiebreak_upper_bound=second.bound, message=message, **first)


def as_certificate(game: Game, profile: np.ndarray, rtol: float, **options
                   ) -> Certificate:
    """SCIP's bounds in the common form (solvers/certify/certificate.py): a bound
    at most the tolerance proves the regret (whether or not SCIP closed its gap); a
    larger one bounds it, or refutes the profile where SCIP's own best purchase gains
    more than the tolerance; a player SCIP cannot bound fails, with the reason."""
    rtol = max(rtol, GLOBAL_RTOL)
    cert = certify_global(game, profile, rtol=rtol, **options)
    players = []
    for p in cert.players:
        span = p.regret_bound / p.relative_regret if p.relative_regret > 0 else 0.0
        found = max(p.best_payoff - p.payoff, 0.0) if math.isfinite(
            p.best_payoff) and math.isfinite(p.payoff) else 0.0
        found_rel = found / span if span > 0 else 0.0
        if p.verdict is Verdict.FAILED or not math.isfinite(p.relative_regret):
            verdict, reason = Verdict.FAILED, p.message or "SCIP gave no bound"
        elif p.relative_regret <= rtol:
            verdict, reason = Verdict.PROVED, ""
        elif found_rel > rtol:
            verdict, reason = Verdict.REFUTED, "SCIP found a purchase that gains more"
        else:
            verdict = Verdict.BOUNDED
            reason = p.message or "SCIP's bound is above the tolerance"
        players.append(PlayerRegret(
            found, found_rel, p.best_y if math.isfinite(p.best_y) else p.y,
            p.payoff, p.relative_regret if math.isfinite(p.relative_regret)
            else math.inf, verdict, 0, reason))
    return Certificate(np.asarray(profile, dtype=float), tuple(players), rtol,
                       CertificateMethod.GLOBAL)
