"""An independent reference for a player's payoff, for tests of the certificate.

It shares no code with aggregame's solvers or certificate: the utilities, the
alpha-fair welfare and the inner problem are written here again, from the model
(docs/model.md), as plainly as possible, and solved by bisection alone, for many
purchases at once (arrays of purchases x members):

* alpha-fair: water filling on lambda, each member's x_i(lambda) by bisection on its
  marginal welfare w phi'(s + e)(U' - p), which falls on [0, xbar_i];
* max-min (total-surplus reading): the largest level t whose member intervals
  {x : s_i(x) + e_i >= t} can add up to y, then the total surplus inside them;
* leximin: two members only, by a dense search of the split x_1 + x_2 = y.

Only the game's data is read (members' parameters, fairness, the price's value). A
dense scan over a player's feasible interval with these payoffs finds deviations the
certificate must not miss.
"""

from __future__ import annotations

import math

import numpy as np

HALVINGS = 50


def _members(player):
    """(is log, a, b, w) arrays of a player's members: U = b x - a x^2 for quadratic
    members, w log(1 + x) for log members."""
    fam = np.array([m.utility.family == "log" for m in player.members])
    a = np.array([getattr(m.utility, "a", 1.0) for m in player.members])
    b = np.array([getattr(m.utility, "b", 0.0) for m in player.members])
    w = np.array([getattr(m.utility, "w", 0.0) for m in player.members])
    return fam, a, b, w


class Reference:
    """J_j(y) of one player against the others' total, for arrays of purchases."""

    def __init__(self, game, j: int, others: float) -> None:
        player = game.players[j]
        self.price_of = game.price
        self.others = others
        self.fam, self.a, self.b, self.w = _members(player)
        f = player.fairness
        self.alpha, self.rule, self.eps = f.alpha, f.rule.value, f.eps
        self.maxmin = math.isinf(f.alpha) and player.size > 1
        self.leximin = self.maxmin and f.maxmin.value == "leximin"
        if self.leximin and player.size != 2:
            raise ValueError("the reference's leximin splits two members")

    # -- member formulas -----------------------------------------------------------
    def U(self, x):  # noqa: N802
        return np.where(self.fam, self.w * np.log1p(x), self.b * x - self.a * x * x)

    def dU(self, x):  # noqa: N802
        return np.where(self.fam, self.w / (1.0 + x), self.b - 2.0 * self.a * x)

    def surplus(self, x, p):
        return self.U(x) - p * x

    def capacity(self, p):
        """Largest x with U(x) - p x >= 0 (0 once U'(0) <= p), per (row, member)."""
        p = p + 0 * self.b
        quad = np.maximum(self.b - p, 0.0) / self.a
        lo, hi = np.zeros_like(p), np.where(self.w > p, 1.0, 0.0)
        for _ in range(1100):  # log members: double until the surplus is negative
            grow = self.fam & (self.w > p) & (self.surplus(hi, p) >= 0)
            if not grow.any():
                break
            hi = np.where(grow, 2 * hi, hi)
        for _ in range(HALVINGS):
            mid = 0.5 * (lo + hi)
            pos = self.surplus(mid, p) > 0
            lo, hi = np.where(pos, mid, lo), np.where(pos, hi, mid)
        return np.where(self.fam, np.where(self.w > p, lo, 0.0), quad)

    def peak(self, p, xbar):
        lo, hi = np.zeros_like(xbar), xbar.copy()
        for _ in range(HALVINGS):
            mid = 0.5 * (lo + hi)
            up = self.dU(mid) > p
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        return 0.5 * (lo + hi)

    # -- payoffs -------------------------------------------------------------------
    def __call__(self, y: np.ndarray) -> list[tuple]:
        """The payoff at each purchase, as tuples that rank like the player ranks."""
        y = np.atleast_1d(np.asarray(y, dtype=float))
        p = np.asarray(self.price_of.value(self.others + y), dtype=float)[:, None] \
            + 0 * y[:, None]
        xbar = self.capacity(p)
        u0 = np.where(self.fam, self.w, self.b)
        out = u0 <= p
        floor = self.eps if self.rule == "floor" else 0.0
        counted = ~out if self.rule == "viable" else np.ones_like(out)
        infeasible = y > xbar.sum(axis=1) * (1 + 1e-12) + 1e-300
        if self.leximin:
            values = self._leximin(y, p, xbar, floor, counted)
        elif self.maxmin:
            values = self._maxmin(y, p, xbar, floor, counted)
        else:
            values = [(v,) for v in self._alpha_fair(y, p, xbar, floor, out)]
        return [(-math.inf,) if bad else v for v, bad in zip(values, infeasible)]

    def _alpha_fair(self, y, p, xbar, floor, out) -> np.ndarray:
        weight = np.where(out & (self.rule in ("viable", "strict")), 0.0, 1.0)
        if self.b.size == 1:  # one member takes the purchase
            x = np.minimum(y[:, None], xbar)
        else:
            usable = (weight > 0) & (xbar > 0)
            w = np.where(usable, weight, 1.0)
            lo, hi = np.full(y.size, -80.0), np.full(y.size, 80.0)
            for _ in range(HALVINGS + 40):  # lambda = sign(z)(e^|z| - 1)
                z = 0.5 * (lo + hi)
                total = np.where(usable, self._response(z, p, xbar, w, floor),
                                 0.0).sum(1)
                lo, hi = np.where(total > y, z, lo), np.where(total > y, hi, z)
            x = np.where(usable, self._response(0.5 * (lo + hi), p, xbar, w, floor),
                         0.0)
            x = x * (y / np.maximum(x.sum(axis=1), 1e-300))[:, None]
        level = np.maximum(self.surplus(x, p) + floor, 0.0)
        with np.errstate(divide="ignore"):
            if self.alpha == 0:
                phi = level
            elif self.alpha == 1:
                phi = np.log(level)
            else:
                phi = level ** (1 - self.alpha) / (1 - self.alpha)
        with np.errstate(invalid="ignore"):  # 0 * -inf where a weight is 0
            welfare = np.where(weight > 0, weight * phi, 0.0).sum(axis=1)
        if self.rule == "strict" and self.alpha >= 1:
            welfare = np.where(out.any(axis=1), -np.inf, welfare)
        return welfare

    def _response(self, z, p, xbar, weight, floor):
        """Each member's x in [0, xbar] maximizing w phi(s + e) - lambda x."""
        lam = (np.sign(z) * np.expm1(np.abs(z)))[:, None]
        lo, hi = np.zeros_like(xbar), xbar.copy()
        for _ in range(HALVINGS):
            mid = 0.5 * (lo + hi)
            level = np.maximum(self.surplus(mid, p) + floor, 1e-300)
            with np.errstate(over="ignore"):
                g = weight * level ** -self.alpha * (self.dU(mid) - p)
            up = g > lam
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        return 0.5 * (lo + hi)

    def _sides(self, need, p, xbar, peak):
        """[lo, hi]: the x in [0, xbar] with s(x) >= need (NaN: the peak is below)."""
        empty = self.surplus(peak, p) < need
        a1, b1, a2, b2 = np.zeros_like(peak), peak.copy(), peak.copy(), xbar.copy()
        for _ in range(HALVINGS):
            m1, m2 = 0.5 * (a1 + b1), 0.5 * (a2 + b2)
            up1, up2 = self.surplus(m1, p) >= need, self.surplus(m2, p) >= need
            a1, b1 = np.where(up1, a1, m1), np.where(up1, m1, b1)
            a2, b2 = np.where(up2, m2, a2), np.where(up2, b2, m2)
        lo, hi = np.where(need <= 0, 0.0, b1), np.where(need <= 0, xbar, a2)
        return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)

    def _maxmin(self, y, p, xbar, floor, counted) -> list[tuple]:
        peak = self.peak(p, xbar)
        top = np.where(counted, self.surplus(peak, p) + floor, np.inf).min(axis=1)
        top = np.where(np.isfinite(top), top, floor)

        def fits(t):
            need = np.where(counted, t[:, None] - floor, -np.inf)
            lo, hi = self._sides(need, p, xbar, peak)
            ok = ~np.isnan(lo).any(axis=1)
            return ok & (np.nansum(lo, 1) <= y) & (y <= np.nansum(hi, 1))

        t_lo, t_hi = np.full(y.size, floor), top
        at_top = fits(t_hi)
        for _ in range(HALVINGS + 40):
            mid = 0.5 * (t_lo + t_hi)
            good = fits(mid)
            t_lo, t_hi = np.where(good, mid, t_lo), np.where(good, t_hi, mid)
        t = np.where(at_top, top, t_lo)
        need = np.where(counted, t[:, None] - floor, -np.inf)
        lo, hi = self._sides(need, p, xbar, peak)
        lo, hi = np.nan_to_num(lo), np.nan_to_num(hi, nan=0.0)
        x = self._fill(y, p, lo, hi)
        s = self.surplus(x, p)
        level = np.where(counted, s + floor, np.inf).min(axis=1)
        level = np.where(np.isfinite(level), level, 0.0)
        return list(zip(level.tolist(), s.sum(axis=1).tolist()))

    def _fill(self, y, p, lo, hi):
        """Total surplus within [lo, hi], sum x = y: water filling on nu."""
        n_lo, n_hi = np.full(y.size, -1e9), np.full(y.size, 1e9)

        def at(nu):
            a, b = lo.copy(), hi.copy()
            for _ in range(HALVINGS):
                mid = 0.5 * (a + b)
                up = self.dU(mid) - p > nu[:, None]
                a, b = np.where(up, mid, a), np.where(up, b, mid)
            return 0.5 * (a + b)

        for _ in range(HALVINGS + 40):
            nu = 0.5 * (n_lo + n_hi)
            more = at(nu).sum(axis=1) > y
            n_lo, n_hi = np.where(more, nu, n_lo), np.where(more, n_hi, nu)
        return at(0.5 * (n_lo + n_hi))

    def _leximin(self, y, p, xbar, floor, counted) -> list[tuple]:
        out = []
        for k in range(y.size):
            lo, hi = max(0.0, y[k] - xbar[k, 1]), min(xbar[k, 0], y[k])
            if hi < lo:
                out.append((-math.inf,))
                continue
            best = None
            grid = np.linspace(lo, hi, 2001)
            for _ in range(8):
                x = np.stack([grid, y[k] - grid], axis=1)
                levels = np.where(counted[k], self.surplus(x, p[k]) + floor, np.inf)
                vectors = np.sort(levels, axis=1)
                m = int(np.lexsort((vectors[:, 1], vectors[:, 0]))[-1])
                if best is None or tuple(vectors[m]) > best:
                    best = tuple(vectors[m])
                step = grid[1] - grid[0] if grid.size > 1 else 0.0
                grid = np.linspace(max(lo, grid[m] - step), min(hi, grid[m] + step),
                                   201)
            out.append(best)
        return out


def relative_regret(game, j: int, profile: np.ndarray, points: int = 200
                    ) -> tuple[float, float]:
    """(relative regret, best purchase) of player j at ``profile`` by a dense scan
    of its feasible interval (even and log-spaced points, refined around the best
    few by grid and shrink) with the reference payoff. The gain is read in the
    first component of the payoff where the best purchase and the profile differ
    (1e-9 relative), over that component's scale: best minus the median of the
    even points (the certificate's definition, computed here afresh)."""
    others = float(profile.sum() - profile[j])
    ref = Reference(game, j, others)
    y_max = max(float(game.feasible_max(j, others)), 0.0)
    here = ref(np.array([float(profile[j])]))[0]
    even = np.linspace(0.0, y_max, points)
    ys = np.unique(np.concatenate([even, np.geomspace(max(y_max, 1e-300) * 1e-12,
                                                      max(y_max, 1e-300), points)]))
    ys = ys[ys <= y_max]
    values = dict(zip(ys.tolist(), ref(ys)))
    brackets = []
    for y in sorted(values, key=values.get, reverse=True)[:4]:
        k = int(np.searchsorted(ys, y))
        brackets.append((float(ys[max(k - 1, 0)]), float(ys[min(k + 1, ys.size - 1)])))
    for _ in range(10):  # grid and shrink, the four brackets in one batch
        grids = [np.linspace(lo, hi, 17) for lo, hi in brackets]
        vals = ref(np.concatenate(grids))
        values.update(zip(np.concatenate(grids).tolist(), vals))
        brackets = []
        for n, grid in enumerate(grids):
            part = vals[17 * n:17 * (n + 1)]
            m = max(range(17), key=lambda q: part[q])
            brackets.append((float(grid[max(m - 1, 0)]), float(grid[min(m + 1, 16)])))
    best_y = max(values, key=values.get)
    best = values[best_y]
    if not math.isfinite(here[0]):
        return (math.inf if math.isfinite(best[0]) else 0.0), best_y
    if best <= here:
        return 0.0, best_y
    k = next((i for i, (u, v) in enumerate(zip(best, here))
              if abs(u - v) > 1e-9 * max(abs(u), abs(v))), None)
    if k is None:
        return 0.0, best_y
    column = np.array([values[float(y)][k] for y in even
                       if len(values[float(y)]) > k])
    column = column[np.isfinite(column)]
    span = best[k] - float(np.median(column)) if column.size else 0.0
    if span <= 0 and column.size:
        span = best[k] - float(column.min())
    gain = best[k] - here[k]
    return (gain / span if span > 0 else math.inf), best_y
