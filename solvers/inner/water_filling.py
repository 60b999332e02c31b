"""Water filling in lambda: the native backend's inner solve for alpha < inf.

For a multiplier lambda, member i's allocation solves g_i(x) = w_i phi'(s_i(x) + e_i)
(U_i'(x) - p) = lambda on [0, xbar_i]; g_i is strictly decreasing there (docs/model.md,
section "Allocation for a given lambda"), so x_i(lambda) is unique and sum_i
x_i(lambda) is decreasing: the inner problem is a 1-D root in lambda. Closed forms
for quadratic users at alpha 0, 1/2 and 1 (aggregame.allocation.quadratic_response);
otherwise a safeguarded Newton per member (aggregame.allocation.member_response),
all members and all purchases at once, or Newton on (x, lambda) together.
"""

from __future__ import annotations

import math

import numpy as np

from aggregame.allocation import (
    InnerSetup,
    allocation_error,
    forced_rows,
    marginal_welfare,
    member_response,
    optimality_residual,
    price_coefficient,
    price_sensitivity,
    quadratic_response,
    quadratic_response_slope,
    settled_residual,
    welfare_of,
    welfare_weight,
)
from aggregame.solvers.inner.batch import (
    JOINT_MATCH_RTOL,
    JOINT_NEWTON_STEPS,
    ROOT_RTOL,
    InnerBatch,
)
from aggregame.solvers.inner.member_arrays import MemberArrays, decreasing_root


class WarmPath:
    """(y, lambda, x) of the last two single-purchase solves: searches call with
    nearby purchases, so Newton started from their secant (or from the last one)
    needs a few steps, not 5-6."""

    def __init__(self) -> None:
        self._path: list[tuple[float, float, np.ndarray]] = []

    def remember(self, y: float, lam: float, x: np.ndarray) -> None:
        """Keep a single solve's (y, lambda, x) (a finite lambda only)."""
        if math.isfinite(lam):
            self._path = self._path[-1:] + [(y, lam, x)]

    def guess(self, y: float, rows: int) -> tuple[float | None, np.ndarray | None]:
        """Start (lambda, x) for a single purchase: the secant of the last two
        single solves extrapolated to ``y`` (x still to be clipped into [0, xbar]),
        else the last solve's, else (None, None); x is None unless it has shape
        (1, ``rows``). On a grid walk or a search's nearby probes it saves one to two
        Newton steps of about five."""
        if not self._path:
            return None, None
        y2, l2, x2 = self._path[-1]
        if x2.shape != (1, rows):
            return l2, None
        if len(self._path) == 2:
            y1, l1, x1 = self._path[0]
            if y2 != y1 and x1.shape == x2.shape:
                t = (y - y2) / (y2 - y1)
                guess = l2 + (l2 - l1) * t
                if math.isfinite(guess):
                    return guess, x2 + (x2 - x1) * t
        return l2, x2


class LambdaFilling:
    """Inner solutions of one player (alpha < inf) by water filling in lambda."""

    def __init__(self, members: MemberArrays, warm: WarmPath) -> None:
        self.members = members
        self.player = members.player
        self.alpha = members.alpha
        self.warm = warm

    def solve(self, setup: InnerSetup) -> InnerBatch:
        """Rows of ``setup``: lambda at the ends of the feasible interval from the
        one-sided multipliers, the lambda root inside it."""
        if self.player.size == 1:
            return self.solve_one_member(setup)
        y, p2, xbar = setup.y, setup.price_column, setup.xbar
        weight, floor = setup.weight, setup.floor
        x = np.zeros((y.size, self.player.size))
        lam = np.full(y.size, np.nan)
        at_zero = y <= 0
        at_cap = y >= setup.cap * (1 - 1e-14)
        inside = ~(at_zero | at_cap)
        g0 = self.members.g_at_zero(p2, weight, floor, xbar.shape)
        gcap = self.members.g(xbar, p2, weight, floor)
        viable = xbar > 0
        # One-sided multipliers at the ends of the feasible interval; they also
        # bracket the multiplier inside it.
        lam_top = np.where(viable, g0, -np.inf).max(axis=1)
        lam_bottom = np.where(viable, gcap, np.inf).min(axis=1)
        lam[at_zero] = lam_top[at_zero]
        lam[at_cap] = lam_bottom[at_cap]
        x[at_cap] = xbar[at_cap]
        if inside.any():
            lam_in, x_in = self._solve_lambda(y[inside], p2[inside], xbar[inside],
                                              weight[inside], floor[inside],
                                              lam_top[inside], lam_bottom[inside])
            lam[inside] = lam_in
            x[inside] = x_in
        return self.finish(setup, x, lam)

    def solve_one_member(self, setup: InnerSetup) -> InnerBatch:
        """One member takes the whole purchase: x = min(y, xbar), lambda = g(x).

        No root and no stationarity to check (lambda is defined by the allocation),
        so the residual is the balance |x - y| alone; the total derivative is
        g(x) - p' w phi'(s + e) x (at xbar too: there lambda / (U' - p) = w phi').
        Same values as the general path (``finish``), in a dozen array operations.
        """
        y, p2, xbar = setup.y, setup.price_column, setup.xbar
        weight, floor = setup.weight, setup.floor
        x = np.minimum(np.maximum(y, 0.0)[:, None], xbar)
        surplus = self.members.U(x) - p2 * x
        infeasible = y > setup.cap * (1 + 1e-12) + 1e-300
        welfare = welfare_of(self.player, surplus, weight, floor, setup.priced_out)
        welfare = np.where(infeasible, -np.inf, welfare)
        lam = marginal_welfare(surplus + floor, self.members.dU(x) - p2, weight,
                               self.alpha)[:, 0]
        dphi = welfare_weight(surplus + floor, weight, self.alpha)
        derivative = lam - setup.price_slope * np.where(x > 0, dphi * x, 0.0)[:, 0]
        derivative = np.where(infeasible | ~np.isfinite(welfare), np.nan, derivative)
        cap = np.maximum(setup.cap, 1e-300)
        residual = settled_residual(
            np.abs(x[:, 0] - y) / cap, np.abs(x[:, 0] - y) / cap, welfare, y,
            setup.cap, forced_rows(self.player, y, setup.cap, setup.priced_out,
                                   setup.price))
        return InnerBatch(y, setup.price, x, surplus, welfare, surplus[:, 0], lam,
                          derivative, None, residual)

    def finish(self, setup: InnerSetup, x: np.ndarray, lam: np.ndarray) -> InnerBatch:
        """Welfare, total derivative and residual of allocations ``x``."""
        player, p2 = self.player, setup.price_column
        xbar, weight, floor = setup.xbar, setup.weight, setup.floor
        infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
        surplus = self.members.U(x) - p2 * x
        welfare = welfare_of(player, surplus, weight, floor, setup.priced_out)
        welfare = np.where(infeasible, -np.inf, welfare)
        coef = price_coefficient(x, xbar, lam[:, None], self.members.dU(x) - p2,
                                 welfare_weight(surplus + floor, weight, self.alpha))
        derivative = lam + setup.price_slope * price_sensitivity(x, coef)
        derivative = np.where(infeasible | ~np.isfinite(welfare), np.nan, derivative)
        residual = optimality_residual(player, setup.y, setup.price, x, lam, xbar,
                                       weight, floor)
        residual = settled_residual(
            residual, allocation_error(x, setup.y, xbar), welfare, setup.y, setup.cap,
            forced_rows(player, setup.y, setup.cap, setup.priced_out, setup.price))
        return InnerBatch(setup.y, setup.price, x, surplus, welfare,
                          surplus.sum(axis=1), lam, derivative, None, residual)

    # -- every member at a multiplier ----------------------------------------------
    def members_at(self, lam, price, xbar, weight, floor, start=None):
        """x_i(lambda): argmax over [0, xbar_i] of w phi(s_i + e_i) - lambda x_i
        (``start``: a guess for the iterative families, e.g. the last iterate's)."""
        lam = lam[:, None]
        m = self.members
        if m.closed_form:  # lambda = 0 or +-inf: limits the formula takes as 0 or inf
            return quadratic_response(lam, m.b - price, m.a, m.two_a, floor, xbar,
                                      self.alpha)
        shape = np.broadcast_shapes(lam.shape, xbar.shape)
        return member_response(m.U, m.dU, m.d2U, None, lam, price, np.zeros(shape),
                               np.broadcast_to(xbar, shape).copy(), weight, floor,
                               self.alpha, 0.0 if start is None else start)

    def _member_slope(self, x, lam, price, xbar, weight, floor):
        """dx_i/dlambda (0 at the bounds): 1 / g_i'(x_i) for interior members."""
        interior = (x > 0) & (x < xbar)
        m = self.members
        if m.closed_form:  # (members of weight 0 are never interior)
            slope = quadratic_response_slope(lam[:, None], x, m.b - price, m.a,
                                             m.two_a, floor, weight, self.alpha)
        else:
            slope = 1.0 / m.g_and_slope(x, price, weight, floor)[1]
        return np.where(interior & np.isfinite(slope), slope, 0.0)

    # -- the lambda root -------------------------------------------------------------
    def _lambda_bracket(self, y, price, xbar, weight, floor, hi, lo):
        """Finite ends of the lambda bracket: infinite ends (strict rule) grow by 4x
        away from 0 until the bracket holds."""
        g = y.shape[0]
        if np.isfinite(hi).all() and np.isfinite(lo).all():
            return hi, lo  # floor and viable rules: nothing to search for
        hi = np.where(np.isfinite(hi), hi, np.nan)
        lo = np.where(np.isfinite(lo), lo, np.nan)
        for side, sign in ((0, 1.0), (1, -1.0)):
            end = hi if side == 0 else lo
            missing = np.isnan(end)
            step = np.ones(g)
            while missing.any():
                trial = sign * step
                total = self.members_at(trial, price, xbar, weight, floor).sum(axis=1)
                ok = (total <= y) if side == 0 else (total >= y)
                end = np.where(missing & ok, trial, end)
                missing = missing & ~ok
                step = step * 4.0
                if step.max() > 1e300:
                    break
            if side == 0:
                hi = end
            else:
                lo = end
        return hi, lo

    def _solve_lambda(self, y, price, xbar, weight, floor, hi, lo):
        """lambda with sum_i x_i(lambda) = y, row by row (y strictly inside (0, cap)).

        ``hi`` = max_i g_i(0) and ``lo`` = min_i g_i(xbar_i) bracket it: every member
        is at 0 above ``hi`` and at xbar below ``lo`` (both infinite under strict).
        Families without a closed-form x_i(lambda) first try Newton on (x, lambda)
        together (``_joint_newton``); rows it does not settle take the nested root.
        """
        g = y.shape[0]
        hi, lo = self._lambda_bracket(y, price, xbar, weight, floor, hi, lo)
        lam = 0.5 * (lo + hi)
        lam = np.where(np.isfinite(lam), lam, 0.0)
        # Single rows start from the previous single solves (searches and grids
        # call with nearby purchases).
        warm = None
        if g == 1:
            guess, warm = self.warm.guess(float(y[0]), xbar.shape[1])
            if warm is not None:
                warm = np.clip(warm, 0.0, xbar)
            if guess is not None and lo[0] < guess < hi[0]:
                lam = np.array([guess])
        if not self.members.closed_form:
            start = warm if warm is not None else self.members_at(
                lam, price, xbar, weight, floor)
            lam_j, x_j, ok = self._joint_newton(y, price, xbar, weight, floor, lam,
                                                start, lo, hi)
            if not ok.all():
                rest = ~ok
                lam_j[rest], x_j[rest] = self._nested_root(
                    y[rest], price[rest], xbar[rest], weight[rest], floor[rest],
                    lam[rest], lo[rest], hi[rest], warm)
            lam, x = lam_j, x_j
        else:
            lam, x = self._nested_root(y, price, xbar, weight, floor, lam, lo, hi, warm)
        if g == 1:
            self.warm.remember(float(y[0]), float(lam[0]), x)
        return lam, x

    def _nested_root(self, y, price, xbar, weight, floor, lam, lo, hi, warm):
        """Safeguarded Newton in lambda, each step solving every member exactly."""
        last = [warm if warm is not None and warm.shape == xbar.shape else None]

        def residual(lam):
            # Sum too big -> lambda too small: decreasing in lambda. Members start
            # from the previous iterate's allocation (close once lambda settles).
            x = self.members_at(lam, price, xbar, weight, floor, last[0])
            last[0] = x
            slope = self._member_slope(x, lam, price, xbar, weight, floor).sum(axis=1)
            return x.sum(axis=1) - y, slope, x

        return decreasing_root(residual, lo, hi, lam, ROOT_RTOL * y)

    def _joint_newton(self, y, price, xbar, weight, floor, lam, x, lo, hi):
        """Newton on the inner KKT system in (x, lambda) at once.

        For the members interior at lambda (g_i(0) > lambda > g_i(xbar_i)),
        linearizing g_i(x_i) = lambda' gives x_i' = x_i + (lambda' - g_i) h_i with
        h_i = 1 / g_i'(x_i); sum_i x_i' = y then fixes lambda'. One member evaluation
        per step, where the nested root needs a full member solve per lambda step
        (measured on Fig. 4 at alpha = 2: ~20 member evaluations per inner solve by
        the nested root, ~5 here). Steps stay inside the bracket and inside each
        member's (0, xbar_i) (halfway to a bound they would cross). A row is
        accepted only where, at the returned (x, lambda), sum x = y to ROOT_RTOL and
        every interior member's remaining Newton step is below 1e-13 of its xbar_i:
        the nested root's own stopping rules. Returns (lambda, x, accepted rows).
        """
        g0 = self.members.g_at_zero(price, weight, floor, xbar.shape)
        gcap = self.members.g(xbar, price, weight, floor)
        atol = ROOT_RTOL * y
        ok = np.zeros(y.shape, dtype=bool)
        x = x.copy()
        for _ in range(JOINT_NEWTON_STEPS):
            col = lam[:, None]
            interior = (g0 > col) & (gcap < col)
            x = np.where(g0 <= col, 0.0, np.where(gcap >= col, xbar, x))
            x = np.where(interior & ((x <= 0) | (x >= xbar)), 0.5 * xbar, x)
            val, dval = self.members.g_and_slope(x, price, weight, floor)
            h = np.where(interior, 1.0 / dval, 0.0)
            move = np.where(interior, (val - col) * h, 0.0)
            finite = np.isfinite(move).all(axis=1) & np.isfinite(h).all(axis=1)
            # The step alone is blind where g_i' is huge (alpha = 5, s near 0: h ~ 0
            # whatever g_i - lambda is), so g_i = lambda must also hold relatively;
            # rows failing it (lambda ~ 0 too) take the nested root.
            matched = np.abs(val - col) <= JOINT_MATCH_RTOL * np.abs(col)
            ok = finite & (np.abs(x.sum(axis=1) - y) <= atol) & np.all(
                (np.abs(move) <= 1e-13 * np.maximum(xbar, 1e-300))
                & (matched | ~interior), axis=1)
            if ok.all():
                break
            new_lam = lam + (y - x.sum(axis=1) + move.sum(axis=1)) / h.sum(axis=1)
            inside = np.isfinite(new_lam) & (new_lam > lo) & (new_lam < hi)
            new_lam = np.where(inside, new_lam, 0.5 * (lam + np.where(
                new_lam >= hi, hi, lo)))
            step = x + (new_lam[:, None] - val) * h
            step = np.where(step <= 0, 0.5 * x, np.where(step >= xbar,
                                                       0.5 * (x + xbar), step))
            keep = ok | ~finite
            x = np.where(keep[:, None] | ~interior, x, step)
            lam = np.where(keep, lam, new_lam)
        return lam, x, ok
