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
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import InnerSolveError, SolverUnavailableError
from aggregame.fairness import PricedOutRule
from aggregame.models.aggregator import build_aggregator_model
from aggregame.players import Game
from aggregame.allocation import (RESIDUAL_TOL, inner_setup, maxmin_residual, member_terms,
                                  optimality_residual, price_sensitivity, welfare_of)
from aggregame.solvers.inner import InnerBatch

LOG = logging.getLogger(__name__)

#: Ipopt options of every inner solve. tol = 1e-9: duals feed the total derivative
#: the best response bisects on, and 1e-10 was measured to end "acceptable" rather
#: than optimal near the capacity end of the Fig. 4 interval (y >= 0.9999 y_max),
#: where most surpluses sit at the floor.
DEFAULT_IPOPT_OPTIONS: dict[str, Any] = {
    "tol": 1e-9,
    "constr_viol_tol": 1e-10,
    "max_iter": 3000,
    "print_level": 0,
    "sb": "yes",
}

_ACCEPTED = {pyo.TerminationCondition.optimal, pyo.TerminationCondition.locallyOptimal}


def ipopt_solver(options: dict[str, Any] | None = None) -> Any:
    """Pyomo's cyipopt solver with our options, or a clear error naming what is missing."""
    try:
        solver = pyo.SolverFactory("cyipopt")
        available = solver.available(exception_flag=False)
    except Exception as err:  # pragma: no cover - depends on the machine
        raise SolverUnavailableError(f"cyipopt solver could not be created: {err}") from err
    if not available:
        raise SolverUnavailableError(
            "Ipopt is not available to Pyomo: the module `cyipopt` is missing. Install "
            "it with `pip install cyipopt-wheels` (or run `bash bootstrap.sh setup`)."
        )
    from pyomo.contrib.pynumero.asl import AmplInterface

    if not AmplInterface.available():
        raise SolverUnavailableError(
            "PyNumero's ASL library is missing, so Pyomo cannot hand models to cyipopt. "
            "Build it with `bash bootstrap.sh setup` (needs Debian's libamplsolver-dev, "
            "cmake and g++)."
        )
    solver.config.options.update(DEFAULT_IPOPT_OPTIONS)
    solver.config.options.update(options or {})
    return solver


@dataclass
class SolveCounter:
    """How many Ipopt solves a backend made (for the benchmarks' time accounting)."""

    solves: int = 0
    seconds: float = 0.0
    by_phase: dict[str, int] = field(default_factory=dict)


class PyomoInner:
    """Inner problem of ``game.players[index]`` as a Pyomo model solved by Ipopt."""

    def __init__(self, game: Game, index: int, options: dict[str, Any] | None = None
                 ) -> None:
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.model = build_aggregator_model(self.player)
        self.solver = ipopt_solver(options)
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
        try:
            results = self.solver.solve(m, tee=False)
        except Exception as err:
            for v, val in saved:
                v.set_value(val, skip_validation=True)
            raise InnerSolveError(
                f"Ipopt failed on the inner model of player '{self.player.name}' "
                f"(y = {pyo.value(m.purchase):g}, p = {pyo.value(m.price):g}): {err}"
            ) from err
        finally:
            core_log.setLevel(level)
            self.counter.solves += 1
            self.counter.seconds += time.perf_counter() - start
            self.counter.by_phase[phase] = self.counter.by_phase.get(phase, 0) + 1
        term = results.solver.termination_condition
        if term not in _ACCEPTED:
            for v, val in saved:
                v.set_value(val, skip_validation=True)
            raise InnerSolveError(
                f"Ipopt did not reach an optimal solution of the inner model of player "
                f"'{self.player.name}' (y = {pyo.value(m.purchase):g}, "
                f"p = {pyo.value(m.price):g}): termination '{term}', message "
                f"'{results.solver.message}'"
            )

    def _dual(self, con: Any) -> float:
        return float(self.model.dual.get(con, 0.0))

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
