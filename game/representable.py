"""Refuse games whose numbers do not fit in float64 on their feasible range.

A utility, price or fairness value that overflows (or a welfare term that underflows
to 0 for every member) does not raise in numpy: it becomes inf, NaN or 0 with at most
a RuntimeWarning, and a solve downstream "succeeds" on garbage (measured: a = 1e-308
or eps = 1e308 made an aggregator buy 0, and the result was certified). So the game
is checked once, at construction, on the whole range it can reach:

* every member's zero-surplus consumption xbar_i at the lowest price p(0), its peak
  surplus and U there are finite;
* the price and its slope (and p Y, p' Y^2, with room to spare) are finite up to
  the largest total a solver evaluates, 1 plus the sum over members of
  xbar_i(p(0)); the error names the price's field to change (``market.k``);
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

from aggregame.allocation import (
    marginal_of,
    quadratic_parameters,
    quadratic_peak_surplus,
    surplus_peak,
)
from aggregame.errors import GameDefinitionError

if TYPE_CHECKING:
    from aggregame.players import Game, Player

#: Where the floor rule has no floor (viable, strict), phi is checked down to this
#: fraction of the largest surplus: below it a member's share is negligible anyway.
SMALLEST_SURPLUS_FRACTION = 1e-6
#: Halvings of the peak's bisection: the members checked here may have parameters
#: at the edge of float64, whose xbar can be ~1e60 times their peak.
PEAK_HALVINGS = 200


def _peak_surplus(player: Player, price: float, xbar: np.ndarray) -> np.ndarray:
    """Each member's largest surplus at ``price``: q^2 / 4a where every member is
    quadratic, else bisection on U' = p (the shared formulas of aggregame.allocation)."""
    quad = quadratic_parameters(player)
    if quad is not None:
        a, b = quad
        return quadratic_peak_surplus(b - price, a)
    peak = surplus_peak(marginal_of, player, price, np.zeros_like(xbar), xbar,
                        PEAK_HALVINGS)
    return player.evaluate("U", peak) - price * peak


def _check_members(player: Player, price: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(all="ignore"):
        xbar = player.zero_surplus_consumption(price)
        s_max = _peak_surplus(player, price, np.where(np.isfinite(xbar), xbar, 0.0))
        u_top = player.evaluate("U", np.where(np.isfinite(xbar), xbar, 0.0))
    ok = np.isfinite(xbar) & np.isfinite(s_max) & np.isfinite(u_top) & np.isfinite(
        player.marginal_at_zero)
    if not ok.all():  # whole arrays first: a player may have 10^6 members
        i = int(np.argmin(ok))
        member = player.members[i]
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


#: Smallest total purchase at which the price may reach every member's U'(0) (the
#: market clears): purchases below it have squares (in the utilities, in J and its
#: slope) under float64's smallest normal number, ~2.2e-308 (measured: c = 1e300
#: cleared at 3e-300 and the dynamics "converged" with a relative regret of 1.33).
SMALLEST_CLEARING_TOTAL = 1e-150
#: Room left above the price's largest value: the solvers multiply p by the total
#: and add a few such terms (payments, J and its slope), which must stay finite.
HEADROOM = 16.0


def _check_price(game: Game, reach: float) -> None:
    """The price and its slope, and p Y and p' Y^2, finite (with HEADROOM) up to the
    largest total a solver evaluates: ``reach`` (every member's consumption at p(0))
    plus 1, since Game.feasible_max brackets a purchase by max(1, the player's own
    consumption) above its rivals' total. A supply curve may be +inf beyond its
    capacity; NaN, -inf or an infinite price at zero purchase are overflows."""
    price = game.price
    top = reach + 1.0
    price.check_increasing(top)
    with np.errstate(all="ignore"):
        ends = np.array([0.0, top])
        values = np.asarray(price.value(ends), dtype=float)
        slopes = np.asarray(price.derivative(ends), dtype=float)
        bad = np.isnan(values) | (values == -np.inf) | np.isnan(slopes) | (
            slopes == -np.inf)
        if not price.may_be_infinite:
            bad |= ~np.isfinite(HEADROOM * values * top) | ~np.isfinite(
                HEADROOM * slopes * top * top)
    if bad.any() or not np.isfinite(values[0]):
        limit = math.log(np.finfo(float).max / HEADROOM)
        name, hint = price.overflow_field(top, limit)
        field = f"market.{name}" if name else "market"
        raise GameDefinitionError(
            f"{field}: the price {price.describe()} overflows float64 on the range "
            f"of total purchase the solvers evaluate, [0, {top:g}]; "
            f"{hint + '; ' if hint else ''}rescale its parameters or the units"
        ).at(field=field)


def check_representable(game: Game) -> None:
    """Raise GameDefinitionError if ``game`` leaves float64 on its feasible range."""
    with np.errstate(all="ignore"):
        p0 = float(game.price.value(0.0))
    if not math.isfinite(p0):
        raise GameDefinitionError(f"market: the price at zero purchase is {p0}").at(
            field="market")
    largest = 0.0
    for player in game.players:
        xbar, s_max = _check_members(player, p0)
        _check_fairness(player, s_max)
        largest += float(xbar.sum())
    if not math.isfinite(largest):
        raise GameDefinitionError(
            f"game: the largest total purchase {largest:g} overflows float64; rescale "
            f"the units of energy")
    _check_price(game, largest)
    _check_clearing(game)


def _check_clearing(game: Game) -> None:
    top_marginal = max(float(np.max(p.marginal_at_zero)) for p in game.players)
    with np.errstate(all="ignore"):
        clear = float(game.price.inverse(top_marginal))
    if 0 < clear < SMALLEST_CLEARING_TOTAL:
        field = "market.c" if hasattr(game.price, "c") else "market"
        raise GameDefinitionError(
            f"{field}: the price {game.price.describe()} reaches every member's "
            f"marginal value U'(0) = {top_marginal:g} at a total purchase of "
            f"{clear:g}: purchases below {SMALLEST_CLEARING_TOTAL:g} underflow "
            f"float64 when squared; rescale the price or the units").at(field=field)
