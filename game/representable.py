"""Refuse games whose numbers do not fit in float64 on their feasible range.

A utility, price or fairness value that overflows (or a welfare term that underflows
to 0 for every member) does not raise in numpy: it becomes inf, NaN or 0 with at most
a RuntimeWarning, and a solve downstream "succeeds" on garbage (measured: a = 1e-308
or eps = 1e308 made an aggregator buy 0, and the result was certified). So the game
is checked once, at construction, on the whole range it can reach:

* every member's zero-surplus consumption xbar_i at the lowest price p(0), its peak
  surplus and U there are finite;
* the price and its slope are finite up to the largest total purchase,
  sum over members of xbar_i(p(0));
* each player's welfare terms phi(s + e) and phi'(s + e) are finite and not all
  zero for s between its smallest meaningful surplus and its largest, the sum over
  members included, and the floor eps does not swamp the surplus (s + eps - eps
  must keep s).

The error names the player, the member and the field, and what to do.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from aggregame.errors import GameDefinitionError

if TYPE_CHECKING:
    from aggregame.players import Game, Player

#: Where the floor rule has no floor (viable, strict), phi is checked down to this
#: fraction of the largest surplus: below it a member's share is negligible anyway.
SMALLEST_SURPLUS_FRACTION = 1e-6


def _peak_surplus(player: Player, price: float, xbar: np.ndarray) -> np.ndarray:
    """Each member's largest surplus at ``price``: (b - p)^2 / 4a for quadratic
    members, else by bisection on U' = p."""
    from aggregame.allocation import quadratic_parameters

    quad = quadratic_parameters(player)
    if quad is not None:
        # The bisection costs ~60 numpy steps a player: 0.55 s to build a game of
        # 200 users trading alone, which the studies build hundreds of times.
        a, b = quad
        q = np.maximum(b - price, 0.0)
        return q * q / (4 * a)
    lo, hi = np.zeros_like(xbar), xbar.copy()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        up = player.evaluate("dU", mid) - price > 0
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    peak = 0.5 * (lo + hi)
    return player.evaluate("U", peak) - price * peak


def _check_members(player: Player, price: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        xbar = player.zero_surplus_consumption(price)
        s_max = _peak_surplus(player, price, np.where(np.isfinite(xbar), xbar, 0.0))
        u_top = player.evaluate("U", np.where(np.isfinite(xbar), xbar, 0.0))
    for i, member in enumerate(player.members):
        values = (xbar[i], s_max[i], u_top[i], member.utility.marginal_at_zero())
        if not all(math.isfinite(float(v)) for v in values):
            params = ", ".join(f"{k} = {v:g}" for k, v in member.utility.params().items())
            raise GameDefinitionError(
                f"player '{player.name}', user '{member.name}': utility parameters "
                f"{params} overflow float64 on the feasible range (the consumption at "
                f"which its surplus returns to 0 is {float(xbar[i]):g}); rescale the "
                f"units of energy or money")
    return xbar, s_max


def _check_fairness(player: Player, s_max: np.ndarray) -> None:
    f = player.fairness
    top = float(np.max(s_max)) if s_max.size else 0.0
    if f.is_maxmin or top <= 0:
        return
    e = f.floor
    low = e if e > 0 else SMALLEST_SURPLUS_FRACTION * top
    where = (f"player '{player.name}': alpha = {f.alpha:g} with eps = {e:g} on "
             f"surpluses up to {top:g}")
    if e > 0 and (top + e) - e < 0.5 * top:
        raise GameDefinitionError(
            f"{where}: field 'eps' swamps the surplus (s + eps rounds to eps); use an "
            f"eps well below the surpluses")
    with np.errstate(all="ignore"):
        ends = np.array([low, top + e])
        phi, dphi = f.phi(ends), f.dphi(ends)
        total = player.size * np.abs(phi)
    if not (np.all(np.isfinite(phi)) and np.all(np.isfinite(dphi))
            and np.all(np.isfinite(total))):
        raise GameDefinitionError(
            f"{where}: field 'alpha' makes the welfare overflow float64 "
            f"(phi or phi' is not finite between s = {low:g} and {top + e:g}); use a "
            f"smaller alpha, a larger eps, or alpha = 'inf' (max-min)")
    if np.any(dphi == 0) or (f.alpha != 0 and np.all(phi == 0)):
        raise GameDefinitionError(
            f"{where}: field 'alpha' makes the welfare underflow to 0 in float64 "
            f"between s = {low:g} and {top + e:g}; use a smaller alpha or "
            f"alpha = 'inf' (max-min)")


def _check_price(game: Game, largest_total: float) -> None:
    with np.errstate(all="ignore"):
        ends = np.array([0.0, largest_total])
        values = np.asarray(game.price.value(ends), dtype=float)
        slopes = np.asarray(game.price.derivative(ends), dtype=float)
    # p = +inf beyond a supply curve's capacity is a price, not an overflow: it
    # prices every member out (and its right slope at the capacity is +inf).
    # NaN or -inf, or an infinite price at zero purchase, is an overflow.
    bad = np.isnan(values) | (values == -np.inf) | np.isnan(slopes) | (
        slopes == -np.inf)
    if bad.any() or not np.isfinite(values[0]):
        raise GameDefinitionError(
            f"market: the price {game.price.describe()} overflows float64 on the "
            f"feasible range of total purchase [0, {largest_total:g}]; rescale its "
            f"parameters or the units")


def check_representable(game: Game) -> None:
    """Raise GameDefinitionError if ``game`` leaves float64 on its feasible range."""
    with np.errstate(all="ignore"):
        p0 = float(game.price.value(0.0))
    if not math.isfinite(p0):
        raise GameDefinitionError(f"market: the price at zero purchase is {p0}")
    largest = 0.0
    for player in game.players:
        xbar, s_max = _check_members(player, p0)
        _check_fairness(player, s_max)
        largest += float(xbar.sum())
    # Beyond p^-1(max U'(0)) every member is priced out: nobody buys there (a
    # supply curve may well be infinite beyond its capacity).
    top_marginal = max(float(np.max(p.marginal_at_zero)) for p in game.players)
    with np.errstate(all="ignore"):
        largest = min(largest, float(game.price.inverse(top_marginal)))
    if not math.isfinite(largest):
        raise GameDefinitionError(
            f"game: the largest total purchase {largest:g} overflows float64; rescale "
            f"the units of energy")
    _check_price(game, largest)
