"""Where the certificate samples a player's feasible interval: points of its own.

The certificate's points are chosen from the game alone, never from the search that
produced the profile (the best response has points of its own), and their coverage
does not depend on the scale of y (docs/model.md, section "Certificate"):

* an even grid of [0, y_max], which sets the payoff's scale (``spread``);
* points spaced evenly in log y from the smallest scale of any member up to y_max:
  a member that consumes 1e-3 beside one that consumes 1e5 changes the payoff where
  the even grid has no point;
* where the rule makes the payoff jump at a price-out point (viable, strict), every
  such point (the purchase at which a member's U'(0) meets the price, found by
  inverting the price) as the pair of adjacent purchases on either side of it, so
  that no interval between samples holds a change of the priced-out set;
* both sides of every kink of the price (a supply curve's capacity limits);
* the profile's own purchase, and 0 and y_max.

Between samples the certificate does not rely on density: solvers/certify/bounds.py
bounds the payoff on every interval, and splits the intervals it cannot close.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aggregame.players import Game
from aggregame.solvers.certify.bounds import MemberFormulas

#: Evenly spaced purchases on every player's feasible interval (ends included).
GRID_POINTS = 65
#: Log-spaced purchases per decade, from the smallest member scale to y_max.
LOG_POINTS_PER_DECADE = 6
#: The log grid starts this far below the smallest member scale...
BELOW_SMALLEST_SCALE = 1e-2
#: ...but never below this fraction of y_max: below it purchases are rounding.
SMALLEST_RELATIVE_PURCHASE = 1e-15
#: Price-out pairs sampled at most; beyond it the ones spread evenly over the
#: thresholds (a large aggregator has a threshold per member), and the bounds
#: split the intervals between them where they must.
MAX_PRICE_OUT_PAIRS = 512


@dataclass(frozen=True)
class SamplePlan:
    """A player's sample points: ``spread`` sets the payoff's scale; ``points`` is
    every purchase to evaluate (spread included), sorted and unique."""

    spread: np.ndarray
    points: np.ndarray


def member_scales(game: Game, j: int, others: float) -> np.ndarray:
    """Consumption scales of player j's members at the lowest price it can meet,
    p(others): each member's zero-surplus consumption and its surplus peak (the
    positive ones)."""
    player = game.players[j]
    price = np.array([[float(game.price.value(others))]])
    xbar = player.zero_surplus_consumption(price[:, 0])
    with np.errstate(all="ignore"):
        peak = MemberFormulas(player).peak(price)
    scales = np.concatenate([xbar.ravel(), peak.ravel()])
    return scales[np.isfinite(scales) & (scales > 0)]


def log_points(smallest: float, y_max: float) -> np.ndarray:
    """LOG_POINTS_PER_DECADE points a decade from ``smallest`` (floored at
    SMALLEST_RELATIVE_PURCHASE y_max) to y_max."""
    low = max(smallest, SMALLEST_RELATIVE_PURCHASE * y_max)
    if not (y_max > 0 and low < y_max):
        return np.empty(0)
    decades = math.log10(y_max / low)
    count = max(2, int(math.ceil(decades * LOG_POINTS_PER_DECADE)) + 1)
    return np.geomspace(low, y_max, count)


def price_out_pairs(game: Game, j: int, others: float, y_max: float) -> np.ndarray:
    """For each member priced out between purchase 0 and y_max, the two adjacent
    floats around its price-out purchase: the last one where it is priced in and the
    first one where it is out (read from the price itself, U'(0) <= p(Y))."""
    player = game.players[j]
    low = float(game.price.value(others))
    high = float(game.price.value(others + y_max))
    thresholds = np.unique(player.marginal_at_zero)
    thresholds = thresholds[(thresholds > low) & (thresholds <= high)]
    if thresholds.size > MAX_PRICE_OUT_PAIRS:
        keep = np.linspace(0, thresholds.size - 1, MAX_PRICE_OUT_PAIRS).astype(int)
        thresholds = thresholds[np.unique(keep)]
    out = []
    for b in thresholds.tolist():
        y = min(max(game.price.inverse(b) - others, 0.0), y_max)
        out.extend(_straddle(game, others, b, y, y_max))
    return np.array(out, dtype=float)


def _straddle(game: Game, others: float, threshold: float, y: float,
              y_max: float) -> tuple[float, float]:
    """(last purchase priced in, first priced out) around ``y``, adjacent floats: the
    inverse of the price is exact only to rounding, so step to where the price says
    the status changes (a few ulps away)."""
    def out(z: float) -> bool:
        return threshold <= float(game.price.value(others + z))

    # out(0) is False and out(y_max) True (the caller keeps thresholds in between);
    # widen a bracket around y by doubling steps, then halve it to adjacent floats.
    step = max(abs(y) * 4 * np.finfo(float).eps, 5e-324)
    lo, hi = (y, y) if 0.0 < y < y_max else (0.0, y_max)
    while out(lo):
        lo, step = max(lo - step, 0.0), 2 * step
    while not out(hi):
        hi, step = min(hi + step, y_max), 2 * step
    while True:
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi:
            return lo, hi
        if out(mid):
            hi = mid
        else:
            lo = mid


def kink_sides(game: Game, j: int, others: float, y_max: float) -> np.ndarray:
    """Both sides of every kink of the price within (0, y_max)."""
    kinks = np.asarray(game.price.breakpoints(others, others + y_max),
                       dtype=float) - others
    kinks = kinks[(kinks > 0) & (kinks < y_max)]
    delta = 1e-12 * np.maximum(np.abs(kinks), 1e-300)
    return np.concatenate([kinks - delta, kinks, kinks + delta])


def plan(game: Game, j: int, others: float, y_max: float, current: float
         ) -> SamplePlan:
    """Every point the certificate evaluates first for player j (module docstring).
    Price-out pairs only where the rule makes the payoff jump there (viable,
    strict): under the floor rule a priced-out member keeps its term, so the
    bounds hold across the point and need no sample at it."""
    spread = np.linspace(0.0, y_max, GRID_POINTS) if y_max > 0 else np.zeros(1)
    scales = member_scales(game, j, others)
    smallest = float(scales.min()) * BELOW_SMALLEST_SCALE if scales.size else y_max
    fairness = game.players[j].fairness
    jumps = fairness.rule.jumps_at_price_out(fairness)
    pts = np.concatenate([spread, log_points(smallest, y_max),
                          price_out_pairs(game, j, others, y_max) if jumps
                          else np.empty(0),
                          kink_sides(game, j, others, y_max),
                          [min(max(current, 0.0), y_max)]])
    pts = np.unique(np.clip(pts[np.isfinite(pts)], 0.0, max(y_max, 0.0)))
    return SamplePlan(spread, pts)
