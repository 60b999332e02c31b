"""Every equilibrium, from the game's aggregative structure: a search over the total.

A profile is an equilibrium exactly when its total Y lies in sum_j b_j(Y), b_j the
backward replies (solvers/equilibrium/replies.py): so every equilibrium total is a
root of Z(Y) = sum_j b_j(Y) - Y on [0, Y_bar], Y_bar the largest total any profile
can reach (docs/model.md, section "The aggregate view"). This module finds the roots
(a grid over Y, each sign change refined by Brent's method; no rounds, so the work
does not grow with the number of players as Gauss-Seidel's does), turns each into a
profile and certifies it (solvers/certify/): a candidate that is not a global best
response is reported, not counted.

Whether the roots found are all the roots is a separate claim, ``complete``, made
only with a proof:

* every player's backward reply falls with the total by a theorem (one-member
  players and social-welfare aggregators under a convex price): Z is strictly
  decreasing, so it has exactly one root, and the equilibrium is unique;
* every player has one quadratic member: Z's value and slope are bounded on
  intervals of Y from the price's value, slope and curvature ranges (interval
  arithmetic), every interval without a root is excluded, and every root is
  isolated where Z's slope is proved negative;
* otherwise the search is not proved exhaustive, and says why.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import brentq

from aggregame.players import Game
from aggregame.solvers.certify.certificate import CERTIFICATE_RTOL, check_rtol
from aggregame.solvers.certify.scan import certify, threads
from aggregame.solvers.equilibrium.dynamics import feasible_profile
from aggregame.solvers.equilibrium.replies import (
    PlayerReplies,
    Replies,
    falls_with_total,
)
from aggregame.solvers.equilibrium.results import Equilibrium, Status
from aggregame.solvers.inner.native import NativeInner

#: Totals sampled evenly on [0, Y_bar], and log-spaced below, for the root search.
TOTAL_SAMPLES = 48
LOG_TOTAL_SAMPLES = 24
#: Accuracy of an equilibrium total (relative to Y_bar).
TOTAL_RTOL = 1e-13
#: Candidate combinations per total at most, where replies are sets.
MAX_COMBINATIONS = 256


@dataclass(frozen=True)
class EquilibriumSet:
    """What the search over the total found, and what it proved.

    Attributes
    ----------
    equilibria : the certified equilibria, by total.
    rejected : candidates that satisfy every first-order condition but are not
        certified (a player gains by a deviation the conditions do not see).
    complete : True when the roots of Z are proved to be all of them.
    why : the argument for ``complete``, or why it cannot be made.
    """

    game: Game
    equilibria: tuple[Equilibrium, ...]
    rejected: tuple[Equilibrium, ...]
    complete: bool
    why: str
    totals_searched: int = 0

    @property
    def unique(self) -> bool:
        """Exactly one equilibrium, and no other: proved."""
        return self.complete and len(self.equilibria) == 1

    def verdict(self) -> str:
        count = len(self.equilibria)
        if self.complete:
            if count == 0:
                return "no equilibrium (proved)"
            return "unique (proved)" if count == 1 else f"{count} equilibria (proved)"
        return f"found {count} equilibri{'um' if count == 1 else 'a'} (not proved " \
               "to be all)"

    def to_dict(self) -> dict:
        return {"complete": self.complete, "why": self.why,
                "verdict": self.verdict(),
                "equilibria": [_entry(eq) for eq in self.equilibria],
                "rejected": [_entry(eq) for eq in self.rejected]}


def _entry(eq: Equilibrium) -> dict:
    return {"profile": eq.profile.tolist(), "price": eq.price,
            "certified": eq.certified, "verdicts": list(eq.certificate.verdicts)}


@dataclass
class _Search:
    """The players' repliers (local, in threads, or ``remote`` on a Dask cluster)
    and the totals evaluated so far."""

    game: Game
    replies: list[PlayerReplies]
    falling: list[bool]
    pool: ThreadPoolExecutor | None
    remote: Any = None
    cache: dict[float, list[Replies]] = field(default_factory=dict)

    def at(self, total: float) -> list[Replies]:
        if total not in self.cache:
            if self.remote is not None:
                self.cache[total] = self.remote.at(total)
                return self.cache[total]

            def one(j: int) -> Replies:
                return self.replies[j].at(total, self.falling[j])

            js = range(len(self.replies))
            self.cache[total] = list(self.pool.map(one, js)) if self.pool \
                else [one(j) for j in js]
        return self.cache[total]

    def z(self, total: float) -> np.ndarray:
        """Every value of Z at ``total`` (one per combination of candidates)."""
        sums = np.zeros(1)
        for r in self.at(total):
            sums = np.unique((sums[:, None] + r.candidates[None, :]).ravel())
            if sums.size > MAX_COMBINATIONS:
                sums = np.array([sums.min(), sums.max()])
        return sums - total


def find_equilibria(game: Game, certificate_rtol: float = CERTIFICATE_RTOL, *,
                    dask: Any = None) -> EquilibriumSet:
    """Every equilibrium of ``game`` the search over the total finds, each certified,
    and whether they are proved to be all (module docstring). ``dask``: a client
    (or a scheduler's address) whose workers compute the replies, one shard of
    players each (solvers/equilibrium/distributed.py)."""
    rtol = check_rtol(certificate_rtol)
    start = time.perf_counter()
    remote = None
    if dask is not None:
        from aggregame.solvers.equilibrium.distributed import DaskReplies, connect

        remote = DaskReplies(connect(dask) if isinstance(dask, str) else dask, game)
    count = threads(game) if remote is None else 1
    pool = ThreadPoolExecutor(count, thread_name_prefix="aggregame-replies") \
        if count > 1 else None
    try:
        falling = [falls_with_total(game, j) for j in range(len(game.players))]
        local = [] if remote is not None else [PlayerReplies(game, j) for j in
                                               range(len(game.players))]
        search = _Search(game, local, falling, pool, remote)
        top = total_bound(game)
        roots = _roots(search, top)
        found, rejected = _certified(game, search, roots, rtol)
        complete, why = _completeness(game, search, top, roots)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    seconds = time.perf_counter() - start
    for eq in found + rejected:
        eq.seconds = seconds
    return EquilibriumSet(game, tuple(found), tuple(rejected), complete, why,
                          len(search.cache))


def solve_aggregate(game: Game, certificate_rtol: float = CERTIFICATE_RTOL, *,
                    dask: Any = None) -> Equilibrium:
    """One equilibrium by the search over the total: the first certified one (by
    total), else the best candidate, not certified, with its certificate."""
    found = find_equilibria(game, certificate_rtol, dask=dask)
    if found.equilibria:
        return found.equilibria[0]
    if found.rejected:
        return min(found.rejected, key=lambda eq: eq.max_regret)
    profile = np.zeros(len(game.players))
    return _equilibrium(game, profile, certify(game, profile, certificate_rtol),
                        Status.NO_ROOT, 0, 0)


def total_bound(game: Game) -> float:
    """Y_bar: the largest total any profile can reach, where the players'
    capacities at the price it makes add up to it (they fall as it rises)."""
    def slack(total: float) -> float:
        price = float(game.price.value(total))
        if not math.isfinite(price):
            return -total
        return sum(float(p.zero_surplus_consumption(price).sum())
                   for p in game.players) - total

    if slack(0.0) <= 0:
        return 0.0
    hi = 1.0
    while slack(hi) > 0:
        hi *= 2.0
        if hi > 1e300:
            return math.inf
    lo = hi / 2 if hi > 1.0 else 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slack(mid) > 0 else (lo, mid)
        if hi - lo <= 1e-15 * hi:
            break
    return hi


def _sample_totals(game: Game, top: float) -> np.ndarray:
    """Totals to evaluate Z at: an even grid of [0, Y_bar], log-spaced points below,
    both sides of every price kink, and of every member's price-out total (where
    its player's reply may jump)."""
    grid = [np.linspace(0.0, top, TOTAL_SAMPLES),
            np.geomspace(top * 1e-9, top, LOG_TOTAL_SAMPLES)]
    kinks = np.asarray(game.price.breakpoints(0.0, top), dtype=float)
    thresholds = np.unique(np.concatenate([p.marginal_at_zero for p in game.players]))
    outs = np.array([game.price.inverse(float(b)) for b in thresholds])
    for point in np.concatenate([kinks, outs[np.isfinite(outs)]]):
        if 0 < point < top:
            grid.append(np.array([point * (1 - 1e-12), point * (1 + 1e-12)]))
    return np.unique(np.clip(np.concatenate(grid), 0.0, top))


def _roots(search: _Search, top: float) -> list[float]:
    """The totals where Z changes sign (or is 0), each refined by Brent's method;
    with every player's reply falling, Z falls too: bisect [0, Y_bar] directly."""
    if top <= 0:
        return [0.0]
    if all(search.falling):
        totals = np.array([0.0, top])
    else:
        totals = _sample_totals(search.game, top)
    values = [search.z(float(y)) for y in totals]
    roots = []
    for k, (y, z) in enumerate(zip(totals, values)):
        if np.any(z == 0):
            roots.append(float(y))
        if k + 1 < len(totals):
            nxt = values[k + 1]
            down = z.max() > 0 and nxt.min() < 0
            up = z.min() < 0 and nxt.max() > 0
            if (down or up) and z.size == nxt.size == 1:
                roots.append(brentq(lambda t: float(search.z(t)[0]), float(y),
                                    float(totals[k + 1]), xtol=TOTAL_RTOL * top,
                                    rtol=4 * np.finfo(float).eps))
            elif down or up:
                roots.append(_bisect_sets(search, float(y), float(totals[k + 1]),
                                          top, down))
    return sorted(set(roots))


def _bisect_sets(search: _Search, lo: float, hi: float, top: float,
                 down: bool) -> float:
    """A total in [lo, hi] where set-valued Z crosses 0: bisection on the sign of
    its largest value (falling through 0) or its least (rising through it)."""
    while hi - lo > TOTAL_RTOL * top:
        mid = 0.5 * (lo + hi)
        z = search.z(mid)
        if (z.max() > 0) if down else (z.min() < 0):
            lo = mid
        else:
            hi = mid
    return hi


def _certified(game: Game, search: _Search, roots: list[float], rtol: float
               ) -> tuple[list[Equilibrium], list[Equilibrium]]:
    """Each root's profiles (one per combination of candidates), certified."""
    found, rejected = [], []
    for total in roots:
        replies = search.at(total)
        for profile in _profiles(replies, total):
            profile = feasible_profile(game, profile)
            cert = certify(game, profile, rtol)
            eq = _equilibrium(game, profile, cert, Status.CONVERGED,
                              len(search.cache), 0)
            (found if cert.certified else rejected).append(eq)
    return _distinct(found), _distinct(rejected)


def _profiles(replies: list[Replies], total: float) -> list[np.ndarray]:
    """The profiles at this total: one candidate per player adding up to it."""
    combos = [np.zeros(0)]
    for r in replies:
        combos = [np.append(c, y) for c in combos for y in r.candidates]
        if len(combos) > MAX_COMBINATIONS:
            break
    scale = max(total, 1.0)
    return [c for c in combos if c.size == len(replies)
            and abs(c.sum() - total) <= 1e-9 * scale]


def _distinct(eqs: list[Equilibrium]) -> list[Equilibrium]:
    out: list[Equilibrium] = []
    for eq in eqs:
        scale = max(1.0, float(np.max(np.abs(eq.profile))))
        if all(np.max(np.abs(eq.profile - o.profile)) > 1e-7 * scale for o in out):
            out.append(eq)
    return out


def _equilibrium(game: Game, profile: np.ndarray, cert, status, evaluations: int,
                 seconds: float) -> Equilibrium:
    inners = [None if p.size == 1 else NativeInner(game, j)
              for j, p in enumerate(game.players)]
    return Equilibrium.from_run(
        game, profile, inners, converged=status is Status.CONVERGED, status=status,
        iterations=0, path=profile[None, :], certificate=cert, backend="native",
        method="aggregate", settings={"method": "aggregate"}, seconds=seconds,
        evaluations=evaluations, strategies=["aggregate"])


def _completeness(game: Game, search: _Search, top: float, roots: list[float]
                  ) -> tuple[bool, str]:
    """Whether the roots found are all the roots of Z, and the argument."""
    if all(search.falling):
        return True, ("every backward reply falls with the total (one-member players "
                      "and social-welfare aggregators under a convex price), so "
                      "Z(Y) = sum_j b_j(Y) - Y is strictly decreasing on "
                      f"[0, {top:.6g}]: exactly one root")
    from aggregame.solvers.equilibrium.intervals import one_member_roots_complete

    proved = one_member_roots_complete(game, top, roots)
    if proved is not None:
        return proved
    return False, ("no theorem or validated bound covers these players' backward "
                   "replies between the sampled totals (aggregators with alpha > 0, "
                   "max-min, or a price that is not convex): the roots found were "
                   "searched, not proved to be all")
