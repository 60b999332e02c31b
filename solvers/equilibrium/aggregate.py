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

from aggregame.errors import InnerSolveError
from aggregame.players import Game
from aggregame.solvers.certify.certificate import CERTIFICATE_RTOL, check_rtol
from aggregame.solvers.certify.scan import certify, threads
from aggregame.solvers.equilibrium.dynamics import feasible_profile
from aggregame.solvers.equilibrium.replies import (
    PlayerReplies,
    QuadraticSingles,
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
#: A reply that moves by more than this fraction of its capacity between two
#: sampled totals may jump there: the interval is bisected (at most
#: JUMP_BISECTIONS times) to put samples on both sides of the jump.
REPLY_JUMP = 0.05
JUMP_BISECTIONS = 48
#: Purchases of the grid a jump's profile must not lose to before it is certified.
JUMP_GRID = 33
#: Relative distance of the totals sampled on either side of a jump total.
JUMP_SIDE = 1e-12
#: A root this close to a jump total (relative to Y_bar) sits at it: the root
#: search converges to a jump of Z to its own accuracy, TOTAL_RTOL.
JUMP_SNAP = 1e-10


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
    and the totals evaluated so far. One-member quadratic players reply together
    (``singles``); ``replies`` holds the others' repliers, by player."""

    game: Game
    replies: dict[int, PlayerReplies]
    falling: list[bool]
    pool: ThreadPoolExecutor | None
    remote: Any = None
    singles: QuadraticSingles | None = None
    cache: dict[float, list[Replies]] = field(default_factory=dict)

    def at(self, total: float) -> list[Replies]:
        if total not in self.cache:
            self.cache[total] = self.remote.at(total) if self.remote is not None \
                else self._local(total)
        return self.cache[total]

    def _local(self, total: float) -> list[Replies]:
        def one(j: int) -> Replies:
            return self.replies[j].at(total, self.falling[j])

        out: list[Replies | None] = [None] * len(self.game.players)
        if self.singles is not None:
            for j, r in zip(self.singles.players, self.singles.at(total)):
                out[j] = r
        js = list(self.replies)
        found = list(self.pool.map(one, js)) if self.pool and len(js) > 1 \
            else [one(j) for j in js]
        for j, r in zip(js, found):
            out[j] = r
        return out

    def z(self, total: float) -> np.ndarray:
        """Every value of Z at ``total`` (one per combination of candidates)."""
        replies = self.at(total)
        if all(r.candidates.size == 1 for r in replies):
            # One combination: the same sum, added in the same order, without a
            # numpy call per player.
            return np.array([sum((float(r.candidates[0]) for r in replies), 0.0)
                             - total])
        sums = np.zeros(1)
        for r in replies:
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
        search = _Search(game, {}, falling, pool, remote)
        if remote is None:
            _local_repliers(search)
        top = total_bound(game)
        jumps = _jump_owners(game, top) if top > 0 else {}
        roots = _roots(search, top, jumps)
        found, rejected = _certified(game, search, top, roots, rtol, jumps)
        complete, why = _completeness(game, search, top, roots)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    seconds = time.perf_counter() - start
    for eq in found + rejected:
        eq.seconds = seconds
    return EquilibriumSet(game, tuple(found), tuple(rejected), complete, why,
                          len(search.cache))


def _local_repliers(search: _Search) -> None:
    """One replier per player, the one-member quadratic players' shared."""
    game = search.game
    everyone = range(len(game.players))
    singles = [j for j in everyone if QuadraticSingles.eligible(game, j)]
    search.singles = QuadraticSingles(game, singles) if singles else None
    others = set(everyone) - set(singles)
    search.replies = {j: PlayerReplies(game, j) for j in everyone if j in others}


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
    capacity = _capacity_of_everyone(game)

    def slack(total: float) -> float:
        price = float(game.price.value(total))
        if not math.isfinite(price):
            return -total
        return capacity(price) - total

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


def _capacity_of_everyone(game: Game):
    """price -> sum over every member of every player of its zero-surplus
    consumption: the members of one utility family gathered across players, so a
    price costs one call per family, not one per player."""
    gathered: dict[type, list[dict[str, np.ndarray]]] = {}
    for player in game.players:
        for fam in player.families:
            gathered.setdefault(fam.family, []).append(fam.params)
    columns = [(family, {name: np.concatenate([p[name] for p in params])
                         for name in params[0]})
               for family, params in gathered.items()]

    def capacity(price: float) -> float:
        return float(sum(family.zero_surplus_consumption(
            np.full(len(next(iter(params.values()))), price), params).sum()
            for family, params in columns))

    return capacity


def _sample_totals(top: float, jumps: dict[float, list[int]]) -> np.ndarray:
    """Totals to evaluate Z at: an even grid of [0, Y_bar], log-spaced points below,
    and both sides of every total where a reply may jump (``_jump_owners``; the
    other jumps, where a payoff with two maxima switches, ``_refine_jumps`` finds)."""
    grid = [np.linspace(0.0, top, TOTAL_SAMPLES),
            np.geomspace(top * 1e-9, top, LOG_TOTAL_SAMPLES)]
    for point in jumps:
        grid.append(np.array(_sides(point)))
    return np.unique(np.clip(np.concatenate(grid), 0.0, top))


def _roots(search: _Search, top: float, jumps: dict[float, list[int]]
           ) -> list[float]:
    """The totals where Z changes sign (or is 0), each refined by Brent's method;
    with every player's reply falling, Z falls too: bisect [0, Y_bar] directly."""
    if top <= 0:
        return [0.0]
    if all(search.falling):
        totals = np.array([0.0, top])
    else:
        totals = _refine_jumps(search, _sample_totals(top, jumps), top)
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


def _refine_jumps(search: _Search, totals: np.ndarray, top: float) -> np.ndarray:
    """The sampled totals, with both sides of every jump of a reply located between
    two samples. Where a player's payoff has two local maxima its reply jumps from
    one to the other at a total no formula gives; Z can cross 0 and jump back over
    it within one sampling interval, and the sign test alone would see no root."""
    extra: list[float] = []

    def refine(lo: float, hi: float, depth: int) -> None:
        if depth == 0 or hi - lo <= TOTAL_RTOL * top:
            extra.extend((lo, hi))
            return
        mid = 0.5 * (lo + hi)
        extra.append(mid)  # evaluated anyway; Z's sign there counts too
        for a, b in ((lo, mid), (mid, hi)):
            if _reply_jumps(search.at(a), search.at(b)):
                refine(a, b, depth - 1)

    for lo, hi in zip(totals[:-1], totals[1:]):
        if _reply_jumps(search.at(float(lo)), search.at(float(hi))):
            refine(float(lo), float(hi), JUMP_BISECTIONS)
    return np.unique(np.concatenate([totals, np.array(extra, dtype=float)]))


def _reply_jumps(left: list[Replies], right: list[Replies]) -> bool:
    """Whether some player's candidates differ between two totals by more than
    REPLY_JUMP of its capacity (or in number): a jump, or a steep stretch that
    bisection shrinks below the threshold."""
    for a, b in zip(left, right):
        if a.candidates.size != b.candidates.size:
            return True
        scale = max(a.capacity, b.capacity, 1e-300)
        if a.candidates.size and np.max(np.abs(a.candidates - b.candidates)) > \
                REPLY_JUMP * scale:
            return True
    return False


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


def _certified(game: Game, search: _Search, top: float, roots: list[float],
               rtol: float, jumps: dict[float, list[int]]
               ) -> tuple[list[Equilibrium], list[Equilibrium]]:
    """Each root's profiles (one per combination of candidates), certified; and the
    profiles the jump totals add (``_jump_profiles``) that no purchase on a coarse
    grid beats for the player taking the rest (the others reply by their
    first-order conditions there), certified too."""
    profiles = [p for total in roots for p in _profiles(search.at(total), total)]
    profiles += [p for p, j in _jump_profiles(search, top, roots, jumps)
                 if _unbeaten_on_a_grid(search, p, j, rtol)]
    found, rejected = [], []
    for profile in profiles:
        profile = feasible_profile(game, profile)
        cert = certify(game, profile, rtol)
        eq = _equilibrium(game, profile, cert, Status.CONVERGED, len(search.cache), 0)
        (found if cert.certified else rejected).append(eq)
    return _distinct(found), _distinct(rejected)


def _unbeaten_on_a_grid(search: _Search, profile: np.ndarray, j: int,
                        rtol: float) -> bool:
    """A necessary condition, cheap beside the certificate: player j's payoff at
    its purchase in ``profile`` is not beaten (beyond ``rtol`` of the payoff's range
    over the grid) at JUMP_GRID purchases spread over its feasible interval."""
    replier = search.replies.get(j)
    if replier is None or replier.inner is None:
        return True  # one member: the certificate is as cheap as this
    game = search.game
    others = float(profile.sum() - profile[j])
    top = game.feasible_max(j, others)
    ys = np.append(np.linspace(0.0, top, JUMP_GRID), min(max(profile[j], 0.0), top))
    try:
        welfare = replier.inner.solve(ys, np.full(ys.size, others)).welfare
    except InnerSolveError:
        return True  # no verdict here: the certificate decides
    here, grid = welfare[-1], welfare[:-1]
    finite = grid[np.isfinite(grid)]
    if not math.isfinite(here) or finite.size == 0:
        return math.isfinite(here) or finite.size == 0
    span = max(float(np.ptp(np.append(finite, here))), 1e-300)
    return bool(finite.max() - here <= rtol * span)


def _jump_profiles(search: _Search, top: float, roots: list[float],
                   jumps: dict[float, list[int]]) -> list[tuple[np.ndarray, int]]:
    """Where a reply jumps (a price kink, or a member priced out under a rule whose
    payoff jumps there), a player's best reply can be the purchase that puts the
    total exactly at the jump: no first-order condition holds there, so Z, built
    from the candidates, steps over the root instead of crossing it. Checked at the
    jumps a root converged to, and, where not every reply falls (so the search
    sampled both sides of each), at every jump. Each profile comes with the player
    that takes the rest."""
    owners = jumps
    if all(search.falling):
        owners = {total: js for total, js in owners.items()
                  if any(abs(total - r) <= JUMP_SNAP * top for r in roots)}
    return [pj for total, js in sorted(owners.items())
            for pj in _at_jump(search, total, js)]


def _sides(total: float) -> tuple[float, float]:
    """The totals just below and above a jump total, where the search samples Z (and
    reads the replies back from its cache)."""
    return total * (1 - JUMP_SIDE), total * (1 + JUMP_SIDE)


def _jump_owners(game: Game, top: float) -> dict[float, list[int]]:
    """Each jump total in (0, Y_bar) and the players whose reply may jump there:
    every player at a price kink; at a member's price-out total, its player, when
    it has other members and its rule's payoff jumps at a price-out."""
    everyone = list(range(len(game.players)))
    owners = {float(k): everyone for k in game.price.breakpoints(0.0, top)
              if 0 < k < top}
    for j, player in enumerate(game.players):
        if player.size == 1 or not player.fairness.rule.jumps_at_price_out(
                player.fairness):
            continue
        for b in np.unique(player.marginal_at_zero):
            total = float(game.price.inverse(float(b)))
            if 0 < total < top and math.isfinite(total):
                owners.setdefault(total, [])
                if j not in owners[total]:
                    owners[total] = owners[total] + [j]
    return owners


def _at_jump(search: _Search, total: float, players: list[int]
             ) -> list[tuple[np.ndarray, int]]:
    """Each of ``players`` takes the rest of the total, the others one candidate
    each, where the rest lies between the player's candidates on either side of the
    jump and its capacity. The total is the jump's, and the sampled one just above
    it: the price computed at the jump may round below the member's threshold,
    keeping it priced in at a zero surplus."""
    sides = [search.at(side) for side in _sides(total)]
    profiles = []
    for j in players:
        least = min(float(side[j].candidates.min(initial=np.inf)) for side in sides)
        for rest in _profiles_of(sides[1][:j] + sides[1][j + 1:]):
            for at in (total, _sides(total)[1]):
                own = at - float(rest.sum())
                if least <= own <= sides[1][j].capacity:
                    profiles.append((np.insert(rest, j, own), j))
    return profiles


def _profiles(replies: list[Replies], total: float) -> list[np.ndarray]:
    """The profiles at this total: one candidate per player adding up to it."""
    scale = max(total, 1.0)
    return [c for c in _profiles_of(replies) if abs(c.sum() - total) <= 1e-9 * scale]


def _profiles_of(replies: list[Replies]) -> list[np.ndarray]:
    """Every choice of one candidate per player (at most MAX_COMBINATIONS)."""
    combos = [np.zeros(0)]
    for r in replies:
        combos = [np.append(c, y) for c in combos for y in r.candidates]
        if len(combos) > MAX_COMBINATIONS:
            return []
    return combos


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
