"""Regret of a leximin player at a profile: payoffs compared as sorted vectors.

Each deviation is solved alone by the player's own native inner solver (no state
shared with the dynamics) and checked by its residual; the regret is the gain in the
first sorted component where the best deviation differs from the profile
(docs/model.md, section "Leximin").
"""

from __future__ import annotations

import math

import numpy as np

from aggregame.leximin import first_difference
from aggregame.players import Game
from aggregame.solvers.equilibrium.leximin_response import lexicographic_search
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.leximin import LexPayoff, best_of, payoffs, tie_tolerance
from aggregame.solvers.inner.native import NativeInner


def regret_of(here: LexPayoff, seen: list[LexPayoff]) -> tuple[float, float,
                                                                 LexPayoff]:
    """(raw, relative, best) gain of the best payoff in ``seen`` over ``here``.

    Lexicographic: the gain is measured in the first sorted component k where the
    best deviation differs from ``here`` by more than the tie tolerance, relative to
    that component's scale over the samples (best minus median, as the certificate's
    other payoffs). Zero when nothing beats ``here``.
    """
    atol = tie_tolerance(seen + [here])
    best = seen[best_of(seen, atol)]
    if here.welfare == -math.inf:
        return (math.inf, math.inf, best) if math.isfinite(best.welfare) else (
            0.0, 0.0, best)
    k = first_difference(best.levels, here.levels, atol)
    if k < 0 or best.levels[k] <= here.levels[k]:
        return 0.0, 0.0, best
    raw = float(best.levels[k] - here.levels[k])
    if not math.isfinite(raw):
        return math.inf, math.inf, best
    column = np.array([c.levels[k] for c in seen if np.isfinite(c.levels[k])])
    span = float(column.max() - np.median(column)) if column.size else 0.0
    if span <= 0 and column.size:
        span = float(column.max() - column.min())
    return raw, (raw / span if span > 0 else math.inf), best



def leximin_regret(game: Game, j: int, profile: np.ndarray
                   ) -> tuple[float, float, float, float, int]:
    """(raw regret, relative regret, best deviation, J at the profile, solves) of a
    leximin player, for solvers/certify/scan.py.

    Its own native inner solver (no state shared with the dynamics), every deviation
    solved alone and checked by its residual; samples and refinement as the best
    response's search, on the certificate's grid. The regret is
    :func:`regret_of`'s lexicographic gain.
    """
    from aggregame.solvers.certify.scan import GRID_POINTS, REFINE_RTOL, REFINED_MAXIMA

    inner = NativeInner(game, j)
    others = float(profile.sum() - profile[j])
    solves = [0]

    def alone(ys) -> InnerBatch:
        ys = np.atleast_1d(np.asarray(ys, dtype=float))
        parts = [inner.solve(np.array([y]), others) for y in ys]
        solves[0] += ys.size
        return InnerBatch(*(None if getattr(parts[0], f) is None else
                            np.concatenate([getattr(p, f) for p in parts])
                            for f in InnerBatch.__dataclass_fields__))

    player = game.players[j]
    y = float(profile[j])
    here = payoffs(player, alone([y]))[0]
    y_max = game.feasible_max(j, others)
    if y_max > 0:
        xtol = max(REFINE_RTOL * y_max, 1e-300)
        seen = lexicographic_search(alone, game, j, others, y_max,
                                    [min(max(y, 0.0), y_max)], xtol,
                                    grid=GRID_POINTS, maxima=REFINED_MAXIMA)
    else:
        seen = payoffs(player, alone([0.0]))
    raw, rel, best = regret_of(here, seen + [here])
    return raw, rel, best.y, here.welfare, solves[0]
