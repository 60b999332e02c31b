"""The sound best response: samples of the whole feasible interval, every bracket.

It does not trust quasiconcavity (docs/model.md, section "Quasiconcavity and the best
response"): it samples J_j and dJ_j/dy_j on a grid, on points halving towards 0 and
towards the fixed purchases, and on both sides of every price-out point (where a
member's U'(0) equals the price) and price kink, refines every sign change of the
derivative and the best sample, and keeps the best candidate. The certificate
(solvers/certify/) samples on points of its own.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from aggregame.solvers.equilibrium.search import (
    Candidate,
    Counted,
    best_index,
    candidates,
    golden,
    root_of_slope,
    slopes,
)

#: Grid of the scan: points spread over the interval, before price-out points.
SCAN_POINTS = 48


#: Price-out points a scan samples at most (both sides of each), and of those how
#: many nearest each known purchase (see ``price_out_points``).
MAX_PRICE_OUT_POINTS = 256


NEAR_PRICE_OUT_POINTS = 32


def price_out_points(game, j: int, others_total: float, y_max: float,
                     near: Sequence[float] = ()) -> np.ndarray:
    """Purchases in (0, y_max) at which one of player j's members is priced out.

    Beyond MAX_PRICE_OUT_POINTS (large aggregators) it keeps the NEAR_PRICE_OUT_POINTS
    closest to each purchase in ``near`` and spreads the rest evenly: with thousands
    of members each price-out moves J by little, and the scan's cost grows with
    (points x members).
    """
    thresholds = np.unique(game.players[j].marginal_at_zero)
    ys = np.array([game.price.inverse(float(b)) for b in thresholds]) - others_total
    # Kinks of the price itself (a supply curve's capacities) are scanned the same way.
    kinks = game.price.breakpoints(others_total, others_total + y_max) - others_total
    ys = np.unique(np.concatenate([ys, kinks]))
    ys = ys[(ys > 0) & (ys < y_max)]
    if ys.size <= MAX_PRICE_OUT_POINTS:
        return ys
    keep = set(np.linspace(0, ys.size - 1, MAX_PRICE_OUT_POINTS // 2).astype(int))
    for y in near:
        at = int(np.searchsorted(ys, y))
        keep.update(range(max(at - NEAR_PRICE_OUT_POINTS // 2, 0),
                          min(at + NEAR_PRICE_OUT_POINTS // 2, ys.size)))
    return ys[sorted(keep)]


def scan(f: Counted, game, j: int, others_total: float, y_max: float, maxmin: bool,
         xtol: float, fixed: list[float]) -> list[Candidate]:
    """Every candidate of the sound search (grid, price-out points, refined roots)."""
    grid = np.linspace(0.0, y_max, SCAN_POINTS)
    kinks = price_out_points(game, j, others_total, y_max, near=fixed)
    delta = 1e-9 * max(y_max, 1.0)
    pts = np.unique(np.clip(np.concatenate([grid, kinks - delta, kinks + delta,
                                            fixed, dense_near(y_max, fixed)]),
                            0.0, y_max))
    batch = f(pts)
    cands = candidates(batch)
    # A max-min player whose level is flat at y = 0 (pts[0]) is flat everywhere and
    # decided by its tie-break, which has a derivative: refine like the others.
    tiebreak = maxmin and batch.tiebreak_derivative is not None and bool(
        np.isfinite(batch.tiebreak_derivative[0]))
    if maxmin and not tiebreak:
        best = int(np.argmax([c.welfare for c in cands]))
        # Refine around the best grid point, and around the best tie-break among
        # the points that share the best level.
        for k in {best, best_index(cands, maxmin)}:
            lo = pts[max(k - 1, 0)]
            hi = pts[min(k + 1, len(pts) - 1)]
            if hi > lo:
                cands = golden(f, float(lo), float(hi), maxmin, xtol)[::-1] + cands
        return cands
    d = slopes(batch, tiebreak)
    roots: list[Candidate] = []
    for k in range(len(pts) - 1):
        if d[k] > 0 and d[k + 1] < 0:
            root = root_of_slope(f, float(pts[k]), float(pts[k + 1]), d[k], d[k + 1],
                                  xtol, tiebreak)
            roots += candidates(f([root]))
    # A maximum between two samples whose slopes are both positive (a payoff that
    # is not quasiconcave: rises, falls, rises again) has no sign change to find;
    # a derivative-free search around the best sample still finds it (measured:
    # alpha = 4 aggregators of the paper's users, a peak at 7.1 between samples
    # at 0 and 13.5 whose slopes are both > 0).
    k = best_index(cands, maxmin)
    lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, len(pts) - 1)])
    if hi > lo:
        roots += golden(f, lo, hi, maxmin, xtol)[::-1]
    return roots + cands  # refined roots first: they win ties against grid points


def dense_near(y_max: float, fixed: list[float]) -> np.ndarray:
    """Samples halving towards 0 and towards each fixed purchase: best responses
    sit far below y_max (every member at zero surplus), where an even grid is
    coarsest relative to the payoff's features."""
    halves = 2.0 ** -np.arange(1, 40)
    near = [y_max * halves] + [c * (1 + sign * halves[:12]) for c in fixed if c > 0
                               for sign in (-1.0, 1.0)]
    return np.concatenate(near)

