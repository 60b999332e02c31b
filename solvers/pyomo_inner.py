"""Pyomo inner backend: the aggregator model of models/aggregator.py solved by Ipopt.

The model is built once per player; each solve only changes mutable Params (purchase,
price, member weights and floors) and fixes the priced-out members at x = 0. Every
solve is checked: a termination other than optimal raises ``InnerSolveError`` and
the model's variables are put back, so a last iterate is never returned as an answer.

Multipliers. ``model.dual[eq_balance]`` is lambda_j = dJ_j/dy_j (maximize model,
``sum(x) == purchase``; docs/pyomo.md, section "Dual signs with cyipopt").
For an inequality ``body >= 0`` of the same
maximize model cyipopt reports d J / d(lower bound) = -(its nonnegative multiplier),
so sigma_i = -dual[ineq_surplus[i]] and mu_i = -dual[ineq_maxmin[i]]. The tests check
both through the total derivative against finite differences of J.

Other solvers (solvers/solver_choice.py). HiGHS takes only linear constraints: for it
s_i >= 0 becomes the bound x_i <= xbar_i (the same set for x >= 0), so only the
balance dual comes from the solver (same sign as cyipopt's, tested). SCIP and the
Ipopt executable give no duals we use: lambda then comes from the allocation, as in
the native backend (stationarity w_i phi'(s_i + e_i) (U_i' - p) = lambda for every
member strictly inside (0, xbar_i)). Max-min has no such formula: without duals its
derivatives are NaN and the best response falls back to its derivative-free search.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import InnerSolveError, UnsupportedProblemError
from aggregame.fairness import PricedOutRule
from aggregame.models.aggregator import build_aggregator_model
from aggregame.players import Game
from aggregame.allocation import (RESIDUAL_TOL, inner_setup, maxmin_residual, member_terms,
                                  optimality_residual, price_sensitivity, welfare_of)
from aggregame.solvers.inner import InnerBatch
from aggregame.solvers.solver_choice import (DEFAULT_IPOPT_OPTIONS,  # noqa: F401
                                             SolverName,
                                             SolverSpec)

LOG = logging.getLogger(__name__)

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
    """How many Ipopt solves a backend made (for the benchmarks' time accounting)."""

    solves: int = 0
    seconds: float = 0.0
    iterations: int = 0  # solver iterations (Ipopt, HiGHS) or nodes (SCIP), summed
    by_phase: dict[str, int] = field(default_factory=dict)


class PyomoInner:
    """Inner problem of ``game.players[index]`` as a Pyomo model.

    ``solver`` picks the solver (default cyipopt); ``options`` are Ipopt options for
    the default solver, kept for older callers.
    """

    def __init__(self, game: Game, index: int, options: dict[str, Any] | None = None,
                 solver: SolverSpec | None = None) -> None:
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.spec = solver or SolverSpec(SolverName.CYIPOPT, options or {})
        check_supported(self.spec, self.player)
        if self.player.fairness.is_leximin:  # the epigraph models the minimum only
            from aggregame.solvers.leximin import refuse
            refuse(game, "the pyomo backend")
        self.solver = self.spec.make_solver()
        self.model = build_aggregator_model(self.player)
        # HiGHS: s_i >= 0 as the bound x_i <= xbar_i, set at each solve's price.
        self._surplus_as_bound = self.spec.name is SolverName.HIGHS
        if self._surplus_as_bound:
            self.model.ineq_surplus.deactivate()
        self.counter = SolveCounter()
        self._names = [m.name for m in self.player.members]
        self._status: np.ndarray | None = None  # priced-out members of the last solve
        self._u0 = self.player.marginal_at_zero

    # -- model bookkeeping -----------------------------------------------------
    def _set_data(self, y: float, price: float, priced_out: np.ndarray) -> None:
        m = self.model
        m.purchase.set_value(y)
        m.price.set_value(price)
        if self._status is not None and np.array_equal(priced_out, self._status):
            return  # same members priced out as last solve: nothing else changes
        self._status = priced_out.copy()
        weight, floor = member_terms(self.player, priced_out)
        for k, name in enumerate(self._names):
            m.member_weight[name].set_value(float(weight[k]))
            m.surplus_floor[name].set_value(float(floor[k]))
            if priced_out[k]:
                # Only x = 0 is feasible; fixing it keeps the solver off an empty
                # interior (and the constraint becomes trivial, so drop it).
                m.x[name].fix(0.0)
                m.ineq_surplus[name].deactivate()
                if self.player.fairness.is_maxmin:
                    # Under viable it leaves the minimum; otherwise it pins t <= e_i.
                    if self.player.fairness.rule is PricedOutRule.VIABLE:
                        m.ineq_maxmin[name].deactivate()
                    else:
                        m.ineq_maxmin[name].activate()
            else:
                m.x[name].unfix()
                if not self._surplus_as_bound:
                    m.ineq_surplus[name].activate()
                if self.player.fairness.is_maxmin:
                    m.ineq_maxmin[name].activate()

    def _run(self, phase: str) -> None:
        import time

        m = self.model
        saved = [(v, v.value) for v in m.component_data_objects(pyo.Var)]
        start = time.perf_counter()
        # Ipopt's bound relaxation returns x = -1e-11 where x >= 0 binds; Pyomo warns
        # on loading it. _read_x projects it back, so the warning is noise here.
        core_log = logging.getLogger("pyomo.core")
        level = core_log.level
        core_log.setLevel(logging.ERROR)
        label = self.spec.name.value
        try:
            outcome = self.solver.solve(m)
        except Exception as err:
            for v, val in saved:
                v.set_value(val, skip_validation=True)
            raise InnerSolveError(
                f"{label} failed on the inner model of player '{self.player.name}' "
                f"(y = {pyo.value(m.purchase):g}, p = {pyo.value(m.price):g}): {err}"
            ) from err
        finally:
            core_log.setLevel(level)
            self.counter.solves += 1
            self.counter.seconds += time.perf_counter() - start
            self.counter.by_phase[phase] = self.counter.by_phase.get(phase, 0) + 1
        self.counter.iterations += outcome.iterations
        if not outcome.termination.ok:
            for v, val in saved:
                v.set_value(val, skip_validation=True)
            raise InnerSolveError(
                f"{label} did not reach an optimal solution of the inner model of "
                f"player '{self.player.name}' (y = {pyo.value(m.purchase):g}, "
                f"p = {pyo.value(m.price):g}): termination "
                f"'{outcome.termination.value}', message '{outcome.message}'"
            )

    def _dual(self, con: Any) -> float:
        """The solver's multiplier of ``con`` (cyipopt sign), NaN if it gives none."""
        if not self.solver.has_duals:
            return np.nan
        return self.solver.dual(self.model, con)

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

    def _inequality_multiplier(self, con: Any) -> float:
        """The nonnegative multiplier of an active inequality of the maximize model.

        cyipopt reports dJ/d(bound): negative for ``body >= lower``, positive for
        ``body <= upper``; Pyomo keeps whichever form the expression was written in.
        """
        if not con.active:
            return 0.0
        dual = self._dual(con)
        return -dual if con.has_lb() and not con.has_ub() else dual

    # -- one purchase -----------------------------------------------------------
    def _solve_one(self, y: float, others_total: float,
                   fixed_price: float | None) -> dict[str, Any]:
        player, fairness = self.player, self.player.fairness
        total = others_total + y
        price = float(self.game.price.value(total)) if fixed_price is None else \
            float(fixed_price)
        slope_p = float(self.game.price.derivative(total)) if fixed_price is None else 0.0
        priced_out = self._u0 <= price
        xbar = player.zero_surplus_consumption(price)
        weight, floor = member_terms(player, priced_out)
        cap = float(xbar.sum())
        out: dict[str, Any] = {"price": price}

        def finish(x: np.ndarray, lam: float, coef: np.ndarray | None) -> dict:
            surplus = self._surplus(x, price)
            welfare = float(welfare_of(player, surplus[None], weight[None], floor[None],
                                       priced_out[None])[0])
            deriv = np.nan
            if coef is not None and np.isfinite(lam):
                deriv = lam + slope_p * float(price_sensitivity(x, coef))
            out.update(x=x, surplus=surplus, welfare=welfare, lam=lam, deriv=deriv)
            return out

        if y > cap * (1 + 1e-12):
            res = finish(xbar.copy(), np.nan, None)
            res["welfare"] = -np.inf
            return res
        edge = y <= 0 or y >= cap * (1 - 1e-14)
        # Max-min with a counted priced-out member: the level is flat (at its floor)
        # for this and every larger y, and the tie-break decides (see native.py).
        flat = fairness.is_maxmin and bool(priced_out.any()) and \
            fairness.rule is not PricedOutRule.VIABLE
        strict_dead = (fairness.rule is PricedOutRule.STRICT and fairness.alpha >= 1
                       and not fairness.is_maxmin and priced_out.any())
        if edge or strict_dead:
            x = np.zeros(player.size) if y <= 0 else (
                xbar.copy() if y >= cap * (1 - 1e-14) else y * xbar / cap)
            lam = np.nan
            if edge and not fairness.is_maxmin and not strict_dead:
                s = self._surplus(x, price)
                g = weight * fairness.dphi(np.maximum(s + floor, 0.0)) * (
                    self._marginal(x) - price)
                g = g[xbar > 0]
                lam = float(g.max() if y <= 0 else g.min()) if g.size else np.nan
            coef = None
            if np.isfinite(lam):
                with np.errstate(divide="ignore", invalid="ignore"):
                    coef = np.where(x > 0, lam / (self._marginal(x) - price), 0.0)
            res = finish(x, lam, coef)
            if flat and y <= 0:
                # Right derivative of the total surplus at 0: the best U_i'(0) - p.
                gain = (self._marginal(x) - price)[xbar > 0]
                res["tie"] = float(gain.max()) if gain.size else -1.0
            return res

        self._set_data(y, price, priced_out)
        m = self.model
        if self._surplus_as_bound:
            for k, name in enumerate(self._names):
                m.x[name].setub(float(xbar[k]))
        for k, name in enumerate(self._names):
            if not priced_out[k]:
                m.x[name].set_value(y * xbar[k] / cap)
        x0 = np.array([m.x[n].value for n in self._names])
        s0 = self._surplus(x0, price)
        if fairness.is_maxmin:
            level = float((s0 + floor).min())
            m.min_surplus.unfix()
            m.min_surplus.set_value(level - 0.1 * abs(level))
        self._scale_objective(x0, s0, price, weight, floor, priced_out)
        self._run("welfare")
        x = self._read_x(xbar)
        lam = self._dual(m.eq_balance)
        if fairness.is_maxmin:
            mu = np.array([self._inequality_multiplier(m.ineq_maxmin[n])
                           for n in self._names])
            coef = mu
            level = float(m.min_surplus.value)
            deriv_x = x.copy()
            # Phase 2 (docs/model.md, section "Max-min": the tie-break): keep the
            # max-min level, maximize total
            # surplus. The level is relaxed by 1e-9 relative so phase 2 keeps an
            # interior.
            m.min_surplus.fix(level - 1e-9 * max(1.0, abs(level)))
            m.obj.deactivate()
            m.obj_tiebreak.activate()
            try:
                self._run("tiebreak")
            finally:
                m.obj_tiebreak.deactivate()
                m.obj.activate()
                m.min_surplus.unfix()
            x = self._read_x(xbar)
            res = finish(x, lam, None)
            res["deriv"] = lam + slope_p * float(price_sensitivity(deriv_x, coef))
            if flat:
                # Envelope theorem on phase 2: dT/dy = nu - p' sum (1 + sigma + mu) x.
                nu = self._dual(m.eq_balance)
                mult = np.array([self._inequality_multiplier(m.ineq_surplus[n])
                                 + self._inequality_multiplier(m.ineq_maxmin[n])
                                 for n in self._names])
                coef2 = np.where(x > 0, 1.0 + mult, 0.0)
                res["tie"] = nu + slope_p * float(price_sensitivity(x, coef2))
            return res
        if self.spec.name is not SolverName.CYIPOPT:
            lam, coef = self._allocation_terms(x, price, xbar, weight, floor, lam)
            return finish(x, lam, coef)
        sigma = np.array([self._inequality_multiplier(m.ineq_surplus[n])
                          for n in self._names])
        s = self._surplus(x, price)
        with np.errstate(divide="ignore", invalid="ignore"):
            coef = weight * fairness.dphi(np.maximum(s + floor, 0.0)) + sigma
        coef = np.where(x > 0, coef, 0.0)
        return finish(x, lam, coef)

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

    def _read_x(self, xbar: np.ndarray) -> np.ndarray:
        # Ipopt relaxes bounds by ~1e-8 relative; project back onto [0, xbar].
        x = np.array([self.model.x[n].value for n in self._names], dtype=float)
        return np.clip(x, 0.0, xbar)

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
        stack = lambda key: np.array([r[key] for r in rows])  # noqa: E731
        tie = np.array([r.get("tie", np.nan) for r in rows])
        batch = InnerBatch(y, stack("price"), stack("x"), stack("surplus"),
                           stack("welfare"), stack("surplus").sum(axis=1), stack("lam"),
                           stack("deriv"), tie)
        batch.residual = self._residual(batch, others_total, fixed_price)
        bad = np.flatnonzero(~(batch.residual <= RESIDUAL_TOL))
        if bad.size:
            k = int(bad[0])
            raise InnerSolveError(
                f"Ipopt's solution of the inner problem of player '{self.player.name}' "
                f"at purchase y = {y[k]:.17g} has optimality residual "
                f"{batch.residual[k]:.3g} (tolerance {RESIDUAL_TOL:g})")
        return batch

    def _residual(self, batch: InnerBatch, others_total: float,
                  fixed_price: float | None) -> np.ndarray:
        setup = inner_setup(self.game, self.index, batch.y, others_total, fixed_price)
        infeasible = batch.y > setup.cap * (1 + 1e-12)
        if self.player.fairness.is_maxmin:
            res = maxmin_residual(self.player, batch.y, setup.price, batch.x,
                                  setup.xbar, setup.floor, setup.priced_out)
        else:
            res = optimality_residual(self.player, batch.y, setup.price, batch.x,
                                      batch.multiplier, setup.xbar, setup.weight,
                                      setup.floor)
        return np.where(infeasible | np.isneginf(batch.welfare), 0.0, res)
