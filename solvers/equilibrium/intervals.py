"""A proof that the search over the total found every root, for one-member games.

When every player is one quadratic member (U = b y - a y^2), its backward reply at a
total Y is c_j(Y) = clip((b_j - p(Y)) / (2 a_j + p'(Y)), 0, (b_j - p(Y))^+ / a_j),
and every equilibrium total is a root of Z(Y) = sum_j c_j(Y) - Y. On an interval of
totals the price, its slope and its curvature lie in known ranges (the price says
so: ``Price.slope_range``, ``curvature_range``), and interval arithmetic bounds

* Z: an interval whose bounds exclude 0 holds no equilibrium;
* Z's slope, sum_j c_j' - 1, with c_j' the slope of the quotient where it is inside
  its clip, 0 at 0 and -p'/a_j at the capacity: where it keeps one sign Z is
  monotone there, so it has at most one root, which the ends' signs tell.

Branch and bound over [0, Y_bar] with these two tests either decides every interval
(complete: the roots are exactly the ones found, each isolated) or stops where it
cannot (a root at which Z is flat, a price without bounds), and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from aggregame.players import Game
from aggregame.utilities import QuadraticUtility

#: Intervals examined at most.
MAX_INTERVALS = 20_000
#: Narrowest interval (relative to Y_bar) split further.
MIN_WIDTH_RTOL = 1e-12


@dataclass(frozen=True)
class _Members:
    a: np.ndarray
    b: np.ndarray


def one_member_roots_complete(game: Game, top: float, roots: list[float]
                              ) -> tuple[bool, str] | None:
    """(complete, why) when every player is one quadratic member and the price
    bounds its slope and curvature; None when this proof does not apply. Roots the
    proof finds that are not in ``roots`` make it incomplete (the caller's search
    missed them), with the totals in ``why``."""
    users = [p.members[0].utility for p in game.players]
    if any(p.size != 1 for p in game.players) or not all(
            isinstance(u, QuadraticUtility) for u in users) or top <= 0:
        return None
    m = _Members(np.array([u.a for u in users]), np.array([u.b for u in users]))
    price = game.price
    if price.curvature_range(0.0, top) is None and price.curvature_range(
            top * 1e-12, top) is None:
        return None
    stack = [(0.0, top)]
    isolated, missed, examined = 0, [], 0
    while stack:
        lo, hi = stack.pop()
        examined += 1
        if examined > MAX_INTERVALS:
            return False, (f"the interval bounds did not decide [{lo:.6g}, {hi:.6g}] "
                           f"within {MAX_INTERVALS} intervals")
        z_lo, z_hi = _z_range(price, m, lo, hi)
        if z_lo > 0 or z_hi < 0:
            continue
        slope = _slope_range(price, m, lo, hi)
        if slope is not None and (slope[1] < 0 or slope[0] > 0):
            ends = [_z(price, m, lo), _z(price, m, hi)]
            if ends[0] * ends[1] > 0:
                continue
            isolated += 1
            inside = [r for r in roots if lo <= r <= hi]
            if not inside:
                missed.append(brentq(lambda t: _z(price, m, t), lo, hi))
            continue
        if hi - lo <= MIN_WIDTH_RTOL * top:
            return False, (f"a root near Y = {lo:.6g} could not be isolated: Z may be "
                           "flat there (a tangency), and interval bounds cannot tell "
                           "one root from two")
        mid = 0.5 * (lo + hi)
        stack += [(mid, hi), (lo, mid)]
    if missed:
        return False, (f"the interval bounds found roots the search missed: "
                       f"{', '.join(f'{r:.9g}' for r in missed)}")
    return True, (f"interval bounds of Z(Y) = sum_j b_j(Y) - Y over [0, {top:.6g}] "
                  f"({examined} intervals) exclude every total but {isolated} "
                  f"isolated root{'s' if isolated != 1 else ''}, on each of which Z "
                  "is strictly monotone")


def _z(price, m: _Members, total: float) -> float:
    p, s = float(price.value(total)), float(price.derivative(total))
    reply = np.clip((m.b - p) / (2 * m.a + s), 0.0, np.maximum(m.b - p, 0.0) / m.a)
    return float(reply.sum()) - total


def _quotient_range(price, m: _Members, lo: float, hi: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of (b - p) / (2a + p') over totals in [lo, hi]."""
    p_lo, p_hi = float(price.value(lo)), float(price.value(hi))
    s_lo, s_hi = price.slope_range(lo, hi)
    n_lo, n_hi = m.b - p_hi, m.b - p_lo
    d_lo, d_hi = 2 * m.a + s_lo, 2 * m.a + s_hi
    return (np.where(n_lo >= 0, n_lo / d_hi, n_lo / d_lo),
            np.where(n_hi >= 0, n_hi / d_lo, n_hi / d_hi))


def _z_range(price, m: _Members, lo: float, hi: float) -> tuple[float, float]:
    """Bounds of Z on [lo, hi] (the price rises with the total; the quotient and
    the clip are monotone in their arguments)."""
    p_lo, p_hi = float(price.value(lo)), float(price.value(hi))
    n_lo, n_hi = m.b - p_hi, m.b - p_lo
    r_lo, r_hi = _quotient_range(price, m, lo, hi)
    cap_lo, cap_hi = np.maximum(n_lo, 0.0) / m.a, np.maximum(n_hi, 0.0) / m.a
    c_lo = np.maximum(np.minimum(r_lo, cap_lo), 0.0)
    c_hi = np.maximum(np.minimum(r_hi, cap_hi), 0.0)
    return float(c_lo.sum()) - hi, float(c_hi.sum()) - lo


def _slope_range(price, m: _Members, lo: float, hi: float
                 ) -> tuple[float, float] | None:
    """Bounds of Z' on [lo, hi]: each reply's slope lies between the quotient's,
    0 (clipped at 0) and -p'/a (clipped at the capacity)."""
    curvature = price.curvature_range(lo, hi)
    if curvature is None:
        return None
    k_lo, k_hi = curvature
    s_lo, s_hi = price.slope_range(lo, hi)
    if not (math.isfinite(s_hi) and math.isfinite(k_lo) and math.isfinite(k_hi)):
        return None
    p_lo, p_hi = float(price.value(lo)), float(price.value(hi))
    n_lo, n_hi = m.b - p_hi, m.b - p_lo
    # r' = (-p' (2a + p') - n p'') / (2a + p')^2, every factor in its range.
    lead = np.array([-s * (2 * m.a + s) for s in (s_lo, s_hi)])
    cross = np.array([-n * k for n in (n_lo, n_hi) for k in (k_lo, k_hi)])
    top = lead.max(axis=0) + cross.max(axis=0)
    bottom = lead.min(axis=0) + cross.min(axis=0)
    d2_lo, d2_hi = (2 * m.a + s_lo) ** 2, (2 * m.a + s_hi) ** 2
    r_up = np.where(top >= 0, top / d2_lo, top / d2_hi)
    r_down = np.where(bottom >= 0, bottom / d2_hi, bottom / d2_lo)
    # The clips bind only where the quotient can reach them on this interval.
    r_lo, r_hi = _quotient_range(price, m, lo, hi)
    at_zero = r_lo <= 0
    at_cap = r_hi >= np.maximum(n_lo, 0.0) / m.a
    up = np.where(at_zero, np.maximum(r_up, 0.0), r_up)
    down = np.where(at_zero, np.minimum(r_down, 0.0), r_down)
    down = np.where(at_cap, np.minimum(down, -s_hi / m.a), down)
    return float(down.sum()) - 1.0, float(up.sum()) - 1.0
