"""Rows of an inner solve: a purchase's set-up (price, bounds, member terms), and the
row-level quantities every backend computes from an allocation (J, dPhi/dp, the
allocation's own errors).

Player j's inner problem (docs/model.md, "Inner problem") for a purchase y and a
price p:

    J = max_x sum_i w_i phi(s_i + e_i)   s.t.  sum_i x_i = y,  0 <= x_i <= xbar_i(p)

with s_i = U_i(x_i) - p x_i, (w_i, e_i) the weight and floor of member i under the
priced-out rule, and xbar_i the consumption at which s_i returns to 0. Max-min
replaces the sum by min_i (s_i + e_i) over the members that count.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from aggregame.allocation.members import counted_members, member_terms, member_welfare

if TYPE_CHECKING:
    from aggregame.players import Game, Player


def welfare_of(player: Player, surplus: np.ndarray, weight: np.ndarray,
               floor: np.ndarray, priced_out: np.ndarray) -> np.ndarray:
    """J_j = Phi_alpha(s + e) row by row (min over counted members for max-min)."""
    f = player.fairness
    if f.is_maxmin:
        counted = counted_members(player, priced_out)
        vals = np.where(counted, surplus + floor, np.inf)
        out = vals.min(axis=-1)
        return np.where(np.isinf(out), 0.0, out)  # nobody counts: flat 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out = member_welfare(surplus + floor, weight, f.alpha).sum(axis=-1)
    if f.rule.void_when_priced_out(f):
        out = np.where(priced_out.any(axis=-1), -np.inf, out)
    return out


def price_sensitivity(x: np.ndarray, coefficient: np.ndarray) -> np.ndarray:
    """dPhi/dp = -sum_i coefficient_i x_i with coefficient = w phi'(s + e) + sigma
    (envelope theorem: p enters s_i = U_i - p x_i with slope -x_i)."""
    return -(coefficient * x).sum(axis=-1)


def bounds_violation(x: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """The largest violation of 0 <= x_i <= xbar_i in each row (0 if none)."""
    # max_i max(-x_i, x_i - xbar_i, 0) as two reductions: one (G, N) temporary,
    # not four (it runs on every row of every inner solve).
    below = -x.min(axis=-1, initial=0.0)
    return np.maximum(below, (x - xbar).max(axis=-1, initial=0.0))


def allocation_error(x: np.ndarray, y: np.ndarray, xbar: np.ndarray) -> np.ndarray:
    """Balance |sum x - y| and bounds 0 <= x <= xbar of each row, over the capacity."""
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    return np.maximum(np.abs(x.sum(axis=-1) - y), bounds_violation(x, xbar)) / cap


#: A member priced in by less than this fraction of the price (a few hundred ulps)
#: is priced in by rounding only (``forced_rows``): its largest surplus,
#: (U'(0) - p)^2 / 4|U''| for a quadratic, is below ~64 roundings of its own U.
ROUNDING_HEADROOM = 256 * float(np.finfo(float).eps)


def forced_rows(player: Player, y: np.ndarray, cap: np.ndarray,
                priced_out: np.ndarray, price: np.ndarray | None = None
                ) -> np.ndarray:
    """Rows whose allocation leaves nothing to optimize: one allocation only (y <= 0;
    y at the capacity, every member at xbar_i; the solvers' own thresholds; at most
    one member priced in, who takes y), no member priced in beyond rounding (given
    ``price``: U_i'(0) - p <= ROUNDING_HEADROOM p for each; every allocation's
    payoff is then rounding), or a payoff no allocation changes (J = -inf once a
    member is priced out, where the rule says so: strict, alpha >= 1). Their
    residual is the allocation's error alone."""
    f = player.fairness
    inside = ~np.asarray(priced_out, dtype=bool)
    alone = inside.sum(axis=-1) <= 1
    if price is not None:
        p = np.asarray(price, dtype=float)[:, None]
        beyond = player.marginal_at_zero[None, :] - p > ROUNDING_HEADROOM * np.abs(p)
        alone = alone | ~(inside & beyond).any(axis=-1)
    out = (y <= 0) | (y >= cap * (1 - 1e-14)) | alone
    if f.rule.void_when_priced_out(f):
        out = out | priced_out.any(axis=-1)
    return out


@dataclass(frozen=True)
class InnerSetup:
    """Everything an inner solve of player j needs besides the solver, per purchase.

    Attributes
    ----------
    y, price, price_slope, cap : (G,) purchase, p(Y_-j + y) (or the fixed price),
        p'(Y) (0 at a fixed price) and the capacity sum_i xbar_i.
    xbar, weight, floor, priced_out : (G, N) zero-surplus consumption, the weight and
        floor of each member's term in Phi, and U_i'(0) <= p.
    """

    y: np.ndarray
    price: np.ndarray
    price_slope: np.ndarray
    xbar: np.ndarray
    weight: np.ndarray
    floor: np.ndarray
    priced_out: np.ndarray
    cap: np.ndarray

    @property
    def price_column(self) -> np.ndarray:
        """The price as a (G, 1) column, to broadcast against (G, N) arrays."""
        return self.price[:, None]

    def take(self, rows: np.ndarray) -> "InnerSetup":
        """The set-up of the selected rows only."""
        return InnerSetup(*(getattr(self, f.name)[rows] for f in fields(self)))


def purchase_prices(game: Game, y: np.ndarray, others_total: float,
                    fixed_price: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(p, p') at purchases ``y`` (shape (G,)): p(others_total + y) and its slope, or
    ``fixed_price`` with slope 0 (see ``inner_setup``)."""
    if fixed_price is None:
        total = others_total + y
        return _like(game.price.value(total), y), _like(game.price.derivative(total), y)
    return np.full(y.shape, float(fixed_price)), np.zeros(y.shape)


def _like(value, y: np.ndarray) -> np.ndarray:
    """``value`` as a float array of y's shape (a price may give a scalar)."""
    value = np.asarray(value, dtype=float)
    return value if value.shape == y.shape else value + 0 * y


def inner_setup(game: Game, j: int, y: np.ndarray, others_total: float,
                fixed_price: float | None = None) -> InnerSetup:
    """Price, priced-out set, bounds, weights and floors of player j at purchases y.

    The price is p(others_total + y) unless ``fixed_price`` is given; then it is held
    there (p' = 0): the price-taking view, in which lambda_j = dJ_j/dy_j.
    """
    player = game.players[j]
    y = np.atleast_1d(np.asarray(y, dtype=float))
    price, slope = purchase_prices(game, y, others_total, fixed_price)
    priced_out = player.marginal_at_zero[None, :] <= price[:, None]
    xbar = player.zero_surplus_consumption(price)
    weight, floor = member_terms(player, priced_out)
    return InnerSetup(y, price, slope, xbar, weight, floor, priced_out,
                      xbar.sum(axis=1))
