"""Starting profiles of equilibrium searches."""

from __future__ import annotations

import numpy as np

from aggregame.players import Game


def random_starts(game: Game, count: int, seed: int) -> np.ndarray:
    """``count`` profiles, each purchase uniform on the player's feasible interval
    when the others buy nothing (numpy default_rng(seed))."""
    rng = np.random.default_rng(seed)
    caps = np.array([game.feasible_max(j, 0.0) for j in range(len(game.players))])
    return rng.uniform(0.0, 1.0, (count, caps.size)) * caps
