"""Pyomo inner backend: the aggregator model of models/aggregator.py solved by Ipopt.

The model is built once per player. With cyipopt (the default) it is also written
once: purchase, price, priced-out members' x_i = 0 and the tie-break's level are
variables fixed by their bounds at each solve (solvers/inner/nlp_reuse.py), and under the
floor rule each solve starts from the last solution (WARM_START_OPTIONS); a row whose
warm solve fails the residual check is solved again from the cold start. Other
solvers take the model with its mutable Params changed in place. One purchase runs
through phase functions: ``_row_data`` (what the price decides), a closed form or one
or two solves (``_welfare_row``, ``_maxmin_row``), ``_finish`` (welfare and the total
derivative). Every solve is checked: a termination other than optimal raises
``InnerSolveError``, so a last iterate is never returned as an answer.

Multipliers. ``model.dual[eq_balance]`` is lambda_j = dJ_j/dy_j (maximize model,
``sum(x) == purchase``; docs/pyomo.md, section "Dual signs with cyipopt").
For an inequality ``body >= 0`` of the same
maximize model cyipopt reports d J / d(lower bound) = -(its nonnegative multiplier),
so sigma_i = -dual[ineq_surplus[i]] and mu_i = -dual[ineq_maxmin[i]]. The written
cyipopt model has s_i >= 0 as the bound x_i <= xbar_i(p) instead (the price is fixed
in a solve); sigma_i then comes from that bound's multiplier (``_Nlp.result``). The
tests check both through the total derivative against finite differences of J.

Other solvers (solvers/solver_choice.py). HiGHS takes only linear constraints: for it
s_i >= 0 becomes the bound x_i <= xbar_i (the same set for x >= 0), so only the
balance dual comes from the solver (same sign as cyipopt's, tested). SCIP and the
Ipopt executable give no duals we use: lambda then comes from the allocation, as in
the native backend (stationarity w_i phi'(s_i + e_i) (U_i' - p) = lambda for every
member strictly inside (0, xbar_i)). Max-min has no such formula: without duals its
derivatives are NaN and the best response falls back to its derivative-free search.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import differentiate

from aggregame.allocation import (
    RESIDUAL_TOL,
    allocation_error,
    counted_members,
    forced_rows,
    inner_setup,
    maxmin_residual,
    member_terms,
    optimality_residual,
    price_sensitivity,
    settled_residual,
    welfare_of,
)
from aggregame.errors import InnerSolveError, UnsupportedProblemError
from aggregame.fairness import PricedOutRule
from aggregame.models.aggregator import add_aggregator, build_aggregator_model
from aggregame.players import Game
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.nlp_reuse import (
    SOLVE_SUCCEEDED,
    NlpBounds,
    NlpSolution,
    ReusableNlp,
    fix_vars,
    free_rows,
)
from aggregame.solvers.solver_choice import (  # noqa: F401
    DEFAULT_IPOPT_OPTIONS,
    SolveOutcome,
    SolverName,
    SolverSpec,
    Termination,
    ipopt_termination,
)

LOG = logging.getLogger(__name__)

#: Ipopt's status "Solved_To_Acceptable_Level" (IpReturnCodes_inc.h).
SOLVED_TO_ACCEPTABLE_LEVEL = 1
#: Ipopt options of a warm start from the previous solve's primal and dual point
#: (cyipopt path). A small initial barrier keeps Ipopt near that point: measured on
#: Fig. 4 (pyomo backend), 1809 Ipopt iterations per equilibrium cold, 589 with
#: mu_init = 1e-6, 408 with 1e-8; profiles equal to 1e-14 relative. A warm start
#: that fails is followed by the cold start, so it can cost time, never an answer.
WARM_START_OPTIONS: dict[str, Any] = {
    "warm_start_init_point": "yes", "mu_init": 1e-8, "warm_start_bound_push": 1e-9,
    "warm_start_mult_bound_push": 1e-9}
#: Optimal solves kept per written model; each solve starts from the nearest.
WARM_POOL = 8
#: Relative distance in (purchase, price) beyond which the cold start is used:
#: measured on Fig. 4 (alpha = 1), a cold start takes 7-8 Ipopt iterations, a
#: warm one 4-6 within 2% and 10-36 beyond 10%.
WARM_RADIUS = 0.05

def ipopt_solver(options: dict[str, Any] | None = None) -> Any:
    """Pyomo's cyipopt solver with our options (DEFAULT_IPOPT_OPTIONS, then
    ``options``), or a clear error naming what is missing. Kept for callers that
    solve their own models; the backends take a ``SolverSpec``."""
    solver = SolverSpec(SolverName.CYIPOPT, options or {}).make_solver()
    solver.pyomo_solver.config.options.update(solver.options)
    return solver.pyomo_solver


def check_supported(spec: SolverSpec, player: Any) -> None:
    """Refuse (UnsupportedProblemError) a problem the solver cannot take: HiGHS
    solves quadratic programs only, i.e. alpha = 0 with quadratic members."""
    if spec.name is not SolverName.HIGHS:
        return
    families = {m.utility.family for m in player.members}
    if player.fairness.alpha != 0 or families != {"quadratic"}:
        raise UnsupportedProblemError(
            f"solver 'highs' takes only the alpha = 0 inner problem with quadratic "
            f"members (a QP); player '{player.name}' has alpha = {player.alpha:g} and "
            f"{sorted(families)} utilities: use solver 'cyipopt' or 'scip'")


@dataclass
class SolveCounter:
    """How many solver runs a backend made (for the benchmarks' time accounting).

    ``build_seconds`` is the time spent writing models for the solver (the NL file
    of the cyipopt path, once per player and objective); ``seconds`` the solves.
    """

    solves: int = 0
    seconds: float = 0.0
    iterations: int = 0  # solver iterations (Ipopt, HiGHS) or nodes (SCIP), summed
    by_phase: dict[str, int] = field(default_factory=dict)
    builds: int = 0
    build_seconds: float = 0.0


@dataclass(frozen=True)
class RowData:
    """What the price decides for one purchase, before any solve."""

    y: float
    price: float
    slope_p: float  # p'(Y), 0 at a fixed price
    priced_out: np.ndarray  # U_i'(0) <= p
    xbar: np.ndarray  # where each member's surplus returns to 0
    weight: np.ndarray
    floor: np.ndarray
    cap: float  # sum of xbar: the largest feasible purchase at this price
    curve_p: float = 0.0  # p''(Y) (finite difference), 0 at a fixed price


@dataclass(frozen=True)
class InnerRow:
    """The inner solution of one purchase (one row of an InnerBatch)."""

    price: float
    x: np.ndarray
    surplus: np.ndarray
    welfare: float
    lam: float
    deriv: float
    tie: float = np.nan
    curv: float = np.nan  # estimate of d2J/dy2 (InnerBatch.curvature)


@dataclass(frozen=True)
class PhaseStart:
    """Where one solve starts and what it holds fixed.

    ``level`` starts the max-min level t (None: not max-min); ``fixed_level`` fixes
    it (the tie-break phase, which maximizes total surplus instead).
    """

    x0: np.ndarray
    level: float | None = None
    fixed_level: float | None = None

    @property
    def tiebreak(self) -> bool:
        return self.fixed_level is not None


@dataclass(frozen=True)
class PhaseResult:
    """One solve's answer: the raw allocation (within the solver's bound
    relaxation), the max-min level, and the multipliers in the sign convention of
    the module docstring (NaN where the solver gives none)."""

    x: np.ndarray
    level: float
    lam: float
    sigma: np.ndarray  # multipliers of s_i >= 0, >= 0
    mu: np.ndarray  # multipliers of s_i + e_i >= t (max-min), >= 0


class PyomoInner:
    """Inner problem of ``game.players[index]`` as a Pyomo model.

    ``solver`` picks the solver (default cyipopt); ``options`` are Ipopt options for
    the default solver, kept for older callers. With cyipopt the model is written
    once (solvers/inner/nlp_reuse.py) and every purchase only changes bounds; the other
    solvers, and cyipopt with ``reuse_nlp=False`` (the benchmark's reference), take
    the Pyomo model with its mutable Params changed in place, written at each solve.
    """

    def __init__(self, game: Game, index: int, options: dict[str, Any] | None = None,
                 solver: SolverSpec | None = None, reuse_nlp: bool = True,
                 warm_start: bool = True) -> None:
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.spec = solver or SolverSpec(SolverName.CYIPOPT, options or {})
        check_supported(self.spec, self.player)
        if self.player.fairness.is_leximin:  # the epigraph models the minimum only
            from aggregame.leximin import refuse
            refuse(game, "the pyomo backend")
        self.solver = self.spec.make_solver()
        self.counter = SolveCounter()
        self._names = [m.name for m in self.player.members]
        self._u0 = self.player.marginal_at_zero
        self.warm_start = warm_start
        reuse = reuse_nlp and self.spec.name is SolverName.CYIPOPT
        backend = _NlpBackend if reuse else _ModelBackend
        self._backend = backend(self)
        self.model = self._backend.model

    # -- one purchase -----------------------------------------------------------
    def _row_data(self, y: float, others_total: float,
                  fixed_price: float | None) -> RowData:
        total = others_total + y
        curve_p = 0.0
        if fixed_price is None:
            price = float(self.game.price.value(total))
            slope_p = float(self.game.price.derivative(total))
            h = 1e-6 * max(1.0, abs(total))
            curve_p = float(self.game.price.derivative(total + h)
                            - self.game.price.derivative(max(total - h, 0.0))) / (
                                total + h - max(total - h, 0.0))
        else:
            price, slope_p = float(fixed_price), 0.0
        priced_out = self._u0 <= price
        xbar = self.player.zero_surplus_consumption(price)
        weight, floor = member_terms(self.player, priced_out)
        return RowData(y, price, slope_p, priced_out, xbar, weight, floor,
                       float(xbar.sum()), curve_p)

    def _finish(self, d: RowData, x: np.ndarray, lam: float,
                coef: np.ndarray | None, tie: float = np.nan) -> InnerRow:
        """The row of allocation ``x``: its welfare and total derivative
        lambda + p' dPhi/dp, with dPhi/dp = -sum coef_i x_i (aggregame.allocation)."""
        surplus = self._surplus(x, d.price)
        welfare = float(welfare_of(self.player, surplus[None], d.weight[None],
                                   d.floor[None], d.priced_out[None])[0])
        deriv = np.nan
        if coef is not None and np.isfinite(lam):
            deriv = lam + d.slope_p * float(price_sensitivity(x, coef))
        return InnerRow(d.price, x, surplus, welfare, lam, deriv, tie)

    def _flat(self, d: RowData) -> bool:
        """Max-min with a counted priced-out member: the level is flat (at its
        floor) for this and every larger y, and the tie-break decides (native.py)."""
        f = self.player.fairness
        return f.is_maxmin and bool(d.priced_out.any()) and \
            f.rule is not PricedOutRule.VIABLE

    def _solve_one(self, y: float, others_total: float,
                   fixed_price: float | None) -> InnerRow:
        d = self._row_data(y, others_total, fixed_price)
        if y > d.cap * (1 + 1e-12):  # infeasible: no allocation keeps s >= 0
            row = self._finish(d, d.xbar.copy(), np.nan, None)
            return dataclasses.replace(row, welfare=-np.inf)
        f = self.player.fairness
        edge = y <= 0 or y >= d.cap * (1 - 1e-14)
        strict_dead = (f.rule is PricedOutRule.STRICT and f.alpha >= 1
                       and not f.is_maxmin and bool(d.priced_out.any()))
        if edge or strict_dead:
            return self._closed_form_row(d, edge and not strict_dead)
        if self.player.size == 1 and not f.is_maxmin and self._backend.skips_known:
            # x = y is the only allocation: the row of an end, with lambda its
            # member's marginal welfare (no solver needed).
            return self._closed_form_row(d, True)
        if f.is_maxmin:
            return self._maxmin_row(d)
        return self._welfare_row(d)

    def _closed_form_row(self, d: RowData, edge: bool) -> InnerRow:
        """y = 0, y = cap (one allocation only) or J = -inf (strict rule): no solve.
        At an end lambda is the largest (y = 0) or smallest (y = cap) marginal
        welfare among members who can buy."""
        f = self.player.fairness
        if d.y <= 0:
            x = np.zeros(self.player.size)
        elif d.y >= d.cap * (1 - 1e-14):
            x = d.xbar.copy()
        else:
            x = d.y * d.xbar / d.cap
        lam, coef = np.nan, None
        if edge and not f.is_maxmin:
            s = self._surplus(x, d.price)
            g = d.weight * f.dphi(np.maximum(s + d.floor, 0.0)) * (
                self._marginal(x) - d.price)
            g = g[d.xbar > 0]
            lam = float(g.max() if d.y <= 0 else g.min()) if g.size else np.nan
        if np.isfinite(lam):
            with np.errstate(divide="ignore", invalid="ignore"):
                coef = np.where(x > 0, lam / (self._marginal(x) - d.price), 0.0)
        tie = np.nan
        if self._flat(d) and d.y <= 0:
            # Right derivative of the total surplus at 0: the best U_i'(0) - p.
            gain = (self._marginal(x) - d.price)[d.xbar > 0]
            tie = float(gain.max()) if gain.size else -1.0
        return self._finish(d, x, lam, coef, tie)

    def _start(self, d: RowData) -> PhaseStart:
        """x_i = y xbar_i / cap: sum x = y and every surplus positive; the max-min
        level 10% below the smallest s_i + e_i (strictly feasible)."""
        x0 = np.where(d.priced_out, 0.0, d.y * d.xbar / d.cap)
        s0 = self._surplus(x0, d.price)
        self._scale_objective(x0, s0, d.price, d.weight, d.floor, d.priced_out)
        if not self.player.fairness.is_maxmin:
            return PhaseStart(x0)
        level = float((s0 + d.floor).min())
        return PhaseStart(x0, level=level - 0.1 * abs(level))

    def _welfare_row(self, d: RowData) -> InnerRow:
        res = self._run(d, self._start(d), "welfare")
        x = np.clip(res.x, 0.0, d.xbar)  # Ipopt relaxes bounds by ~1e-8 relative
        if not self.solver.has_duals or self.spec.name is not SolverName.CYIPOPT:
            # Duals of s_i >= 0 are read for cyipopt only (their sign is tested).
            lam, coef = self._allocation_terms(x, d.price, d.xbar, d.weight, d.floor,
                                               res.lam)
            return self._finish(d, x, lam, coef)
        s = self._surplus(x, d.price)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = d.weight * self.player.fairness.dphi(np.maximum(s + d.floor, 0.0))
        coef = np.where(x > 0, coef + res.sigma, 0.0)
        row = self._finish(d, x, res.lam, coef)
        if not self._backend.skips_known:
            return row
        phi = self.player.fairness
        return dataclasses.replace(row, curv=self._curvature(
            d, x, res.lam, lambda v: d.weight * phi.dphi(v),
            lambda v: d.weight * phi.d2phi(v)))

    def _flat_level(self, d: RowData) -> float | None:
        """The max-min level where it is known without a solve, else None.

        With a counted member priced out (``_flat``) its s_i + e_i is e_i, so
        t <= e_i; every other counted member has s_i >= 0 on [0, xbar_i], hence
        s_i + e_i >= e_i. When the smallest floor of all counted members is a
        priced-out member's, the level is exactly that floor, for this y and every
        larger one (so dt/dy = 0)."""
        if not (self._backend.skips_known and self._flat(d)):
            return None
        counted = counted_members(self.player, d.priced_out)
        pinned = float(d.floor[counted & d.priced_out].min())
        return pinned if float(d.floor[counted].min()) >= pinned else None

    def _curvature(self, d: RowData, x: np.ndarray, lam: float, dphi: Any,
                   d2phi: Any) -> float:
        """d2J/dy2 of the payoff sum_i phi_i(s_i + e_i) (welfare, or the tie-break
        with phi_i(v) = v) by implicit differentiation of the allocation: interior
        members keep phi_i'(s_i + e_i) (U_i' - p) = lambda, members at xbar_i(p)
        follow it, members at 0 stay; then d/dy of lambda + p' dPhi/dp. NaN where
        it does not apply (no interior member, a flat direction). An estimate for
        the best response's next evaluation only: the active set is assumed not to
        change, and every answer is still an evaluated, checked row."""
        if not np.isfinite(lam):
            return np.nan
        dp, du = d.slope_p, self._marginal(x) - d.price
        v = np.maximum(self._surplus(x, d.price) + d.floor, 0.0)
        with np.errstate(all="ignore"):
            d1, d2 = dphi(v), d2phi(v)
            u2 = self.player.evaluate("d2U", x)
            cap = (d.xbar > 0) & (x >= d.xbar * (1 - 1e-9))
            inside = (x > 1e-9 * max(1.0, float(d.xbar.max()))) & ~cap
            h = d2 * du ** 2 + d1 * u2  # d g_i / d x_i, g_i = phi_i' (U_i' - p)
            q = -d2 * x * du - d1  # d g_i / d p
            r = self._marginal(d.xbar) - d.price  # < 0 at xbar_i
            xbar_p = np.where(cap, d.xbar / r, 0.0)  # d xbar_i / d p
            if not inside.any() or not np.all(h[inside] < 0):
                return np.nan
            inv = 1.0 / h[inside]
            lam_y = (1 + dp * (np.sum(q[inside] * inv) - np.sum(xbar_p[cap]))) / \
                np.sum(inv)
            dx = np.where(cap, xbar_p * dp, 0.0)
            dx[inside] = (lam_y - q[inside] * dp) * inv
            ds = du * dx - x * dp
            # dPhi/dp = -sum c_i x_i: c_i = phi_i' inside, lambda / (U_i' - p) at xbar.
            dr = self.player.evaluate("d2U", d.xbar) * xbar_p * dp - dp
            dphi_dp = -np.sum((d1 * x)[inside]) - np.sum(lam * x[cap] / r[cap])
            ddphi_dp = -np.sum((d2 * ds * x + d1 * dx)[inside]) - np.sum(
                (lam_y * x + lam * dx)[cap] / r[cap]
                - (lam * x * dr)[cap] / r[cap] ** 2)
            out = lam_y + d.curve_p * dphi_dp + dp * ddphi_dp
        return float(out) if np.isfinite(out) else np.nan

    def _maxmin_row(self, d: RowData) -> InnerRow:
        """Phase 1 maximizes the level t; phase 2 (docs/model.md, section "Max-min":
        the tie-break) keeps it, relaxed by 1e-9 relative so phase 2 keeps an
        interior, and maximizes total surplus. Phase 1 is skipped where the level
        is known (``_flat_level``)."""
        known = self._flat_level(d)
        if known is None:
            first = self._run(d, self._start(d), "welfare")
            level, x0 = first.level, first.x
            lam = first.lam
            deriv = lam + d.slope_p * float(
                price_sensitivity(np.clip(first.x, 0.0, d.xbar), first.mu))
        else:
            level, x0, lam, deriv = known, self._start(d).x0, 0.0, 0.0
        fixed = level - 1e-9 * max(1.0, abs(level))
        second = self._run(d, PhaseStart(x0, fixed_level=fixed), "tiebreak")
        x = np.clip(second.x, 0.0, d.xbar)
        tie, curv = np.nan, np.nan
        if self._flat(d):
            # Envelope theorem on phase 2: dT/dy = nu - p' sum (1 + sigma + mu) x.
            coef2 = np.where(x > 0, 1.0 + second.sigma + second.mu, 0.0)
            tie = second.lam + d.slope_p * float(price_sensitivity(x, coef2))
            if known is not None:  # phase 2 is then max sum s_i, nothing else
                curv = self._curvature(d, x, second.lam, np.ones_like,
                                       np.zeros_like)
        row = self._finish(d, x, lam, None, tie)
        return dataclasses.replace(row, deriv=deriv, curv=curv)

    def _run(self, d: RowData, start: PhaseStart, phase: str) -> PhaseResult:
        """One solve through the backend, counted and checked: a failure or a
        termination other than optimal raises InnerSolveError."""
        begin = time.perf_counter()
        label = self.spec.name.value
        where = f"player '{self.player.name}' (y = {d.y:g}, p = {d.price:g})"
        try:
            outcome, result = self._backend.run(d, start)
        except Exception as err:
            raise InnerSolveError(
                f"{label} failed on the inner model of {where}: {err}") from err
        finally:
            self.counter.solves += 1
            self.counter.seconds += time.perf_counter() - begin
            self.counter.by_phase[phase] = self.counter.by_phase.get(phase, 0) + 1
        self.counter.iterations += outcome.iterations
        if not outcome.termination.ok:
            raise InnerSolveError(
                f"{label} did not reach an optimal solution of the inner model of "
                f"{where}: termination '{outcome.termination.value}', message "
                f"'{outcome.message}'")
        return result

    def _allocation_terms(self, x: np.ndarray, price: float, xbar: np.ndarray,
                          weight: np.ndarray, floor: np.ndarray, lam: float
                          ) -> tuple[float, np.ndarray]:
        """lambda (when the solver gave none) and the coefficients
        w phi'(s + e) + sigma of each member, from the allocation (native.py's way)."""
        slope_u = self._marginal(x) - price
        s = self._surplus(x, price)
        with np.errstate(divide="ignore", invalid="ignore"):
            g = weight * self.player.fairness.dphi(np.maximum(s + floor, 0.0))
        at_cap = x >= xbar * (1 - 1e-7)
        inside = (x > 1e-9 * max(1.0, float(xbar.max()))) & ~at_cap
        if not np.isfinite(lam):
            # Interior members all have g (U' - p) = lambda; the median damps the
            # solver's last-digit noise. Without one, lambda is the bound's.
            if inside.any():
                lam = float(np.median((g * slope_u)[inside]))
            elif at_cap.any() and (xbar > 0).any():
                lam = float((g * slope_u)[at_cap & (xbar > 0)].min())
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = np.where(at_cap, lam / slope_u, g)
        return lam, np.where(x > 0, coef, 0.0)

    def _scale_objective(self, x0: np.ndarray, s0: np.ndarray, price: float,
                         weight: np.ndarray, floor: np.ndarray,
                         priced_out: np.ndarray) -> None:
        """Set Ipopt's obj_scaling_factor so the objective's gradient is O(1) at the
        start. Ipopt's tolerances are absolute on the scaled problem: without this, a
        game whose utilities are O(1e-3) stops 1e3 times less precisely (measured:
        residuals of 2e-4 at alpha = 0) and one at O(1e3) fails to converge."""
        fairness = self.player.fairness
        if fairness.is_maxmin:
            # The epigraph objective t has gradient 1; its constraints carry the
            # surpluses' scale, which Ipopt's gradient-based scaling handles.
            scale = 1.0
        else:
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                grad = weight * fairness.dphi(np.maximum(s0 + floor, 0.0)) * (
                    self._marginal(x0) - price)
            grad = np.abs(grad[~priced_out & np.isfinite(grad)])
            scale = float(grad.max()) if grad.size and grad.max() > 0 else 1.0
        if self.spec.name is not SolverName.CYIPOPT:
            return  # an Ipopt option; other solvers scale for themselves
        self.solver.config.options["obj_scaling_factor"] = min(max(1.0 / scale,
                                                                   1e-8), 1e8)

    def _surplus(self, x: np.ndarray, price: float) -> np.ndarray:
        return self.player.evaluate("U", x) - price * x

    def _marginal(self, x: np.ndarray) -> np.ndarray:
        return self.player.evaluate("dU", x)

    def solve(self, y: np.ndarray, others_total: float,
              fixed_price: float | None = None) -> InnerBatch:
        """Inner solutions for purchases ``y`` (see InnerSolver.solve).

        Each row's optimality residual is computed from Ipopt's allocation and
        multiplier (aggregame.allocation); a row above RESIDUAL_TOL raises
        InnerSolveError naming the player and the purchase.
        """
        y = np.atleast_1d(np.asarray(y, dtype=float))
        rows = [self._solve_one(float(v), others_total, fixed_price) for v in y]
        batch = self._batch(y, rows, others_total, fixed_price)
        bad = np.flatnonzero(~(batch.residual <= RESIDUAL_TOL))
        if bad.size and getattr(self._backend, "warm", False):
            # A warm start can end less precisely than a cold one: solve those rows
            # again from the cold start before calling them unproved.
            self._backend.warm = False
            try:
                for k in bad:
                    rows[k] = self._solve_one(float(y[k]), others_total, fixed_price)
            finally:
                self._backend.warm = True
            batch = self._batch(y, rows, others_total, fixed_price)
            bad = np.flatnonzero(~(batch.residual <= RESIDUAL_TOL))
        if bad.size:
            k = int(bad[0])
            raise InnerSolveError(
                f"Ipopt's solution of the inner problem of player '{self.player.name}' "
                f"at purchase y = {y[k]:.17g} has optimality residual "
                f"{batch.residual[k]:.3g} (tolerance {RESIDUAL_TOL:g})")
        return batch

    def _batch(self, y: np.ndarray, rows: list[InnerRow], others_total: float,
               fixed_price: float | None) -> InnerBatch:
        stack = lambda key: np.array([getattr(r, key) for r in rows])  # noqa: E731
        batch = InnerBatch(y, stack("price"), stack("x"), stack("surplus"),
                           stack("welfare"), stack("surplus").sum(axis=1), stack("lam"),
                           stack("deriv"), stack("tie"), curvature=stack("curv"))
        batch.residual = self._residual(batch, others_total, fixed_price)
        return batch

    def _residual(self, batch: InnerBatch, others_total: float,
                  fixed_price: float | None) -> np.ndarray:
        setup = inner_setup(self.game, self.index, batch.y, others_total, fixed_price)
        if self.player.fairness.is_maxmin:
            res = maxmin_residual(self.player, batch.y, setup.price, batch.x,
                                  setup.xbar, setup.floor, setup.priced_out)
        else:
            res = optimality_residual(self.player, batch.y, setup.price, batch.x,
                                      batch.multiplier, setup.xbar, setup.weight,
                                      setup.floor)
        return settled_residual(res, allocation_error(batch.x, batch.y, setup.xbar),
                                batch.welfare, batch.y, setup.cap,
                                forced_rows(self.player, batch.y, setup.cap,
                                            setup.priced_out))


# -- the two ways a solve reaches its solver ------------------------------------
class _NlpBackend:
    """cyipopt on a model written once per (objective, member terms): the purchase,
    the price, priced-out members (x_i = 0) and the tie-break's level are variables
    fixed by their bounds at each solve (solvers/inner/nlp_reuse.py).

    Member weights and floors are constants of the NL file. They change only with
    the priced-out status under the viable and strict rules (a model per status,
    at most members + 1 of them); under the floor rule, and for max-min whose
    objective holds no weights, one model serves every purchase.
    """

    #: Rows whose answer is known without a solve (one-member players, a max-min
    #: level pinned by a priced-out member) skip the solver on this path only: the
    #: other path is the benchmark's reference for the backend before that change.
    skips_known = True

    def __init__(self, inner: PyomoInner) -> None:
        self.inner = inner
        self.player = inner.player
        # Warm starts only under the floor rule: with a zero floor (viable, strict)
        # log(s) near s = 0 is ill-conditioned and a warm start stopped 2e-6 away
        # from the cold start's answer (measured, tests/test_inner.py).
        self.warm = inner.warm_start and \
            self.player.fairness.rule is PricedOutRule.FLOOR
        m = pyo.ConcreteModel(name=f"aggregator[{self.player.name}]")
        m.purchase = pyo.Var(initialize=0.0, doc="y_j, fixed by its bounds [unit]")
        m.price = pyo.Var(initialize=0.0, doc="p, fixed by its bounds [$/unit]")
        add_aggregator(m, self.player, purchase=m.purchase, price=m.price,
                       priced_out_managed=True, surplus_var=False)
        # s_i >= 0 is x_i <= xbar_i(p) (the surplus is concave and zero at 0), and
        # the price is fixed in a solve: a variable bound set per solve replaces the
        # 100 nonlinear rows, whose gradient at x_i = 0 is parallel to the bound
        # x_i >= 0's (a degenerate point for Ipopt). Measured on Fig. 4: fewer and
        # cheaper iterations (benchmarks/results/pyomo.md).
        m.ineq_surplus.deactivate()
        self.model = m
        self._nlps: dict[tuple, _Nlp] = {}

    def _key(self, d: RowData, tiebreak: bool) -> tuple:
        if self.player.fairness.is_maxmin:
            # Only the floors of counted members enter (through s_i + e_i >= t).
            counted = counted_members(self.player, d.priced_out)
            return (tiebreak, np.where(counted, d.floor, 0.0).tobytes())
        return (tiebreak, d.weight.tobytes(), d.floor.tobytes())

    def _nlp(self, d: RowData, tiebreak: bool) -> "_Nlp":
        key = self._key(d, tiebreak)
        nlp = self._nlps.get(key)
        if nlp is None:
            begin = time.perf_counter()
            nlp = _Nlp(self.model, self.player, d, tiebreak)
            self._nlps[key] = nlp
            self.inner.counter.builds += 1
            self.inner.counter.build_seconds += time.perf_counter() - begin
        return nlp

    def run(self, d: RowData, start: PhaseStart) -> tuple[SolveOutcome, PhaseResult]:
        nlp = self._nlp(d, start.tiebreak)
        x0, bounds = nlp.point_and_bounds(d, start)
        options = dict(self.inner.solver.config.options.items())
        sol, iterations = None, 0
        near = nlp.nearest(d) if self.warm else None
        if near is not None:
            warm_x0 = nlp.warm_point(near, x0, bounds, d)
            sol = nlp.reusable.solve(warm_x0, bounds, {**options, **WARM_START_OPTIONS},
                                     near)
            iterations = sol.iterations
            if sol.status != SOLVE_SUCCEEDED:
                LOG.debug("warm start failed (%s); solving from the cold start",
                          sol.message)
                sol = None
        if sol is None:
            sol = nlp.reusable.solve(x0, bounds, options)
        if sol.status == SOLVE_SUCCEEDED:
            nlp.keep(d, sol)  # an acceptable point is no warm start for the next
        sol = dataclasses.replace(sol, iterations=sol.iterations + iterations)
        termination = ipopt_termination(sol.status)
        if sol.status == SOLVED_TO_ACCEPTABLE_LEVEL:
            # Ipopt's own tolerances missed, its acceptable ones met: the row's
            # optimality residual (solve()) decides whether it is an answer.
            termination = Termination.LOCALLY_OPTIMAL
        outcome = SolveOutcome(termination, sol.iterations, 0, sol.message)
        return outcome, nlp.result(sol, d)


class _Nlp:
    """One written model and where its variables and rows sit in the NLP."""

    def __init__(self, m: pyo.ConcreteModel, player: Any, d: RowData,
                 tiebreak: bool) -> None:
        names = [mem.name for mem in player.members]
        self.maxmin = player.fairness.is_maxmin
        self.viable = player.fairness.rule is PricedOutRule.VIABLE
        for k, name in enumerate(names):
            m.member_weight[name].set_value(float(d.weight[k]))
            m.surplus_floor[name].set_value(float(d.floor[k]))
            m.x[name].set_value(float(d.xbar[k]) * 0.5)  # any value: not a fix
        if self.maxmin and tiebreak:  # PyomoNLP takes the one active objective
            m.obj.deactivate()
            m.obj_tiebreak.activate()
        try:
            self.reusable = ReusableNlp(m)
        finally:
            if self.maxmin:
                m.obj.activate()
                m.obj_tiebreak.deactivate()
        r = self.reusable
        self.ix = r.var_index(m.x[n] for n in names)
        self.iy, self.ip = r.var_index([m.purchase, m.price])
        self.it = int(r.var_index([m.min_surplus])[0]) if self.maxmin else -1
        self.rb = int(r.row_index([m.eq_balance])[0])
        # Pyomo writes sum(x) == y as sum(x) - y, but x == y (one member) as y - x:
        # lambda is the multiplier of the form whose x-coefficients are +1.
        first = m.x[names[0]]
        self.sb = 1.0 if pyo.value(differentiate(m.eq_balance.body, wrt=first)) > 0 \
            else -1.0
        self.player = player
        if self.maxmin:
            self.rm = r.row_index(m.ineq_maxmin[n] for n in names)
            self.sm = _signs(m.ineq_maxmin[n] for n in names)
        self.defaults = r.default_bounds()
        # The last optimal solves, by (purchase, price): warm starts.
        self.recent: list[tuple[float, float, NlpSolution]] = []

    def keep(self, d: RowData, sol: NlpSolution) -> None:
        self.recent = [*self.recent[1 - WARM_POOL:], (d.y, d.price, sol)]

    def nearest(self, d: RowData) -> NlpSolution | None:
        """The kept solution whose purchase and price are closest (relative) to
        this solve's: a best response's refinement jumps between both ends of its
        bracket, and starting from the last solve then crosses the bracket."""
        def gap(a: float, b: float) -> float:
            return abs(a - b) / max(abs(a), abs(b), 1e-300)

        dist, best = min(((gap(y, d.y) + gap(p, d.price), sol)
                          for y, p, sol in self.recent), default=(np.inf, None),
                         key=lambda r: r[0])
        return best if dist <= WARM_RADIUS else None

    def warm_point(self, near: NlpSolution, x0: np.ndarray, bounds: NlpBounds,
                   d: RowData) -> np.ndarray:
        """A kept solution as a start: x_i kept strictly inside [0, xbar_i) at this
        price (beyond xbar_i the surplus is negative, and log(s + e) may be NaN),
        every other free variable (the max-min level) as it was."""
        point = x0.copy()
        free = bounds.lb < bounds.ub
        point[free] = near.primals[free]
        point[self.ix] = np.clip(point[self.ix], 0.0, d.xbar * (1 - 1e-6))
        point[self.ix[d.priced_out]] = 0.0
        return point

    def point_and_bounds(self, d: RowData, start: PhaseStart
                         ) -> tuple[np.ndarray, NlpBounds]:
        x0 = np.zeros(self.reusable.n)
        x0[self.ix] = start.x0
        x0[[self.iy, self.ip]] = d.y, d.price
        b = self.defaults
        bounds = NlpBounds(b.lb.copy(), b.ub.copy(), b.cl.copy(), b.cu.copy())
        fix_vars(bounds, [self.iy, self.ip], [d.y, d.price])
        # s_i >= 0 as x_i <= xbar_i; a priced-out member (xbar_i = 0) is fixed at 0.
        bounds.ub[self.ix] = d.xbar
        out = np.flatnonzero(d.priced_out)
        fix_vars(bounds, self.ix[out], 0.0)
        if self.maxmin:
            if self.viable:  # it leaves the minimum; otherwise it pins t <= e_i
                free_rows(bounds, self.rm[out])
            if start.tiebreak:
                fix_vars(bounds, [self.it], start.fixed_level)
                x0[self.it] = start.fixed_level
                # s_i >= 0 on [0, xbar_i]: a row with e_i >= t holds whatever x is.
                free_rows(bounds, self.rm[d.floor >= start.fixed_level])
            else:
                x0[self.it] = start.level
        return x0, bounds

    def result(self, sol: NlpSolution, d: RowData) -> PhaseResult:
        level = float(sol.primals[self.it]) if self.maxmin else np.nan
        # Stationarity (Ipopt minimizes -J): dJ/dx_i = lambda + zu_i - zl_i, and with
        # the row s_i >= 0 it is lambda = (dJ/dx_i + sigma_i (U_i' - p)) at
        # x_i = xbar_i: sigma_i = zu_i / (p - U_i'(xbar_i)), a positive divisor (the
        # surplus falls through zero there). Priced-out members (xbar_i = 0) get 0.
        fall = d.price - self.player.evaluate("dU", d.xbar)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = np.where(d.xbar > 0, sol.zu[self.ix] / fall, 0.0)
        mu = self.sm * sol.mult_g[self.rm] if self.maxmin else np.zeros(len(self.ix))
        return PhaseResult(sol.primals[self.ix], level,
                           self.sb * float(sol.mult_g[self.rb]), sigma, mu)


def _signs(constraints: Any) -> np.ndarray:
    """+1 or -1 per inequality so that sign * (Ipopt's multiplier) >= 0: cyipopt
    reports dJ/d(bound), negative for ``body >= lower`` and positive for
    ``body <= upper`` (Pyomo keeps whichever form the expression was written in)."""
    return np.array([-1.0 if c.has_lb() and not c.has_ub() else 1.0
                     for c in constraints])


class _ModelBackend:
    """Any solver of solver_choice on the standalone model, whose mutable Params
    (purchase, price, weights, floors) are changed in place; priced-out members are
    fixed at x = 0 and their constraints deactivated."""

    skips_known = False  # see _NlpBackend

    def __init__(self, inner: PyomoInner) -> None:
        self.inner = inner
        self.player = inner.player
        self.model = build_aggregator_model(self.player)
        self.names = inner._names
        # HiGHS: s_i >= 0 as the bound x_i <= xbar_i, set at each solve's price.
        self.surplus_as_bound = inner.spec.name is SolverName.HIGHS
        if self.surplus_as_bound:
            self.model.ineq_surplus.deactivate()
        self._status: np.ndarray | None = None  # priced-out members of the last solve

    def run(self, d: RowData, start: PhaseStart) -> tuple[SolveOutcome, PhaseResult]:
        m = self.model
        self._set_data(d)
        for k, name in enumerate(self.names):
            if self.surplus_as_bound:
                m.x[name].setub(float(d.xbar[k]))
            if not d.priced_out[k]:
                m.x[name].set_value(float(start.x0[k]))
        if start.tiebreak:
            m.min_surplus.fix(start.fixed_level)
            m.obj.deactivate()
            m.obj_tiebreak.activate()
        elif start.level is not None:
            m.min_surplus.unfix()
            m.min_surplus.set_value(start.level)
        try:
            outcome = self._solve()
        finally:
            if start.tiebreak:
                m.obj_tiebreak.deactivate()
                m.obj.activate()
                m.min_surplus.unfix()
        return outcome, self._result()

    def _solve(self) -> SolveOutcome:
        m = self.model
        saved = [(v, v.value) for v in m.component_data_objects(pyo.Var)]
        # Ipopt's bound relaxation returns x = -1e-11 where x >= 0 binds; Pyomo warns
        # on loading it. The rows are projected back, so the warning is noise here.
        core_log = logging.getLogger("pyomo.core")
        level = core_log.level
        core_log.setLevel(logging.ERROR)
        try:
            outcome = self.inner.solver.solve(m)
        except Exception:
            _restore(saved)
            raise
        finally:
            core_log.setLevel(level)
        if not outcome.termination.ok:
            _restore(saved)  # a last iterate is never left in the model
        return outcome

    def _result(self) -> PhaseResult:
        m = self.model
        x = np.array([m.x[n].value for n in self.names], dtype=float)
        level = float(m.min_surplus.value) if self.player.fairness.is_maxmin \
            else np.nan
        sigma = np.array([self._multiplier(m.ineq_surplus[n]) for n in self.names])
        mu = np.array([self._multiplier(m.ineq_maxmin[n]) for n in self.names]) \
            if self.player.fairness.is_maxmin else np.zeros(len(self.names))
        return PhaseResult(x, level, self._dual(m.eq_balance), sigma, mu)

    def _dual(self, con: Any) -> float:
        """The solver's multiplier of ``con`` (cyipopt sign), NaN if it gives none."""
        if not self.inner.solver.has_duals:
            return np.nan
        return self.inner.solver.dual(self.model, con)

    def _multiplier(self, con: Any) -> float:
        """The nonnegative multiplier of an active inequality (see ``_signs``)."""
        if not con.active:
            return 0.0
        dual = self._dual(con)
        return -dual if con.has_lb() and not con.has_ub() else dual

    def _set_data(self, d: RowData) -> None:
        m = self.model
        m.purchase.set_value(d.y)
        m.price.set_value(d.price)
        if self._status is not None and np.array_equal(d.priced_out, self._status):
            return  # same members priced out as last solve: nothing else changes
        self._status = d.priced_out.copy()
        fairness = self.player.fairness
        for k, name in enumerate(self.names):
            m.member_weight[name].set_value(float(d.weight[k]))
            m.surplus_floor[name].set_value(float(d.floor[k]))
            if d.priced_out[k]:
                # Only x = 0 is feasible; fixing it keeps the solver off an empty
                # interior (and the constraint becomes trivial, so drop it).
                m.x[name].fix(0.0)
                m.ineq_surplus[name].deactivate()
                if fairness.is_maxmin:
                    # Under viable it leaves the minimum; otherwise it pins t <= e_i.
                    m.ineq_maxmin[name].activate()
                    if fairness.rule is PricedOutRule.VIABLE:
                        m.ineq_maxmin[name].deactivate()
            else:
                m.x[name].unfix()
                if not self.surplus_as_bound:
                    m.ineq_surplus[name].activate()
                if fairness.is_maxmin:
                    m.ineq_maxmin[name].activate()


def _restore(saved: list[tuple[Any, Any]]) -> None:
    for v, val in saved:
        v.set_value(val, skip_validation=True)
