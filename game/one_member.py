"""Payoff of a one-member player by formula: it has no inner problem to solve.

A player with one member gives it the whole purchase, x = y (docs/model.md,
"One-member players"), so its payoff is

    J(y) = w phi(s(y) + e),   s(y) = U(y) - p(Y_-j + y) y,

with (w, e) the member's weight and floor under the priced-out rule (max-min: the
level s + e itself). This module evaluates it in plain floats from the utility's, the
price's and the fairness' own formulas. It shares no code with the inner solvers, which
is what the certificate wants from the evaluator of a deviation, and it costs a few
microseconds where a batched inner solve costs tens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aggregame.errors import GameDefinitionError
from aggregame.players import Game, Player
from aggregame.price import Price

#: A purchase above the zero-surplus consumption by more than this (relative) cannot
#: give the member s >= 0: its payoff is -inf. The slack absorbs the rounding of a
#: feasible maximum computed elsewhere (the same allowance the inner solvers make).
FEASIBILITY_RTOL = 1e-12


@dataclass(frozen=True)
class OneMemberPoint:
    """A one-member player at purchase ``y``: allocation, surplus and payoff.

    ``welfare`` is J (-inf where y exceeds what the member can take at s >= 0, or
    under the strict rule once it is priced out at alpha >= 1); ``tiebreak`` is the
    total surplus, here the member's own.
    """

    y: float
    x: float
    surplus: float
    welfare: float

    @property
    def tiebreak(self) -> float:
        return self.surplus


@dataclass(frozen=True)
class OneMemberPayoff:
    """J(y) of a one-member player against the others' total, in plain floats.

    Built once per player (its utility's parameters are read once), then called for
    any number of purchases: ``payoff(y, others_total)``.
    """

    player: Player
    price: Price
    _family: Any = field(init=False, repr=False)
    _params: dict = field(init=False, repr=False)
    _threshold: float = field(init=False, repr=False)
    #: (weight, floor) of the member priced in and priced out (Fairness.member_terms).
    _terms: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.player.size != 1:
            raise GameDefinitionError(
                f"player '{self.player.name}': field 'members' must hold one member "
                f"for a one-member payoff, got {self.player.size}")
        util = self.player.members[0].utility
        fairness = self.player.fairness
        object.__setattr__(self, "_family", type(util))
        object.__setattr__(self, "_params", util.params())
        # U'(0): the member is priced out once the price reaches it.
        object.__setattr__(self, "_threshold", float(self.player.marginal_at_zero[0]))
        object.__setattr__(self, "_terms", (fairness.member_terms(False),
                                            fairness.member_terms(True)))

    @classmethod
    def of(cls, game: Game, j: int) -> "OneMemberPayoff | None":
        """The payoff of ``game.players[j]`` if it has one member, else None."""
        player = game.players[j]
        return cls(player, game.price) if player.size == 1 else None

    def __call__(self, y: float, others_total: float) -> OneMemberPoint:
        rows = self.batch(np.array([float(y)]), others_total)
        return OneMemberPoint(float(y), float(rows.x[0]), float(rows.surplus[0]),
                              float(rows.welfare[0]))

    def batch(self, y: np.ndarray, others_total: float) -> "OneMemberRows":
        """The payoff at every purchase in ``y``, with its slope at the price held."""
        y = np.asarray(y, dtype=float)
        price = np.asarray(self.price.value(others_total + y), dtype=float) + 0 * y
        with np.errstate(all="ignore"):
            # s >= 0 holds on [0, xbar]; xbar = 0 once U'(0) <= p (priced out).
            xbar = np.asarray(self._family.zero_surplus_consumption(
                price, self._params), dtype=float) + 0 * y
            x = np.minimum(np.maximum(y, 0.0), xbar)
            # x = 0 is written out: an unbounded price (a supply curve's end) times
            # 0 is not a number, but buying nothing costs nothing.
            surplus = np.where(x > 0, self._family.U(x, self._params) - price * x,
                               0.0)
            marginal = self._family.dU(x, self._params) - price
            priced_out = self._threshold <= price
            welfare, slope = self.welfare_and_slope(surplus, marginal, priced_out)
        infeasible = y > xbar * (1 + FEASIBILITY_RTOL) + 1e-300
        welfare = np.where(infeasible, -np.inf, welfare)
        slope = np.where(np.isfinite(welfare), slope, np.nan)
        return OneMemberRows(y, price, x, surplus, welfare, slope)

    def welfare(self, surplus: float, priced_out: bool) -> float:
        """w phi(s + e) of the member (max-min: its level), by the priced-out rule
        (Fairness.member_terms)."""
        value, _ = self.welfare_and_slope(np.array([surplus]), np.array([0.0]),
                                 np.array([priced_out]))
        return float(value[0])

    def welfare_and_slope(self, surplus: np.ndarray, marginal: np.ndarray,
                 priced_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(J, dJ/dy at the price held) from the surplus s, U'(x) - p and the price
        status: w phi(s + e) and w phi'(s + e)(U' - p); max-min's level s + e and
        U' - p."""
        fairness = self.player.fairness
        (w_in, e_in), (w_out, e_out) = self._terms
        weight = np.where(priced_out, w_out, w_in)
        floor = np.where(priced_out, e_out, e_in)
        if fairness.is_maxmin:
            # A priced-out member under the viable rule does not count; nobody
            # counting leaves the minimum flat at 0.
            gone = ~np.asarray(fairness.rule.counted(priced_out), dtype=bool)
            return (np.where(gone, 0.0, surplus + floor),
                    np.where(gone, 0.0, marginal))
        level = np.maximum(surplus + floor, 0.0)
        with np.errstate(all="ignore"):  # phi(0), phi'(0): limits taken below
            value = np.where(weight > 0, weight * _phi(fairness, level), 0.0)
            slope = np.where(weight > 0, weight * fairness.dphi(level) * marginal,
                             0.0)
        if fairness.rule.void_when_priced_out(fairness):
            value = np.where(priced_out, -np.inf, value)  # phi(0) = -inf
        return value, slope


@dataclass(frozen=True)
class OneMemberRows:
    """A one-member player at purchases ``y`` (arrays): the price, its allocation
    (x = y up to what it can take), surplus, payoff and the payoff's slope at the
    price held (its lambda)."""

    y: np.ndarray
    price: np.ndarray
    x: np.ndarray
    surplus: np.ndarray
    welfare: np.ndarray
    slope: np.ndarray


def _phi(fairness: Any, level: np.ndarray) -> np.ndarray:
    """phi_alpha(level) for levels >= 0, with its limits where floats stop: phi(0)
    = 0 for alpha < 1 and -inf for alpha >= 1, and -inf where level^(1-alpha)
    overflows (alpha > 1, a tiny level)."""
    with np.errstate(all="ignore"):
        value = np.asarray(fairness.phi(level), dtype=float)
    zero = 0.0 if fairness.alpha < 1 else -np.inf
    value = np.where(level <= 0, zero, value)
    return np.where(np.isnan(value) | np.isposinf(value) & (fairness.alpha > 1),
                    -np.inf, value)
