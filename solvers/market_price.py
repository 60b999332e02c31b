"""A price p(Y) read from the user's own Pyomo model of the supply side.

The user's model has a demand parameter D (a mutable Param) and a balance constraint
(supply = D) whose dual is the market price. ``MarketPrice`` sets D = Y, solves, and
reads

    p(Y) = d(minimum cost)/dD

from the dual Suffix with the solver's sign convention (models/duals.py) and the
orientation of D in the constraint as Pyomo stores it, so ``supply == D``,
``D == supply`` and ``supply - D == 0`` all give the same price.

p'(Y) is a forward finite difference of that dual, (p(Y + h) - p(Y)) / h with
h = DERIVATIVE_STEP * max(1, Y), shortened so that it never crosses the next kink:
it is the *right* derivative. Capacities make the supply curve kinked, and at a kink
only one-sided derivatives exist; the right one is what a player raising its purchase
meets, which is the direction the best response's sign tests ask about, and the scan
samples both sides of each kink anyway (``breakpoints``). For quadratic costs p is
piecewise linear, so the difference is exact up to the solver's dual accuracy.

Values are cached per Y (the best response asks for the same totals many times), and
the supply model is built once and re-solved with a new D.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import EmbeddingError, SolverError
from aggregame.models.duals import bound_sensitivity, dual_convention
from aggregame.price import Price

LOG = logging.getLogger(__name__)

#: Relative step of the forward difference of the dual (see the module docstring).
DERIVATIVE_STEP = 1e-4
#: Grid of the breakpoint search over [0, total capacity], before bisection.
BREAKPOINT_GRID = 64
#: Width (relative to max(1, capacity)) to which a breakpoint is located.
BREAKPOINT_RTOL = 1e-11
#: A dispatch variable within this (relative) of a bound is at the bound.
BOUND_RTOL = 1e-7

_OK = {pyo.TerminationCondition.optimal, pyo.TerminationCondition.locallyOptimal}


class MarketPrice(Price):
    """p(Y) from a Pyomo supply model: its demand Param and balance constraint.

    Parameters
    ----------
    model : ConcreteModel
        The supply side (e.g. an economic dispatch minimizing cost). A ``dual``
        Suffix is added if missing.
    demand : mutable Param of ``model``
        Set to Y before each solve.
    balance : Constraint of ``model``
        Supply = demand; its dual is the price.
    dispatch : Vars, optional
        Generator outputs with their bounds. Needed for ``breakpoints`` (where one
        reaches a bound) and gives the total capacity, beyond which p = inf.
    solver : str or solver object
        Default 'highs' (an economic dispatch with quadratic costs is a QP).
    """

    kind = "market-model"

    def __init__(self, model: pyo.ConcreteModel, demand: Any, balance: Any, *,
                 dispatch: Sequence[Any] | Any = (), solver: Any = "highs") -> None:
        if not (getattr(demand, "is_parameter_type", lambda: False)()
                and getattr(demand, "mutable", False)):
            raise EmbeddingError("market price: field 'demand' must be a mutable Param")
        self.model, self.demand, self.balance = model, demand, balance
        self.solver = pyo.SolverFactory(solver) if isinstance(solver, str) else solver
        self.convention = dual_convention(solver)
        if model.component("dual") is None:
            model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
        if hasattr(dispatch, "values"):
            dispatch = list(dispatch.values())
        self.dispatch = list(dispatch)
        ubs = [v.ub for v in self.dispatch]
        self.capacity = float(sum(ubs)) if ubs and None not in ubs else np.inf
        self._orientation = self._demand_orientation()
        self._cache: dict[float, float] = {}
        self._status_cache: dict[float, tuple[int, ...]] = {}
        self._breaks: np.ndarray | None = None
        self.solves = 0

    def _demand_orientation(self) -> float:
        """d(bound - body)/dD of the balance as Pyomo stores it (+1 for supply == D)."""
        con, d0 = self.balance, float(pyo.value(self.demand))

        def gap() -> float:
            body = pyo.value(con.body, exception=False)
            return float(pyo.value(con.upper)) - float(body if body is not None else 0.0)

        for v in self.model.component_data_objects(pyo.Var):
            if v.value is None:
                v.set_value(0.0, skip_validation=True)
        before = gap()
        self.demand.set_value(d0 + 1.0)
        after = gap()
        self.demand.set_value(d0)
        slope = after - before
        if abs(slope) < 1e-12:
            raise EmbeddingError(
                f"market price: constraint {con.name!r} does not depend on the demand "
                f"parameter {self.demand.name!r}")
        return slope

    # -- solving ---------------------------------------------------------------------
    def _solve(self, total: float) -> float:
        key = float(total)
        if key in self._cache:
            return self._cache[key]
        if key > self.capacity * (1 + 1e-12):
            return np.inf
        self.demand.set_value(key)
        self.solves += 1
        try:
            results = self.solver.solve(self.model)
        except Exception as err:  # solvers raise their own types on infeasibility
            raise SolverError(
                f"market price: the supply model {self.model.name!r} did not solve at "
                f"Y = {key:g}: {err}") from err
        term = results.solver.termination_condition
        if term not in _OK:
            raise SolverError(
                f"market price: the supply model {self.model.name!r} did not solve at "
                f"Y = {key:g}: termination '{term}'")
        price = bound_sensitivity(self.model, self.balance, self.convention) \
            * self._orientation
        self._cache[key] = price
        self._status_cache[key] = self._status()
        return price

    def _status(self) -> tuple[int, ...]:
        """-1 / 0 / +1 per dispatch variable: at its lower bound, between, at its upper."""
        out = []
        for v in self.dispatch:
            val, scale = float(v.value), BOUND_RTOL * max(1.0, abs(v.ub or 0.0))
            if v.lb is not None and val - v.lb <= scale:
                out.append(-1)
            elif v.ub is not None and v.ub - val <= scale:
                out.append(1)
            else:
                out.append(0)
        return tuple(out)

    # -- the Price interface -------------------------------------------------------------
    def value(self, total: Any, lib: Any = np) -> Any:
        if lib is not np:
            raise EmbeddingError(
                "market price: a price read from a solved market model has no Pyomo "
                "expression; the stacked KKT model needs a closed form (e.g. "
                "MeritOrderPrice for a merit order)")
        y = np.asarray(total, dtype=float)
        out = np.array([self._solve(v) for v in y.ravel()]).reshape(y.shape)
        return float(out) if out.ndim == 0 else out

    def _right_derivative(self, y: float) -> float:
        if y >= self.capacity:
            return np.inf
        h = DERIVATIVE_STEP * max(1.0, y)
        ahead = self.breakpoints(y, y + h) if self.dispatch else np.empty(0)
        if ahead.size:
            kink = float(ahead[0])
            if kink - y > BREAKPOINT_RTOL * 1e3 * max(1.0, self.capacity):
                h = kink - y  # p is smooth on [y, kink]: stop there
            else:
                y = kink  # y sits on the kink: the right derivative starts there
                nxt = self.breakpoints(y, y + h)
                h = min(h, float(nxt[0]) - y) if nxt.size else h
        h = min(h, self.capacity - y)
        return (self._solve(y + h) - self._solve(y)) / h

    def derivative(self, total: Any, lib: Any = np) -> Any:
        if lib is not np:
            return self.value(total, lib)  # raises the same clear error
        y = np.asarray(total, dtype=float)
        out = np.array([self._right_derivative(float(v)) for v in y.ravel()])
        out = out.reshape(y.shape)
        return float(out) if out.ndim == 0 else out

    def breakpoints(self, lo: float, hi: float) -> np.ndarray:
        """Totals where a dispatch variable reaches or leaves a bound (a generator
        starts or is full): grid over [0, capacity], then bisection of each change."""
        if not self.dispatch:
            return np.empty(0)
        if self._breaks is None:
            self._breaks = self._find_breakpoints()
        b = self._breaks
        return b[(b > lo) & (b < hi)]

    def _find_breakpoints(self) -> np.ndarray:
        top = self.capacity if np.isfinite(self.capacity) else 1e3
        grid = np.linspace(0.0, top, BREAKPOINT_GRID + 1)
        status = []
        for y in grid:
            self._solve(float(y))
            status.append(self._status_cache[float(y)])
        found: list[float] = []
        tol = BREAKPOINT_RTOL * max(1.0, top)
        for k in range(grid.size - 1):
            self._bisect(float(grid[k]), float(grid[k + 1]), status[k], status[k + 1],
                         tol, found)
        LOG.debug("market price: %d breakpoints after %d solves", len(found),
                  self.solves)
        return np.array(sorted(found))

    def _bisect(self, a: float, b: float, sa: tuple, sb: tuple, tol: float,
                found: list[float]) -> None:
        if sa == sb:
            return
        if b - a <= tol:
            found.append(0.5 * (a + b))
            return
        mid = 0.5 * (a + b)
        self._solve(mid)
        sm = self._status_cache[mid]
        self._bisect(a, mid, sa, sm, tol, found)
        self._bisect(mid, b, sm, sb, tol, found)

    def inverse(self, price: float) -> float:
        """Y with p(Y) = price: the segment between breakpoints that holds it, then
        Brent's method on it (exact in a few steps where p is linear)."""
        from scipy.optimize import brentq

        if price <= self._solve(0.0):
            return 0.0
        top = self.capacity if np.isfinite(self.capacity) else 1e6
        knots = np.concatenate([[0.0], self.breakpoints(0.0, top), [top]])
        vals = np.array([self._solve(float(k)) for k in knots])
        if price >= vals[-1]:
            return float(top)
        k = int(np.searchsorted(vals, price, side="right")) - 1
        lo, hi = float(knots[k]), float(knots[k + 1])
        return float(brentq(lambda y: self._solve(y) - price, lo, hi,
                            xtol=1e-12 * max(1.0, top), rtol=1e-14))

    def describe(self) -> dict[str, Any]:
        return {"price": self.kind, "model": self.model.name,
                "demand": self.demand.name, "balance": self.balance.name}
