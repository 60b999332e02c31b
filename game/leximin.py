"""Leximin reading of max-min fairness: what it ranks, and how a solution is checked.

A leximin player (``Fairness(alpha=inf, maxmin="leximin")``, docs/model.md, section
"Leximin") ranks allocations, and purchases, by the vector of its members' levels
s_i + e_i sorted in increasing order, compared lexicographically: first the smallest
level, then the second smallest, and so on. It is the limit of alpha-fair allocations
as alpha -> inf. Members that do not count (the viable rule's priced-out members)
leave the vector; they are written as +inf at its end, which compares as "imposes
nothing".

This module holds the definition-level pieces every solver shares: the sorted levels
of an allocation, the lexicographic comparison with a tolerance, each member's peak
(satiation, U'(x) = p), and the optimality residual of a leximin allocation, which
checks the allocation's own levels and owes nothing to how it was computed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from aggregame.allocation import (
    CHECK_HALVINGS,
    bounds_violation,
    counted_members,
    evaluate,
    marginal_of,
    member_terms,
    quadratic_parameters,
    quadratic_peak,
    surplus_peak,
)
from aggregame.errors import UnsupportedProblemError
from aggregame.fairness import MaxMinRule
from aggregame.players import Game, Player

#: Levels closer than this, relative to the two levels, are equal when two sorted
#: vectors are compared (the levels are computed to ~1e-15 relative).
LEX_TIE_RTOL = 1e-10
#: Consumption within this (relative to the member's xbar) of a bound or the peak is
#: at it (frozen) for the residual's classification.
AT_BOUND_RTOL = 1e-9


def peaks(player: Player, price: np.ndarray, xbar: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    """Consumption where each member's surplus peaks (U' = p) and the peak surplus.

    ``price`` is a (G, 1) column, ``xbar`` (G, N). Closed form (b - p) / 2a for
    quadratic members, bisection on U' otherwise; 0 for priced-out members.
    """
    quad = quadratic_parameters(player)
    if quad is not None:
        a, b = quad
        peak = quadratic_peak(b - price, 2 * a, xbar)
    else:
        peak = surplus_peak(marginal_of, player, price, np.zeros_like(xbar), xbar,
                            CHECK_HALVINGS)
    return peak, evaluate(player, "U", peak) - price * peak


def levels(player: Player, surplus: np.ndarray, price: np.ndarray) -> np.ndarray:
    """Sorted levels s_i + e_i of each row (G, N), uncounted members as +inf last."""
    priced_out = player.marginal_at_zero[None, :] <= np.asarray(price)[:, None]
    _, floor = member_terms(player, priced_out)
    counted = counted_members(player, priced_out)
    return np.sort(np.where(counted, surplus + floor, np.inf), axis=-1)


def first_difference(a: np.ndarray, b: np.ndarray, rtol: float) -> int:
    """Index of the first component where a and b differ by more than ``rtol`` of
    the two levels compared (+inf equals +inf), or -1 when they tie everywhere.

    Each comparison is relative to its own levels, never to the player's largest
    level: a household's level 0.01 against 2.26 does not tie because another
    member's level is 2e8."""
    both_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    with np.errstate(invalid="ignore"):
        differ = ~both_inf & ~(np.abs(a - b) <= rtol * np.maximum(np.abs(a),
                                                                   np.abs(b)))
    hits = np.flatnonzero(differ)
    return int(hits[0]) if hits.size else -1


def compare(a: np.ndarray, b: np.ndarray, rtol: float) -> int:
    """+1 if sorted levels ``a`` beat ``b`` lexicographically, -1 if they lose, 0 on a
    tie (every component within ``rtol`` of the levels compared)."""
    k = first_difference(a, b, rtol)
    if k < 0:
        return 0
    return 1 if a[k] > b[k] else -1


def leximin_residual(player: Player, y: np.ndarray, price: np.ndarray, x: np.ndarray,
                     xbar: np.ndarray, floor: np.ndarray, counted: np.ndarray
                     ) -> np.ndarray:
    """Optimality residual of leximin allocations ``x`` (G, N) of purchases ``y``.

    Balance and bounds in allocation units over the capacity (as every residual of
    aggregame.allocation), and the leximin conditions in level units over the
    levels' scale. Below the members' total peak consumption every member sits on
    the rising side of its surplus (x_i <= peak_i) and either shares the common
    level L of the members strictly inside (0, peak_i), or is frozen for a reason:
    at x_i = 0 with its floor e_i >= L (already above the water), or at its peak with
    a peak level <= L (satiated). Above it, the mirror image on the falling side:
    members inside (peak_i, xbar_i) share a common level, those at the peak are
    below it, those at xbar_i (level e_i) are not below it. The first violated
    condition's size is the residual; the allocation's surpluses are recomputed
    here, so a wrong allocation cannot pass.
    """
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    alloc = np.maximum(np.abs(x.sum(axis=-1) - y), bounds_violation(x, xbar)) / cap
    peak, top = peaks(player, p2, xbar)
    level = evaluate(player, "U", x) - p2 * x + floor
    scale = np.maximum(np.where(counted, np.abs(top + floor), 0.0).max(axis=-1),
                       1e-300)
    rising = (y <= peak.sum(axis=-1))[:, None]
    near = AT_BOUND_RTOL * np.maximum(xbar, 1e-300)
    # A member at its peak is satiated, whatever else: a nearly priced-out member
    # (peak ~ 0) sits at x = 0 and at its peak at once.
    at_peak = counted & (np.abs(x - peak) <= near)
    at_low = counted & ~at_peak & (x <= near) & rising
    at_high = counted & ~at_peak & (x >= xbar - near) & ~rising
    inside = counted & ~at_peak & ~at_low & ~at_high
    wrong_side = np.where(rising, np.maximum(x - peak, 0.0),
                          np.maximum(peak - x, 0.0))
    side = np.where(counted & ~at_peak, wrong_side, 0.0).max(axis=-1) / cap
    has_inside = inside.any(axis=-1)
    l_hi = np.where(inside, level, -np.inf).max(axis=-1)
    l_lo = np.where(inside, level, np.inf).min(axis=-1)
    # Satiated members must not be above the water level; members held at a bound
    # (0 below the peaks, xbar above) must not be below it. Without members inside,
    # the water level may be anywhere between the two sets.
    peak_top = np.where(at_peak, level, -np.inf).max(axis=-1)
    bound_low = np.where(at_low | at_high, floor, np.inf).min(axis=-1)
    with np.errstate(invalid="ignore"):
        gaps = np.where(has_inside, np.maximum(l_hi - l_lo, np.maximum(
            peak_top - l_lo, l_hi - bound_low)), peak_top - bound_low)
    frozen = np.maximum(np.nan_to_num(gaps, nan=0.0, neginf=0.0, posinf=np.inf), 0.0)
    lex = frozen / scale
    return np.maximum(np.maximum(alloc, side), lex)


def with_maxmin_rule(game: Game, rule: MaxMinRule | str) -> Game:
    """``game`` with every max-min player read by ``rule`` (other players unchanged):
    the CLI's ``--maxmin``, overriding the scenario's."""
    rule = MaxMinRule(rule)
    players = tuple(
        dataclasses.replace(p, fairness=dataclasses.replace(p.fairness, maxmin=rule))
        if p.fairness.is_maxmin else p for p in game.players)
    return Game(players, game.price)


def refuse(game: Game, what: str) -> None:
    """Raise UnsupportedProblemError if a player of ``game`` with two or more members
    is a leximin player: Pyomo models (the inner NLP, the stacked KKT system, SCIP's
    joint problem, the embeddable block) state the minimum level only. With one
    member leximin, max-min and its total-surplus tie-break order purchases alike
    (one level s + e, rising with s)."""
    names = [p.name for p in game.players if needs_leximin(p)]
    if names:
        raise UnsupportedProblemError(
            f"{what} does not model leximin max-min (player(s) {names}): use the "
            f"native backend, or set maxmin = 'total-surplus' for these players")


def needs_leximin(player: Player) -> bool:
    """True when ``player``'s max-min reading is leximin and it matters (two or more
    members)."""
    fairness = player.fairness
    return fairness.is_maxmin and not fairness.maxmin.modelled_by_epigraph(player.size)
