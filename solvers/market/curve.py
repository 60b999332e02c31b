"""The map of a market price curve: the exact affine pieces of a parametric QP.

A supply model (solvers/market/price.py) is a convex QP whose demand enters the
bounds of its constraints; its optimal active set is constant on intervals of the
demand, where the price is affine. ``CurveMap`` walks [0, capacity] from piece to
piece by flipping what binds at each end, asks the solver where a flip does not
give the next piece, and repairs a wrong or missing active set by a primal-dual
active-set iteration (the linear algebra is in solvers/market/qp.py). The solver's
own dual and primal values are kept as evidence only (``dual_gap``,
``primal_gap``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from aggregame.errors import SolverError
from aggregame.solvers.market.qp import (
    SNAP_RTOL,
    ActiveSet,
    Extent,
    SupplyQP,
    active_set,
    extent,
    flip,
    independent,
    released,
    solve_kkt,
    violated,
)
from aggregame.solvers.market.supply import SupplySolves

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


class CurveMap:
    """The pieces of the price of ``balance`` as demand k of ``supply`` moves, the
    other demands fixed at ``base``. ``orientation`` is d(bound - body)/dD of the
    balance as Pyomo stores it; ``scale`` is max(1, capacity)."""

    def __init__(self, qp: SupplyQP, supply: SupplySolves, k: int, base: np.ndarray,
                 balance: Any, scale: float) -> None:
        self.qp, self.supply, self._k, self._base = qp, supply, k, base
        self.balance, self.scale = balance, scale
        self.model, self.demand = supply.model, supply.demands[k]
        self._orientation = float(qp.rlo1[qp.row(balance)])
        self.dual_gap, self.primal_gap = 0.0, 0.0

    def map(self, estimate: float) -> list[Segment]:
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
