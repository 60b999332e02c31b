"""Equilibrium of a game whose players meet their own node's price (a network).

``NodalGame`` (solvers/market/nodal.py) gives each player a node; a player who
deviates moves only its own node's demand, so its payoff is that of the one-price
game of its node with the other nodes held (docs/pyomo.md, section "Node prices").
Gauss-Seidel over nodes, each node's game solved by the dynamics and certified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.market.jumps import refuse_at_jump
from aggregame.solvers.market.nodal import NodalGame


@dataclass(frozen=True)
class NodalEquilibrium:
    """Where the nodal dynamics stopped, with each player's regret in its node's
    game (``relative_regret`` against ``rtol``, as the one-price certificate)."""

    profile: np.ndarray
    demands: np.ndarray
    prices: np.ndarray
    relative_regret: np.ndarray
    rtol: float
    converged: bool
    rounds: int

    @property
    def max_regret(self) -> float:
        return float(self.relative_regret.max(initial=0.0))

    @property
    def certified(self) -> bool:
        return bool(np.all(self.relative_regret <= self.rtol))

    @property
    def is_equilibrium(self) -> bool:
        return self.converged and self.certified


def solve_nodal_equilibrium(game: NodalGame, *, max_rounds: int = 50,
                            tol: float = 1e-10) -> NodalEquilibrium:
    """Gauss-Seidel over nodes: each node's players go to the equilibrium of their
    node's game G_n (aggregame's dynamics, warm-started), until no purchase moves by
    more than ``tol`` (relative); then each G_n is certified at the profile (the
    regret certificate) and a total at a price jump of its node is refused
    (PriceJumpError)."""
    y = np.zeros(len(game.players))
    occupied = list(dict.fromkeys(game.nodes))
    converged, rounds = False, 0
    for rounds in range(1, max_rounds + 1):
        before = y.copy()
        for node in occupied:
            view, idx = game.bus_game(node, y)
            eq = solve_equilibrium(view, settings=DynamicsSettings(
                start=tuple(float(v) for v in y[idx])))
            y[idx] = eq.profile
        if np.max(np.abs(y - before)) <= tol * max(1.0, float(np.max(y))):
            converged = True
            break
    regret = np.zeros(len(game.players))
    rtol = 0.0
    for node in occupied:
        view, idx = game.bus_game(node, y)
        refuse_at_jump(view, y[idx])
        cert = certify(view, y[idx])
        regret[idx], rtol = cert.relative_regrets, cert.rtol
    d = game.demands(y)
    return NodalEquilibrium(y, d, game.price.value(d), regret, rtol, converged,
                            rounds)
