"""Members in the kernels: their utility families by code, and what one member does.

A player's members reach the kernels as two arrays: ``codes`` (each member's family,
FAMILY_CODES) and ``params`` (one record of PARAM_DTYPE per member). The family
dispatch below reads the families' own formulas, compiled (``jit(QuadraticUtility.U)``
and so on), and refuses a code it does not know: a family added to
aggregame.utilities without a branch here is an error in the kernels, never
another family's numbers. A member, for the shared formulas of
aggregame.allocation, is the pair (code, record).
"""

from __future__ import annotations

import numpy as np

from aggregame.allocation import (
    CHECK_HALVINGS,
    CLOSED_FORM_ALPHAS,
    HALVINGS,
    level_interval,
    marginal_response,
    marginal_welfare,
    marginal_welfare_and_slope,
    member_response,
    member_welfare,
    price_coefficient,
    quadratic_level_interval,
    quadratic_marginal_response,
    quadratic_peak_surplus,
    quadratic_response,
    quadratic_response_slope,
    stationarity_step,
    surplus_peak,
    welfare_weight,
)
from aggregame.elementwise import bracket_root, newton_or_bisect, select
from aggregame.fairness import alpha_dphi, alpha_phi
from aggregame.solvers.inner.compiled.jit import jit, share
from aggregame.utilities import LogUtility, QuadraticUtility, zero_surplus_search

#: Utility families the kernels know, by code. A family missing here keeps its
#: players on the numpy path (tests/test_compiled.py checks every family is here).
FAMILY_CODES = {QuadraticUtility: 0, LogUtility: 1}
#: ``family`` of a player whose members are of several families: its loops read each
#: member's code. Otherwise ``family`` is the one code, a constant in the loops that
#: matter, where the formulas then inline without a branch per member and the loops
#: vectorize (2.4 against 8 ns a member and Newton step).
MIXED = -1
#: One record type for every family's parameters: numba reads p["a"] from a record
#: exactly as the formulas read it from a dict of arrays.
PARAM_DTYPE = np.dtype([(name, np.float64) for name in sorted(
    {n for family in FAMILY_CODES for n in family.param_names})])

# The definition's formulas, callable from the kernels by their own names. The loops
# over members inline the hot ones (numba's inline="always"), so that their branches
# on alpha fold away, and every formula that takes a member's U as an argument:
# not inlined, numba would keep the function it is passed as a pointer, and a kernel
# holding a pointer cannot be cached on disk. The others are compiled once each.
share(alpha_phi, alpha_dphi, welfare_weight, member_welfare, price_coefficient,
      stationarity_step, quadratic_level_interval, quadratic_peak_surplus,
      quadratic_marginal_response, bracket_root, newton_or_bisect)
share(marginal_welfare, marginal_welfare_and_slope, quadratic_response,
      quadratic_response_slope, member_response, marginal_response, surplus_peak,
      level_interval, zero_surplus_search, inline=True)

quadratic_U = jit(QuadraticUtility.U)  # noqa: N816
quadratic_dU = jit(QuadraticUtility.dU)  # noqa: N816
quadratic_d2U = jit(QuadraticUtility.d2U)  # noqa: N816
quadratic_xbar = jit(QuadraticUtility.zero_surplus_consumption)
log_U = jit(LogUtility.U)  # noqa: N816
log_dU = jit(LogUtility.dU)  # noqa: N816
log_d2U = jit(LogUtility.d2U)  # noqa: N816


@jit(inline=True)
def family_U(code, x, rec):  # noqa: N802
    """U(x) of a member of family ``code``."""
    if code == 0:
        return quadratic_U(x, rec)
    if code == 1:
        return log_U(x, rec)
    raise ValueError("compiled kernels: a member of an unknown utility family code")


@jit(inline=True)
def family_dU(code, x, rec):  # noqa: N802
    """U'(x) of a member of family ``code``."""
    if code == 0:
        return quadratic_dU(x, rec)
    if code == 1:
        return log_dU(x, rec)
    raise ValueError("compiled kernels: a member of an unknown utility family code")


@jit(inline=True)
def family_d2U(code, x, rec):  # noqa: N802
    """U''(x) of a member of family ``code``."""
    if code == 0:
        return quadratic_d2U(x, rec)
    if code == 1:
        return log_d2U(x, rec)
    raise ValueError("compiled kernels: a member of an unknown utility family code")


@jit(inline=True)
def family_xbar(code, price, rec):
    """Zero-surplus consumption: the family's closed form, else the generic search
    of aggregame.utilities (none where U'(0) <= p)."""
    if code == 0:
        return quadratic_xbar(price, rec)
    if code == 1:
        slope = log_dU(0.0, rec) - price
        return 0.0 if slope <= 0 else zero_surplus_search(log_U, rec, price, slope)
    raise ValueError("compiled kernels: a member of an unknown utility family code")


@jit(inline=True)
def member_U(x, member):  # noqa: N802
    """U(x) of ``member`` = (code, record): the U the shared searches take."""
    return family_U(member[0], x, member[1])


@jit(inline=True)
def member_dU(x, member):  # noqa: N802
    return family_dU(member[0], x, member[1])


@jit(inline=True)
def member_d2U(x, member):  # noqa: N802
    return family_d2U(member[0], x, member[1])


@jit(inline=True)
def code_of(family, codes, i):
    """Member i's family code: ``family`` itself unless MIXED."""
    return family if family >= 0 else codes[i]


# -- one member's response to a multiplier ------------------------------------------
@jit(inline=True)
def member_g(code, rec, x, price, weight, floor, alpha):
    """g_i(x), member i's marginal welfare (aggregame.allocation.marginal_welfare)."""
    return marginal_welfare(family_U(code, x, rec) - price * x + floor,
                            family_dU(code, x, rec) - price, weight, alpha)


@jit(inline=True)
def member_g_and_slope(code, rec, x, price, weight, floor, alpha):
    """g_i(x) and g_i'(x) (aggregame.allocation.marginal_welfare_and_slope)."""
    return marginal_welfare_and_slope(
        family_U(code, x, rec) - price * x + floor, family_dU(code, x, rec) - price,
        family_d2U(code, x, rec), weight, alpha)


@jit
def allocate(codes, params, lam, price, xbar, weight, floor, alpha, closed, x):
    """Every member at multiplier ``lam`` (``x`` in: starts; out: the allocation);
    returns (sum x, sum dx/dlambda, the latter 0 unless 0 < x_i < xbar_i).
    ``closed``: ``closed_form_columns`` of the player."""
    if closed.shape[0]:  # alpha a constant in each loop: its branches fold away
        if alpha == 0:
            return allocate_closed(closed[0], closed[1], lam, price, xbar, weight,
                                   floor, 0.0, x)
        if alpha == 0.5:
            return allocate_closed(closed[0], closed[1], lam, price, xbar, weight,
                                   floor, 0.5, x)
        return allocate_closed(closed[0], closed[1], lam, price, xbar, weight, floor,
                               1.0, x)
    total, slope = 0.0, 0.0
    for i in range(x.size):
        member = (codes[i], params[i])
        x[i] = member_response(member_U, member_dU, member_d2U, member, lam, price,
                               0.0, xbar[i], weight[i], floor[i], alpha, x[i])
        total += x[i]
        if 0 < x[i] < xbar[i]:
            d = 1.0 / member_g_and_slope(codes[i], params[i], x[i], price, weight[i],
                                         floor[i], alpha)[1]
            slope += d if np.isfinite(d) else 0.0
    return total, slope


def closed_form_columns(codes: np.ndarray, params: np.ndarray, alpha: float
                        ) -> np.ndarray:
    """(2, members): the members' b and a as contiguous rows where every member is
    quadratic and alpha is 0, 1/2 or 1 (x_i(lambda) in closed form), else (0, 0).
    numba vectorizes a loop over contiguous columns, not over the fields of a
    record array: the multiplier's steps run 6x faster so."""
    if not (np.all(codes == 0) and alpha in CLOSED_FORM_ALPHAS):
        return np.empty((0, 0))
    return np.ascontiguousarray(np.stack([params["b"], params["a"]]), dtype=float)


@jit(inline=True)
def allocate_closed(b, a, lam, price, xbar, weight, floor, alpha, x):
    """``allocate`` of quadratic members at alpha 0, 1/2 or 1 (the closed forms),
    from their b and a."""
    total, slope = 0.0, 0.0
    for i in range(x.size):  # no branch: the loop vectorizes
        q = b[i] - price
        xi = quadratic_response(lam, q, a[i], 2 * a[i], floor[i], xbar[i], alpha)
        x[i] = xi
        total += xi
        d = quadratic_response_slope(lam, xi, q, a[i], 2 * a[i], floor[i],
                                     weight[i], alpha)
        slope += select((0 < xi) & (xi < xbar[i]) & np.isfinite(d), d, 0.0)
    return total, slope


@jit(inline=True)
def newton_root_step(z, r, slope, lo, hi, atol):
    """One safeguarded Newton step on a decreasing residual (aggregame.elementwise):
    (z, lo, hi, done)."""
    lo, hi, active = bracket_root(z, r, lo, hi, atol, True)
    if not active:
        return z, lo, hi, True
    return newton_or_bisect(z, r, slope, lo, hi, True), lo, hi, False


# -- one member's surplus: peak, level interval, tie-break response -------------------
@jit
def peak_surplus(code, rec, price, xbar):
    """The member's largest surplus on [0, xbar] (0 where xbar = 0): q^2 / 4a, or the
    surplus at the bisected peak (the solves' HALVINGS)."""
    if xbar <= 0:
        return 0.0
    if code == 0:
        return quadratic_peak_surplus(rec["b"] - price, rec["a"])
    peak = surplus_peak(member_dU, (code, rec), price, 0.0, xbar, HALVINGS)
    return family_U(code, peak, rec) - price * peak


@jit
def solve_interval(code, rec, need, price, xbar):
    """[lo, hi]: the x in [0, xbar] with s(x) >= need, NaN if none, for the solves:
    the closed form, or HALVINGS halvings on each side of the peak."""
    if code == 0:
        lo, hi, _ = quadratic_level_interval(rec["a"], rec["b"], need, price, xbar)
        return lo, hi
    member = (code, rec)
    peak = surplus_peak(member_dU, member, price, 0.0, xbar, HALVINGS)
    return level_interval(member_U, member, need, price, xbar, peak, HALVINGS)


@jit
def check_peak(code, rec, price, xbar):
    """Where the residual puts the member's surplus peak: nothing for quadratic
    members (their closed forms need none), else CHECK_HALVINGS halvings."""
    if code == 0:
        return np.nan
    return surplus_peak(member_dU, (code, rec), price, 0.0, xbar, CHECK_HALVINGS)


@jit
def check_peak_surplus(code, rec, price, peak):
    """The member's largest surplus for the residual: q^2 / 4a, or the surplus at
    ``peak`` (``check_peak``)."""
    if code == 0:
        return quadratic_peak_surplus(rec["b"] - price, rec["a"])
    return family_U(code, peak, rec) - price * peak


@jit
def check_interval(code, rec, need, price, xbar, peak):
    """[lo, hi] with s >= need for the residual's level probe: the closed form, or
    CHECK_HALVINGS halvings on each side of ``peak`` (``check_peak``)."""
    if code == 0:
        lo, hi, _ = quadratic_level_interval(rec["a"], rec["b"], need, price, xbar)
        return lo, hi
    return level_interval(member_U, (code, rec), need, price, xbar, peak,
                          CHECK_HALVINGS)


@jit
def tiebreak_response(code, rec, price, nu, lo, hi):
    """x in [lo, hi] with U'(x) - p = nu, clipped (the total-surplus fill)."""
    if code == 0:
        return quadratic_marginal_response(rec["b"] - price, nu, 2 * rec["a"], lo, hi)
    return marginal_response(member_dU, member_d2U, (code, rec), price + nu, lo, hi)
