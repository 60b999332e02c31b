"""A price p(Y) read from the user's own Pyomo model of the supply side.

What the model must be (checked at construction, one clear line when it is not):

* a mutable Param ``demand`` (set to Y before each solve);
* one active Objective to *minimize* (the supply cost), linear or quadratic in the
  model's variables;
* linear active constraints, one of which is the ``balance`` (supply = load + demand)
  whose dual is the price; only the constraints' bounds may depend on the demand;
* feasible at Y = 0 and bounded in Y. Fixed loads in the balance, generators'
  minimum outputs, demand bids (a variable with a linear value, served or shed),
  line limits: anything linear. The largest feasible Y is the capacity, beyond which
  p = inf; it is found by a linear program over (outputs, Y) and refined to the end
  of the exact piece that reaches it.

How p(Y) is computed. Such a model is a parametric convex QP in Y, so its price is
piecewise affine in Y, with kinks where a generator starts or is full. Each piece is
found from an *active set* (which variables sit at a bound, which rows bind): the
KKT conditions on it are a linear system whose solution is exact and affine in Y,
and the same system gives the interval of Y where that set stays optimal (a ratio
test; solvers/market/qp.py). The map of [0, capacity] starts from one solve (HiGHS
by default) and walks from piece to piece by flipping the conditions that bind at
each end (a parametric active-set method); where a flip is degenerate, the solver
is asked again a little to the right, and where the solver fails or names a wrong
active set, a primal-dual active-set iteration on the same linear systems repairs
it. The solver's own dual of the balance, read with its documented sign
(``aggregame.models.duals``), is kept only as evidence (``dual_gap``): solvers stop
at their own tolerances. The price is the envelope derivative of the cost, sum_k
lambda_k d(rhs_k)/dY over the active rows (the balance's dual when only the balance
depends on the demand).

p(0) is the limit from the right. ``derivative`` is the *right* derivative, the
slope of the piece starting at Y: at a kink only one-sided derivatives exist, the
right one is what a player raising its purchase meets, and the scan samples both
sides of each kink anyway (``breakpoints``).

Jumps. Where no variable with a quadratic cost is free (all at bounds, or marginal
units with linear costs or linear bid values), the cost has a kink in Y and the
price jumps: any value between the two sides clears the market there. A jump is
found at construction (``price_jumps``, ``jumps(lo, hi)``), logged as a warning and
listed in ``describe()``. The game's theory assumes a continuous price, so a profile
whose total sits at a jump is refused, not certified (solvers/market/jumps.py).

Dense linear algebra: meant for supply models of up to a few hundred variables.
Call ``refresh()`` after changing the model (costs, capacities).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from aggregame.errors import EmbeddingError
from aggregame.models.context import temporary_changes
from aggregame.price import Price
from aggregame.solvers.market.curve import CAPACITY_RTOL, CurveMap, Segment
from aggregame.solvers.market.qp import SNAP_RTOL, SupplyQP, demand_range
from aggregame.solvers.market.supply import SupplySolves, check_balance, check_demand

LOG = logging.getLogger(__name__)

#: A price that rises by more than this (relative to max(1, |p|)) across a segment
#: end jumps there.
JUMP_RTOL = 1e-9


@dataclass(frozen=True)
class PriceJump:
    """A total where the price jumps: p(Y-) = ``below``, p(Y) = ``above``."""

    total: float
    below: float
    above: float

    @property
    def size(self) -> float:
        return self.above - self.below


class MarketPrice(Price):
    """p(Y) from a Pyomo supply model: its demand Param and balance constraint.

    Parameters
    ----------
    model : ConcreteModel
        The supply side (e.g. an economic dispatch minimizing cost); see the module
        docstring for what it must be. A ``dual`` Suffix is added if missing (not
        for a solver without duals, e.g. 'scip_direct').
    demand : mutable Param of ``model``
        Set to Y before each solve (restored afterwards).
    balance : Constraint of ``model``
        Supply = load + demand; its dual is the price.
    solver : str or solver object
        Default 'highs' (Pyomo's HiGHS interface; 'appsi_highs' refuses quadratic
        objectives in Pyomo 6.10). Any solver with a known dual sign works (its dual
        is evidence only), and so does 'scip_direct'.

    Raises
    ------
    EmbeddingError
        When the model is not what the module docstring says (one line naming the
        field or component), infeasible at Y = 0 or unbounded in Y.
    """

    piecewise_linear = True

    kind = "market-model"

    def __init__(self, model: Any, demand: Any, balance: Any, *,
                 solver: Any = "highs") -> None:
        check_demand(model, demand, "demand")
        check_balance(model, balance, "balance")
        self._bind(SupplySolves(model, [demand], solver), 0, np.zeros(1), balance)
        self.refresh(reread=False)

    @classmethod
    def along(cls, supply: SupplySolves, k: int, demands: np.ndarray, balance: Any
              ) -> MarketPrice:
        """The price of ``balance`` as demand k moves from 0 to its capacity, every
        other demand of ``supply`` fixed at ``demands`` (a bus price of a network:
        solvers/market/nodal.py)."""
        price = cls.__new__(cls)
        price._bind(supply, k, demands, balance)
        price.refresh(reread=False)
        return price

    def _bind(self, supply: SupplySolves, k: int, demands: np.ndarray, balance: Any
              ) -> None:
        self.supply, self.model, self.balance = supply, supply.model, balance
        self.demand, self._k = supply.demands[k], k
        self._base = np.array(demands, dtype=float)

    # -- building the table --------------------------------------------------------
    def refresh(self, reread: bool = True) -> None:
        """Re-read the model (unless ``reread`` is False) and map its price curve
        over [0, capacity]."""
        if reread:
            self.supply.reread()
        self.qp: SupplyQP = self.supply.multi.along(self._k, self._base)
        if self.qp.rlo1[self.qp.row(self.balance)] == 0.0:
            raise EmbeddingError(
                f"market price: constraint {self.balance.name!r} does not depend on "
                f"the demand parameter {self.demand.name!r}")
        estimate = self._demand_limit()
        self.scale = max(1.0, estimate)
        self.solves0 = self.supply.count
        curve = CurveMap(self.qp, self.supply, self._k, self._base, self.balance,
                         self.scale)
        with temporary_changes(restore=self.supply.demands):
            segments = curve.map(estimate)
        self.dual_gap, self.primal_gap = curve.dual_gap, curve.primal_gap
        self.segments = tuple(segments)
        self.capacity = segments[-1].hi
        self._lo = np.array([s.lo for s in segments])
        self._p0 = np.array([s.p0 for s in segments])
        self._slope = np.array([s.slope for s in segments])
        self._find_jumps()
        LOG.debug("market price: %d segments from %d solves, dual gap %.2e",
                  len(segments), self.solves, self.dual_gap)

    @property
    def solves(self) -> int:
        """Solver calls the last map of the curve took."""
        return self.supply.count - self.solves0

    def _demand_limit(self) -> float:
        """The LP's largest feasible demand; refuses a model infeasible at 0 or
        unbounded in the demand."""
        low, high = demand_range(self.qp)
        tol = CAPACITY_RTOL * max(1.0, abs(high) if np.isfinite(high) else 1.0)
        if low > tol or high < -tol:
            raise EmbeddingError(
                f"market price: model {self.model.name!r} is infeasible at "
                f"{self.demand.name} = 0 (feasible from {low:g} to {high:g}): fixed "
                "loads and minimum outputs must leave room for a demand of 0")
        if not np.isfinite(high):
            raise EmbeddingError(
                f"market price: demand {self.demand.name!r} of model "
                f"{self.model.name!r} has no upper limit (a supply variable without "
                "an upper bound); give the generators their capacities")
        if high <= tol:
            raise EmbeddingError(
                f"market price: model {self.model.name!r} cannot serve any demand "
                f"{self.demand.name} > 0 (the largest feasible is {high:g})")
        return high

    def _find_jumps(self) -> None:
        segs = self.segments
        below = np.array([s.price(s.hi) for s in segs[:-1]])
        above = np.array([s.price(s.lo) for s in segs[1:]])
        jump = above - below > JUMP_RTOL * np.maximum(1.0, np.abs(above))
        self._jumps = tuple(PriceJump(float(s.lo), float(b), float(a))
                            for s, b, a, j in zip(segs[1:], below, above, jump) if j)
        # starts_jump[k]: segment k begins at a jump (no snapping across it).
        self._starts_jump = np.concatenate([[False], jump])
        for j in self._jumps:
            LOG.warning("market price: p(%s) jumps at %s = %.10g, from %.10g to %.10g: "
                        "a profile with that total is not certified",
                        self.demand.name, self.demand.name, j.total, j.below, j.above)

    # -- the Price interface -------------------------------------------------------
    def _index(self, y: np.ndarray) -> np.ndarray:
        """Segment of each total; within SNAP_RTOL of a kink, the one on its right
        (kinks are located to rounding, so a kink computed elsewhere, e.g. by a
        closed form, gets the right derivative too). Never across a jump: there
        rounding would change the price, not just the slope."""
        last = self._lo.size - 1
        exact = np.clip(np.searchsorted(self._lo, y, side="right") - 1, 0, last)
        snapped = np.clip(np.searchsorted(self._lo, y + SNAP_RTOL * self.scale,
                                          side="right") - 1, 0, last)
        return np.where(self._starts_jump[snapped] & (snapped != exact), exact,
                        snapped)

    def value(self, total: Any, lib: Any = np) -> Any:
        if lib is not np:
            raise EmbeddingError(
                "market price: a price read from a solved market model has no Pyomo "
                "expression; the stacked KKT model needs a closed form (e.g. "
                "MeritOrderPrice for a merit order, or the affine piece of "
                "piece_at(Y))")
        y = np.asarray(total, dtype=float)
        k = self._index(y)
        out = self._p0[k] + self._slope[k] * np.maximum(y, 0.0)
        out = np.where(y > self.capacity * (1 + 1e-12), np.inf, out)
        return float(out) if out.ndim == 0 else out

    def derivative(self, total: Any, lib: Any = np) -> Any:
        """Right derivative: the slope of the segment starting at Y (inf from the
        capacity on)."""
        if lib is not np:
            return self.value(total, lib)  # raises the same clear error
        y = np.asarray(total, dtype=float)
        # Within rounding of the capacity, the right side is beyond it (as at kinks).
        end = self.capacity - SNAP_RTOL * self.scale
        out = np.where(y >= end, np.inf, self._slope[self._index(y)])
        return float(out) if out.ndim == 0 else out

    def limit_below(self, total: float) -> float:
        """p(Y-), the limit from the left: differs from ``value`` at a jump only."""
        k = max(int(np.searchsorted(self._lo, total, side="left")) - 1, 0)
        return float(self._p0[k] + self._slope[k] * total)

    def piece_at(self, total: float) -> Segment:
        """The segment holding ``total`` (the one on the right at a kink)."""
        return self.segments[int(self._index(np.asarray(total, dtype=float)))]

    def breakpoints(self, lo: float, hi: float) -> np.ndarray:
        """Kinks and jumps in (lo, hi): totals where the optimal active set of the
        supply model changes (a generator starts or is full, a bid is shed, a line
        fills), and the capacity, beyond which p = inf."""
        b = np.append(self._lo[1:], self.capacity)
        return b[(b > lo) & (b < hi)]

    def jumps(self, lo: float, hi: float) -> np.ndarray:
        """Totals in (lo, hi) where the price jumps (``price_jumps`` has the sizes)."""
        b = np.array([j.total for j in self._jumps])
        return b[(b > lo) & (b < hi)] if b.size else np.empty(0)

    @property
    def price_jumps(self) -> tuple[PriceJump, ...]:
        """Every jump of p on [0, capacity], with the prices on both sides."""
        return self._jumps

    def inverse(self, price: float) -> float:
        """Smallest Y with p(Y) >= price (0 below p(0), the capacity above p(cap))."""
        ys = np.ravel([[s.lo, s.hi] for s in self.segments])
        ps = np.ravel([[s.price(s.lo), s.price(s.hi)] for s in self.segments])
        if price <= ps[0]:
            return 0.0
        if price >= ps[-1]:
            return float(self.capacity)
        k = int(np.searchsorted(ps, price, side="left"))
        if ps[k] == ps[k - 1]:
            return float(ys[k - 1])
        return float(ys[k - 1] + (price - ps[k - 1]) * (ys[k] - ys[k - 1])
                     / (ps[k] - ps[k - 1]))

    def describe(self) -> dict[str, Any]:
        return {"price": self.kind, "model": self.model.name,
                "demand": self.demand.name, "balance": self.balance.name,
                "capacity": self.capacity,
                "jumps": [{"total": j.total, "below": j.below, "above": j.above}
                          for j in self._jumps]}
