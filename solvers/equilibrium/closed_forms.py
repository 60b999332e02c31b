"""Closed forms of one-member quadratic players under an affine price.

With one member every Phi_alpha increases with its surplus, so such a player maximizes
s = b y - a y^2 - (p0 + c (Y_-j + y)) y, a concave quadratic (docs/model.md, section
"One-member players"): its best response, and a game of such players' equilibrium, are
formulas. The certificate checks them like any other answer.
"""

from __future__ import annotations

import numpy as np

from aggregame.utilities import QuadraticUtility


def single_member_closed_form(game, j: int, others_total: float, y_max: float
                              ) -> float | None:
    """Best response of a one-member quadratic player under an affine price, or None.

    With one member every Phi_alpha increases with its surplus, so the player
    maximizes s = b y - a y^2 - (p0 + c (Y_-j + y)) y:
    y = (b - p0 - c Y_-j) / (2(a + c))
    (docs/model.md, section "One-member players"), clipped to [0, y_max].
    The certificate still checks it by its scan.
    """
    player = game.players[j]
    util = player.members[0].utility
    affine = game.price.affine_coefficients()
    if player.size != 1 or not isinstance(util, QuadraticUtility) or affine is None:
        return None
    p0, c = affine
    y = (util.b - p0 - c * others_total) / (2 * (util.a + c))
    return min(max(y, 0.0), y_max)


def single_quadratic_users(game) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """(a, b, p0, c) when every player is one quadratic member (U = b x - a x^2) and
    the price is p0 + c Y: the games whose best responses and equilibrium have the
    closed forms below. None otherwise."""
    affine = game.price.affine_coefficients()
    if affine is None or any(p.size != 1 or not isinstance(
            p.members[0].utility, QuadraticUtility) for p in game.players):
        return None
    utils = [p.members[0].utility for p in game.players]
    return (np.array([u.a for u in utils]), np.array([u.b for u in utils]),
            *affine)


def single_user_equilibrium(game) -> np.ndarray | None:
    """Nash equilibrium of one-member quadratic players under an affine price, or None.

    Each best response is y_j = max(0, (b_j - p0 - c Y_-j) / (2(a_j + c)))
    (``single_member_closed_form``); with Y_-j = Y - y_j a buying player has
    y_j = (b_j - p0 - c Y) / (2 a_j + c), so Y solves the scalar equation
    Y = sum_j max(0, (b_j - p0 - c Y) / (2 a_j + c)), whose right side falls with Y:
    one root. The players that buy are those with the largest b_j (b_j - p0 > c Y),
    so trying the k largest for every k at once (cumulative sums) finds it exactly.
    Returns the profile in player order.
    """
    users = single_quadratic_users(game)
    if users is None or not game.players:
        return None
    a, b, p0, c = users
    order = np.argsort(-b, kind="stable")
    inv = 1.0 / (2 * a[order] + c)
    # Total if exactly the k largest-b players buy, k = 1..n.
    totals = np.cumsum((b[order] - p0) * inv) / (1 + c * np.cumsum(inv))
    buying = b[order] - p0 > c * totals
    total = float(totals[np.flatnonzero(buying)[-1]]) if buying.any() else 0.0
    return np.maximum(b - p0 - c * total, 0.0) / (2 * a + c)
