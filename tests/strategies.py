"""Hypothesis strategies: random games of the whole class aggregame claims to solve.

1-4 players of 1-12 members, alpha in {0, 0.5, 1, 2, 5, inf}, linear / affine / power
price, floor / viable / strict rule, quadratic users with parameters spread over
orders of magnitude, and a market where some members are priced out and some not
(the price's scale is drawn against the members' U'(0)).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from aggregame import (
    AffinePrice,
    Game,
    LinearPrice,
    Player,
    PowerPrice,
    quadratic_users,
)

ALPHAS = (0.0, 0.5, 1.0, 2.0, 5.0, math.inf)
RULES = ("floor", "viable", "strict")
PRICES = ("linear", "affine", "power")


def _log_uniform(lo: float, hi: float):
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: 10.0 ** e)


@st.composite
def players(draw, index: int, scale: float) -> Player:
    n = draw(st.integers(1, 12))
    a = draw(st.lists(_log_uniform(1e-2, 10.0), min_size=n, max_size=n))
    b = draw(st.lists(st.floats(0.05, 1.0), min_size=n, max_size=n))
    users = quadratic_users([v * scale for v in a], [v * scale for v in b],
                            prefix=f"p{index}u")
    alpha = draw(st.sampled_from(ALPHAS))
    rule = draw(st.sampled_from(RULES))
    eps = draw(st.sampled_from((1e-3, 1e-2, 0.1))) * scale
    return Player.aggregator(f"P{index}", users, alpha=alpha, rule=rule, eps=eps)


@st.composite
def games(draw, max_players: int = 4) -> Game:
    """A random game; ``scale`` multiplies utilities and prices together, so games
    from 1e-3 to 1e3 have the same shape at very different magnitudes."""
    scale = draw(st.sampled_from((1e-3, 1.0, 1e3)))
    count = draw(st.integers(1, max_players))
    members = [draw(players(k, scale)) for k in range(count)]
    kind = draw(st.sampled_from(PRICES))
    # The price reaches the members' U'(0) (b * scale, in [0.05, 1] * scale) at
    # totals of order 1-100, so best responses price some members out, not all.
    c = draw(_log_uniform(1e-3, 1e-1)) * scale
    if kind == "linear":
        price = LinearPrice(c)
    elif kind == "affine":
        price = AffinePrice(draw(st.floats(0.0, 0.3)) * scale, c)
    else:
        price = PowerPrice(c, draw(st.sampled_from((1.0, 1.5, 2.0))))
    return Game(tuple(members), price)


def purchases(game: Game, j: int, others: float) -> np.ndarray:
    """Purchases spread over player j's feasible interval, its ends, and beyond."""
    y_max = game.feasible_max(j, others)
    fractions = np.array([0.0, 1e-9, 0.05, 0.2, 0.37, 0.5, 0.63, 0.8, 0.97,
                          1 - 1e-9, 1.0, 1.1])
    return fractions * y_max


@st.composite
def social_welfare_games(draw, max_players: int = 3) -> Game:
    """A random game whose players all have alpha = 0 (any rule), and some members
    with log utilities U = w log(1 + x) (w on the quadratic members' U'(0) scale):
    the class for which the certificate relies on a theorem (J rises then falls)."""
    from aggregame import LogUtility, User

    game = draw(games(max_players))
    players = []
    for p in game.players:
        members = [User(f"{m.name}log", LogUtility(m.utility.b))
                   if draw(st.booleans()) else m for m in p.members]
        players.append(Player.aggregator(p.name, members, alpha=0.0,
                                         rule=p.fairness.rule, eps=p.fairness.eps
                                         or 1e-2 * p.members[0].utility.b))
    return Game(tuple(players), game.price)
