"""The paper's quasiconcave best response: bisection on the total derivative's sign.

Fast, and right wherever J_j is quasiconcave (docs/model.md, section "Quasiconcavity
and the best response"): the sign of the total derivative dJ_j/dy_j (not lambda alone:
the price moves with y_j) brackets the maximum, brentq refines it; sequential
solvers (one solver run per purchase) take safeguarded Newton probes first. Max-min
players have no derivative where the minimum changes hands: golden section on
(level, total surplus), compared lexicographically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aggregame.solvers.equilibrium.search import (
    GOLDEN_RTOL,
    Y_RTOL,
    Candidate,
    Counted,
    best_index,
    candidates,
    flat_level,
    golden,
    root_of_slope,
    settled,
    slopes,
)
from aggregame.solvers.inner.batch import InnerBatch, InnerSolver

#: Newton probes at most before brentq refines a bracket (sequential solvers).
NEWTON_PROBES = 6


@dataclass(frozen=True)
class Search:
    """One best-response search: the player, its interval and tolerances."""

    f: Counted
    maxmin: bool
    y_max: float
    xtol: float
    #: Golden section compares payoffs, which resolve y only to ~1e-8 relative.
    golden_xtol: float
    #: Purchases always among the candidates: both ends and the current one.
    fixed: tuple[float, ...]


def start_search(inner: InnerSolver, others_total: float, current: float | None
            ) -> Search:
    game, j = inner.game, inner.index
    y_max = game.feasible_max(j, others_total)
    xtol = max(Y_RTOL * max(y_max, 1.0), 1e-14)
    fixed = (0.0, y_max) + ((min(max(current, 0.0), y_max),) if current is not None
                            else ())
    return Search(Counted(inner, others_total), math.isinf(game.players[j].alpha),
                   y_max, xtol, max(xtol, GOLDEN_RTOL * y_max), fixed)


def bisection(s: Search, current: float | None, step_hint: float | None,
               accuracy: float | None = None) -> list[Candidate]:
    """Candidates of the quasiconcave search: the refined root first, then probes."""
    probes = list(s.fixed)
    hinted = step_hint is not None and current is not None
    width = 2.0 * max(step_hint or 0.0, s.xtol)
    if hinted and not s.f.sequential:
        # Dynamics near convergence move y_j a little each round: probing
        # current +- 2 * last move usually brackets the root tightly, so brentq
        # needs 3-4 evaluations instead of ~10 on the whole interval.
        probes += [min(max(current - width, 0.0), s.y_max),
                   min(max(current + width, 0.0), s.y_max)]
    ends = s.f(np.array(probes))
    cands = candidates(ends)
    tiebreak = flat_level(ends, s.maxmin)
    if s.maxmin and not tiebreak:
        lo, hi = _bracket(cands, s)
        xtol = max(s.golden_xtol, accuracy or 0.0)
        return golden(s.f, lo, hi, s.maxmin, xtol)[::-1] + cands
    order = np.argsort(ends.y, kind="stable")
    ys, ds = ends.y[order], slopes(ends, tiebreak)[order]
    settled = None
    if s.f.sequential:
        here = current if hinted and 0 < current < s.y_max else None
        ys, ds, settled = _sequential_probes(s, ends, here, width, ys, ds, cands,
                                             tiebreak)
    # Quasiconcave: D > 0 left of the root, D <= 0 right of it.
    first_down = int(np.argmax(ds <= 0)) if np.any(ds <= 0) else len(ys)
    if settled is not None:
        root = settled
    elif first_down == 0:
        root = 0.0
    elif first_down == len(ys):
        root = s.y_max
    else:
        root = root_of_slope(s.f, float(ys[first_down - 1]), float(ys[first_down]),
                              ds[first_down - 1], ds[first_down], s.xtol, tiebreak)
    # First in the list wins ties: the refined root is the most accurate.
    return candidates(s.f([root])) + cands


def _bracket(cands: list[Candidate], s: Search) -> tuple[float, float]:
    """Interval holding the maximum of a quasiconcave payoff, from probes.

    The best probe's neighbours (in y) bound it when it strictly beats both: a
    maximum beyond a neighbour would put that neighbour in the upper level set of
    the best probe. Near convergence the probes at current +- 2 * last move give a
    bracket thousands of times narrower than [0, y_max]: golden section then needs
    a few batches, not ten. Without a strict winner, the whole interval.
    """
    unique = {c.y: c for c in reversed(cands)}  # first wins duplicates, as in best_candidate
    ordered = [unique[y] for y in sorted(unique)]
    k = best_index(ordered, s.maxmin)
    left = ordered[k - 1] if k > 0 else None
    right = ordered[k + 1] if k + 1 < len(ordered) else None
    if any(n is not None and not ordered[k].beats(n, s.maxmin) for n in (left, right)):
        return 0.0, s.y_max
    return (left.y if left else 0.0), (right.y if right else s.y_max)


def _sequential_probes(s: Search, ends: InnerBatch, here: float | None,
                       width: float, ys: np.ndarray, ds: np.ndarray,
                       cands: list[Candidate], tiebreak: bool
                       ) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Probes of a sequential solver from the current purchase ``here`` (a row of
    ``ends``), or from the middle of the interval when there is no move to go by
    (brentq's first step would be there too). See ``_probe_one_side``."""
    if here is not None:
        curv = _curvature(ends, int(np.flatnonzero(ends.y == here)[0]))
    elif ds[0] > 0 > ds[-1]:
        here, width = 0.5 * s.y_max, 0.25 * s.y_max
        mid = s.f([here])
        cands += candidates(mid)
        at = int(np.searchsorted(ys, here))
        ys = np.insert(ys, at, here)
        ds = np.insert(ds, at, slopes(mid, tiebreak)[0])
        curv = _curvature(mid, 0)
    else:
        return ys, ds, None  # the root is an end
    return _probe_one_side(s, here, curv, width, ys, ds, cands, tiebreak)


def _probe_one_side(s: Search, y: float, curv: float, width: float,
                    ys: np.ndarray, ds: np.ndarray, cands: list[Candidate],
                    tiebreak: bool) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Probes from purchase ``y`` (already evaluated), for sequential solvers (one
    solver run per probe). Where rows carry a curvature estimate: safeguarded
    Newton steps on the slope (at most NEWTON_PROBES), each at most half way to the
    end of the bracket the signs seen so far give; else one probe at ``width`` on
    the side the sign at ``y`` points to. Returns the sorted purchases and slopes
    with the probes, and the last probe if the secant through it and the point
    before says it is the root within xtol (else brentq refines the bracket)."""
    d = float(ds[np.flatnonzero(ys == y)[0]])
    for _ in range(NEWTON_PROBES):
        down = int(np.argmax(ds <= 0)) if np.any(ds <= 0) else len(ys)
        if d == 0 or down in (0, len(ys)):
            break  # at a root, or the root is an end: nothing to refine
        newton = np.isfinite(curv) and curv < 0
        step = max(abs(d / curv), s.xtol) if newton else width
        end = float(ys[down]) if d > 0 else float(ys[down - 1])
        # Inside [0, y_max] even where the signs are not monotone (a payoff that
        # is not quasiconcave can put ``end`` on the far side of y).
        probe = min(max(y + np.sign(d) * min(step, 0.5 * abs(end - y)), 0.0), s.y_max)
        if probe in ys:
            break
        extra = s.f([probe])
        cands += candidates(extra)
        d_probe = float(slopes(extra, tiebreak)[0])
        at = int(np.searchsorted(ys, probe))
        ys, ds = np.insert(ys, at, probe), np.insert(ds, at, d_probe)
        if settled(probe, d_probe, [(y, d)], s.xtol):
            return ys, ds, probe
        if not newton:
            break  # no curvature to go on with: brentq takes over
        y, d, curv = probe, d_probe, _curvature(extra, 0)
    return ys, ds, None


def _curvature(batch: InnerBatch, k: int) -> float:
    """Row k's estimate of the second derivative of what the search follows
    (InnerBatch.curvature: the tie-break's on rows whose max-min level is flat),
    NaN if none."""
    return np.nan if batch.curvature is None else float(batch.curvature[k])

