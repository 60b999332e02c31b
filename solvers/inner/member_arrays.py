"""A player's members as numpy arrays, for the native backend's water fillings.

``MemberArrays`` evaluates the member formulas of aggregame.allocation over (rows,
members) arrays: through the families' own U, U', U'' in general, and through dense
(a, b) arrays where every member is quadratic (a third of the array operations, in
the innermost loops). ``decreasing_root`` is the row-wise safeguarded Newton every
root of a water filling takes (aggregame.elementwise's step, on arrays of rows).

The fillings run under one np.errstate(all="ignore") set by NativeInner: infinities
and NaNs are expected and handled (phi' at s = 0, 1 / g' at a bound), and entering
np.errstate costs ~2 us, which an alpha = 1 inner solve would pay ~20 times.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from aggregame.allocation import (
    CLOSED_FORM_ALPHAS,
    HALVINGS,
    MAX_ITERATIONS,
    level_interval,
    marginal_welfare,
    marginal_welfare_and_slope,
    quadratic_level_interval,
    quadratic_peak,
    quadratic_peak_surplus,
    surplus_peak,
)
from aggregame.elementwise import bracket_root, newton_or_bisect
from aggregame.players import Player
from aggregame.utilities import QuadraticUtility


def decreasing_root(residual: Callable, lo: np.ndarray, hi: np.ndarray,
                    start: np.ndarray, atol: np.ndarray,
                    active: np.ndarray | None = None) -> tuple[np.ndarray, Any]:
    """Row-wise root of a residual that decreases in z, by safeguarded Newton.

    ``residual(z)`` returns (r, dr/dz, aux); ``lo``/``hi`` bracket the roots
    (r(lo) >= 0 >= r(hi)). A Newton step leaving the bracket becomes a bisection, so
    this converges on the piecewise-smooth residuals of water filling. Returns the
    roots and the ``aux`` evaluated there. Rows where ``active`` is False keep
    ``start``.
    """
    z = start
    active = np.ones(z.shape, dtype=bool) if active is None else active.copy()
    aux = None
    for _ in range(MAX_ITERATIONS):
        r, slope, aux = residual(z)
        lo, hi, active = bracket_root(z, r, lo, hi, atol, active)
        if not active.any():
            break
        z = newton_or_bisect(z, r, slope, lo, hi, active)
    return z, aux


class MemberArrays:
    """The members of ``player`` over (rows, members) arrays."""

    def __init__(self, player: Player) -> None:
        self.player = player
        self.alpha = player.fairness.alpha
        families = player.families
        self.all_quadratic = all(f.family is QuadraticUtility for f in families)
        #: Quadratic members at alpha 0, 1/2 or 1 have x_i(lambda) in closed form.
        self.closed_form = self.all_quadratic and self.alpha in CLOSED_FORM_ALPHAS
        if self.all_quadratic:
            fam = families[0]
            order = np.argsort(fam.index)
            self.a = np.empty(player.size)
            self.b = np.empty(player.size)
            self.a[fam.index[order]] = fam.params["a"][order]
            self.b[fam.index[order]] = fam.params["b"][order]
            self.two_a = 2 * self.a  # per-call 2 a, bit for bit

    # -- the utility, as the shared formulas take it: f(x, member) ---------------------
    def U(self, x: np.ndarray, member: Any = None) -> np.ndarray:  # noqa: N802
        if self.all_quadratic:
            return -self.a * x**2 + self.b * x
        return self.player.evaluate("U", x)

    def dU(self, x: np.ndarray, member: Any = None) -> np.ndarray:  # noqa: N802
        if self.all_quadratic:
            return self.b - self.two_a * x
        return self.player.evaluate("dU", x)

    def d2U(self, x: np.ndarray, member: Any = None) -> np.ndarray:  # noqa: N802
        if self.all_quadratic:
            return np.broadcast_to(-self.two_a, x.shape)
        return self.player.evaluate("d2U", x)

    # -- marginal welfare ----------------------------------------------------------
    def g(self, x, price, weight, floor):
        """g_i(x) = w phi'(s + e) (U' - p), the marginal welfare of member i."""
        return marginal_welfare(self.U(x) - price * x + floor, self.dU(x) - price,
                                weight, self.alpha)

    def g_at_zero(self, price, weight, floor, shape):
        """g_i(0): quadratic members have U(0) = 0 and U'(0) = b, so the level is e
        and g_i(0) = w phi'(e) (b - p), the same floats as ``g`` at x = 0 in a third
        of the array operations (it runs on every inner solve)."""
        if not self.all_quadratic:
            return self.g(np.zeros(shape), price, weight, floor)
        return marginal_welfare(floor, self.b - price, weight, self.alpha)

    def g_and_slope(self, x, price, weight, floor):
        """g_i(x) and g_i'(x) together (one surplus, one power of it)."""
        return marginal_welfare_and_slope(self.U(x) - price * x + floor,
                                          self.dU(x) - price, self.d2U(x), weight,
                                          self.alpha)

    # -- the surplus's peak and level sets ------------------------------------------
    def peak(self, price, xbar):
        """Consumption where member i's surplus peaks (U' = p), within [0, xbar]."""
        if self.all_quadratic:
            return quadratic_peak(self.b - price, self.two_a, xbar)
        return surplus_peak(self.dU, None, price, np.zeros_like(xbar), xbar, HALVINGS)

    def peak_surplus(self, price, xbar):
        """Each member's largest surplus on [0, xbar] (0 where xbar = 0)."""
        if self.all_quadratic:
            top = quadratic_peak_surplus(self.b - price, self.a)
        else:
            peak = self.peak(price, xbar)
            top = self.U(peak) - price * peak
        return np.where(xbar > 0, top, 0.0)

    def level_interval(self, need, price, xbar):
        """[lo_i, hi_i]: the x in [0, xbar_i] with s_i(x) >= need (NaN if none)."""
        if self.all_quadratic:
            lo, hi, _ = quadratic_level_interval(self.a, self.b, need, price, xbar)
            return lo, hi
        return level_interval(self.U, None, need, price, xbar, self.peak(price, xbar),
                              HALVINGS)
