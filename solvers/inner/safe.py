"""The safe inner solve: plain bisection, in log space, each purchase on its own.

The native backend's fast path (closed forms, Newton, batches) is checked row by row by
its optimality residual (aggregame.allocation). A row that fails is solved again here,
by a method that shares none of the fast path's numerics:

* alpha < inf: bisection on lambda for sum_i x_i(lambda) = y, each x_i(lambda) itself
  by bisection on g_i(x) = lambda. The comparison g_i(x) > lambda is made on signs and
  logarithms, never on g_i itself, so (s + e)^-alpha cannot overflow at large alpha.
  lambda runs over T(z) = sign(z) exp(|z| - Z), z in [-2Z, 2Z]: log |lambda| = |z| - Z
  exactly, so lambda is resolved to the same relative precision from e^-Z to e^Z
  without forming it (a map linear near 0, such as sign(z) expm1|z|, cannot resolve
  lambda ~ 1e-32: alpha = 32 with s + e ~ 10 needs that).
* max-min: bisection on the level t (is some allocation at t or above feasible?), then
  the total-surplus tie-break by bisection on its multiplier nu.

About 10^4 vector operations per purchase: a fallback, not a fast path.
"""

from __future__ import annotations

import numpy as np

from aggregame.allocation import (
    CHECK_HALVINGS,
    counted_members,
    level_interval,
    marginal_of,
    surplus_peak,
    utility_of,
)
from aggregame.players import Player

#: |log lambda| reachable: (s + e)^-alpha (U' - p) stays below e^Z for alpha up to
#: about Z / |log e| (1.3e3 at e = 0.01 when Z = 6000).
Z_MAX = 6000.0
_ITER = 200


def _above(player: Player, x, price, weight, floor, z) -> np.ndarray:
    """g_i(x) > T(z), member by member, on signs and logarithms (rows of x, one z
    and one price per row, as columns)."""
    alpha = player.fairness.alpha
    slope = player.evaluate("dU", x) - price
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.log(np.maximum(player.evaluate("U", x) - price * x + floor, 1e-300))
        log_g = np.log(weight) - alpha * level + np.log(np.abs(slope))
        log_lam = np.where(z != 0, np.abs(z) - Z_MAX, -np.inf)  # log |T(z)|
    rising = (slope > 0) & (log_g > log_lam)  # lambda > 0: g above it
    falling = (slope >= 0) | (log_g < log_lam)  # lambda < 0
    return np.where(z > 0, rising, np.where(z < 0, falling, slope > 0))


def _members_at(player: Player, z, price, xbar, weight, floor) -> np.ndarray:
    """x_i(T(z)) for every member of every row by bisection (g_i decreases on
    [0, xbar_i]). A row stops halving once all its brackets are at rounding, as it
    would alone: batching rows changes no bit of any row."""
    lo, hi = np.zeros_like(xbar), xbar.copy()
    start = _above(player, lo, price, weight, floor, z)
    full = _above(player, hi, price, weight, floor, z)
    live = np.ones(xbar.shape[0], dtype=bool)
    for _ in range(_ITER):
        mid = 0.5 * (lo + hi)
        up = _above(player, mid, price, weight, floor, z) & live[:, None]
        down = ~up & live[:, None]
        lo, hi = np.where(up, mid, lo), np.where(down, mid, hi)
        live &= ~np.all(hi - lo <= 4e-16 * np.maximum(hi, 1e-300), axis=1)
        if not live.any():
            break
    x = 0.5 * (lo + hi)
    x = np.where(start, x, 0.0)
    return np.where(full, xbar, x)


def lambda_allocations(player: Player, y: np.ndarray, price: np.ndarray,
                       xbar: np.ndarray, weight: np.ndarray, floor: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(x, lambda) for purchases 0 < y_k < sum_i xbar_ki (one row each; price of
    shape (rows,), the rest (rows, members)), alpha < inf. lambda may be +-inf where
    it overflows float64 (the allocation is still right)."""
    price = np.asarray(price, dtype=float)[:, None]
    usable = (weight > 0) & (xbar > 0)
    w = np.where(usable, weight, 1.0)
    z_lo = np.full(len(y), -2 * Z_MAX)
    z_hi = np.full(len(y), 2 * Z_MAX)
    live = np.ones(len(y), dtype=bool)
    for _ in range(_ITER):
        z = 0.5 * (z_lo + z_hi)
        total = np.where(usable, _members_at(player, z[:, None], price, xbar, w,
                                             floor), 0.0).sum(axis=1)
        more = total > y
        z_lo = np.where(live & more, z, z_lo)
        z_hi = np.where(live & ~more, z, z_hi)
        live &= ~(z_hi - z_lo <= 1e-15 * np.maximum(np.abs(z), 1.0))
        if not live.any():
            break
    z = 0.5 * (z_lo + z_hi)
    x = np.where(usable, _members_at(player, z[:, None], price, xbar, w, floor), 0.0)
    x = np.array([_exact_sum(row, yk, np.zeros_like(row), cap)
                  for row, yk, cap in zip(x, y, xbar)])
    with np.errstate(over="ignore"):
        lam = np.sign(z) * np.exp(np.abs(z) - Z_MAX)
    return x, lam


def lambda_allocation(player: Player, y: float, price: float, xbar: np.ndarray,
                      weight: np.ndarray, floor: np.ndarray
                      ) -> tuple[np.ndarray, float]:
    """``lambda_allocations`` of one purchase."""
    x, lam = lambda_allocations(player, np.array([y]), np.array([price]), xbar[None],
                                weight[None], floor[None])
    return x[0], float(lam[0])


def _exact_sum(x: np.ndarray, y: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Spread the rounding residue y - sum x over members with room, so sum x = y."""
    resid = y - x.sum()
    room = (hi - x) if resid > 0 else (x - lo)
    total = room.sum()
    return x + resid * room / total if total > 0 else x


def maxmin_allocation(player: Player, y: float, price: float, xbar: np.ndarray,
                      floor: np.ndarray, priced_out: np.ndarray
                      ) -> tuple[np.ndarray, float]:
    """(x, nu) of the max-min problem for one purchase: the largest feasible level,
    then the most total surplus at that level (nu: multiplier of sum x = y)."""
    counted = counted_members(player, priced_out)
    peak = surplus_peak(marginal_of, player, price, np.zeros_like(xbar), xbar,
                        CHECK_HALVINGS)
    top = np.where(counted, player.evaluate("U", peak) - price * peak + floor,
                   np.inf).min()
    top = top if np.isfinite(top) else 0.0

    def interval(t: float):
        need = np.where(counted, t - floor, -np.inf)
        return level_interval(utility_of, player, need, price, xbar, peak,
                              CHECK_HALVINGS)

    t_lo, t_hi = min(0.0, top), top
    lo_i, hi_i = interval(t_hi)
    if not (np.isnan(lo_i).any() or lo_i.sum() > y or hi_i.sum() < y):
        t_lo = t_hi
    for _ in range(_ITER if t_lo < t_hi else 0):
        t = 0.5 * (t_lo + t_hi)
        lo_i, hi_i = interval(t)
        ok = not np.isnan(lo_i).any() and lo_i.sum() <= y <= hi_i.sum()
        t_lo, t_hi = (t, t_hi) if ok else (t_lo, t)
        if t_hi - t_lo <= 1e-15 * max(abs(top), 1e-300):
            break
    lo_i, hi_i = interval(t_lo)
    lo_i, hi_i = np.nan_to_num(lo_i), np.nan_to_num(hi_i)
    return _fill_total_surplus(player, y, price, lo_i, hi_i)


def _fill_total_surplus(player: Player, y: float, price: float, lo_i: np.ndarray,
                        hi_i: np.ndarray) -> tuple[np.ndarray, float]:
    """max sum s_i over lo <= x <= hi, sum x = y: U_i'(x_i) - p = nu by bisection."""
    def at(nu: float) -> np.ndarray:
        lo, hi = lo_i.copy(), hi_i.copy()
        for _ in range(_ITER):
            mid = 0.5 * (lo + hi)
            up = player.evaluate("dU", mid) - price - nu > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
            if np.all(hi - lo <= 4e-16 * np.maximum(hi, 1e-300)):
                break
        return 0.5 * (lo + hi)

    span = 1.0 + float(np.abs(player.evaluate("dU", lo_i) - price).max()
                       + np.abs(player.evaluate("dU", hi_i) - price).max())
    nu_lo, nu_hi = -span, span
    for _ in range(_ITER):
        nu = 0.5 * (nu_lo + nu_hi)
        nu_lo, nu_hi = (nu, nu_hi) if at(nu).sum() > y else (nu_lo, nu)
        if nu_hi - nu_lo <= 1e-15 * span:
            break
    nu = 0.5 * (nu_lo + nu_hi)
    return _exact_sum(at(nu), y, lo_i, hi_i), nu
