"""What a price jump means for an equilibrium, and the refusal at one.

A price read from a market model (``MarketPrice``) can jump where the supply is
inelastic (solvers/market/price.py, "Jumps"): at the jump total any price between
the two sides clears the market, and a player's payoff jumps with it. The game's
theory (existence, the first-order conditions, the total derivative) assumes a
continuous price, so a profile whose total sits at a jump cannot be certified by
regret samples: the payoff there depends on which side a sample fell.

The choice made here: refuse, in one line (``refuse_at_jump``, a PriceJumpError),
any profile whose total lies within ``AT_JUMP_RTOL`` of a jump. Deviations *across*
a jump are already sampled on both sides, since every jump is also one of the
price's ``breakpoints``, which the best response and the certificate scan at
+-delta; ``MarketPrice`` keeps those samples on their own side of the jump (no
rounding to the right piece there).
"""

from __future__ import annotations

import numpy as np

from aggregame.errors import PriceJumpError
from aggregame.players import Game
from aggregame.price import Price

#: A total this close to a jump (relative to max(1, total)) is at it: the scans
#: sample breakpoints at +-1e-9 of the purchase range.
AT_JUMP_RTOL = 1e-6


def jump_near(price: Price, total: float, rtol: float = AT_JUMP_RTOL) -> float | None:
    """The jump total within ``rtol`` of ``total``, or None."""
    tol = rtol * max(1.0, abs(total))
    near = np.asarray(price.jumps(total - tol, total + tol), dtype=float)
    if near.size == 0 and abs(total) <= tol:
        return None
    return float(near[0]) if near.size else None


def refuse_at_jump(game: Game, profile: np.ndarray, rtol: float = AT_JUMP_RTOL
                   ) -> None:
    """Raise PriceJumpError when the profile's total sits at a jump of the price.

    Call it before calling a profile an equilibrium; a certificate that finds the
    total at a jump must report "not certified" with this message.
    """
    total = float(np.sum(profile))
    at = jump_near(game.price, total, rtol)
    if at is None:
        return
    below = getattr(game.price, "limit_below", game.price.value)(at)
    raise PriceJumpError(
        f"market price: the total purchase {total:.10g} sits at a price jump (Y = "
        f"{at:.10g}, p from {below:.10g} to {float(game.price.value(at)):.10g}): no "
        "single price clears the market there, so it is not certified")
