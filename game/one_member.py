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

import math
from dataclasses import dataclass, field
from typing import Any

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
        y = float(y)
        price = float(self.price.value(others_total + y))
        # s >= 0 holds on [0, xbar]; xbar = 0 once U'(0) <= p (priced out).
        xbar = float(self._family.zero_surplus_consumption(price, self._params))
        x = min(max(y, 0.0), xbar)
        # x = 0 is written out: an unbounded price (a supply curve's end) times 0
        # is not a number, but buying nothing costs nothing.
        surplus = float(self._family.U(x, self._params)) - price * x if x > 0 else 0.0
        if y > xbar * (1 + FEASIBILITY_RTOL) + 1e-300:
            welfare = -math.inf
        else:
            welfare = self.welfare(surplus, self._threshold <= price)
        return OneMemberPoint(y, x, surplus, welfare)

    def welfare(self, surplus: float, priced_out: bool) -> float:
        """w phi(s + e) of the member (max-min: its level), by the priced-out rule
        (Fairness.member_terms)."""
        fairness = self.player.fairness
        weight, floor = self._terms[priced_out]
        if fairness.is_maxmin:
            # A member the rule does not count (priced out, viable) leaves the
            # minimum; nobody counting leaves it flat at 0.
            counted = bool(fairness.rule.counted(priced_out))
            return surplus + floor if counted else 0.0
        if priced_out and fairness.rule.void_when_priced_out(fairness):
            return -math.inf  # phi(0) = -inf kept in the sum (strict, alpha >= 1)
        if weight <= 0:
            return 0.0
        return weight * _phi(fairness, max(surplus + floor, 0.0))


def _phi(fairness: Any, level: float) -> float:
    """phi_alpha(level) for level >= 0 in floats, with its limits where floats stop:
    phi(0) = 0 for alpha < 1 and -inf for alpha >= 1, and -inf where level^(1-alpha)
    overflows (alpha > 1, a tiny level)."""
    if level <= 0:
        return 0.0 if fairness.alpha < 1 else -math.inf
    try:
        return float(fairness.phi(level, lib=math))
    except OverflowError:
        return -math.inf
