"""The two ways a solve of the Pyomo backend reaches its solver.

``NlpBackend``: cyipopt on a model written once (solvers/inner/nlp_reuse.py), every
purchase only changing bounds, warm-started from the nearest earlier solve.
``ModelBackend``: any solver of solvers/solver_choice.py on the Pyomo model, whose
mutable Params are changed in place and which is written at each solve. Both return
a PhaseResult in the sign convention of solvers/inner/pyomo_backend.py.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import differentiate

from aggregame.allocation import counted_members
from aggregame.models.aggregator import add_aggregator, build_aggregator_model
from aggregame.players import Player
from aggregame.solvers.inner.nlp_reuse import (
    SOLVE_SUCCEEDED,
    NlpBounds,
    NlpSolution,
    ReusableNlp,
    fix_vars,
    free_rows,
)
from aggregame.solvers.inner.pyomo_rows import (
    PhaseResult,
    PhaseStart,
    RowData,
    SolveCounter,
)
from aggregame.solvers.solver_choice import (
    PyomoSolver,
    SolveOutcome,
    SolverName,
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


class NlpBackend:
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
    #: other path solves every row, the benchmark's reference (bench_pyomo.py).
    skips_known = True

    def __init__(self, player: Player, solver: PyomoSolver, counter: SolveCounter,
                 warm_start: bool) -> None:
        self.player = player
        self.solver = solver
        self.counter = counter
        # Warm starts only with a floor: with none (viable, strict) log(s) near s = 0
        # is ill-conditioned, and a warm start stopped 2e-6 away from the cold
        # start's answer (measured, tests/test_inner.py).
        self.warm = warm_start and self.player.fairness.floor > 0
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
        self._nlps: dict[tuple, Nlp] = {}

    def _key(self, d: RowData, tiebreak: bool) -> tuple:
        if self.player.fairness.is_maxmin:
            # Only the floors of counted members enter (through s_i + e_i >= t).
            counted = counted_members(self.player, d.priced_out)
            return (tiebreak, np.where(counted, d.floor, 0.0).tobytes())
        return (tiebreak, d.weight.tobytes(), d.floor.tobytes())

    def _nlp(self, d: RowData, tiebreak: bool) -> "Nlp":
        key = self._key(d, tiebreak)
        nlp = self._nlps.get(key)
        if nlp is None:
            begin = time.perf_counter()
            nlp = Nlp(self.model, self.player, d, tiebreak)
            self._nlps[key] = nlp
            self.counter.builds += 1
            self.counter.build_seconds += time.perf_counter() - begin
        return nlp

    def run(self, d: RowData, start: PhaseStart) -> tuple[SolveOutcome, PhaseResult]:
        nlp = self._nlp(d, start.tiebreak)
        x0, bounds = nlp.point_and_bounds(d, start)
        options = dict(self.solver.config.options.items())
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


class Nlp:
    """One written model and where its variables and rows sit in the NLP."""

    def __init__(self, m: pyo.ConcreteModel, player: Any, d: RowData,
                 tiebreak: bool) -> None:
        names = [mem.name for mem in player.members]
        self.maxmin = player.fairness.is_maxmin
        player.fairness.rule.set_member_terms(m, d.priced_out, player.fairness)
        for k, name in enumerate(names):
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
            # A member the rule does not count leaves the minimum (its row is free);
            # a counted priced-out member pins t <= e_i.
            free_rows(bounds, self.rm[~counted_members(self.player, d.priced_out)])
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


class ModelBackend:
    """Any solver of solver_choice on the standalone model, whose mutable Params
    (purchase, price, weights, floors) are changed in place; priced-out members are
    fixed at x = 0 and their constraints deactivated."""

    skips_known = False  # see NlpBackend

    def __init__(self, player: Player, solver: PyomoSolver) -> None:
        self.player = player
        self.solver = solver
        self.model = build_aggregator_model(player)
        self.names = [m.name for m in player.members]
        # HiGHS: s_i >= 0 as the bound x_i <= xbar_i, set at each solve's price.
        self.surplus_as_bound = solver.spec.name is SolverName.HIGHS
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
            outcome = self.solver.solve(m)
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
        if not self.solver.has_duals:
            return np.nan
        return self.solver.dual(self.model, con)

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
        fairness.rule.set_member_terms(m, d.priced_out, fairness)
        counted = counted_members(self.player, d.priced_out)
        for k, name in enumerate(self.names):
            if d.priced_out[k]:
                # Only x = 0 is feasible; fixing it keeps the solver off an empty
                # interior (and the constraint becomes trivial, so drop it).
                m.x[name].fix(0.0)
                m.ineq_surplus[name].deactivate()
            else:
                m.x[name].unfix()
                if not self.surplus_as_bound:
                    m.ineq_surplus[name].activate()
            if fairness.is_maxmin:
                # A member the rule does not count leaves the minimum; a counted
                # priced-out member pins t <= e_i.
                row = m.ineq_maxmin[name]
                if counted[k]:
                    row.activate()
                else:
                    row.deactivate()


def _restore(saved: list[tuple[Any, Any]]) -> None:
    for v, val in saved:
        v.set_value(val, skip_validation=True)

