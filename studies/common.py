"""Choices shared by every study of Section IV, fixed once here and saved with results.

Where the paper leaves a parameter open we choose, and say so:

* small users: a ~ U(0.1, 0.9), b ~ U(0, 10) (paper Sec. IV-A), drawn per run with
  numpy's default_rng(seed + run);
* price p = 0.001 Y (paper Sec. IV-B);
* the large user: U = -a x^2 + b x with a = 0.5 (the small users' mean a; the paper
  gives none) and b = K a;
* users are split among M aggregators round-robin by draw order (user i joins
  aggregator i mod M), so aggregators are statistically alike;
* every best-response run stops after :data:`MAX_ROUNDS` rounds (reported as "no
  equilibrium", never dropped).

Four choices change the games themselves; together they are a :class:`Domain`, and
every verdict states the domain it was computed in:

* the large user's size K. The paper's general rule (Sec. IV-A) is "as large as the
  sum of all small users", and Fig. 6's caption says "market power equivalent to 200
  small users": K = the sum of b/a over the run's small users (about 2400-3100 for
  200 users) is the default. Fig. 5 sweeps K over 0..400, and K = 400 is kept as a
  labelled sensitivity (:data:`LARGE_READINGS`);
* the priced-out rule (docs/model.md, section "Priced-out members"): floor, with
  eps = 0.01, or viable. The paper's proof assumes no member is ever priced out, so it
  makes neither choice;
* eps, the floor rule's surplus floor;
* the reading of max-min (docs/model.md, section "Max-min"): leximin, the limit of
  alpha-fairness as alpha grows, or the minimum with a total-surplus tie-break.

The builders below take a Domain; :data:`DEFAULT` is the one every figure is drawn
in, and studies/variants.py lists the others the report recomputes verdicts in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Sequence

import numpy as np

from aggregame import (Game, LinearPrice, MaxMinRule, Player, PricedOutRule,
                       QuadraticUtility, User, quadratic_users)

#: Round limit of every best-response run of the studies; a run stopped here counts as
#: no equilibrium. Measured on a full report (seed 0): under the floor rule every run
#: that converged did so within 18 rounds (at eps = 0.001, 6 runs cycled); under the
#: viable rule runs converged within 48 rounds, 44 cycled and 23 were stopped here
#: still moving. Viable-rule games of the Fig. 10 family followed to 200-500 rounds
#: (seeds 0, 2, 3) converged by round 29 or never (they cycled or went on moving); the
#: limit may still stop a run that would settle later, and the report counts it.
MAX_ROUNDS = 50
#: The two readings of the large user's size; the first is the default.
LARGE_READINGS = ("K=sum b/a", "K=400")
#: The K of the "K=400" reading (the top of Fig. 5's range).
K_TOP = 400.0


@dataclass(frozen=True)
class Domain:
    """The choices that define a study's games beyond the paper's text."""

    large: str = LARGE_READINGS[0]
    rule: str = PricedOutRule.FLOOR.value
    eps: float = 0.01
    maxmin: str = MaxMinRule.LEXIMIN.value

    def __post_init__(self) -> None:
        if self.large not in LARGE_READINGS:
            raise ValueError(f"large user reading must be one of {LARGE_READINGS}, "
                             f"got {self.large!r}")
        PricedOutRule(self.rule), MaxMinRule(self.maxmin)  # ValueError if unknown

    def with_(self, **changes: Any) -> "Domain":
        return replace(self, **changes)

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    def label(self, aggregators: bool = True, maxmin: bool = True,
              large: bool = True) -> str:
        """One line naming the choices that enter a game (for titles and tables)."""
        parts = []
        if large:
            parts.append(self.large.replace("K=sum b/a", "K = sum of b/a"))
        if aggregators:
            parts.append(f"floor eps = {self.eps:g}" if self.rule == "floor"
                         else f"{self.rule} rule")
        if maxmin:
            parts.append(f"max-min read as {self.maxmin}")
        return ", ".join(parts) or "no choice enters (no large user, no aggregator)"


DEFAULT = Domain()


@dataclass(frozen=True)
class PaperChoices:
    """The fixed choices above, as data saved next to every result."""

    c: float = 0.001
    small_a: tuple[float, float] = (0.1, 0.9)
    small_b: tuple[float, float] = (0.0, 10.0)
    large_a: float = 0.5
    split: str = "round-robin"
    max_rounds: int = MAX_ROUNDS
    alpha_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf)

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["alpha_grid"] = ["inf" if math.isinf(a) else a for a in self.alpha_grid]
        out["default domain"] = DEFAULT.describe()
        return out


CHOICES = PaperChoices()


def small_users(n: int, seed: int) -> list[User]:
    """n small users of the paper's distribution, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(*CHOICES.small_a, n)
    b = rng.uniform(*CHOICES.small_b, n)
    return quadratic_users(a, b, "s")


#: How results name max-min.
MAXMIN_LABEL = "max-min"


def large_K(users: Sequence[User], reading: str = DEFAULT.large) -> float:
    """The large user's K under ``reading``: the sum of b/a of ``users``, or 400."""
    if reading == "K=400":
        return K_TOP
    if reading == "K=sum b/a":
        return float(sum(u.utility.b / u.utility.a for u in users))
    raise ValueError(f"large user reading must be one of {LARGE_READINGS}, "
                     f"got {reading!r}")


def maxmin_aggregator(name: str, members: Sequence[User],
                      domain: Domain = DEFAULT) -> Player:
    """A max-min (alpha = inf) aggregator: the one place that picks max-min's reading
    (``domain.maxmin``), stated explicitly so that a change of the engine's default
    cannot move the studies."""
    return Player.aggregator(name, members, alpha=math.inf, rule=domain.rule,
                             eps=domain.eps, maxmin=domain.maxmin)


def aggregator(name: str, members: Sequence[User], alpha: float | str,
               domain: Domain = DEFAULT) -> Player:
    """An alpha-fair aggregator; max-min goes through :func:`maxmin_aggregator`."""
    if math.isinf(float(alpha)):
        return maxmin_aggregator(name, members, domain)
    return Player.aggregator(name, members, alpha=alpha, rule=domain.rule,
                             eps=domain.eps)


def large_user(K: float) -> User:
    """The large user with K = b / a (b = 0 when K = 0: it buys nothing)."""
    return User("large", QuadraticUtility(CHOICES.large_a, CHOICES.large_a * K))


def individual(user: User) -> Player:
    """A user trading alone."""
    # A one-member player maximizes its own surplus whatever the rule and eps
    # (docs/model.md, section "One-member players"), so it keeps the defaults.
    return Player.individual(user, rule=DEFAULT.rule, eps=DEFAULT.eps)


def alone_players(users: Sequence[User], with_large: float | None = None
                  ) -> tuple[Player, ...]:
    """Every user trading alone; with a large user of size K if given."""
    players = [individual(u) for u in users]
    if with_large is not None:
        players.append(individual(large_user(with_large)))
    return tuple(players)


def aggregated_players(users: Sequence[User], alphas: Sequence[float | str],
                       domain: Domain = DEFAULT, large: bool = True
                       ) -> tuple[Player, ...]:
    """Users split round-robin among len(alphas) aggregators with those alphas, and
    the large user of the domain's size (unless ``large`` is False)."""
    m = len(alphas)
    players = [aggregator(f"aggregator-{k + 1}", users[k::m], alpha, domain)
               for k, alpha in enumerate(alphas)]
    if large:
        players.append(individual(large_user(large_K(users, domain.large))))
    return tuple(players)


def paper_price() -> LinearPrice:
    return LinearPrice(CHOICES.c)


def alone(users: Sequence[User], with_large: float | None = None) -> Game:
    """The game of :func:`alone_players` at the paper's price."""
    return Game(alone_players(users, with_large), paper_price())


def aggregated(users: Sequence[User], alphas: Sequence[float | str],
               domain: Domain = DEFAULT, large: bool = True) -> Game:
    """The game of :func:`aggregated_players` at the paper's price."""
    return Game(aggregated_players(users, alphas, domain, large), paper_price())
