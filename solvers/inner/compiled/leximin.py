"""Rows of a leximin player in the kernels: progressive filling by the members'
breakpoints, O(members log members) a purchase (docs/model.md, section "Leximin").

Below the members' total peak consumption a common level t rises: member i takes
nothing while t <= e_i, sits on the rising side of its surplus where s_i + e_i = t
in between, and stays at its peak once t passes its peak level top_i + e_i (the
mirror image above the total peak: a ceiling T comes down, members go from their
peaks down the falling side, and reach xbar_i at T = e_i). So the total X(t) is
monotone in the level, smooth between the 2 N breakpoints {e_i, top_i + e_i}, and
a row's level is found by

1. sorting the breakpoints once per row (its price sets them),
2. a binary search over them for the pair whose totals bracket y (log2(2 N)
   evaluations of X, O(N) each),
3. safeguarded Newton between those two, where the set of members on a side is
   fixed and X is smooth (the step of aggregame.elementwise, dX/dt = sum
   1 / (U_i' - p) over those members),

and the last rounding of sum x = y is put on the members on a side, in proportion
to their dx_i/dt (a move along the common level). numpy's progressive filling
(solvers/inner/leximin.py) bisects the level instead: 60-200 evaluations of X.

Every row leaves with its optimality residual, aggregame.leximin.leximin_residual
compiled line for line: the levels recomputed from the allocation, the peaks found
apart from the fill's (CHECK_HALVINGS halvings where no closed form), so a wrong
allocation cannot pass. NativeInner solves rows above RESIDUAL_TOL again with numpy.
"""

from __future__ import annotations

import numpy as np

from aggregame.allocation import (
    CHECK_HALVINGS,
    HALVINGS,
    MAX_ITERATIONS,
    level_interval,
    quadratic_level_interval,
    quadratic_peak,
    surplus_peak,
)
from aggregame.leximin import AT_BOUND_RTOL
from aggregame.solvers.inner.batch import ROOT_RTOL
from aggregame.solvers.inner.compiled.jit import jit, share
from aggregame.solvers.inner.compiled.members import (
    family_dU,
    family_U,
    member_dU,
    member_U,
    newton_root_step,
)
from aggregame.solvers.inner.compiled.rows import row_setup

# The definition's peak of a quadratic member, callable here by its own name (the
# others this module reads are shared by solvers/inner/compiled/members.py).
share(quadratic_peak)


@jit
def _peak(code, rec, price, xbar):
    """Where the member's surplus peaks on [0, xbar] (aggregame.leximin.peaks):
    q / 2a for quadratic members, else CHECK_HALVINGS halvings on U' = p."""
    if code == 0:
        return quadratic_peak(rec["b"] - price, 2 * rec["a"], xbar)
    return surplus_peak(member_dU, (code, rec), price, 0.0, xbar, CHECK_HALVINGS)


@jit
def _member_at(code, rec, need, price, xbar, peak, top, rising):
    """Member's consumption where its surplus is ``need`` on the rising side (or
    the falling one), held between 0 (xbar) and its peak."""
    if need <= 0:
        return 0.0 if rising else xbar
    if need >= top:
        return peak
    if code == 0:
        lo, hi, _ = quadratic_level_interval(rec["a"], rec["b"], need, price, xbar)
    else:
        lo, hi = level_interval(member_U, (code, rec), need, price, xbar, peak,
                                HALVINGS)
    if rising:
        return peak if np.isnan(lo) else np.minimum(lo, peak)
    return peak if np.isnan(hi) else np.maximum(hi, peak)


@jit
def _total(t, rising, args, x, share):
    """X(t) = sum_i x_i(t) (into ``x``) and dX/dt, with each member's dx_i/dt (0 at
    a breakpoint's flat side) into ``share``."""
    codes, params, price, xbar, floor, fill, peak, top = args
    total, slope = 0.0, 0.0
    for i in range(codes.size):
        if not fill[i]:
            x[i], share[i] = 0.0, 0.0
            continue
        need = t - floor[i]
        x[i] = _member_at(codes[i], params[i], need, price, xbar[i], peak[i], top[i],
                          rising)
        d = 0.0
        if 0 < need < top[i]:
            d = 1.0 / (family_dU(codes[i], x[i], params[i]) - price)
            d = d if np.isfinite(d) else 0.0
        share[i] = d
        total += x[i]
        slope += d
    return total, slope


@jit
def _fill(y, rising, args, x, share, breaks):
    """The leximin allocation of ``y`` (into ``x``) on the rising (or falling) sides:
    breakpoints sorted, bracketed by binary search, Newton between them."""
    codes, floor, fill, top = args[0], args[4], args[5], args[7]
    m = 0
    for i in range(codes.size):
        if fill[i]:
            breaks[m], breaks[m + 1] = floor[i], top[i] + floor[i]
            m += 2
    if m == 0:  # nobody to fill (the capacity is 0): nothing to allocate
        x[:] = 0.0
        return 0.0
    b = np.sort(breaks[:m])
    # X rises with t on the rising sides and falls on the falling ones: ``low`` is
    # the end whose total is at most y.
    lo_k, hi_k = 0, m - 1
    while hi_k - lo_k > 1:
        mid = (lo_k + hi_k) // 2
        total, _ = _total(b[mid], rising, args, x, share)
        if (total <= y) == rising:
            lo_k = mid
        else:
            hi_k = mid
    lo, hi = b[lo_k], b[hi_k]
    # r(t) = y - X(t) falls with t rising, X(T) - y with T falling: Newton on a
    # decreasing residual, from the secant of the bracket's ends.
    sign = 1.0 if rising else -1.0
    r_lo = sign * (y - _total(lo, rising, args, x, share)[0])
    r_hi = sign * (y - _total(hi, rising, args, x, share)[0])
    t = lo if r_lo == r_hi else lo + (hi - lo) * r_lo / (r_lo - r_hi)
    t = t if lo < t < hi else 0.5 * (lo + hi)
    atol = ROOT_RTOL * y
    done = False
    for _ in range(MAX_ITERATIONS):
        total, slope = _total(t, rising, args, x, share)
        t, lo, hi, done = newton_root_step(t, sign * (y - total), -sign * slope, lo,
                                           hi, atol)
        if done:  # t is the level just evaluated: x, total and slope are its
            break
    if not done:
        total, slope = _total(t, rising, args, x, share)
    # The last rounding along the common level (members on a side move together).
    resid = y - total
    if slope != 0 and np.isfinite(slope):
        for i in range(codes.size):
            x[i] += resid * share[i] / slope
    return t


@jit
def _residual(codes, params, y, price, x, xbar, floor, fill):
    """aggregame.leximin.leximin_residual of one row, line for line (the peaks
    recomputed here, the levels from ``x``)."""
    n = codes.size
    cap = np.maximum(xbar.sum(), 1e-300)
    worse = 0.0
    peaks = np.empty(n)
    total_peak, scale = 0.0, 0.0
    for i in range(n):
        worse = np.maximum(worse, np.maximum(-x[i], x[i] - xbar[i]))
        peaks[i] = _peak(codes[i], params[i], price, xbar[i])
        total_peak += peaks[i]
        if fill[i]:
            top = family_U(codes[i], peaks[i], params[i]) - price * peaks[i]
            scale = np.maximum(scale, abs(top + floor[i]))
    alloc = np.maximum(abs(x.sum() - y), worse) / cap
    scale = np.maximum(scale, 1e-300)
    rising = y <= total_peak
    side = 0.0
    l_hi, l_lo, peak_top, bound_low = -np.inf, np.inf, -np.inf, np.inf
    has_inside = False
    for i in range(n):
        if not fill[i]:
            continue
        near = AT_BOUND_RTOL * np.maximum(xbar[i], 1e-300)
        level = family_U(codes[i], x[i], params[i]) - price * x[i] + floor[i]
        if abs(x[i] - peaks[i]) <= near:  # satiated, whatever else
            peak_top = np.maximum(peak_top, level)
            continue
        side = np.maximum(side, np.maximum(x[i] - peaks[i], 0.0) if rising else
                          np.maximum(peaks[i] - x[i], 0.0))
        if (rising and x[i] <= near) or (not rising and x[i] >= xbar[i] - near):
            bound_low = np.minimum(bound_low, floor[i])
        else:
            has_inside = True
            l_hi = np.maximum(l_hi, level)
            l_lo = np.minimum(l_lo, level)
    if has_inside:
        gaps = np.maximum(l_hi - l_lo, np.maximum(peak_top - l_lo, l_hi - bound_low))
    else:
        gaps = peak_top - bound_low
    if np.isnan(gaps) or gaps == -np.inf:
        gaps = 0.0
    frozen = np.maximum(gaps, 0.0)
    return np.maximum(np.maximum(alloc, side / cap), frozen / scale)


@jit
def _leximin_row(codes, params, y, price, xbar, weight, floor, counts, cap, x,
                 surplus, scratch, breaks, fill):
    """One row: the allocation into ``x`` and ``surplus``; returns (welfare,
    tiebreak, residual). ``counts`` marks the members in the minimum (the rule's),
    ``fill`` (weight > 0) those the filling serves, as numpy's."""
    n = codes.size
    peak, top, share = scratch[0], scratch[1], scratch[2]
    total_peak = 0.0
    for i in range(n):
        fill[i] = weight[i] > 0
        peak[i] = _peak(codes[i], params[i], price, xbar[i])
        top[i] = family_U(codes[i], peak[i], params[i]) - price * peak[i]
        if fill[i]:
            total_peak += peak[i]
    if y >= cap:
        x[:] = xbar
    elif y <= 0:
        x[:] = 0.0
    else:
        args = (codes, params, price, xbar, floor, fill, peak, top)
        _fill(y, y <= total_peak, args, x, share, breaks)
    welfare = np.inf
    for i in range(n):
        surplus[i] = family_U(codes[i], x[i], params[i]) - price * x[i]
        if counts[i]:
            welfare = np.minimum(welfare, surplus[i] + floor[i])
    if np.isinf(welfare):
        welfare = 0.0  # nobody counts: flat 0
    if y > cap * (1 + 1e-12) + 1e-300:
        return -np.inf, surplus.sum(), 0.0
    return welfare, surplus.sum(), _residual(codes, params, y, price, x, xbar, floor,
                                             fill)


@jit
def solve_leximin_rows(codes, params, u0, w_in, e_in, w_out, e_out, count_in,
                       count_out, y, price, family):
    """Leximin rows (progressive filling by breakpoints). Returns (x, surplus,
    welfare, tiebreak, residual): welfare is the smallest level, tiebreak the total
    surplus (InnerBatch's fields; callers rank rows by their sorted levels)."""
    g, n = y.size, codes.size
    x_all, s_all = np.zeros((g, n)), np.zeros((g, n))
    welfare, tiebreak, residual = np.zeros(g), np.zeros(g), np.zeros(g)
    xbar, weight, floor = np.empty(n), np.empty(n), np.empty(n)
    out = np.empty(n, dtype=np.bool_)
    counts = np.empty(n, dtype=np.bool_)
    fill = np.empty(n, dtype=np.bool_)
    scratch = np.empty((3, n))
    breaks = np.empty(2 * n)
    for r in range(g):
        p = price[r]
        cap = row_setup(codes, params, u0, p, w_in, e_in, w_out, e_out, xbar, weight,
                        floor, out, family)
        for i in range(n):
            counts[i] = count_out if out[i] else count_in
        welfare[r], tiebreak[r], residual[r] = _leximin_row(
            codes, params, y[r], p, xbar, weight, floor, counts, cap, x_all[r],
            s_all[r], scratch, breaks, fill)
    return x_all, s_all, welfare, tiebreak, residual
