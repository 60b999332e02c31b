"""Best response of a leximin player: a lexicographic search of the feasible interval.

No derivative orders sorted vectors, so there is no bisection shortcut: a scan of the
feasible interval (grid, both sides of every price-out point, the current purchase),
then a grid-and-shrink refinement around the best local maxima, comparing sorted
vectors lexicographically (ties within LEX_TIE_RTOL of the levels' scale;
docs/model.md, section "Leximin").
"""

from __future__ import annotations

import numpy as np

from aggregame.players import Game, Player
from aggregame.solvers.equilibrium.closed_forms import single_member_closed_form
from aggregame.solvers.equilibrium.scan import dense_near, price_out_points
from aggregame.solvers.equilibrium.search import (
    GOLDEN_RTOL,
    BestResponse,
    Candidate,
    Counted,
)
from aggregame.solvers.inner.leximin import (
    LexPayoff,
    best_of,
    local_maxima,
    payoffs,
    tie_tolerance,
)


def zoom(evaluate, player: Player, lo: float, hi: float, xtol: float,
         points: int = 17) -> list[LexPayoff]:
    """Grid-and-shrink search of [lo, hi] for the lexicographic maximum: each step
    evaluates ``points`` purchases (``evaluate(ys) -> InnerBatch``) and keeps the two
    cells around the best (exact comparison: only an order is needed)."""
    seen: list[LexPayoff] = []
    while hi - lo > xtol:
        pts = np.linspace(lo, hi, points)
        cands = payoffs(player, evaluate(pts))
        seen += cands
        k = best_of(cands, 0.0)
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, points - 1)])
    return seen


def search_points(game: Game, j: int, others: float, y_max: float,
                  fixed: list[float], grid: int) -> np.ndarray:
    """Grid, both sides of every price-out point and price kink, points halving
    towards 0 and towards ``fixed`` (a member far smaller than the interval decides
    its first sorted level where the grid has no point), and ``fixed``."""
    kinks = price_out_points(game, j, others, y_max, near=fixed)
    delta = 1e-9 * max(y_max, 1.0)
    pts = np.concatenate([np.linspace(0.0, y_max, grid), kinks - delta, kinks + delta,
                          dense_near(y_max, fixed), fixed])
    return np.unique(np.clip(pts, 0.0, y_max))


def lexicographic_search(evaluate, game: Game, j: int, others: float, y_max: float,
                         fixed: list[float], xtol: float, grid: int = 48,
                         maxima: int = 4) -> list[LexPayoff]:
    """Every candidate of the sound search: the samples of :func:`search_points`
    and a zoom around each of the best ``maxima`` local maxima (zoomed ones first,
    so they win ties against the samples)."""
    player = game.players[j]
    pts = search_points(game, j, others, y_max, fixed, grid)
    samples = payoffs(player, evaluate(pts))
    atol = tie_tolerance(samples)
    refined: list[LexPayoff] = []
    for k in local_maxima(samples, atol, maxima):
        lo, hi = float(pts[max(k - 1, 0)]), float(pts[min(k + 1, len(pts) - 1)])
        found = zoom(evaluate, player, lo, hi, xtol)
        if found:
            refined.append(found[best_of(found, 0.0)])
    return refined + samples



def leximin_best_response(inner, others_total: float, strategy: str,
                          current: float | None):
    """Best response of a leximin player (see the module docstring), for
    :func:`aggregame.solvers.best_response.best_response`. Either strategy runs the
    sound lexicographic search: no derivative orders sorted vectors, so the
    bisection's shortcut does not exist. The refined maxima come first and win
    ties; the current purchase is kept only when strictly better."""
    game, j = inner.game, inner.index
    player = game.players[j]
    y_max = game.feasible_max(j, others_total)
    f = Counted(inner, others_total)
    fixed = [0.0, max(y_max, 0.0)]
    if current is not None:
        fixed.append(min(max(current, 0.0), max(y_max, 0.0)))
    single = single_member_closed_form(game, j, others_total, y_max) \
        if y_max > 0 else 0.0
    if y_max <= 0 or single is not None:  # one member: the vector is s + e alone
        cands = payoffs(player, f(np.array([single if single is not None else 0.0]
                                           + fixed)))
    else:
        xtol = max(GOLDEN_RTOL * y_max, 1e-14)
        cands = lexicographic_search(f, game, j, others_total, y_max, fixed, xtol)
    best = cands[best_of(cands, tie_tolerance(cands))]
    here = None
    if current is not None:
        at = next((c for c in cands if c.y == fixed[-1]), None)
        here = None if at is None else Candidate(at.y, at.welfare, at.tiebreak)
    return BestResponse(best.y, best.welfare, best.tiebreak, strategy, f.count,
                        y_max, here, decided=True)
