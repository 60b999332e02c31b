"""The certificate of one-member quadratic players under a convex price, in one pass.

Such a player gives its one member the whole purchase, so its payoff is
J(y) = w phi(s(y) + e) with s(y) = b y - a y^2 - p(Y_-j + y) y: concave (U concave,
p(Y) y convex), and J rises with s (docs/model.md, section "One-member players"). So
the tangent of s at any purchase bounds s everywhere on [0, y_max]; at the root of s'
(found from the utility's and the price's own derivatives, not from the best
response's formula) that bound is the maximum itself, up to the root's accuracy.
The payoff's scale comes from SCALE_POINTS purchases spread evenly.

Every player of this kind is certified at once, as arrays over the players: a
Cournot game of a dozen users costs tens of microseconds, not a loop of searches.
The verdicts and numbers are those of the per-player path (solvers/certify/scan.py),
which a test holds them to.
"""

from __future__ import annotations

import math

import numpy as np

from aggregame.one_member import FEASIBILITY_RTOL, OneMemberPayoff
from aggregame.players import Game
from aggregame.solvers.certify.certificate import PlayerRegret, Verdict
from aggregame.utilities import QuadraticUtility

#: Evenly spread purchases (ends included) that set each payoff's scale.
SCALE_POINTS = 9
#: Halvings of the root of s' where the secant is not exact (a non-affine price).
ROOT_HALVINGS = 100


def eligible(game: Game) -> list[int]:
    """Players certified here: one quadratic member, under a convex price."""
    if not game.price.convex:
        return []
    return [j for j, p in enumerate(game.players)
            if p.size == 1 and isinstance(p.members[0].utility, QuadraticUtility)]


def certify_one_members(game: Game, profile: np.ndarray, rtol: float,
                        players: list[int]) -> dict[int, PlayerRegret]:
    """PlayerRegret of each of ``players`` (all ``eligible``) at ``profile``."""
    if not players:
        return {}
    idx = np.array(players)
    a = np.array([game.players[j].members[0].utility.a for j in players])
    b = np.array([game.players[j].members[0].utility.b for j in players])
    y = profile[idx]
    others = float(profile.sum()) - y
    y_max = np.array([game.feasible_max(j, float(o)) for j, o in zip(players, others)])
    price = game.price

    def surplus(z):
        return b[:, None] * z - a[:, None] * z * z - np.asarray(
            price.value(others[:, None] + z), dtype=float) * z

    def slope(z):
        total = others + z
        return (b - 2 * a * z - np.asarray(price.value(total), dtype=float)
                - np.asarray(price.derivative(total), dtype=float) * z)

    top = _root(slope, y_max)
    grid = np.linspace(0.0, 1.0, SCALE_POINTS)[None, :] * y_max[:, None]
    points = np.concatenate([y[:, None], top[:, None], grid], axis=1)
    with np.errstate(all="ignore"):
        s = surplus(points)
        d_top = slope(top)
        s_bound = s[:, 1] + np.maximum(np.maximum(d_top * (y_max - top), -d_top * top),
                                       0.0)
    infeasible = points > y_max[:, None] * (1 + FEASIBILITY_RTOL) + 1e-300
    at_price = np.asarray(price.value(others[:, None] + points), dtype=float)
    u0 = np.array([game.players[j].marginal_at_zero[0] for j in players])[:, None]
    s = np.where(points > 0, s, 0.0)
    welfare = np.empty_like(s)
    bound = np.empty(len(players))
    for rows, payoff in _by_fairness(game, players):
        welfare[rows], _ = payoff.welfare_and_slope(
            s[rows], np.zeros_like(s[rows]), u0[rows] <= at_price[rows])
        value, _ = payoff.welfare_and_slope(
            s_bound[rows, None], np.zeros((rows.size, 1)),
            u0[rows] <= at_price[rows, 1:2])
        bound[rows] = value[:, 0]
    welfare = np.where(infeasible, -np.inf, welfare)
    return {j: _verdict(welfare[n], float(bound[n]), points[n], y_max[n], rtol)
            for n, j in enumerate(players)}


def _root(slope, y_max: np.ndarray) -> np.ndarray:
    """The root of each s' on [0, y_max] (0 where s'(0) <= 0, y_max where s' >= 0
    there): the secant between the ends, exact where s' is linear (an affine price),
    then bisection where it is not."""
    d0, d1 = slope(np.zeros_like(y_max)), slope(y_max)
    with np.errstate(all="ignore"):
        root = np.clip(y_max * d0 / (d0 - d1), 0.0, y_max)
    root = np.where(d0 <= 0, 0.0, np.where(d1 >= 0, y_max, root))
    inside = (d0 > 0) & (d1 < 0)
    scale = np.abs(d0) + np.abs(d1)
    off = inside & ~(np.abs(slope(root)) <= 1e-12 * scale)
    if off.any():
        lo, hi = np.zeros_like(y_max), y_max.copy()
        for _ in range(ROOT_HALVINGS):
            mid = 0.5 * (lo + hi)
            up = slope(mid) > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        root = np.where(off, 0.5 * (lo + hi), root)
    return root


def _by_fairness(game: Game, players: list[int]):
    """(rows, payoff) per distinct fairness among ``players``: the one-member
    payoff's own formula (aggregame.one_member) serves every player that shares it."""
    groups: dict = {}
    for n, j in enumerate(players):
        groups.setdefault(game.players[j].fairness, []).append(n)
    for rows in groups.values():
        first = game.players[players[rows[0]]]
        yield np.array(rows), OneMemberPayoff(first, game.price)


def _verdict(welfare: np.ndarray, bound: float, points: np.ndarray, y_max: float,
             rtol: float) -> PlayerRegret:
    """Regret of the best of (profile, root, grid) over the profile (welfare[0]),
    relative to the grid's best minus median; the tangent bound proves the rest."""
    here = welfare[0]
    best = int(np.argmax(welfare))
    grid = welfare[2:]
    finite = welfare[np.isfinite(welfare)]
    if not math.isfinite(here):
        gain = math.inf if finite.size else 0.0
        return PlayerRegret(gain, gain, float(points[best]), here,
                            math.inf if finite.size else 0.0,
                            Verdict.REFUTED if finite.size else Verdict.PROVED,
                            welfare.size, "the profile's purchase is infeasible"
                            if finite.size else "")
    top = float(finite.max())
    spread = grid[np.isfinite(grid)]
    span = top - float(np.median(spread)) if spread.size else 0.0
    if span <= 0:
        span = top - float(finite.min())
    raw = max(float(welfare[best]) - here, 0.0)
    rel = raw / span if raw > 0 and span > 0 else (math.inf if raw > 0 else 0.0)
    gain = bound - here
    proved = max(rel, 0.0 if gain <= 0 else (gain / span if span > 0 else math.inf))
    if y_max <= 0:
        proved = rel
    if rel > rtol:
        verdict, reason = Verdict.REFUTED, "a deviation gains more than the tolerance"
    elif proved <= rtol:
        verdict, reason = Verdict.PROVED, ""
    else:
        verdict, reason = Verdict.BOUNDED, "the concave payoff's tangent bound is loose"
    return PlayerRegret(raw, rel, float(points[best]), here,
                        proved if verdict is not Verdict.REFUTED else math.inf,
                        verdict, welfare.size, reason)
