"""One purchase of the Pyomo backend: what the price decides before a solve, what a
solve returns, and what the row computes from an allocation afterwards.

The member formulas come from aggregame.allocation, as for every backend: the
marginal welfare g_i = w phi'(s + e) (U' - p) and its slope, the price coefficients
of dPhi/dp. Sign conventions of the multipliers: solvers/inner/pyomo_backend.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from aggregame.allocation import (
    marginal_welfare,
    marginal_welfare_and_slope,
    member_terms,
    welfare_weight,
)
from aggregame.fairness import alpha_d2phi
from aggregame.players import Game, Player


@dataclass
class SolveCounter:
    """How many solver runs a backend made (for the benchmarks' time accounting).

    ``build_seconds`` is the time spent writing models for the solver (the NL file
    of the cyipopt path, once per player and objective); ``seconds`` the solves.
    """

    solves: int = 0
    seconds: float = 0.0
    iterations: int = 0  # solver iterations (Ipopt, HiGHS) or nodes (SCIP), summed
    by_phase: dict[str, int] = field(default_factory=dict)
    builds: int = 0
    build_seconds: float = 0.0


@dataclass(frozen=True)
class RowData:
    """What the price decides for one purchase, before any solve."""

    y: float
    price: float
    slope_p: float  # p'(Y), 0 at a fixed price
    priced_out: np.ndarray  # U_i'(0) <= p
    xbar: np.ndarray  # where each member's surplus returns to 0
    weight: np.ndarray
    floor: np.ndarray
    cap: float  # sum of xbar: the largest feasible purchase at this price
    curve_p: float = 0.0  # p''(Y) (finite difference), 0 at a fixed price


@dataclass(frozen=True)
class InnerRow:
    """The inner solution of one purchase (one row of an InnerBatch)."""

    price: float
    x: np.ndarray
    surplus: np.ndarray
    welfare: float
    lam: float
    deriv: float
    tie: float = np.nan
    curv: float = np.nan  # estimate of d2J/dy2 (InnerBatch.curvature)


@dataclass(frozen=True)
class PhaseStart:
    """Where one solve starts and what it holds fixed.

    ``level`` starts the max-min level t (None: not max-min); ``fixed_level`` fixes
    it (the tie-break phase, which maximizes total surplus instead).
    """

    x0: np.ndarray
    level: float | None = None
    fixed_level: float | None = None

    @property
    def tiebreak(self) -> bool:
        return self.fixed_level is not None


@dataclass(frozen=True)
class PhaseResult:
    """One solve's answer: the raw allocation (within the solver's bound
    relaxation), the max-min level, and the multipliers in the sign convention of
    solvers/inner/pyomo_backend.py (NaN where the solver gives none)."""

    x: np.ndarray
    level: float
    lam: float
    sigma: np.ndarray  # multipliers of s_i >= 0, >= 0
    mu: np.ndarray  # multipliers of s_i + e_i >= t (max-min), >= 0


def row_data(game: Game, j: int, y: float, others_total: float,
             fixed_price: float | None) -> RowData:
    """Price (p(others_total + y), or ``fixed_price`` with p' = 0), its slope and
    curvature, the priced-out members, bounds and member terms of one purchase."""
    player = game.players[j]
    total = others_total + y
    curve_p = 0.0
    if fixed_price is None:
        price = float(game.price.value(total))
        slope_p = float(game.price.derivative(total))
        h = 1e-6 * max(1.0, abs(total))
        curve_p = float(game.price.derivative(total + h)
                        - game.price.derivative(max(total - h, 0.0))) / (
                            total + h - max(total - h, 0.0))
    else:
        price, slope_p = float(fixed_price), 0.0
    priced_out = player.marginal_at_zero <= price
    xbar = player.zero_surplus_consumption(price)
    weight, floor = member_terms(player, priced_out)
    return RowData(y, price, slope_p, priced_out, xbar, weight, floor,
                   float(xbar.sum()), curve_p)


def surplus_of(player: Player, x: np.ndarray, price: float) -> np.ndarray:
    """s_i = U_i(x_i) - p x_i."""
    return player.evaluate("U", x) - price * x


def marginal_welfares(player: Player, x: np.ndarray, price: float,
                      weight: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """g_i(x_i) of every member (aggregame.allocation.marginal_welfare)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return marginal_welfare(surplus_of(player, x, price) + floor,
                                player.evaluate("dU", x) - price, weight,
                                player.fairness.alpha)


def allocation_terms(player: Player, x: np.ndarray, price: float, xbar: np.ndarray,
                     weight: np.ndarray, floor: np.ndarray, lam: float
                     ) -> tuple[float, np.ndarray]:
    """lambda (when the solver gave none) and the coefficients w phi'(s + e) +
    sigma of each member, from the allocation: interior members all have
    g_i = lambda, and the median damps the solver's last-digit noise; without one,
    lambda is the bound's. At xbar_i the coefficient is lambda / (U_i' - p)."""
    slope_u = player.evaluate("dU", x) - price
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = welfare_weight(surplus_of(player, x, price) + floor, weight,
                                 player.fairness.alpha)
    at_cap = x >= xbar * (1 - 1e-7)
    inside = (x > 1e-9 * max(1.0, float(xbar.max()))) & ~at_cap
    if not np.isfinite(lam):
        if inside.any():
            lam = float(np.median((weights * slope_u)[inside]))
        elif at_cap.any() and (xbar > 0).any():
            lam = float((weights * slope_u)[at_cap & (xbar > 0)].min())
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(at_cap, lam / slope_u, weights)
    return lam, np.where(x > 0, coef, 0.0)


def curvature(player: Player, d: RowData, x: np.ndarray, lam: float,
              weight: np.ndarray | float, alpha: float) -> float:
    """d2J/dy2 of the payoff sum_i w_i phi_alpha(s_i + e_i) (welfare; or the tie-break,
    weight 1 and alpha 0) by implicit differentiation of the allocation: interior
    members keep g_i = lambda, members at xbar_i(p) follow it, members at 0 stay;
    then d/dy of lambda + p' dPhi/dp. NaN where it does not apply (no interior
    member, a flat direction). An estimate for the best response's next evaluation
    only: the active set is assumed not to change, and every answer is still an
    evaluated, checked row."""
    if not np.isfinite(lam):
        return np.nan
    dp, du = d.slope_p, player.evaluate("dU", x) - d.price
    v = np.maximum(surplus_of(player, x, d.price) + d.floor, 0.0)
    with np.errstate(all="ignore"):
        u2 = player.evaluate("d2U", x)
        d1 = welfare_weight(v, weight, alpha)
        d2 = weight * alpha_d2phi(v, alpha)
        h = marginal_welfare_and_slope(v, du, u2, weight, alpha)[1]  # d g_i / d x_i
        cap = (d.xbar > 0) & (x >= d.xbar * (1 - 1e-9))
        inside = (x > 1e-9 * max(1.0, float(d.xbar.max()))) & ~cap
        q = -d2 * x * du - d1  # d g_i / d p
        r = player.evaluate("dU", d.xbar) - d.price  # < 0 at xbar_i
        xbar_p = np.where(cap, d.xbar / r, 0.0)  # d xbar_i / d p
        if not inside.any() or not np.all(h[inside] < 0):
            return np.nan
        inv = 1.0 / h[inside]
        lam_y = (1 + dp * (np.sum(q[inside] * inv) - np.sum(xbar_p[cap]))) / \
            np.sum(inv)
        dx = np.where(cap, xbar_p * dp, 0.0)
        dx[inside] = (lam_y - q[inside] * dp) * inv
        ds = du * dx - x * dp
        # dPhi/dp = -sum c_i x_i: c_i = phi_i' inside, lambda / (U_i' - p) at xbar.
        dr = player.evaluate("d2U", d.xbar) * xbar_p * dp - dp
        dphi_dp = -np.sum((d1 * x)[inside]) - np.sum(lam * x[cap] / r[cap])
        ddphi_dp = -np.sum((d2 * ds * x + d1 * dx)[inside]) - np.sum(
            (lam_y * x + lam * dx)[cap] / r[cap]
            - (lam * x * dr)[cap] / r[cap] ** 2)
        out = lam_y + d.curve_p * dphi_dp + dp * ddphi_dp
    return float(out) if np.isfinite(out) else np.nan


def objective_scale(player: Player, x0: np.ndarray, price: float,
                    weight: np.ndarray, floor: np.ndarray,
                    priced_out: np.ndarray) -> float:
    """1 / the largest |g_i| at the start (within [1e-8, 1e8]): Ipopt's tolerances
    are absolute on the scaled problem, so without it a game whose utilities are
    O(1e-3) stops 1e3 times less precisely (measured: residuals of 2e-4 at
    alpha = 0) and one at O(1e3) fails to converge. Max-min's epigraph objective t
    has gradient 1 (its constraints carry the surpluses' scale, which Ipopt's
    gradient-based scaling handles): 1."""
    if player.fairness.is_maxmin:
        return 1.0
    grad = marginal_welfares(player, x0, price, weight, floor)
    grad = np.abs(grad[~priced_out & np.isfinite(grad)])
    scale = float(grad.max()) if grad.size and grad.max() > 0 else 1.0
    return min(max(1.0 / scale, 1e-8), 1e8)
