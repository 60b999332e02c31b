"""Rows of a player with alpha < inf in the kernels: one purchase at a time, each
the numpy path's algorithm (solvers/inner/water_filling.py) on one row, with the
member formulas of aggregame.allocation compiled (``members``).

A row's set-up (bounds, weights and floors at its price), its lambda (the
one-sided multipliers at the ends of [0, cap], else the interior root: joint Newton
in (x, lambda), or the nested root in lambda), and its finish (J, dJ/dy and the
optimality residual of aggregame.allocation, one pass over the members).
"""

from __future__ import annotations

import numpy as np

from aggregame.allocation import (
    MAX_ITERATIONS,
    member_welfare,
    price_coefficient,
    stationarity_step,
    welfare_weight,
)
from aggregame.elementwise import select
from aggregame.solvers.inner.batch import (
    JOINT_MATCH_RTOL,
    JOINT_NEWTON_STEPS,
    ROOT_RTOL,
)
from aggregame.solvers.inner.compiled.jit import jit
from aggregame.solvers.inner.compiled.members import (
    MIXED,
    allocate,
    code_of,
    family_d2U,
    family_dU,
    family_U,
    family_xbar,
    member_g,
    member_g_and_slope,
    newton_root_step,
)


@jit
def _bracket_end(codes, params, y, price, xbar, weight, floor, alpha, closed, x,
                 sign):
    """A finite end for an infinite lambda bracket (strict rule): +-1, 4, 16, ...
    until sum x(lambda) is on the right side of y (numpy:
    LambdaFilling._lambda_bracket)."""
    step = 1.0
    while True:
        trial = sign * step
        for i in range(x.size):
            x[i] = 0.0
        total, _ = allocate(codes, params, trial, price, xbar, weight, floor, alpha,
                            closed, x)
        if (total <= y) if sign > 0 else (total >= y):
            return trial
        step = step * 4.0
        if step > 1e300:
            return np.nan


@jit
def _lambda_root(codes, params, y, price, xbar, weight, floor, alpha, closed, lo, hi,
                 lam, x):
    """lambda with sum_i x_i(lambda) = y (numpy: LambdaFilling._nested_root);
    ``x`` holds the members' starts and ends as the allocation at the returned
    lambda."""
    atol = ROOT_RTOL * y
    for _ in range(MAX_ITERATIONS):
        total, slope = allocate(codes, params, lam, price, xbar, weight, floor, alpha,
                                closed, x)
        lam, lo, hi, done = newton_root_step(lam, total - y, slope, lo, hi, atol)
        if done:
            break
    return lam


# -- one row ------------------------------------------------------------------------
@jit
def row_setup(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar, weight,
               floor, out, family):
    """Bounds, weights, floors and priced-out flags at ``price``; returns the
    capacity (numpy: aggregame.allocation.inner_setup)."""
    if family == 0:
        return __row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar,
                             weight, floor, out, 0)
    return __row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar,
                         weight, floor, out, family)


@jit(inline=True)
def __row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar, weight,
                  floor, out, family):
    cap = 0.0
    for i in range(codes.size):
        priced_out = u0[i] <= price
        out[i] = priced_out
        weight[i] = select(priced_out, w_out, w_in)
        floor[i] = select(priced_out, e_out, e_in)
        xbar[i] = family_xbar(code_of(family, codes, i), price, params[i])
        cap += xbar[i]
    return cap


@jit
def _end_multipliers(codes, params, price, xbar, weight, floor, alpha, family, g0,
                     gcap):
    """g_i at 0 and at xbar_i of every member (into ``g0``, ``gcap``), and the
    one-sided multipliers (max g_i(0), min g_i(xbar_i) over members with xbar_i > 0)."""
    if family == 0:
        return _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha, 0,
                                   g0, gcap)
    return _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha,
                               family, g0, gcap)


@jit(inline=True)
def _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha, family, g0,
                        gcap):
    lam_top, lam_bottom = -np.inf, np.inf
    for i in range(codes.size):
        rec, code = params[i], code_of(family, codes, i)
        g0[i] = member_g(code, rec, 0.0, price, weight[i], floor[i], alpha)
        gcap[i] = member_g(code, rec, xbar[i], price, weight[i], floor[i], alpha)
        counts = xbar[i] > 0
        lam_top = np.maximum(lam_top, select(counts, g0[i], -np.inf))
        lam_bottom = np.minimum(lam_bottom, select(counts, gcap[i], np.inf))
    return lam_top, lam_bottom


@jit
def _interior(codes, params, y, price, xbar, weight, floor, alpha, closed, g0, gcap,
              lam_top, lam_bottom, guess, warm, x, family):
    """lambda and x (in ``x``) of a purchase strictly inside (0, cap): joint Newton
    for families without a closed-form response (numpy:
    LambdaFilling._joint_newton), else or where it does not settle the nested
    root. ``warm``: ``x`` holds a start (the last solve's allocation)."""
    hi, lo = lam_top, lam_bottom
    searched = not (np.isfinite(hi) and np.isfinite(lo))
    if not np.isfinite(hi):
        hi = _bracket_end(codes, params, y, price, xbar, weight, floor, alpha, closed,
                          x, 1.0)
    if not np.isfinite(lo):
        lo = _bracket_end(codes, params, y, price, xbar, weight, floor, alpha, closed,
                          x, -1.0)
    if searched:
        # x holds the allocation at a huge multiplier (~1e-12 a member), no start:
        # a member Newton started there stops on its first, tiny step, far from its
        # root. Members start from the middle instead, as cold rows do.
        warm = False
        x[:] = 0.0
    lam = 0.5 * (lo + hi)
    if not np.isfinite(lam):
        lam = 0.0
    if lo < guess < hi:
        lam = guess
    if not closed.shape[0]:
        joint = x.copy()
        if not warm:
            allocate(codes, params, lam, price, xbar, weight, floor, alpha, closed,
                     joint)
        lam_j, ok = _joint_newton(codes, params, y, price, xbar, weight, floor, alpha,
                                  g0, gcap, lo, hi, lam, joint, family)
        if ok:
            x[:] = joint
            return lam_j
    return _lambda_root(codes, params, y, price, xbar, weight, floor, alpha, closed,
                        lo, hi, lam, x)


@jit
def _joint_newton(codes, params, y, price, xbar, weight, floor, alpha, g0, gcap, lo,
                  hi, lam, x, family):
    """``_joint_steps`` with the family a constant where there is one (quadratic or
    log members alone) and alpha a constant where it is 2 or 0.5 (log members: 0
    and 1 too), whose powers then compile to a division or a square root."""
    if family == 0:  # quadratic members at alpha 0, 1/2, 1 have closed forms
        if alpha == 2:
            return _joint_steps(codes, params, y, price, xbar, weight, floor, 2.0, g0,
                                gcap, lo, hi, lam, x, 0)
        return _joint_steps(codes, params, y, price, xbar, weight, floor, alpha, g0,
                            gcap, lo, hi, lam, x, 0)
    if family == 1:  # (literal alphas: a loop variable would not fold)
        if alpha == 0:
            return _joint_steps(codes, params, y, price, xbar, weight, floor, 0.0, g0,
                                gcap, lo, hi, lam, x, 1)
        if alpha == 1:
            return _joint_steps(codes, params, y, price, xbar, weight, floor, 1.0, g0,
                                gcap, lo, hi, lam, x, 1)
        if alpha == 2:
            return _joint_steps(codes, params, y, price, xbar, weight, floor, 2.0, g0,
                                gcap, lo, hi, lam, x, 1)
        if alpha == 0.5:
            return _joint_steps(codes, params, y, price, xbar, weight, floor, 0.5, g0,
                                gcap, lo, hi, lam, x, 1)
        return _joint_steps(codes, params, y, price, xbar, weight, floor, alpha, g0,
                            gcap, lo, hi, lam, x, 1)
    if alpha == 2:
        return _joint_steps(codes, params, y, price, xbar, weight, floor, 2.0, g0,
                            gcap, lo, hi, lam, x, MIXED)
    if alpha == 0.5:
        return _joint_steps(codes, params, y, price, xbar, weight, floor, 0.5, g0,
                            gcap, lo, hi, lam, x, MIXED)
    return _joint_steps(codes, params, y, price, xbar, weight, floor, alpha, g0, gcap,
                        lo, hi, lam, x, MIXED)


@jit(inline=True)
def _joint_steps(codes, params, y, price, xbar, weight, floor, alpha, g0, gcap, lo,
                 hi, lam, x, family):
    """Newton on the inner KKT system in (x, lambda) at once (the numpy path's
    _joint_newton, one row): interior members move by the linearization of
    g_i(x_i) = lambda', and sum x' = y fixes lambda'. Accepted only where
    sum x = y to ROOT_RTOL, every interior member's remaining step is below 1e-13
    of its xbar_i or below that balance tolerance, and g_i = lambda to
    JOINT_MATCH_RTOL. (The numpy path asks 1e-13 of xbar_i alone: with 10^4
    members one of small xbar_i stalls at 2e-12 of it, rounding, and the row took
    the nested root, 8x the work. A step below the balance tolerance moves J by
    less than the balance's own error.) Returns (lambda, ok)."""
    n = x.size
    atol = ROOT_RTOL * y
    h = np.empty(n)
    val = np.empty(n)
    for _ in range(JOINT_NEWTON_STEPS):
        total, sum_h, sum_move = 0.0, 0.0, 0.0
        broken, unsettled = 0, 0
        # No branch on a member: g_i is evaluated everywhere and kept where the
        # member is interior (select), so the loop vectorizes (2.4 ns a member
        # against 8 with branches, on one family).
        for i in range(n):
            inside = (g0[i] > lam) & (gcap[i] < lam)
            xi = select(g0[i] <= lam, 0.0, select(gcap[i] >= lam, xbar[i], x[i]))
            xi = select(inside & ((xi <= 0) | (xi >= xbar[i])), 0.5 * xbar[i], xi)
            x[i] = xi
            value, dval = member_g_and_slope(code_of(family, codes, i), params[i],
                                             xi, price, weight[i], floor[i], alpha)
            inverse = 1.0 / dval
            move = select(inside, (value - lam) * inverse, 0.0)
            val[i], h[i] = value, select(inside, inverse, 0.0)
            finite = np.isfinite(move) & np.isfinite(inverse)
            settled = (abs(move) <= np.maximum(1e-13 * xbar[i], atol)) & (
                abs(value - lam) <= JOINT_MATCH_RTOL * abs(lam))
            broken += select(inside & (finite == False), 1, 0)  # noqa: E712
            unsettled += select(inside & (settled == False), 1, 0)  # noqa: E712
            total += xi
            sum_h += h[i]
            sum_move += move
        if broken == 0 and unsettled == 0 and abs(total - y) <= atol:
            return lam, True
        if broken:
            return lam, False
        new_lam = lam + (y - total + sum_move) / sum_h
        if not (np.isfinite(new_lam) and lo < new_lam < hi):
            new_lam = 0.5 * (lam + (hi if new_lam >= hi else lo))
        for i in range(n):
            step = x[i] + (new_lam - val[i]) * h[i]
            step = select(step <= 0, 0.5 * x[i],
                          select(step >= xbar[i], 0.5 * (x[i] + xbar[i]), step))
            x[i] = select(h[i] != 0.0, step, x[i])
        lam = new_lam
    return lam, False


@jit
def _finish(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out, alpha,
            void_priced_out, cap, surplus, family):
    """(J, dJ/dy, residual) of the allocation ``x`` (``surplus`` filled), with alpha
    a constant in the member loop where it is 0, 1, 2 or 0.5 (its branches fold
    away), and the family too where it is quadratic alone."""
    if family == 0:
        return _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight,
                             floor, out, alpha, void_priced_out, cap, surplus, 0)
    return _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight,
                         floor, out, alpha, void_priced_out, cap, surplus, family)


@jit(inline=True)
def _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out,
                  alpha, void_priced_out, cap, surplus, family):
    if alpha == 0:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 0.0, void_priced_out, cap, surplus, family)
    if alpha == 1:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 1.0, void_priced_out, cap, surplus, family)
    if alpha == 2:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 2.0, void_priced_out, cap, surplus, family)
    if alpha == 0.5:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 0.5, void_priced_out, cap, surplus, family)
    return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight, floor,
                       out, alpha, void_priced_out, cap, surplus, family)


@jit(inline=True)
def _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out,
                alpha, void_priced_out, cap, surplus, family):
    """One pass over the members (numpy: LambdaFilling.finish):

    * J = sum_i w phi(s + e) (aggregame.allocation.welfare_of); -inf where y is
      above the capacity, or under the strict rule (alpha >= 1) once a member is
      priced out;
    * dJ/dy = lambda + p' dPhi/dp, coefficient w phi'(s + e) inside, lambda / (U' -
      p) at xbar; NaN where J is not finite;
    * the residual of aggregame.allocation.optimality_residual (the balance alone
      for one member, whose lambda is defined by x = y; 0 where J = -inf).
    """
    n = x.size
    welfare, dead, sensitivity = 0.0, False, 0.0
    below, above, stationarity = 0.0, 0.0, 0.0
    for i in range(n):  # no branch on a member (select): the loop vectorizes
        rec, code, xi = params[i], code_of(family, codes, i), x[i]
        u, du = family_U(code, xi, rec), family_dU(code, xi, rec)
        surplus[i] = u - price * xi
        shifted = np.maximum(surplus[i] + floor[i], 0.0)
        welfare += member_welfare(shifted, weight[i], alpha)
        dead = dead | out[i]
        inside = welfare_weight(shifted, weight[i], alpha)
        sensitivity += price_coefficient(xi, xbar[i], lam, du - price, inside) * xi
        below = np.maximum(below, -xi)
        above = np.maximum(above, xi - xbar[i])
        level = np.maximum(u - price * xi + floor[i], 1e-300)
        step = stationarity_step(lam, xi, xbar[i], weight[i], level, du - price,
                                 family_d2U(code, xi, rec), alpha)
        stationarity = np.maximum(stationarity,
                                  select(np.isnan(step), np.inf, abs(step)))
    if void_priced_out and dead:
        welfare = -np.inf
    infeasible = y > cap * (1 + 1e-12) + 1e-300
    if infeasible:
        welfare = -np.inf
    derivative = lam + slope_p * -sensitivity
    if infeasible or not np.isfinite(welfare):
        derivative = np.nan
    capacity = np.maximum(xbar.sum(), 1e-300)
    kept = np.maximum(abs(x.sum() - y), np.maximum(below, above))
    # As aggregame.allocation.settled_residual: nothing to prove above the
    # capacity, the allocation's error alone where it is forced or J = -inf.
    forced = y <= 0 or y >= cap * (1 - 1e-14) or (void_priced_out and dead)
    if infeasible:
        residual = 0.0
    elif forced:
        residual = kept / capacity
    elif welfare == -np.inf:
        residual = kept / capacity
    elif n == 1:
        residual = abs(x[0] - y) / np.maximum(cap, 1e-300)
    elif not np.isfinite(lam):
        residual = kept / capacity
    else:
        residual = np.maximum(kept, stationarity) / capacity
    return welfare, derivative, residual


@jit
def solve_rows(codes, params, u0, alpha, w_in, e_in, w_out, e_out, void_priced_out,
               closed, y, price, slope_p, guess, x_start, family):
    """Inner solutions of rows (y, price, p') of a player with alpha < inf.

    ``family``: the members' one code, or MIXED. ``guess`` is a multiplier to
    start the first row from (NaN: none) and
    ``x_start`` its allocation (length 0: none); later rows start from the last
    row strictly inside (0, cap) before them: a row at an end is forced (x = 0 or
    xbar), and in a best response's batch (0, y_max, current, ...) a start taken
    from y_max's row would put the current purchase at xbar and lambda's lower
    bracket, far from the last round's solve. Returns (x, surplus, welfare,
    tiebreak, lambda, derivative, residual), the fields of an InnerBatch.
    """
    g, n = y.size, codes.size
    x_all, s_all = np.zeros((g, n)), np.zeros((g, n))
    welfare, tiebreak = np.zeros(g), np.zeros(g)
    lams, derivative, residual = np.full(g, np.nan), np.zeros(g), np.zeros(g)
    xbar, weight, floor = np.empty(n), np.empty(n), np.empty(n)
    g0, gcap = np.empty(n), np.empty(n)
    out = np.empty(n, dtype=np.bool_)
    x, start = np.zeros(n), np.zeros(n)
    warm = x_start.size == n
    if warm:
        start[:] = x_start
    for r in range(g):
        p = price[r]
        cap = row_setup(codes, params, u0, p, w_in, e_in, w_out, e_out, xbar, weight,
                         floor, out, family)
        if not closed.shape[0]:  # (a closed-form response reads no start)
            x[:] = start
        lam = _solve_row(codes, params, y[r], p, xbar, weight, floor, alpha, closed,
                         cap, guess, warm, x, g0, gcap, family)
        if n > 1 and 0 < y[r] < cap * (1 - 1e-14) and np.isfinite(lam):
            guess, warm = lam, True
            if not closed.shape[0]:
                start[:] = x
        welfare[r], derivative[r], residual[r] = _finish(
            codes, params, y[r], p, slope_p[r], x, lam, xbar, weight, floor, out,
            alpha, void_priced_out, cap, s_all[r], family)
        x_all[r] = x
        tiebreak[r], lams[r] = s_all[r].sum(), lam
    return x_all, s_all, welfare, tiebreak, lams, derivative, residual


@jit
def _solve_row(codes, params, y, price, xbar, weight, floor, alpha, closed, cap,
               guess, warm, x, g0, gcap, family):
    """``_solve_row_at`` with alpha a constant where it is 0, 1, 2 or 0.5."""
    if alpha == 0:
        return _solve_row_at(codes, params, y, price, xbar, weight, floor, 0.0,
                             closed, cap, guess, warm, x, g0, gcap, family)
    if alpha == 1:
        return _solve_row_at(codes, params, y, price, xbar, weight, floor, 1.0,
                             closed, cap, guess, warm, x, g0, gcap, family)
    if alpha == 2:
        return _solve_row_at(codes, params, y, price, xbar, weight, floor, 2.0,
                             closed, cap, guess, warm, x, g0, gcap, family)
    if alpha == 0.5:
        return _solve_row_at(codes, params, y, price, xbar, weight, floor, 0.5,
                             closed, cap, guess, warm, x, g0, gcap, family)
    return _solve_row_at(codes, params, y, price, xbar, weight, floor, alpha, closed,
                         cap, guess, warm, x, g0, gcap, family)


@jit(inline=True)
def _solve_row_at(codes, params, y, price, xbar, weight, floor, alpha, closed, cap,
                  guess, warm, x, g0, gcap, family):
    """lambda of one row, and its allocation in ``x`` (numpy: LambdaFilling.solve):
    the one-sided multipliers at the ends of [0, cap], else the interior root.
    ``g0``, ``gcap``: scratch for each member's g_i at 0 and at xbar_i."""
    n = codes.size
    if n == 1:
        return _one_member(codes, params, y, price, xbar, weight, floor, alpha, x)
    lam_top, lam_bottom = _end_multipliers(codes, params, price, xbar, weight, floor,
                                           alpha, family, g0, gcap)
    if y >= cap * (1 - 1e-14):  # first, as numpy's order has it (cap = 0 = y)
        x[:] = xbar
        return lam_bottom
    if y <= 0:
        x[:] = 0.0
        return lam_top
    if not closed.shape[0]:  # starts inside each member's bounds
        for i in range(n):
            x[i] = np.minimum(np.maximum(x[i], 0.0), xbar[i])
    return _interior(codes, params, y, price, xbar, weight, floor, alpha, closed, g0,
                     gcap, lam_top, lam_bottom, guess, warm, x, family)


@jit
def _one_member(codes, params, y, price, xbar, weight, floor, alpha, x):
    """x = min(y, xbar), lambda = g(x) (numpy: LambdaFilling.solve_one_member)."""
    x[0] = np.minimum(np.maximum(y, 0.0), xbar[0])
    return member_g(codes[0], params[0], x[0], price, weight[0], floor[0], alpha)

