"""Choices shared by every study of Section IV, fixed once here (and saved with results).

Where the paper leaves a parameter open we choose, and say so:

* small users: a ~ U(0.1, 0.9), b ~ U(0, 10) (paper Sec. IV-A), drawn per run with
  numpy's default_rng(seed + run);
* price p = 0.001 Y (paper Sec. IV-B);
* the large user: U = -a x^2 + b x with a = 0.5 (the small users' mean a; the paper
  gives none) and b = K a; K = 400 unless a study sweeps it (top of Fig. 5's range);
* users are split among M aggregators round-robin by draw order (user i joins
  aggregator i mod M), so aggregators are statistically alike;
* the large user's size has two readings (the paper gives both and they clash):
  K = 400 (the top of Fig. 5's range, the default) and K = the sum of b/a over the
  run's small users ("as large as the sum of the small users", Sec. IV-A; about
  2400-2840 for 200 users); :func:`large_K` turns a reading into a number;
* priced-out rule: floor with eps = 0.01 (docs/model.md, section "Priced-out members") for every figure; the eps study
  varies eps;
* max-min aggregators are built by :func:`maxmin_aggregator` only, so the reading of
  max-min (leximin: the alpha -> inf limit, docs/model.md section "Leximin") is set
  in one place; results label it with :data:`MAXMIN_LABEL`;
* alpha grid of Figs. 10-11: 0, 0.25, 0.5, 1, 2, 4, inf.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from aggregame import (Game, LinearPrice, MaxMinRule, Player, QuadraticUtility, User,
                       quadratic_users)
from aggregame.settings import Backend
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.results import Equilibrium


@dataclass(frozen=True)
class PaperChoices:
    """The fixed choices above, as data saved next to every result."""

    c: float = 0.001
    small_a: tuple[float, float] = (0.1, 0.9)
    small_b: tuple[float, float] = (0.0, 10.0)
    large_a: float = 0.5
    large_K: float = 400.0
    rule: str = "floor"
    eps: float = 0.01
    maxmin: str = "leximin"
    split: str = "round-robin"
    alpha_grid: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, math.inf)

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["alpha_grid"] = ["inf" if math.isinf(a) else a for a in self.alpha_grid]
        return out


CHOICES = PaperChoices()


def small_users(n: int, seed: int) -> list[User]:
    """n small users of the paper's distribution, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(*CHOICES.small_a, n)
    b = rng.uniform(*CHOICES.small_b, n)
    return quadratic_users(a, b, "s")


#: How results name max-min under the engine's current reading.
MAXMIN_LABEL = "max-min (leximin)"
#: The two readings of the large user's size (see the module docstring).
LARGE_READINGS = ("K=400", "K=sum b/a")


def large_K(users: Sequence[User], reading: str = LARGE_READINGS[0]) -> float:
    """The large user's K under ``reading``: 400, or the sum of b/a of ``users``."""
    if reading == LARGE_READINGS[0]:
        return CHOICES.large_K
    if reading == LARGE_READINGS[1]:
        return float(sum(u.utility.b / u.utility.a for u in users))
    raise ValueError(f"large user reading must be one of {LARGE_READINGS}, "
                     f"got {reading!r}")


def maxmin_aggregator(name: str, members: Sequence[User], rule: str | None = None,
                      eps: float | None = None) -> Player:
    """A max-min (alpha = inf) aggregator: the one place that picks max-min's reading.

    Leximin (docs/model.md, section "Leximin"): the sorted vector of s + eps compared
    lexicographically, the limit of alpha-fairness as alpha grows, stated explicitly
    so that a change of the engine's default cannot move the studies.
    """
    return Player.aggregator(name, members, alpha=math.inf, rule=rule or CHOICES.rule,
                             eps=CHOICES.eps if eps is None else eps,
                             maxmin=MaxMinRule.LEXIMIN)


def aggregator(name: str, members: Sequence[User], alpha: float | str,
               rule: str | None = None, eps: float | None = None) -> Player:
    """An alpha-fair aggregator; max-min goes through :func:`maxmin_aggregator`."""
    if math.isinf(float(alpha)):
        return maxmin_aggregator(name, members, rule, eps)
    return Player.aggregator(name, members, alpha=alpha, rule=rule or CHOICES.rule,
                             eps=CHOICES.eps if eps is None else eps)


def large_user(K: float = CHOICES.large_K) -> User:
    """The large user with K = b / a (b = 0 when K = 0: it buys nothing)."""
    return User("large", QuadraticUtility(CHOICES.large_a, CHOICES.large_a * K))


def alone(users: Sequence[User], with_large: float | None = None) -> Game:
    """Every user trading alone; with a large user of size K if given."""
    players = [Player.individual(u, rule=CHOICES.rule, eps=CHOICES.eps) for u in users]
    if with_large is not None:
        players.append(Player.individual(large_user(with_large), rule=CHOICES.rule,
                                         eps=CHOICES.eps))
    return Game(tuple(players), LinearPrice(CHOICES.c))


def aggregated(users: Sequence[User], alphas: Sequence[float | str],
               with_large: float | None = CHOICES.large_K, rule: str | None = None,
               eps: float | None = None) -> Game:
    """Users split round-robin among len(alphas) aggregators with those alphas (and
    the aggregators' floor ``eps``; the large user keeps the default)."""
    m = len(alphas)
    players = [aggregator(f"aggregator-{k + 1}", users[k::m], alpha, rule, eps)
               for k, alpha in enumerate(alphas)]
    if with_large is not None:
        players.append(Player.individual(large_user(with_large), rule=CHOICES.rule,
                                         eps=CHOICES.eps))
    return Game(tuple(players), LinearPrice(CHOICES.c))


def solve(game: Game, backend: str = Backend.NATIVE) -> Equilibrium:
    """A certified equilibrium, or an error naming why there is none (never a silent
    non-equilibrium in a study's results)."""
    eq = solve_equilibrium(game, backend=backend, settings=DynamicsSettings(
        max_rounds=500))
    if not eq.is_equilibrium:
        from aggregame.errors import SolverError

        raise SolverError(eq.reason())
    return eq


def small_user_outcomes(eq: Equilibrium) -> tuple[np.ndarray, np.ndarray]:
    """Consumption and surplus of every small user (members named s...)."""
    table = eq.members_table()
    small = table[table["member"].str.startswith("s")]
    return small["x"].to_numpy(), small["surplus"].to_numpy()
