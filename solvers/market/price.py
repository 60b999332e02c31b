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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aggregame.errors import EmbeddingError, SolverError
from aggregame.models.context import temporary_changes
from aggregame.price import Price
from aggregame.solvers.market.qp import (SNAP_RTOL, ActiveSet, Extent, SupplyQP,
                                         active_set, demand_range, extent, flip,
                                         independent, released, solve_kkt,
                                         violated)
from aggregame.solvers.market.supply import (SupplySolves, check_balance,
                                             check_demand)

LOG = logging.getLogger(__name__)

#: A variable (constraint) within this, relative to max(1, capacity), of its bound is
#: at it. HiGHS's QP solver is an active-set method: variables at a bound are exact.
BOUND_RTOL = 1e-9
#: First probe to the right of a kink, as a fraction of the rest of [0, capacity].
FIRST_PROBE = 1e-3
#: Solves allowed to find one segment before giving up.
MAX_PROBES = 60
#: Steps of the active-set repair where the solver fails.
REPAIR_STEPS = 50
#: The linear program's demand range agrees with the exact pieces to this
#: (relative to max(1, capacity)): HiGHS's primal feasibility tolerance is 1e-7.
CAPACITY_RTOL = 1e-6
#: Consecutive pieces found from different active sets of a degenerate point can
#: leave a gap of rounding between them (measured: 5e-9 on a 380 MWh curve); one
#: this small (relative to max(1, capacity)) is closed, the next piece extended.
GAP_RTOL = 1e-8
#: A price that rises by more than this (relative to max(1, |p|)) across a segment
#: end jumps there.
JUMP_RTOL = 1e-9


@dataclass(frozen=True)
class Segment:
    """Y in [lo, hi): p(Y) = p0 + slope * Y for one active set of the supply model."""

    lo: float
    hi: float
    p0: float
    slope: float
    active: tuple[int, ...]
    basis: ActiveSet | None = field(default=None, repr=False, compare=False)
    extent: Extent | None = field(default=None, repr=False, compare=False)

    def price(self, total: float) -> float:
        return self.p0 + self.slope * total


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
        row = self.qp.row(self.balance)
        # d(bound - body)/dD of the balance as Pyomo stores it (+1 for supply == D)
        self._orientation = float(self.qp.rlo1[row])
        if self._orientation == 0.0:
            raise EmbeddingError(
                f"market price: constraint {self.balance.name!r} does not depend on "
                f"the demand parameter {self.demand.name!r}")
        estimate = self._demand_limit()
        self.scale = max(1.0, estimate)
        self.solves0 = self.supply.count
        self.dual_gap, self.primal_gap = 0.0, 0.0
        with temporary_changes(restore=self.supply.demands):
            segments = self._map(estimate)
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

    def _map(self, estimate: float) -> list[Segment]:
        """Segments from 0 to the capacity: continuation from piece to piece, the
        solver where a flip does not give the next piece."""
        segments: list[Segment] = []
        y, tol = 0.0, CAPACITY_RTOL * self.scale
        while y < estimate - tol:
            seg = self._next_piece(segments[-1], y) if segments else None
            if seg is None:
                seg = self._segment_right_of(y, estimate)
            hi = seg.hi
            if hi >= estimate - tol:  # the last piece: its exact end, or the LP's
                hi = hi if abs(hi - estimate) <= tol else estimate
            segments.append(replace(seg, lo=y, hi=hi))
            y = hi
        return segments

    def _next_piece(self, prev: Segment, y: float) -> Segment | None:
        """The piece across the end of ``prev``, by flipping what binds there."""
        if prev.basis is None or prev.extent is None:
            return None
        nxt = self._piece(flip(prev.basis, prev.extent.at_hi))
        snap, gap = SNAP_RTOL * self.scale, GAP_RTOL * self.scale
        if nxt is None or abs(nxt.lo - y) > gap or nxt.hi <= y + snap:
            return None
        return nxt

    def _segment_right_of(self, y: float, capacity: float) -> Segment:
        """The segment [lo, hi) with lo <= y < hi: solve a little to the right of y
        (y itself may be a kink, or too small for the solver), halving the step while
        the segment found starts beyond y. Where the solver fails (HiGHS reports tiny
        demands infeasible), step left from the segment beyond by flipping the
        condition that binds at its start."""
        delta = FIRST_PROBE * (capacity - y)
        beyond = None
        for _ in range(MAX_PROBES):
            target = y + delta
            x = self._solve_at(target)
            seg = None if x is None else self._segment(target, x)
            if seg is None:
                seg = self._repair(target, x)
            if seg is None and beyond is not None:
                seg = self._left_neighbour(beyond)
            if seg is None:  # solver failure or degenerate point: move the probe
                delta *= 4.0 if 4.0 * delta < capacity - y else 0.37
            elif seg.lo <= y + GAP_RTOL * self.scale:
                return seg
            else:
                beyond, delta = seg, 0.5 * (seg.lo - y)
        raise SolverError(
            f"market price: no optimal active set of model {self.model.name!r} found "
            f"just above {self.demand.name} = {y:g} after {MAX_PROBES} solves")

    def _repair(self, total: float, x: np.ndarray | None) -> Segment | None:
        """The optimal active set at ``total`` by a primal-dual active-set iteration
        (flip every condition violated there, re-solve the KKT system) from the
        solver's point, or from all variables free when the solver gave none."""
        qp, scale = self.qp, self.scale
        if x is None:
            none = np.zeros(len(qp.variables), dtype=bool)
            basis = ActiveSet(none, none, qp.equality.copy(),
                              np.zeros_like(qp.equality))
        else:
            basis = active_set(qp, x, total, BOUND_RTOL * scale)
        for _ in range(REPAIR_STEPS):
            piece = solve_kkt(qp, basis)
            if piece is None:
                return None
            wrong = violated(qp, basis, piece, total, scale)
            if not wrong:
                seg = self._piece(basis)
                ok = seg is not None and seg.lo <= total + SNAP_RTOL * scale < seg.hi
                return seg if ok else None
            basis = flip(basis, wrong)
        return None

    def _left_neighbour(self, seg: Segment) -> Segment | None:
        """The segment ending where ``seg`` starts, from the flipped active set."""
        left = self._piece(flip(seg.basis, seg.extent.at_lo))
        snap = SNAP_RTOL * self.scale
        if left is None or left.hi < seg.lo - snap or left.lo >= seg.lo - snap:
            return None
        return left

    def _solve_at(self, total: float) -> np.ndarray | None:
        values = self._base.copy()
        values[self._k] = total
        return self.supply.solve(values)

    def _segment(self, y0: float, x: np.ndarray) -> Segment | None:
        """The segment of the active set of solution x at demand y0; None if that
        set is degenerate or not optimal at y0. Records the solver's errors."""
        seg = self._piece(active_set(self.qp, x, y0, BOUND_RTOL * self.scale), y0)
        if seg is None or not (seg.lo <= y0 + SNAP_RTOL * self.scale < seg.hi):
            return None
        dual = self.supply.dual(self.balance)
        if dual is not None:
            exact = seg.price(y0)
            self.dual_gap = max(self.dual_gap, abs(dual * self._orientation - exact)
                                / max(1.0, abs(exact)))
        xa, xb, _, _ = solve_kkt(self.qp, seg.basis)
        self.primal_gap = max(self.primal_gap,
                              float(np.max(np.abs(xa + y0 * xb - x), initial=0.0)))
        return seg

    def _piece(self, basis: ActiveSet, at: float | None = None) -> Segment | None:
        """The exact affine piece of an active set and the interval where it is
        optimal (None if its KKT system is singular or the interval is empty). A
        singular set at demand ``at`` is tried again with one constraint released
        (``released``): the first piece whose interval holds ``at``."""
        piece = solve_kkt(self.qp, basis)
        if piece is None:
            if at is None:
                return None
            snap = SNAP_RTOL * self.scale
            for other in [independent(self.qp, basis, self.supply.strength()),
                          *released(basis)]:
                seg = self._piece(other)
                if seg is not None and seg.lo <= at + snap < seg.hi:
                    return seg
            return None
        ext = extent(self.qp, basis, piece, self.scale)
        if not ext.hi > ext.lo:
            return None
        _, _, la, lb = piece
        # Envelope theorem: d(min cost)/dD = sum over active rows of lambda_k times
        # d(bound_k)/dD; only the balance's bound moves with D in a dispatch.
        rhs1 = np.where(basis.at_upper_row, self.qp.rup1, self.qp.rlo1)
        return Segment(ext.lo, ext.hi, float(la @ rhs1), float(lb @ rhs1),
                       basis.key, basis, ext)

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
