"""Rows of a max-min player read as total surplus, in the kernels: the numpy path's
algorithm (solvers/inner/level_filling.py) on one row at a time.

A row: the top level t* (the largest level whose intervals can add up to y), the
intervals at t*, the total-surplus fill within them (water filling in nu), and the
residual of aggregame.allocation.maxmin_residual, whose intervals come from the
closed form or their own bisections (``check_interval``), not from the solve's level
roots.
"""

from __future__ import annotations

import numpy as np

from aggregame.allocation import LEVEL_PROBE_RTOL, MAX_ITERATIONS, price_coefficient
from aggregame.solvers.inner.batch import ROOT_RTOL
from aggregame.solvers.inner.compiled.jit import jit
from aggregame.solvers.inner.compiled.members import (
    check_interval,
    check_peak,
    check_peak_surplus,
    family_d2U,
    family_dU,
    family_U,
    newton_root_step,
    peak_surplus,
    solve_interval,
    tiebreak_response,
)
from aggregame.solvers.inner.compiled.rows import row_setup

#: The spacing of doubles at 1: the surpluses' rounding scale.
_EPS = float(np.finfo(float).eps)


@jit
def _level_bounds(t, args):
    """Each member's interval at level t into ``lo_i``, ``hi_i``; ``free``: no
    requirement (need <= 0, or not counted) (numpy: LevelFilling._level_bounds)."""
    codes, params, price, xbar, floor, counted, s_max, lo_i, hi_i, free, y = args
    for i in range(codes.size):
        need = np.minimum(np.maximum(t - floor[i], 0.0), s_max[i])
        lo, hi = solve_interval(codes[i], params[i], need, price, xbar[i])
        free[i] = need <= 0 or not counted[i]
        lo_i[i] = 0.0 if free[i] else (0.0 if np.isnan(lo) else lo)
        hi_i[i] = xbar[i] if free[i] else (0.0 if np.isnan(hi) else hi)


@jit
def _level_sum(upper, t, level_args):
    """sum hi_i(t) - y (``upper``) or y - sum lo_i(t), both decreasing in t, and
    the slope in t (d x / d t = 1 / s'(x) on either side of a member's peak)."""
    codes, params, price, xbar, floor, counted, s_max, lo_i, hi_i, free, y = level_args
    _level_bounds(t, level_args)
    side = hi_i if upper else lo_i
    total, slope = 0.0, 0.0
    for i in range(codes.size):
        total += side[i]
        if not free[i]:
            slope += 1.0 / (family_dU(codes[i], side[i], params[i]) - price)
    return (total - y, slope) if upper else (y - total, -slope)


@jit
def _level_root(upper, t_hi, y, level_args, guess):
    """u = sqrt(t_hi - t) at the root of ``_level_sum(upper, ...)``: in u
    the binding member's bounds are linear, where in t their slope is infinite at
    t_hi (numpy: LevelFilling._top_level's in_u). -r(t(u)) decreases in u. Starts
    from level ``guess`` (the row before's root: 2 Newton steps, not 5) where it lies in
    [0, t_hi), else from numpy's u = sqrt(t_hi / 2)."""
    lo, hi = 0.0, np.sqrt(t_hi)
    u, atol = np.sqrt(0.5) * hi, ROOT_RTOL * y
    if 0 <= guess < t_hi:
        u = np.sqrt(t_hi - guess)
    for _ in range(MAX_ITERATIONS):
        r, slope = _level_sum(upper, t_hi - u * u, level_args)
        u, lo, hi, done = newton_root_step(u, -r, 2 * u * slope, lo, hi, atol)
        if done:
            break
    return u


@jit
def _top_level(t_hi, y, level_args, warm):
    """The largest t in [0, t_hi] whose intervals can add up to y: min of t_hi and
    the roots of both sums (numpy: LevelFilling._top_level). Leaves the intervals
    at that level in ``level_args``' lo_i, hi_i; ``warm`` holds each sum's last root (a
    start for the next row's, NaN: none) and is updated."""
    lo_i, hi_i = level_args[7], level_args[8]
    _level_bounds(t_hi, level_args)
    short = (hi_i.sum() - y < 0, y - lo_i.sum() < 0)  # (upper, lower) at t_hi
    if not (short[0] or short[1]):
        return t_hi  # feasible all the way up: the intervals at t_hi stand
    t_star = t_hi
    for k in range(2):
        if short[k]:
            u = _level_root(k == 0, t_hi, y, level_args, warm[k])
            warm[k] = t_hi - u * u
            t_star = np.minimum(t_star, warm[k])
    _level_bounds(t_star, level_args)
    return t_star


@jit
def _fill_balance(codes, params, price, lo_i, hi_i, nu, x):
    """sum_i x_i(nu) of the total-surplus fill, x_i(nu) in [lo_i, hi_i] with
    U_i' - p = nu (into ``x``), and its slope sum 1/U_i'' over members inside."""
    total, slope = 0.0, 0.0
    for i in range(codes.size):
        x[i] = tiebreak_response(codes[i], params[i], price, nu, lo_i[i], hi_i[i])
        total += x[i]
        if lo_i[i] < x[i] < hi_i[i]:
            slope += 1.0 / family_d2U(codes[i], x[i], params[i])
    return total, slope


@jit
def _fill_total_surplus(codes, params, y, price, lo_i, hi_i, x, guess):
    """max sum s_i over x in [lo, hi], sum x = y: water filling in nu (numpy:
    LevelFilling._fill_total_surplus, which starts at 0; here from ``guess``, the
    row before's nu, where it lies in the bracket: 2-3 Newton steps instead of
    4-5); returns nu, the allocation in ``x``, its last rounding put on the members
    with room."""
    top, bottom = 0.0, 0.0
    for i in range(codes.size):
        top = np.maximum(top, abs(family_dU(codes[i], hi_i[i], params[i]) - price))
        bottom = np.maximum(bottom,
                            abs(family_dU(codes[i], lo_i[i], params[i]) - price))
    lo, hi = -(top + bottom + 1), top + bottom + 1
    nu, atol = (guess if lo < guess < hi else 0.0), ROOT_RTOL * y
    for _ in range(MAX_ITERATIONS):
        total, slope = _fill_balance(codes, params, price, lo_i, hi_i, nu, x)
        nu, lo, hi, done = newton_root_step(nu, total - y, slope, lo, hi, atol)
        if done:
            break
    resid = y - x.sum()
    room = 0.0
    for i in range(x.size):
        room += (hi_i[i] - x[i]) if resid > 0 else (x[i] - lo_i[i])
    room = np.maximum(room, 1e-300)
    for i in range(x.size):
        x[i] += resid * ((hi_i[i] - x[i]) if resid > 0 else (x[i] - lo_i[i])) / room
    return nu


@jit
def _maxmin_residual(codes, params, y, price, x, xbar, floor, counted, surplus, nu):
    """aggregame.allocation.maxmin_residual of one row (with its _tiebreak_residual):
    balance and bounds, 1 where a level above the allocation's by
    LEVEL_PROBE_RTOL is feasible, and the tie-break's projected steps toward
    U' - p = nu within the level's intervals; the intervals from
    quadratic_level_interval (compiled) or bisection on each side of the peak, not
    from the solve's level roots. Two passes over the members: the level and its
    scales, then both tests' intervals."""
    n = codes.size
    cap = np.maximum(xbar.sum(), 1e-300)
    below, above = 0.0, 0.0
    level, top, noise, scale = np.inf, np.inf, 0.0, 0.0
    peaks = np.empty(n)  # found once per member, for both passes
    for i in range(n):
        below = np.maximum(below, -x[i])
        above = np.maximum(above, x[i] - xbar[i])
        noise = np.maximum(noise, abs(surplus[i]) + price * x[i])
        peaks[i] = check_peak(codes[i], params[i], price, xbar[i])
        peak_s = check_peak_surplus(codes[i], params[i], price, peaks[i])
        scale = np.maximum(scale, abs(peak_s + floor[i]))
        if counted[i]:
            level = np.minimum(level, surplus[i] + floor[i])
            top = np.minimum(top, peak_s + floor[i])
    out = np.maximum(abs(x.sum() - y), np.maximum(below, above)) / cap
    probe = level + np.maximum(LEVEL_PROBE_RTOL * scale, 64 * _EPS * noise)
    testing = np.isfinite(level) and probe < top  # can a higher level be feasible?
    sum_lo, sum_hi, worst = 0.0, 0.0, 0.0
    for i in range(n):
        rec = params[i]
        if testing:
            need = probe - floor[i] if counted[i] else -np.inf
            lo, hi = check_interval(codes[i], rec, need, price, xbar[i], peaks[i])
            if np.isnan(lo):
                testing = False  # a member cannot reach the probe: not feasible
            sum_lo += lo
            sum_hi += hi
        need = level - floor[i] if counted[i] else -np.inf
        lo, hi = check_interval(codes[i], rec, need, price, xbar[i], peaks[i])
        lo = np.minimum(x[i] if np.isnan(lo) else lo, x[i])
        hi = np.maximum(x[i] if np.isnan(hi) else hi, x[i])
        step = (nu - (family_dU(codes[i], x[i], rec) - price)) / family_d2U(
            codes[i], x[i], rec)
        step = np.minimum(np.maximum(step, lo - x[i]), hi - x[i])
        worst = np.maximum(worst, np.inf if np.isnan(step) else abs(step))
    out = np.maximum(out, worst / cap)
    return np.maximum(out, 1.0) if (testing and sum_lo <= y <= sum_hi) else out


@jit
def _maxmin_row(codes, params, y, price, slope_p, xbar, weight, floor, out, cap,
                scratch, x, surplus, guess, warm):
    """One max-min row (numpy: LevelFilling.solve and finish): the top level,
    its intervals, the total-surplus fill; returns (welfare, tiebreak,
    tie-break derivative, residual, nu) with x and surplus filled; ``guess``
    starts the fill's nu, ``warm`` the level roots (``_top_level``)."""
    n = codes.size
    s_max, lo_i, hi_i = scratch[0], scratch[1], scratch[2]
    counted = weight > 0
    free = np.empty(n, dtype=np.bool_)
    t_hi = np.inf
    for i in range(n):
        s_max[i] = peak_surplus(codes[i], params[i], price, xbar[i])
        if counted[i]:
            t_hi = np.minimum(t_hi, s_max[i] + floor[i])
    t_hi = np.maximum(t_hi if np.isfinite(t_hi) else 0.0, 0.0)
    level_args = (codes, params, price, xbar, floor, counted, s_max, lo_i, hi_i, free,
                  y)
    _top_level(t_hi, y, level_args, warm)
    nu = _fill_total_surplus(codes, params, y, price, lo_i, hi_i, x, guess)
    # Welfare: the smallest s + e over the counted members (0 if none counts).
    welfare, flat, sensitivity = np.inf, False, 0.0
    for i in range(n):
        surplus[i] = family_U(codes[i], x[i], params[i]) - price * x[i]
        if counted[i]:
            welfare = np.minimum(welfare, surplus[i] + floor[i])
            flat = flat or out[i]
        slope = family_dU(codes[i], x[i], params[i]) - price
        sensitivity += price_coefficient(x[i], xbar[i], nu, slope, 1.0) * x[i]
    if np.isinf(welfare):
        welfare = 0.0
    infeasible = y > cap * (1 + 1e-12)
    if infeasible:
        welfare = -np.inf
    # A counted member priced out pins the level for every larger y: the
    # tie-break (an alpha = 0 problem) then decides alone, with slope nu + p' dT/dp.
    flat = flat and y < cap * (1 - 1e-14)
    tie_slope = nu + slope_p * -sensitivity
    tie_derivative = tie_slope if (flat and np.isfinite(nu)) else np.nan
    if infeasible:
        residual = 0.0
    elif y <= 0 or y >= cap * (1 - 1e-14):  # forced: the allocation's error alone
        residual = np.maximum(abs(x.sum() - y), np.maximum(
            np.maximum(-x.min(), 0.0), np.maximum((x - xbar).max(), 0.0))) / \
            np.maximum(cap, 1e-300)
    else:
        residual = _maxmin_residual(codes, params, y, price, x, xbar, floor, counted,
                                    surplus, nu)
    return welfare, surplus.sum(), tie_derivative, residual, nu


@jit
def solve_maxmin_rows(codes, params, u0, w_in, e_in, w_out, e_out, y, price,
                      slope_p, family):
    """Max-min rows read as total surplus (the level, then the total surplus).
    Returns (x, surplus, welfare, tiebreak, tie-break derivative, residual, nu)."""
    g, n = y.size, codes.size
    x_all, s_all = np.zeros((g, n)), np.zeros((g, n))
    welfare, tiebreak = np.zeros(g), np.zeros(g)
    tie_derivative, residual = np.zeros(g), np.zeros(g)
    xbar, weight, floor = np.empty(n), np.empty(n), np.empty(n)
    out = np.empty(n, dtype=np.bool_)
    scratch = np.empty((3, n))
    nus = np.empty(g)
    nu, warm = np.nan, np.full(2, np.nan)
    for r in range(g):
        p = price[r]
        cap = row_setup(codes, params, u0, p, w_in, e_in, w_out, e_out, xbar, weight,
                        floor, out, family)
        welfare[r], tiebreak[r], tie_derivative[r], residual[r], nu = _maxmin_row(
            codes, params, y[r], p, slope_p[r], xbar, weight, floor, out, cap,
            scratch, x_all[r], s_all[r], nu, warm)
        nus[r] = nu
    return x_all, s_all, welfare, tiebreak, tie_derivative, residual, nus
