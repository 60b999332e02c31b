"""Water filling in the level t: the native backend's inner solve for max-min read as
total surplus (docs/model.md, section "Max-min").

Each member needs x in the interval where s_i + e_i >= t; t* is the largest level
whose intervals can add up to y_j, and the total surplus then decides within those
intervals: water filling in nu, the multiplier of sum x = y, with U_i' - p = nu for
the members strictly inside their interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aggregame.allocation import (
    InnerSetup,
    allocation_error,
    forced_rows,
    marginal_response,
    maxmin_residual,
    price_coefficient,
    price_sensitivity,
    quadratic_marginal_response,
    settled_residual,
    welfare_of,
)
from aggregame.solvers.inner.batch import ROOT_RTOL, InnerBatch
from aggregame.solvers.inner.member_arrays import MemberArrays, decreasing_root


@dataclass(frozen=True)
class LevelProblem:
    """Rows of a max-min solve: purchases (G,), price column (G, 1), member bounds,
    floors, counted members and peak surpluses (G, N), and the top level (G,)."""

    y: np.ndarray
    p2: np.ndarray
    xbar: np.ndarray
    floor: np.ndarray
    counted: np.ndarray
    s_max: np.ndarray
    t_hi: np.ndarray


class LevelFilling:
    """Inner solutions of one max-min player (total-surplus reading)."""

    def __init__(self, members: MemberArrays) -> None:
        self.members = members
        self.player = members.player

    def solve(self, setup: InnerSetup) -> InnerBatch:
        """Top level, its intervals, then total surplus within them."""
        lp = self._level_problem(setup)
        lo_i, hi_i, _ = self._level_bounds(lp, self._top_level(lp))
        x, nu = self._fill_total_surplus(lp.y, lp.p2, lo_i, hi_i)
        return self.finish(setup, x, nu)

    def finish(self, setup: InnerSetup, x: np.ndarray, nu: np.ndarray) -> InnerBatch:
        """Welfare, tie-break derivative and residual of max-min allocations ``x``."""
        player, p2, xbar = self.player, setup.price_column, setup.xbar
        y, cap = setup.y, setup.cap
        surplus = self.members.U(x) - p2 * x
        welfare = welfare_of(player, surplus, setup.weight, setup.floor,
                             setup.priced_out)
        infeasible = y > cap * (1 + 1e-12)
        welfare = np.where(infeasible, -np.inf, welfare)
        nan = np.full(y.size, np.nan)
        # A counted priced-out member pins the level (at its floor) for every larger
        # y too, since the price only rises: the tie-break, an alpha = 0 problem on
        # [0, xbar], decides alone, and its derivative is nu + p' dT/dp with the
        # alpha = 0 coefficients (1 + sigma_i = nu / (U' - p) at xbar).
        counted = setup.weight > 0
        flat = (setup.priced_out & counted).any(axis=1) & (y < cap * (1 - 1e-14))
        coef = price_coefficient(x, xbar, nu[:, None], self.members.dU(x) - p2, 1.0)
        tie_slope = nu + setup.price_slope * price_sensitivity(x, coef)
        residual = maxmin_residual(player, y, setup.price, x, xbar, setup.floor,
                                   setup.priced_out, nu)
        residual = settled_residual(residual, allocation_error(x, y, xbar), welfare,
                                    y, cap,
                                    forced_rows(player, y, cap, setup.priced_out,
                                                setup.price))
        return InnerBatch(y, setup.price, x, surplus, welfare, surplus.sum(axis=1),
                          nan, nan.copy(),
                          np.where(flat & np.isfinite(nu), tie_slope, np.nan), residual,
                          tiebreak_multiplier=nu)

    # -- the top level -----------------------------------------------------------------
    def _level_problem(self, setup: InnerSetup) -> LevelProblem:
        """Rows' data of the level search, with the top level t_hi (the smallest
        peak surplus plus floor among the counted members)."""
        xbar, floor = setup.xbar, setup.floor
        counted = setup.weight > 0  # under strict, priced-out members count (t = 0)
        s_max = self.members.peak_surplus(setup.price_column, xbar)
        t_hi = np.where(counted, s_max + floor, np.inf).min(axis=1)
        t_hi = np.maximum(np.where(np.isfinite(t_hi), t_hi, 0.0), 0.0)
        return LevelProblem(setup.y, setup.price_column, xbar, floor, counted, s_max,
                            t_hi)

    def _level_bounds(self, lp: LevelProblem, t: np.ndarray):
        """Each member's interval [lo_i, hi_i] at level t, and the free members."""
        # Capped at the peak surplus: at t = t_hi rounding would otherwise make
        # the binding member's one-point interval empty.
        need = np.minimum(np.maximum(t[:, None] - lp.floor, 0.0), lp.s_max)
        lo_i, hi_i = self.members.level_interval(need, lp.p2, lp.xbar)
        # A member whose requirement is <= 0 may take anything in [0, xbar].
        free = (need <= 0) | ~lp.counted
        # Empty intervals (NaN) read as [0, 0]; np.where, not np.nan_to_num, which
        # costs ~10 us a call and ran ~15 times per max-min solve.
        lo_i = np.where(free, 0.0, np.where(np.isnan(lo_i), 0.0, lo_i))
        hi_i = np.where(free, lp.xbar, np.where(np.isnan(hi_i), 0.0, hi_i))
        return lo_i, hi_i, free

    def _top_level(self, lp: LevelProblem) -> np.ndarray:
        """Level t*: the largest t in [0, t_hi] with sum lo_i(t) <= y <= sum hi_i(t),
        i.e. min(t_hi, root of sum hi_i(t) = y, root of sum lo_i(t) = y); both sums
        are monotone in t (uncounted members span [0, xbar] whatever t is)."""
        y, p2 = lp.y, lp.p2

        def level_slopes(x, free):
            # d x / d t = 1 / s'(x) on either side of a member's surplus peak.
            return np.where(free, 0.0, 1.0 / (self.members.dU(x) - p2))

        def upper(t):
            lo_i, hi_i, free = self._level_bounds(lp, t)
            return hi_i.sum(axis=1) - y, level_slopes(hi_i, free).sum(axis=1), None

        def lower(t):
            lo_i, hi_i, free = self._level_bounds(lp, t)
            return y - lo_i.sum(axis=1), -level_slopes(lo_i, free).sum(axis=1), None

        t_star = lp.t_hi.copy()
        top = np.sqrt(lp.t_hi)
        for residual in (upper, lower):
            at_top = residual(lp.t_hi)[0] >= 0  # feasible all the way up: no root
            if at_top.all():
                continue

            # In u = sqrt(t_hi - t): the member whose peak sets t_hi has
            # lo_i, hi_i = (q -+ sqrt(4 a (peak - t))) / 2a, linear in u, where in t
            # its slope is infinite at t_hi and Newton crawls (~11 steps a root
            # on Fig. 4 as max-min; ~4 in u). -r(t(u)) decreases in u.
            def in_u(u, residual=residual):
                r, slope, _ = residual(lp.t_hi - u * u)
                return -r, 2 * u * slope, None

            # Rows feasible up to t_hi keep t_hi (u = 0): they are not solved, and the
            # start is what an inactive row returns.
            root, _ = decreasing_root(in_u, np.zeros(y.size), top.copy(),
                                      np.where(at_top, 0.0, np.sqrt(0.5) * top),
                                      ROOT_RTOL * y, active=~at_top)
            t_star = np.minimum(t_star,
                                np.where(at_top, lp.t_hi, lp.t_hi - root * root))
        return t_star

    # -- the total surplus within the level's intervals ----------------------------
    def _fill_total_surplus(self, y, p2, lo_i, hi_i):
        """max sum_i s_i s.t. x in [lo, hi], sum x = y: water filling in nu.

        Returns the allocation and nu, the multiplier of sum x = y (U_i' - p = nu for
        members strictly inside their interval). Safeguarded Newton in nu, with
        dx_i/dnu = 1 / U_i''(x_i) for the members inside their interval; each
        member's x_i(nu) is a clip for quadratic members, else a safeguarded Newton
        on U_i'(x) - p = nu (bisection would take 80 halvings per nu step and 200 nu
        bisections: ~20 ms a row for log members).
        """
        m = self.members

        def at(nu):
            if m.all_quadratic:
                return quadratic_marginal_response(m.b - p2, nu[:, None], m.two_a,
                                                   lo_i, hi_i)
            marginal = np.broadcast_to(p2 + nu[:, None], lo_i.shape)
            return marginal_response(m.dU, m.d2U, None, marginal, lo_i, hi_i)

        span = np.abs(m.dU(hi_i) - p2).max() + np.abs(m.dU(lo_i) - p2).max() + 1
        nu_lo = np.full(y.size, -span)
        nu_hi = np.full(y.size, span)

        def residual(nu):
            x = at(nu)
            inside = (x > lo_i) & (x < hi_i)
            slope = np.where(inside, 1.0 / m.d2U(x), 0.0).sum(axis=1)
            return x.sum(axis=1) - y, slope, x

        nu, x = decreasing_root(residual, nu_lo, nu_hi, np.zeros(y.size),
                                ROOT_RTOL * y)
        # Put the last rounding residue on members with room, so sum x = y exactly.
        resid = y - x.sum(axis=1)
        room = np.where(resid[:, None] > 0, hi_i - x, x - lo_i)
        share = room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300)
        return x + resid[:, None] * share, nu
