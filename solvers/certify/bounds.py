"""Upper bounds of a player's payoff between the certificate's samples.

The argument (docs/model.md, section "Certificate"). Write J_j(y) = V(y, p(Y_-j + y))
with V(y, q) the inner problem's value at purchase y and the price held at q. For
every payoff the package defines (alpha-fair under each rule while the priced-out set
stays the same, max-min's level, leximin's smallest level of the members priced in):

(i)  V(., q) is concave: the inner problem is a concave program with y in a linear
     constraint;
(ii) V(y, .) is non-increasing: a higher price lowers every surplus and shrinks
     every member's feasible consumption.

So on an interval [a, b] over which no member is priced out (the sample plan puts a
pair of samples around every price-out point), p(Y_-j + y) >= p_a gives

    J(y) <= V(y, p_a) <= J(a) + lambda_a (y - a)                     (first order)

with lambda_a the fixed-price right derivative at a: the inner multiplier of
sum x = y, or for a max-min level the slope of the members that hold it.

For alpha-fair payoffs a second-order bound follows from weak duality with lambda_a:
J(y) <= H(lambda_a, p(y)) + lambda_a y with H(lambda, q) = sum_i max_x
[w_i phi(U_i(x) - q x + e_i) - lambda x], whose slope in q is -sum_i w_i phi'(s_i* +
e_i) x_i* over each member's own response to (lambda_a, q). A lower bound D_lo of that
sum over q in [p_a, p_b] (``member_sensitivity``: at alpha = 0 it is the purchase
itself) and p(y) - p_a >= p'_lo (y - a) give

    J(y) <= J(a) + (lambda_a - p'_lo D_lo) (y - a)                   (second order)

whose slope tends to the total derivative J'(a) as the interval shrinks: its excess
over the true maximum is O((b - a)^2), so a handful of intervals close around a smooth
maximum where the first-order bound needs thousands.

Where neither applies (J(a) = -inf, an infinite multiplier at y = 0), the interval
[0, b] is bounded from its right end: V(., p_0) is concave, so if its fixed-price
slope at b is >= 0 it rises on all of [0, b] and V(b, p_0) bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aggregame.allocation import (
    marginal_of,
    member_terms,
    quadratic_parameters,
    surplus_peak,
)
from aggregame.fairness import alpha_dphi
from aggregame.players import Game

#: Halvings of the member-response brackets of ``member_sensitivity``: 2^-20 of the
#: bracket moves D_lo by ~1e-6 of itself, which moves an interval's bound by ~1e-6
#: of its first-order term: far below what closing an interval needs (the bracket's
#: safe end is used, so fewer halvings loosen the bound, never break it).
RESPONSE_HALVINGS = 20
#: Consumption accuracies (relative to the purchase) within which a member is read
#: as holding a max-min level (``level_bound`` tries each: the row's allocation is
#: known to ~1e-13 of the purchase, its tie-break stage to ~1e-8).
HOLDING_RTOLS = (1e-12, 1e-9, 1e-6, 1e-3)
#: Halvings of the bracket [0, xbar] that find a member's surplus peak (2^-100 of
#: the bracket is below a double's resolution of any bracket).
PEAK_HALVINGS = 100
#: Roundings of its two terms within which a member's surplus U(x) - p x is known
#: (``level_bound`` reads members this close to the smallest level as holding it).
SURPLUS_ROUNDING_ULPS = 64
EPS = float(np.finfo(float).eps)
#: (intervals x members) evaluated at once by ``member_sensitivity``.
SENSITIVITY_CHUNK = 2**18


@dataclass(frozen=True)
class PriceWindow:
    """The price over each interval [a, b]: its ends p_a, p_b and a lower bound of
    its slope p'_lo (0 where the price says nothing)."""

    low: np.ndarray
    high: np.ndarray
    slope: np.ndarray

    @classmethod
    def of(cls, game: Game, others: float, a: np.ndarray, b: np.ndarray
           ) -> "PriceWindow":
        low = np.asarray(game.price.value(others + a), dtype=float) + 0 * a
        high = np.asarray(game.price.value(others + b), dtype=float) + 0 * b
        slope = np.array([game.price.slope_range(others + lo, others + hi)[0]
                          for lo, hi in zip(a.tolist(), b.tolist())])
        return cls(low, high, np.maximum(np.nan_to_num(slope, nan=0.0), 0.0))


def linear_bound(value: np.ndarray, slope: np.ndarray, width: np.ndarray
                 ) -> np.ndarray:
    """value + max(slope, 0) width: the bound on [a, a + width] of a function below
    its tangent line at a. -inf stays -inf only with a finite slope; an undefined
    slope gives +inf (no bound)."""
    with np.errstate(invalid="ignore", over="ignore"):
        out = value + np.maximum(slope, 0.0) * width
    unknown = np.isnan(slope) | ((slope == np.inf) & (width > 0))
    return np.where(unknown | np.isnan(out), np.inf, out)


def member_sensitivity(game: Game, j: int, lam: np.ndarray, window: PriceWindow,
                       priced_out: np.ndarray) -> np.ndarray:
    """D_lo per interval: a lower bound, over q in [p_a, p_b], of sum_i w_i
    phi'(s_i* + e_i) x_i* with x_i* member i's response to (lambda, q), i.e. the
    maximizer over [0, xbar_i(q)] of w_i phi(U_i(x) - q x + e_i) - lambda x.

    For lambda > 0 each response lies below the member's surplus peak, between the
    roots of two envelopes of its marginal welfare g_i(x; q) = w phi'(U_i(x) - q x +
    e)(U_i'(x) - q): G_lo(x) = w phi'(U_i(x) - q1 x + e)(U_i'(x) - q2) <= g_i <=
    G_hi(x) = w phi'(max(U_i(x) - q2 x, 0) + e)(U_i'(x) - q1), both decreasing up to
    the peak at q2. So x_i* >= r_lo (the root of G_lo = lambda), x_i* <= r_hi (the
    root of G_hi = lambda, when beyond the peak at q2 G_hi stays below lambda; else
    the peak at q1), s_i* <= U_i(r_hi) - q1 r_hi, and phi' decreases:
    w phi'(s_i* + e) x_i* >= w phi'(U_i(r_hi) - q1 r_hi + e) r_lo.
    0 where lambda <= 0 (the bound then needs no price term).
    """
    player = game.players[j]
    alpha = player.fairness.alpha
    out = np.zeros(lam.size)
    rows = max(1, SENSITIVITY_CHUNK // max(player.size, 1))
    for k in range(0, lam.size, rows):
        part = slice(k, k + rows)
        out[part] = _sensitivity_rows(player, alpha, lam[part], window.low[part],
                                      window.high[part], priced_out[part])
    return np.where(lam > 0, out, 0.0)


class MemberFormulas:
    """U, U' and the surplus peak of a player's members over (intervals, members)
    arrays: closed forms where every member is quadratic, the families' own
    formulas (and bisection for the peak) otherwise."""

    def __init__(self, player) -> None:
        self.player = player
        self.quad = quadratic_parameters(player)

    def U(self, x):  # noqa: N802
        if self.quad is not None:
            a, b = self.quad
            return (b - a * x) * x
        return self.player.evaluate("U", x)

    def dU(self, x):  # noqa: N802
        if self.quad is not None:
            a, b = self.quad
            return b - 2 * a * x
        return self.player.evaluate("dU", x)

    def at_marginal(self, marginal, xbar):
        """x in [0, xbar] with U'(x) = marginal (0 where U'(0) <= marginal, xbar
        where U'(xbar) >= marginal): a member's response to a marginal cost."""
        if self.quad is not None:
            a, b = self.quad
            return np.clip((b - marginal) / (2 * a), 0.0, xbar)
        lo, hi = np.zeros_like(xbar), np.asarray(xbar, dtype=float).copy()
        for _ in range(RESPONSE_HALVINGS + 30):
            mid = 0.5 * (lo + hi)
            up = self.player.evaluate("dU", mid) > marginal
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        return np.where(self.player.evaluate("dU", xbar) >= marginal, xbar,
                        0.5 * (lo + hi))

    def peak(self, q):
        """Where each member's surplus peaks at price q (a column), in [0, xbar]."""
        if self.quad is not None:
            a, b = self.quad
            return np.maximum(b - q, 0.0) / (2 * a)
        xbar = self.player.zero_surplus_consumption(q[:, 0])
        return surplus_peak(marginal_of, self.player, q, np.zeros_like(xbar), xbar,
                            PEAK_HALVINGS)


def _sensitivity_rows(player, alpha, lam, q1, q2, priced_out) -> np.ndarray:
    weight, floor = member_terms(player, priced_out)
    lam, q1, q2 = lam[:, None], q1[:, None], q2[:, None]
    members = MemberFormulas(player)
    with np.errstate(all="ignore"):
        peak1, peak2 = members.peak(q1), members.peak(q2)

        def surplus(x, q):
            return members.U(x) - q * x

        def dphi(level):
            return alpha_dphi(np.maximum(level, 0.0), alpha)

        def g_lo(x):
            return weight * dphi(surplus(x, q1) + floor) * (members.dU(x) - q2)

        def g_hi(x):
            return weight * dphi(np.maximum(surplus(x, q2), 0.0) + floor) * (
                members.dU(x) - q1)

        r_lo = _last_above(g_lo, lam, peak2)
        beyond = weight * dphi(np.maximum(surplus(peak1, q2), 0.0) + floor) * (q2 - q1)
        r_hi = np.where(beyond < lam, _first_below(g_hi, lam, peak2), peak1)
        level_hi = surplus(r_hi, q1) + floor
        term = weight * dphi(level_hi) * r_lo
    term = np.where(np.isfinite(term) & (weight > 0), term, 0.0)
    return term.sum(axis=1)


def _last_above(g, lam, end) -> np.ndarray:
    """The largest bracket end x in [0, end] known to have g(x) > lambda (g
    decreasing there), 0 where g(0) <= lambda."""
    lo, hi = np.zeros_like(end), end.copy()
    above0 = g(lo) > lam
    for _ in range(RESPONSE_HALVINGS):
        mid = 0.5 * (lo + hi)
        up = g(mid) > lam
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return np.where(above0, lo, 0.0)


def _first_below(g, lam, end) -> np.ndarray:
    """The smallest bracket end x in [0, end] known to have g(x) < lambda beyond
    it (g decreasing on [0, end] and below lambda at end), 0 where g(0) < lambda."""
    lo, hi = np.zeros_like(end), end.copy()
    below0 = ~(g(lo) >= lam)
    for _ in range(RESPONSE_HALVINGS):
        mid = 0.5 * (lo + hi)
        up = g(mid) >= lam
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return np.where(below0, 0.0, hi)


def level_bound(player, y: float, x: np.ndarray, surplus: np.ndarray,
                window: tuple[float, float, float], width: float,
                members: np.ndarray, floor: np.ndarray,
                enough: float = -math.inf) -> float:
    """Upper bound on [y, y + width] of the max-min level of ``members`` (their
    smallest s_i + e_i, the others' consumption free), from the row at y.

    Weak duality of the level problem (max t: s_i + e_i >= t, sum x = y): for any
    mu >= 0 summing to 1 over the members and any nu,
        level(y, q) <= H(q) + nu y,  H(q) = sum_i max over [0, xbar_i(q)] of
                                              mu_i (U_i(x) - q x + e_i) - nu x,
    H non-increasing in q with slope -sum_i mu_i x_i*(q), x_i* = the x where
    U_i'(x) = q + nu / mu_i, which falls as q rises. So with D_lo = sum mu_i
    x_i*(p_b) and p(y') - p_a >= p'_lo (y' - y):
        level(y') <= H(p_a) + nu y + max(0, nu - p'_lo D_lo) width.
    Every (mu, nu) gives a valid bound, computed in full (H(p_a) is not assumed
    equal to the row's level); the row's own multipliers give a tight one. They are
    read from the members holding the level, whose set the row's rounding blurs, so
    a few readings are tried and the least bound kept (``_level_multipliers``,
    every reading in one array pass; ``enough``, the level a caller compares with,
    is accepted for callers that only ask whether the level can exceed it).
    """
    level = np.where(members, surplus + floor, np.inf)
    if not np.isfinite(level.min()):
        return math.inf
    formulas = MemberFormulas(player)
    rise = formulas.dU(x[None, :])[0] - window[0]
    with np.errstate(all="ignore"):  # the bounds at both ends of the price window
        xbars = (player.zero_surplus_consumption(np.array([window[0]]))[0],
                 player.zero_surplus_consumption(np.array([window[1]]))[0])
        # A surplus U(x) - p x is known to the rounding of its two terms, so two
        # members whose levels differ by that much may both hold the level.
        terms = np.abs(formulas.U(x[None, :])[0]) + abs(window[0]) * np.abs(x)
    rounding = np.where(np.isfinite(terms), SURPLUS_ROUNDING_ULPS * EPS * terms, 0.0)
    candidates = _level_multipliers(level, rise, members, y, rounding)
    if not candidates:
        return math.inf
    mu = np.array([c[0] for c in candidates])
    nu = np.array([c[1] for c in candidates])
    return _dual_level_bound(formulas, mu, nu, y, window, width, floor, xbars)


def _level_multipliers(level, rise, members, y, rounding):
    """Candidate (mu, nu) of the level problem at a row, for each reading of which
    members hold the level: at a consumption accuracy rtol (relative to the
    purchase), member i's level is known to err_i = |s_i'| rtol y plus its
    surplus's rounding, and it may hold the smallest level when level_i - err_i
    reaches the least level_k + err_k (a member at its peak, s_i' = 0, is known to
    its rounding, the members beside it only to their speed). Per reading: the
    holding members sharing mu_i = nu / s_i'(x_i), nu = 1 / sum 1 / s_i' (all
    rising, or all falling); and the holding member nearest its peak alone
    (nu = 0), the reading where a satiated member caps the level. Readings that
    coincide are tried once."""
    low = float(level.min())
    speed = np.abs(rise)
    # Every accuracy at once: one row of err and of holding per accuracy.
    err = (speed[None, :] * np.array(HOLDING_RTOLS)[:, None] * max(y, 1e-300)
           + rounding[None, :] + 1e-12 * abs(low))
    reach = np.min(np.where(members, level + err, np.inf), axis=1, keepdims=True)
    out, alone, seen = [], set(), set()
    for holding in members & (level - err <= reach):
        key = holding.tobytes()
        if key in seen or not holding.any():
            continue
        seen.add(key)
        signs = rise[holding]
        if np.all(signs > 0) or np.all(signs < 0):
            inverse = np.where(holding, 1.0 / np.where(holding, rise, 1.0), 0.0)
            nu = 1.0 / float(np.sum(inverse))
            out.append((nu * inverse, nu))
        alone.add(int(np.argmin(np.where(holding, speed, np.inf))))
    for k in sorted(alone):
        mu = np.zeros(level.size)
        mu[k] = 1.0
        out.append((mu, 0.0))
    return out


def _dual_level_bound(formulas, mu, nu, y, window, width, floor, xbars) -> float:
    """The least over candidates (rows of ``mu``, entries of ``nu``) of H(p_a) +
    nu y + max(0, nu - p'_lo D_lo) width, each computed in full; ``xbars``: the
    members' zero-surplus consumptions at p_a and p_b."""
    p_a, p_b, slope_lo = window
    xbar_a, xbar_b = xbars[0][None, :], xbars[1][None, :]
    nu_col = nu[:, None]
    with np.errstate(all="ignore"):
        share = np.where(mu > 0, nu_col / np.where(mu > 0, mu, 1.0), 0.0)
        x_a = formulas.at_marginal(p_a + share, xbar_a)
        x_b = formulas.at_marginal(p_b + share, xbar_b)
        own = mu * (formulas.U(x_a) - p_a * x_a + floor) - nu_col * x_a
        # Members outside the level (mu = 0) take x = 0, or xbar where nu < 0.
        free = np.where(nu_col < 0, -nu_col * xbar_a, 0.0)
        h_a = np.sum(np.where(mu > 0, own, free), axis=1)
        sensitivity = np.sum(np.where(mu > 0, mu * x_b, 0.0), axis=1)
        upper = h_a + nu * y + np.maximum(0.0, nu - slope_lo * sensitivity) * width
    upper = np.where(np.isfinite(upper), upper, np.inf)
    return float(upper.min())
