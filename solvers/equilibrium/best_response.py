"""Best response of one player to the others' total purchase (paper eq. 11, Alg. 1).

Two strategies over the feasible interval [0, y_max(Y_-j)] (docs/model.md, section
"Quasiconcavity and the best response"):

* ``bisection`` (bisection.py): the paper's quasiconcave search, on the sign of the
  *total* derivative dJ_j/dy_j. Fast, and right wherever J_j is quasiconcave.
* ``scan`` (scan.py): does not trust quasiconcavity; samples the whole interval and
  refines every bracket.

One-member quadratic players under an affine price have a concave payoff; both
strategies take its closed form (closed_forms.py). Leximin players rank sorted
vectors and have a search of their own (leximin_response.py).
"""

from __future__ import annotations

import numpy as np

from aggregame.solvers.equilibrium.bisection import bisection, start_search
from aggregame.solvers.equilibrium.closed_forms import single_member_closed_form
from aggregame.solvers.equilibrium.leximin_response import leximin_best_response
from aggregame.solvers.equilibrium.scan import scan
from aggregame.solvers.equilibrium.search import (
    BestResponse,
    Strategy,
    best_candidate,
    candidates,
)
from aggregame.solvers.inner.batch import InnerSolver


def best_response(inner: InnerSolver, others_total: float, *,
                  strategy: Strategy | str = Strategy.BISECTION,
                  current: float | None = None, step_hint: float | None = None,
                  accuracy: float | None = None) -> BestResponse:
    """Best purchase of player ``inner.index`` against the others' total.

    Parameters
    ----------
    inner : InnerSolver
        Backend (native or pyomo) of the player.
    others_total : float
        Y_-j.
    strategy : {'bisection', 'scan'}
        See the module docstring.
    current : float, optional
        The player's present purchase; always among the candidates, so a best
        response is never worse than staying put.
    step_hint : float, optional
        How far the player moved last round; bisection probes around ``current``
        with it to start from a narrow bracket.
    accuracy : float, optional
        Purchase accuracy that is enough for a max-min player's golden section or
        leximin zoom (never finer than GOLDEN_RTOL * y_max): the dynamics ask for
        INEXACT_RTOL of the last move while the profile still moves far. None: full
        precision.
    """
    if strategy not in (Strategy.BISECTION, Strategy.SCAN):
        raise ValueError(f"strategy must be 'bisection' or 'scan', got {strategy!r}")
    strategy = Strategy(strategy)
    game, j = inner.game, inner.index
    if game.players[j].fairness.is_leximin:  # sorted vectors: leximin_response.py
        return leximin_best_response(inner, others_total, strategy, current,
                                     step_hint, accuracy)
    s = start_search(inner, others_total, current)
    if s.y_max <= 0:
        cand = candidates(s.f([0.0]))[0]
        return BestResponse(0.0, cand.welfare, cand.tiebreak, strategy.value,
                            s.f.count, s.y_max)
    single = single_member_closed_form(game, j, others_total, s.y_max)
    if single is not None:  # exact for either strategy: the payoff is concave
        cands = candidates(s.f(np.array((single,) + s.fixed)))
    elif strategy is Strategy.BISECTION:
        cands = bisection(s, current, step_hint, accuracy)
    else:
        cands = scan(s.f, game, j, others_total, s.y_max, s.maxmin,
                     s.golden_xtol if s.maxmin else s.xtol, list(s.fixed))
    best = best_candidate(cands, s.maxmin)
    here = None
    if current is not None:
        y_cur = min(max(current, 0.0), s.y_max)
        here = next((c for c in cands if c.y == y_cur), None)
    return BestResponse(best.y, best.welfare, best.tiebreak, strategy.value, s.f.count,
                        s.y_max, here)
