"""Players and the game (paper Sec. II-B): the one definition every backend reads.

A player is an aggregator: a named, non-empty set of users with an alpha-fair
objective and a rule for priced-out members. An individual user (large or small,
trading alone) is a player with one member. A game is players plus a price.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterable, Sequence

import numpy as np

from aggregame.checks import name_problem, shown
from aggregame.errors import GameDefinitionError, UnknownPlayerError
from aggregame.fairness import DEFAULT_FLOOR_EPS, Fairness, MaxMinRule, PricedOutRule
from aggregame.price import Price
from aggregame.representable import check_representable
from aggregame.utilities import QuadraticUtility, User, Utility


@dataclass(frozen=True)
class MemberFamily:
    """The members of one player that share a utility family, as numpy arrays.

    ``index`` locates them in the player's member order; ``params`` holds one array per
    parameter name. Backends vectorize over these arrays.
    """

    family: type[Utility]
    index: np.ndarray
    params: dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class Player:
    """An aggregator, or an individual user as a one-member player.

    Parameters
    ----------
    name : str
        Unique among the game's players.
    members : sequence of User
        At least one; names unique within the game.
    fairness : Fairness
        alpha, priced-out rule and floor eps used by this player.
    """

    name: str
    members: tuple[User, ...]
    fairness: Fairness = field(default_factory=Fairness)

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem:
            raise GameDefinitionError(f"player: field 'name' {problem}")
        members = tuple(self.members)
        if not members:
            raise GameDefinitionError(
                f"player '{self.name}': field 'members' must not be empty (an "
                "aggregator needs at least one user)"
            )
        for member in members:
            if not isinstance(member, User):
                raise GameDefinitionError(
                    f"player '{self.name}': every member must be a User, got "
                    f"{type(member).__name__}"
                )
        dupes = [n for n, k in Counter(m.name for m in members).items() if k > 1]
        if dupes:
            raise GameDefinitionError(
                f"player '{self.name}': duplicate user name(s) {sorted(dupes)}"
            )
        if not isinstance(self.fairness, Fairness):
            raise GameDefinitionError(
                f"player '{self.name}': field 'fairness' must be a Fairness, got "
                f"{type(self.fairness).__name__}"
            )
        object.__setattr__(self, "members", members)

    @classmethod
    def aggregator(cls, name: str, members: Iterable[User], alpha: float | str = 0.0,
                   rule: PricedOutRule | str = PricedOutRule.FLOOR,
                   eps: float = DEFAULT_FLOOR_EPS,
                   maxmin: MaxMinRule | str = MaxMinRule.LEXIMIN) -> "Player":
        """An aggregator with alpha-fair allocation among ``members`` (``maxmin``:
        the reading of alpha = inf, see :class:`~aggregame.fairness.MaxMinRule`)."""
        try:
            fairness = Fairness(alpha=alpha, rule=rule, eps=eps, maxmin=maxmin)
        except GameDefinitionError as err:
            raise GameDefinitionError(f"player '{name}': {err}").at(
                field=err.field) from None
        return cls(name=name, members=tuple(members), fairness=fairness)

    @classmethod
    def individual(cls, user: User, rule: PricedOutRule | str = PricedOutRule.FLOOR,
                   eps: float = DEFAULT_FLOOR_EPS) -> "Player":
        """A user trading alone. With one member every Phi_alpha is increasing in its
        surplus, so alpha does not change its best response; alpha = 0 is used."""
        return cls.aggregator(user.name, [user], alpha=0.0, rule=rule, eps=eps)

    def __repr__(self) -> str:
        alpha = "inf" if math.isinf(self.alpha) else f"{self.alpha:g}"
        return (f"Player({shown(self.name, 40)}, {self.size} member"
                f"{'' if self.size == 1 else 's'}, alpha={alpha}, "
                f"rule={self.fairness.rule.value})")

    @property
    def alpha(self) -> float:
        return self.fairness.alpha

    @property
    def size(self) -> int:
        return len(self.members)

    @cached_property
    def families(self) -> tuple[MemberFamily, ...]:
        """Members grouped by utility family, as arrays (built once, then cached)."""
        groups: dict[type[Utility], list[int]] = {}
        for i, member in enumerate(self.members):
            groups.setdefault(type(member.utility), []).append(i)
        out = []
        for family, idx in groups.items():
            params = {
                name: np.array([getattr(self.members[i].utility, name) for i in idx])
                for name in family.param_names
            }
            out.append(MemberFamily(family, np.array(idx, dtype=int), params))
        return tuple(out)

    def evaluate(self, formula: str, x: np.ndarray) -> np.ndarray:
        """``'U'``, ``'dU'`` or ``'d2U'`` of every member at x (shape (..., members)),
        vectorized over each utility family."""
        x = np.asarray(x, dtype=float)
        out = np.empty_like(x)
        for fam in self.families:
            out[..., fam.index] = getattr(fam.family, formula)(x[..., fam.index],
                                                                fam.params)
        return out

    @cached_property
    def quadratic_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of quadratic members sorted by b, largest first."""
        fam = self.families[0]
        order = np.argsort(-fam.params["b"], kind="stable")
        return fam.params["a"][order], fam.params["b"][order]

    @cached_property
    def marginal_at_zero(self) -> np.ndarray:
        """U_i'(0) of every member: member i is priced out once p >= this."""
        return self.evaluate("dU", np.zeros(self.size))

    def zero_surplus_consumption(self, price: float | np.ndarray) -> np.ndarray:
        """x_i at which member i's surplus returns to zero at this price (0 if priced
        out): member i's feasible consumption is [0, this]. For prices of shape (G,)
        the result has shape (G, members)."""
        price = np.asarray(price, dtype=float)[..., None]
        out = np.zeros(price.shape[:-1] + (self.size,))
        for fam in self.families:
            at = np.broadcast_to(price, price.shape[:-1] + (len(fam.index),))
            out[..., fam.index] = fam.family.zero_surplus_consumption(at, fam.params)
        return out

    def describe(self) -> dict[str, Any]:
        alpha = self.alpha
        return {
            "name": self.name,
            "alpha": "inf" if math.isinf(alpha) else alpha,
            "rule": self.fairness.rule.value,
            "eps": self.fairness.eps,
            **({"maxmin": self.fairness.maxmin.value} if self.fairness.is_maxmin
               else {}),
            "members": [
                {"name": m.name, "utility": m.utility.family, **m.utility.params()}
                for m in self.members
            ],
        }


@dataclass(frozen=True, eq=False)
class Game:
    """Players competing through a common price of their total purchase."""

    players: tuple[Player, ...]
    price: Price

    def __post_init__(self) -> None:
        players = tuple(self.players)
        if not players:
            raise GameDefinitionError("game: field 'players' must not be empty")
        for player in players:
            if not isinstance(player, Player):
                raise GameDefinitionError(
                    f"game: every player must be a Player, got {type(player).__name__}"
                )
        dupes = [n for n, k in Counter(p.name for p in players).items() if k > 1]
        if dupes:
            raise GameDefinitionError(f"game: duplicate player name(s) {sorted(dupes)}")
        users = Counter(m.name for p in players for m in p.members)
        dupes = [n for n, k in users.items() if k > 1]
        if dupes:
            raise GameDefinitionError(
                f"game: user name(s) {sorted(dupes)[:5]} appear in more than one place; "
                "a user belongs to one player"
            )
        if not isinstance(self.price, Price):
            raise GameDefinitionError(
                f"game: field 'price' must be a Price, got {type(self.price).__name__}"
            )
        object.__setattr__(self, "players", players)
        check_representable(self)

    def __repr__(self) -> str:
        count, members = len(self.players), sum(p.size for p in self.players)
        return (f"Game({count} player{'' if count == 1 else 's'}, {members} member"
                f"{'' if members == 1 else 's'}, {shown(self.price, 80)})")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.players]

    def player(self, name: str) -> Player:
        """The player called ``name``; an UnknownPlayerError (a KeyError) if none."""
        for p in self.players:
            if p.name == name:
                return p
        names = self.names
        listed = f"{names[:10]}{' and more' if len(names) > 10 else ''}"
        raise UnknownPlayerError(f"no player named {shown(name)}; players are {listed}")

    @cached_property
    def reach(self) -> float:
        """The largest total purchase the game can see: every member's consumption
        at the lowest price p(0), summed. No player's feasible purchase exceeds it,
        and the game's numbers are checked to fit in float64 up to it."""
        p0 = float(self.price.value(0.0))
        return float(sum(p.zero_surplus_consumption(p0).sum() for p in self.players))

    def start_problem(self, profile: Sequence[float]) -> str | None:
        """What is wrong with ``profile`` as a starting profile (one purchase per
        player, each finite, >= 0 and at most ``reach``), or None."""
        values = np.asarray(profile, dtype=float)
        if values.shape != (len(self.players),):
            return (f"needs one purchase per player ({len(self.players)}), got "
                    f"{values.size}")
        bad = ~np.isfinite(values) | (values < 0) | (values > self.reach)
        if bad.any():
            j = int(np.argmax(bad))
            return (f"purchase {values[j]:g} of player {shown(self.players[j].name)} "
                    f"is not in [0, {self.reach:g}], the largest total any purchase "
                    f"can reach")
        return None

    def feasible_max(self, j: int, others_total: float) -> float:
        """Largest y_j at which player j can still give every member s >= 0.

        y_j is feasible iff y_j <= sum_i xbar_i(p(Y_-j + y_j)); the right side falls as
        y_j grows, so the feasible set is [0, y_max] (docs/model.md, section
        "Feasible purchases") and y_max is its root.
        """
        player = self.players[j]
        exact = _affine_quadratic_capacity(player, self.price, others_total)
        if exact is not None:
            return exact

        def slack(y: float) -> float:
            price = float(self.price.value(others_total + y))
            return float(player.zero_surplus_consumption(price).sum()) - y

        if slack(0.0) <= 0:
            return 0.0
        hi = max(1.0, float(player.zero_surplus_consumption(
            float(self.price.value(others_total))).sum()))
        # slack(hi) <= 0 holds: the capacity at the higher price is at most hi.
        lo = 0.0
        # hi can be ~1e60 (a log member at price 0 never satiates): 200 halvings
        # left a bracket of width ~1 there; 1100 reach 1e-14 from any double.
        for _ in range(1100):
            mid = 0.5 * (lo + hi)
            if slack(mid) > 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-14 * max(hi, 1.0):
                break
        return lo

    def describe(self) -> dict[str, Any]:
        return {"market": self.price.describe(),
                "players": [p.describe() for p in self.players]}


def _affine_quadratic_capacity(player: Player, price: Price, others_total: float
                               ) -> float | None:
    """y_max in closed form for quadratic members under an affine price, else None.

    With q = p0 + c Y_-j, y = sum_{i in S} (b_i - q - c y) / a_i over the members S
    still priced in, so y = sum_S (b_i - q)/a_i / (1 + c sum_S 1/a_i) for the S (a top
    set by b) consistent with the price it gives.
    """
    affine = price.affine_coefficients()
    if affine is None:
        return None
    p0, c = affine
    if len(player.families) != 1 or player.families[0].family is not QuadraticUtility:
        return None
    a, b = player.quadratic_sorted
    q = p0 + c * others_total
    if player.size == 1:
        # The same arithmetic in floats (bit for bit): the array calls cost a
        # one-member player ~30 us, and a certificate asks once per player.
        a1, b1 = float(a[0]), float(b[0])
        y1 = ((b1 - q) / a1) / (1.0 + c * (1.0 / a1))
        return y1 if (b1 > q + c * y1 and y1 > 0) else 0.0
    num = np.cumsum((b - q) / a)
    den = 1.0 + c * np.cumsum(1.0 / a)
    y = num / den
    p_at = q + c * y
    nxt = np.append(b[1:], -np.inf)
    ok = (b > p_at) & (p_at >= nxt) & (y > 0)
    return float(y[np.argmax(ok)]) if ok.any() else 0.0


def individuals(users: Sequence[User], rule: PricedOutRule | str = PricedOutRule.FLOOR,
                eps: float = DEFAULT_FLOOR_EPS) -> list[Player]:
    """One one-member player per user (users trading alone)."""
    return [Player.individual(u, rule=rule, eps=eps) for u in users]


def quadratic_users(a: Sequence[float], b: Sequence[float], prefix: str = "u"
                    ) -> list[User]:
    """Users with U = -a x^2 + b x, named ``prefix0``, ``prefix1``, ..."""
    if len(a) != len(b):
        raise GameDefinitionError(
            f"quadratic users: fields 'a' and 'b' differ in length ({len(a)} vs {len(b)})"
        )
    return [User(f"{prefix}{i}", QuadraticUtility(ai, bi)) for i, (ai, bi) in
            enumerate(zip(a, b))]
