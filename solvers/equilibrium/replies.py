"""Backward replies: the purchases each player can make at a given total purchase.

The game is aggregative (docs/model.md, section "The aggregate view"): player j's
payoff depends on its own purchase y_j and the total Y only. Fix a candidate total Y:
the price P = p(Y) and its slope S = p'(Y) are numbers, and "y_j is a best response
to the others' total Y - y_j" is a question about y_j alone. Its first-order
condition is the total derivative with the price frozen,

    F_j(y; Y) = lambda_j(y, P) + S dPhi_j/dp(y, P)   (= 0 inside, <= 0 at 0, >= 0 at
                                                        the capacity sum_i xbar_i(P)),

so every equilibrium total Y* lies in sum_j b_j(Y*), b_j(Y) the set of such
candidates. This module computes the candidates; which of them are global best
responses is the certificate's decision (solvers/certify/), made on the profiles
the root search over Y proposes (solvers/equilibrium/aggregate.py).

* One-member players take the whole purchase: F = U'(y) - P - S y, decreasing in y,
  one root (closed form for quadratic members).
* Alpha-fair aggregators: F is the inner solve's total derivative on rows whose
  others' total is Y - y (so every row's price is P); sign changes over a sample of
  [0, cap] are refined by brentq.
* Max-min players rank a level (or, pinned by a priced-out member, the total
  surplus, whose derivative the inner solve gives; leximin: the smallest level of
  the members priced in): the members holding the level give its derivative along
  the frozen total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from aggregame.players import Game
from aggregame.solvers.inner.native import NativeInner
from aggregame.utilities import QuadraticUtility

#: Purchases sampled on [0, cap] to bracket the roots of an aggregator's F.
REPLY_SAMPLES = 24
#: Accuracy of a reply (relative to the player's capacity at the price).
REPLY_RTOL = 1e-12
#: Levels within this (relative) of a max-min player's smallest hold it: the inner
#: rows give levels to ~1e-8 where a member's surplus is steep.
HOLDING_RTOL = 1e-7


@dataclass(frozen=True)
class Replies:
    """Player j's candidate purchases at total Y (sorted), with the price."""

    total: float
    price: float
    slope: float
    capacity: float
    candidates: np.ndarray


class PlayerReplies:
    """Backward replies of one player, at any total (its own inner solver)."""

    def __init__(self, game: Game, j: int) -> None:
        self.game, self.j = game, j
        self.player = game.players[j]
        self.quadratic = self.player.size == 1 and isinstance(
            self.player.members[0].utility, QuadraticUtility)
        self.inner = None if self.player.size == 1 else NativeInner(game, j)

    def at(self, total: float, falling: bool = False) -> Replies:
        """The candidates at total purchase ``total``. ``falling``: F is known to
        fall in y (``falls_with_total``), so its one root is bracketed by the ends
        and needs no sample."""
        price = float(self.game.price.value(total))
        slope = float(self.game.price.derivative(total))
        cap = float(self.player.zero_surplus_consumption(price).sum())
        if cap <= 0 or not math.isfinite(price):
            return Replies(total, price, slope, max(cap, 0.0), np.zeros(1))
        if self.player.size == 1:
            found = self._one_member(price, slope, cap)
        elif falling:
            found = self._falling_root(total, price, slope, cap)
        else:
            found = self._roots(total, price, slope, cap)
        return Replies(total, price, slope, cap, np.unique(found))

    # -- one member: F = U'(y) - P - S y ------------------------------------------
    def _one_member(self, price: float, slope: float, cap: float) -> np.ndarray:
        util = self.player.members[0].utility
        params = util.params()
        if self.quadratic:
            return quadratic_reply(np.array([util.a]), np.array([util.b]), price, slope,
                                   cap)

        def f(y: float) -> float:
            return float(util.dU(y, params)) - price - slope * y

        if f(0.0) <= 0:
            root = 0.0
        elif f(cap) >= 0:
            root = cap
        else:
            root = brentq(f, 0.0, cap, xtol=REPLY_RTOL * cap)
        return np.array([min(max(root, 0.0), cap)])

    # -- aggregators ----------------------------------------------------------------
    def _derivative(self, ys: np.ndarray, total: float, price: float,
                    slope: float) -> np.ndarray:
        """F at purchases ``ys``, every row's others' total Y - y (price P)."""
        ys = np.atleast_1d(np.asarray(ys, dtype=float))
        batch = self.inner.solve(ys, total - ys)
        fairness = self.player.fairness
        if not fairness.is_maxmin:
            return _finite_sign(batch.derivative, batch.welfare, ys)
        if self._tiebreak_decides(price):
            return _finite_sign(batch.tiebreak_derivative, batch.welfare, ys)
        return self._level_derivative(batch, price, slope)

    # -- max-min -----------------------------------------------------------------
    def _level_members(self, price: float) -> np.ndarray:
        """The members whose smallest level the player ranks first: the counted
        ones (total-surplus reading), those priced in (leximin: the priced-out
        ones sit at their floor whatever it buys)."""
        priced_out = self.player.marginal_at_zero <= price
        counted = np.asarray(self.player.fairness.rule.counted(priced_out),
                             dtype=bool)
        return counted & ~priced_out if self.player.fairness.is_leximin else counted

    def _tiebreak_decides(self, price: float) -> bool:
        """Total-surplus reading with a counted member priced out: the level is
        pinned at its floor, and the total surplus decides."""
        fairness = self.player.fairness
        out = self.player.marginal_at_zero <= price
        pinned = bool(np.any(out & fairness.rule.counted(out)))
        return pinned and not fairness.is_leximin

    def _level_derivative(self, batch, price: float, slope: float) -> np.ndarray:
        """d/dy, along the frozen total, of the smallest level of ``_level_members``
        where it rises with the purchase: the members holding it (s_i + e_i at the
        minimum, s_i' = U_i' - P > 0) raise it by dt = dy / sum_i 1/s_i', and a
        higher price lowers it by sum_i x_i/s_i' / sum_i 1/s_i' per unit, so
        F = (1 - S sum x_i/s_i') / sum 1/s_i'. A member at its peak caps the level:
        it falls with the price there, F = -S x_peak < 0."""
        members = self._level_members(price)
        fairness = self.player.fairness
        floor = fairness.floor
        out = np.full(batch.y.size, -1.0)
        for k in range(batch.y.size):
            x, surplus = batch.x[k], batch.surplus[k]
            level = np.where(members, surplus + floor, np.inf)
            low = float(level.min())
            if not math.isfinite(low):
                continue
            rise = self.player.evaluate("dU", x[None, :])[0] - price
            holding = members & (level <= low + HOLDING_RTOL * max(abs(low), 1e-300))
            if np.any(holding & ~(rise > 0)):
                out[k] = -slope * float(np.max(np.where(holding, x, 0.0)))
                continue
            inverse = float(np.sum(np.where(holding, 1.0 / np.where(
                holding, rise, 1.0), 0.0)))
            share = float(np.sum(np.where(holding, x / np.where(holding, rise, 1.0),
                                          0.0)))
            out[k] = (1.0 - slope * share) / inverse if inverse > 0 else -1.0
        return out

    def _falling_root(self, total: float, price: float, slope: float, cap: float
                      ) -> np.ndarray:
        """The one root of a falling F on [0, cap] (or the end where F keeps its
        sign)."""
        ends = self._derivative(np.array([0.0, cap]), total, price, slope)
        if ends[0] <= 0:
            return np.zeros(1)
        if ends[1] >= 0:
            return np.array([cap])

        def f(y: float) -> float:
            return float(self._derivative(np.array([y]), total, price, slope)[0])

        return np.array([_bracketed_root(f, 0.0, cap, REPLY_RTOL * cap)])

    def _roots(self, total: float, price: float, slope: float, cap: float
               ) -> np.ndarray:
        """Every sign change of F over a sample of [0, cap] refined by brentq, and
        the corners where F says stop there (F(0) <= 0; F(cap) >= 0)."""
        ys = np.unique(np.concatenate([np.linspace(0.0, cap, REPLY_SAMPLES // 2),
                                       np.geomspace(cap * 1e-9, cap,
                                                    REPLY_SAMPLES // 2)]))
        d = self._derivative(ys, total, price, slope)
        found = []
        if d[0] <= 0:
            found.append(0.0)
        if d[-1] >= 0:
            found.append(cap)
        for k in np.flatnonzero((d[:-1] > 0) & (d[1:] <= 0)):
            lo, hi = float(ys[k]), float(ys[k + 1])
            if d[k + 1] == 0:
                found.append(hi)
                continue

            def f(y: float) -> float:
                return float(self._derivative(np.array([y]), total, price, slope)[0])

            found.append(_bracketed_root(f, lo, hi, REPLY_RTOL * cap))
        return np.array(found) if found else np.zeros(1)


def quadratic_reply(a: np.ndarray, b: np.ndarray, price: float, slope: float,
                    cap: np.ndarray | float) -> np.ndarray:
    """The reply of one-member players with U = b y - a y^2, one per (a, b): the root
    of F = b - 2 a y - P - S y, (b - P) / (2a + S), within [0, cap], cap their
    zero-surplus consumption (b - P)^+ / a."""
    return np.minimum(np.maximum((b - price) / (2 * a + slope), 0.0), cap)


class QuadraticSingles:
    """Backward replies of every one-member quadratic player of a game at once
    (``quadratic_reply`` on their columns): a thousand individuals cost one numpy
    expression per total, not a thousand calls."""

    def __init__(self, game: Game, players: list[int]) -> None:
        self.game, self.players = game, players
        utils = [game.players[j].members[0].utility for j in players]
        self.a = np.array([u.a for u in utils], dtype=float)
        self.b = np.array([u.b for u in utils], dtype=float)
        self.params = {"a": self.a, "b": self.b}

    @staticmethod
    def eligible(game: Game, j: int) -> bool:
        player = game.players[j]
        return player.size == 1 and isinstance(player.members[0].utility,
                                               QuadraticUtility)

    def at(self, total: float) -> list[Replies]:
        """Each player's Replies at ``total``, in the order of ``players``."""
        price = float(self.game.price.value(total))
        slope = float(self.game.price.derivative(total))
        if not math.isfinite(price):
            return [Replies(total, price, slope, 0.0, np.zeros(1))
                    for _ in self.players]
        cap = QuadraticUtility.zero_surplus_consumption(price, self.params)
        y = quadratic_reply(self.a, self.b, price, slope, cap)
        return [Replies(total, price, slope, float(c), np.array([v]))
                for c, v in zip(cap, y)]


def _bracketed_root(f, lo: float, hi: float, xtol: float) -> float:
    """brentq's root of f in [lo, hi], where a batch saw the sign change; a row
    solved alone may read a slope within its rounding of 0 with the other sign
    (the batch's allocations are as accurate, not identical), and then the end
    nearer to 0 is the root to that accuracy."""
    f_lo, f_hi = f(lo), f(hi)
    if f_lo > 0 > f_hi:
        try:
            return float(brentq(f, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps))
        except ValueError:
            # brentq read an end again with the other sign (a row near a price-out
            # solved alone, within its rounding of F = 0): the nearer end is the
            # root to that accuracy, as below.
            f_lo, f_hi = f(lo), f(hi)
    return lo if abs(f_lo) <= abs(f_hi) else hi


def _finite_sign(derivative: np.ndarray, welfare: np.ndarray, ys: np.ndarray
                 ) -> np.ndarray:
    """F, with the sign of the way out where it is undefined: J = -inf at y = 0
    (every surplus 0, alpha >= 1 without a floor) rises; beyond, it falls."""
    d = np.nan_to_num(derivative, nan=-1.0, posinf=1.0, neginf=-1.0)
    dead = ~np.isfinite(welfare)
    return np.where(dead, np.where(ys <= 0, 1.0, -1.0), d)


def falls_with_total(game: Game, j: int) -> bool:
    """True when player j's F falls in y and in the total, by a theorem, so its
    backward reply is one purchase that falls as the total rises (docs/model.md,
    section "The aggregate view"): under a convex price, a one-member player
    (F = U'(y) - P - S y) and a social-welfare aggregator (F = W'(y) - P - S y with
    W(y) = max sum_i U_i(x_i), concave, whose slope only falls as a higher price
    drives members out) under any rule."""
    player = game.players[j]
    if not game.price.convex:
        return False
    return player.size == 1 or (player.fairness.alpha == 0
                                and not player.fairness.is_maxmin)
