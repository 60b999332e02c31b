"""Games the benchmarks time: Fig. 4 at every alpha, with and without priced-out
members, and Cournot games of single quadratic users."""

from __future__ import annotations

import numpy as np

from aggregame import Game, LinearPrice, Player, quadratic_users
from aggregame.scenario import load_scenario

#: Fig. 4's members with b at or below this are dropped in the "no priced-out"
#: variants: their equilibrium prices (about 1.0-1.2) then stay below every U'(0).
PRICED_IN_B = 2.0
ALPHAS = (0.0, 1.0, float("inf"), 0.5, 2.0)


def fig4(alpha: float, priced_out: bool = True) -> Game:
    """Fig. 4 with every aggregator's alpha set to ``alpha``; without ``priced_out``
    the members with b <= PRICED_IN_B are left out."""
    game = load_scenario("fig4").game
    players = []
    for p in game.players:
        members = p.members if priced_out or p.size == 1 else tuple(
            m for m in p.members if m.utility.b > PRICED_IN_B)
        if p.size > 1:
            # Max-min as the tables always timed it (the total-surplus reading).
            p = Player.aggregator(p.name, members, alpha=alpha, rule=p.fairness.rule,
                                  eps=p.fairness.eps, maxmin="total-surplus")
        players.append(p)
    return Game(tuple(players), game.price)


def cournot(n: int, seed: int = 0) -> Game:
    """n single quadratic users (a ~ U(0.1, 0.9), b ~ U(0, 10)) under p = 0.001 Y
    scaled by 12 / n, so the price stays similar whatever n."""
    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(0, 10, n), "c")
    return Game(tuple(Player.individual(u) for u in users),
                LinearPrice(0.001 * 12 / n))


def label(alpha: float) -> str:
    return "inf" if np.isinf(alpha) else f"{alpha:g}"


def extra_games() -> list[tuple[str, Game]]:
    """(label, game) of the benchmark games that are not shipped scenarios."""
    out = [(f"fig4 alpha={label(a)}", fig4(a)) for a in ALPHAS]
    out += [(f"fig4 alpha={label(a)} priced-in", fig4(a, False)) for a in ALPHAS]
    out.append(("cournot 12", cournot(12)))
    return out
