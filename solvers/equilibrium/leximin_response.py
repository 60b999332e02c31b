"""Best response of a leximin player: a lexicographic search of the feasible interval.

No derivative orders sorted vectors, so both strategies compare sorted vectors
lexicographically (ties within LEX_TIE_RTOL of the levels' scale; docs/model.md,
section "Leximin") in a grid-and-shrink zoom:

* ``scan`` trusts no shape: a scan of the feasible interval (grid, both sides of
  every price-out point, the current purchase), then a zoom around the best local
  maxima;
* ``bisection`` trusts quasiconcavity of the order, as every player's bisection does:
  the ends, the current purchase and the current purchase +- twice the last move
  bracket the maximum (the best probe's neighbours, when it strictly beats both),
  and one zoom refines it. The dynamics' ``auto`` switches to the scan when the
  converged profile fails its certificate.
"""

from __future__ import annotations

import numpy as np

from aggregame.leximin import compare
from aggregame.players import Game, Player
from aggregame.solvers.equilibrium.closed_forms import single_member_closed_form
from aggregame.solvers.equilibrium.scan import dense_near, price_out_points
from aggregame.solvers.equilibrium.search import (
    GOLDEN_RTOL,
    Y_RTOL,
    ZOOM_POINTS,
    BestResponse,
    Candidate,
    Counted,
    Strategy,
)
from aggregame.solvers.inner.leximin import (
    LexPayoff,
    best_of,
    local_maxima,
    payoffs,
    tie_tolerance,
)

#: Points per step of the bracketed search's zoom (7 new rows, a 4-fold shrink): a
#: leximin row of 100 members costs ~20 us and a step ~60 us besides, so fewer
#: points per step reach the accuracy sooner (fig4 at alpha = inf: 843 -> 609 rows
#: in the dynamics, about a quarter faster than 17 points).
BRACKET_ZOOM_POINTS = 9


def zoom(evaluate, player: Player, lo: LexPayoff, hi: LexPayoff, xtol: float,
         points: int = ZOOM_POINTS) -> list[LexPayoff]:
    """Grid-and-shrink search between two evaluated purchases for the
    lexicographic maximum: each step evaluates the ``points - 2`` purchases inside
    (``evaluate(ys) -> InnerBatch``; the ends are known) and keeps the two cells
    around the best (exact comparison: only an order is needed). Returns the rows
    it evaluated."""
    seen: list[LexPayoff] = []
    while hi.y - lo.y > xtol:
        inside = payoffs(player, evaluate(np.linspace(lo.y, hi.y, points)[1:-1]))
        seen += inside
        cands = [lo] + inside + [hi]
        k = best_of(cands, 0.0)
        lo, hi = cands[max(k - 1, 0)], cands[min(k + 1, points - 1)]
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
        lo, hi = samples[max(k - 1, 0)], samples[min(k + 1, len(pts) - 1)]
        found = zoom(evaluate, player, lo, hi, xtol)
        if found:
            refined.append(found[best_of(found, 0.0)])
    return refined + samples


def bracketed_search(evaluate, player: Player, y_max: float, fixed: list[float],
                     current: float | None, step_hint: float | None, xtol: float
                     ) -> list[LexPayoff]:
    """Candidates of the quasiconcave search (module docstring): the refined
    maximum first, then the probes. The best probe's neighbours bracket the
    maximum when it strictly beats both (a maximum beyond a neighbour would put
    that neighbour in the best probe's upper level set); else [0, y_max]."""
    probes = list(fixed)
    if current is not None and step_hint is not None:
        width = 2.0 * max(step_hint, xtol)
        probes += [min(max(current - width, 0.0), y_max),
                   min(max(current + width, 0.0), y_max)]
    samples = payoffs(player, evaluate(np.unique(probes)))
    atol = tie_tolerance(samples)
    k = best_of(samples, atol)
    lo, hi = samples[0], samples[-1]
    if all(compare(samples[k].levels, samples[n].levels, atol) > 0
           for n in (k - 1, k + 1) if 0 <= n < len(samples)):
        lo, hi = samples[max(k - 1, 0)], samples[min(k + 1, len(samples) - 1)]
    found = zoom(evaluate, player, lo, hi, xtol, BRACKET_ZOOM_POINTS)
    return ([found[best_of(found, 0.0)]] if found else []) + samples


def leximin_best_response(inner, others_total: float, strategy: Strategy,
                          current: float | None, step_hint: float | None = None,
                          accuracy: float | None = None) -> BestResponse:
    """Best response of a leximin player (see the module docstring), for
    :func:`aggregame.solvers.best_response.best_response`; ``step_hint`` and
    ``accuracy`` as there (the bisection strategy's bracket and zoom width). The
    refined maxima come first and win ties; the current purchase is kept only when
    strictly better."""
    game, j = inner.game, inner.index
    player = game.players[j]
    y_max = game.feasible_max(j, others_total)
    f = Counted(inner, others_total)
    fixed = [0.0, max(y_max, 0.0)]
    if current is not None:
        fixed.append(min(max(current, 0.0), max(y_max, 0.0)))
    single = single_member_closed_form(game, j, others_total, y_max) \
        if y_max > 0 else 0.0
    xtol = max(GOLDEN_RTOL * y_max, 1e-14)
    if y_max <= 0 or single is not None:  # one member: the vector is s + e alone
        cands = payoffs(player, f(np.array([single if single is not None else 0.0]
                                           + fixed)))
    elif strategy is Strategy.BISECTION:
        here = fixed[-1] if current is not None else None
        # The first sorted level usually has a kink at the maximum, where the order
        # resolves y far below GOLDEN_RTOL: rounds that ask for an accuracy get it
        # down to Y_RTOL (the certificate's bound at a kink is first order in the
        # distance to it).
        fine = xtol if accuracy is None else max(Y_RTOL * y_max, accuracy, 1e-14)
        cands = bracketed_search(f, player, y_max, fixed, here, step_hint, fine)
    else:
        cands = lexicographic_search(f, game, j, others_total, y_max, fixed, xtol)
    best = cands[best_of(cands, tie_tolerance(cands))]
    here = None
    if current is not None:
        at = next((c for c in cands if c.y == fixed[-1]), None)
        here = None if at is None else Candidate(at.y, at.welfare, at.tiebreak)
    return BestResponse(best.y, best.welfare, best.tiebreak, strategy.value, f.count,
                        y_max, here, decided=True)
