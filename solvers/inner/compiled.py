"""Compiled inner solves (numba): the native backend's fast path, row by row
(docs/model.md, section "Compiled rows").

The numpy backend (solvers/inner/native.py) pays about 1 us of call overhead per array
operation: a 100-member inner solve is a few hundred of them, 250-500 us, whatever
the arithmetic. Searches (best responses, the certificate) solve one purchase at a
time, so that overhead is most of an equilibrium's time. Here the same algorithm
runs as compiled loops over the members of each row: a few microseconds a row.

What is compiled is read from the definition, not retyped: the utility families'
own U, dU, d2U and closed-form zero-surplus consumption (aggregame.utilities), phi
and its derivatives (aggregame.fairness), and the elementwise member formulas of
aggregame.allocation (the residual's stationarity step, the quadratic closed-form
responses). numba compiles those lines for scalars; numpy broadcasts them over
arrays.

Every row leaves with the optimality residual of aggregame.allocation (the same
formula, compiled, evaluated on the allocation apart from the solver); NativeInner
re-solves rows above tolerance with the numpy path and its safe bisection, and the
certificate re-proves the rows it used with numpy (solvers/certify/scan.py).

Loops over members are compiled with alpha a constant where it is 0, 1, 0.5 or 2
(``_jit(inline=True)`` bodies called from a branch on alpha): the branches of phi,
phi' and ``power`` then fold away and the loops vectorize, 2-7 times faster on 10^4
members. Sums may be reordered (fastmath "reassoc" only: no assumption about inf
or NaN, which the formulas rely on). numba is optional: without it (or with AGGREGAME_JIT=0)
``ENABLED`` is False and NativeInner runs numpy alone. Compiled functions are cached
on disk (numba's ``cache=True``), so only the first run on a machine compiles.

Rows the kernels take: alpha < inf with any number of members (one-member players
included), and max-min read as total surplus, for the families in
``FAMILY_CODES``. Leximin stays numpy (solvers/inner/leximin.py).
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from aggregame.allocation import (
    CLOSED_FORM_ALPHAS,
    LEVEL_PROBE_RTOL,
    quadratic_level_interval,
    quadratic_response,
    quadratic_response_slope,
    stationarity_step,
)
from aggregame.elementwise import power, select
from aggregame.fairness import PricedOutRule, alpha_d2phi, alpha_dphi, alpha_phi
from aggregame.players import Player
from aggregame.solvers.inner.batch import (
    JOINT_MATCH_RTOL,
    JOINT_NEWTON_STEPS,
    MAX_ITERATIONS,
    ROOT_RTOL,
)
from aggregame.utilities import LogUtility, QuadraticUtility

try:  # optional: the numpy path is complete without it
    import numba
except ImportError:  # pragma: no cover - exercised where numba is not installed
    numba = None

LOG = logging.getLogger(__name__)

#: True when the compiled path is used (numba installed, AGGREGAME_JIT not "0").
ENABLED = (numba is not None and os.environ.get("AGGREGAME_JIT", "1") != "0"
           and not numba.config.DISABLE_JIT)

#: Utility families the kernels know, by code. A family missing here keeps its
#: players on the numpy path (tests/test_compiled.py checks every family is here).
FAMILY_CODES = {QuadraticUtility: 0, LogUtility: 1}
#: ``family`` of a player whose members are of several families: its loops read each
#: member's code. Otherwise ``family`` is the one code, a constant in the loops that
#: matter (``_family_dispatch``), where the formulas then inline without a branch per
#: member and the loops vectorize (2.4 against 8 ns a member and Newton step).
MIXED = -1
#: One record type for every family's parameters: numba reads p["a"] from a record
#: exactly as the formulas read it from a dict of arrays.
PARAM_DTYPE = np.dtype([(name, np.float64) for name in sorted(
    {n for family in FAMILY_CODES for n in family.param_names})])



def _cache_dir() -> str | None:
    """Where compiled kernels are kept between runs: a folder named by a hash of the
    sources they are compiled from, or None (no cache) where it cannot be written.

    numba's own cache checks only the file of each function, so a kernel that
    inlined a formula of aggregame.allocation would outlive an edit of that formula;
    a folder per version of all the sources cannot.
    """
    import hashlib
    import sys
    import tempfile

    from aggregame import allocation, elementwise, fairness, utilities
    from aggregame.solvers.inner import batch as inner

    digest = hashlib.sha256(f"{numba.__version__} {sys.version}".encode())
    for module in (allocation, elementwise, fairness, utilities, inner,
                   sys.modules[__name__]):
        with open(module.__file__, "rb") as source:
            digest.update(source.read())
    base = os.environ.get("AGGREGAME_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "aggregame")
    path = os.path.join(base, "numba-" + digest.hexdigest()[:16])
    try:
        fresh = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return None
    if fresh:
        _prune(base, keep=KEPT_CACHES)
    return path


#: Versions of the compiled kernels kept on disk (each a few MB); older ones go.
KEPT_CACHES = 8


def _prune(base: str, keep: int) -> None:
    """Remove all but the ``keep`` most recently made kernel folders in ``base``."""
    import shutil

    folders = sorted((os.path.join(base, f) for f in os.listdir(base)
                      if f.startswith("numba-")), key=os.path.getmtime, reverse=True)
    for old in folders[keep:]:
        shutil.rmtree(old, ignore_errors=True)


_CACHE_DIR = _cache_dir() if ENABLED else None


def _jit(fn=None, *, inline: bool = False):
    """Compile ``fn`` for scalars (numpy's error model: 1/0 is inf, not an
    exception), cached in ``_CACHE_DIR``; or leave it as it is without numba.

    ``inline=True`` puts its body into each caller (numba's inline="always"): the
    loops over members that way see the caller's constant alpha (``solve_rows``),
    and the branches on alpha inside phi, phi' and ``power`` fold away.
    """
    if fn is None:
        return lambda f: _jit(f, inline=inline)
    if not ENABLED:
        return fn
    # nogil: the certificate runs players' searches in threads (certificate.threads).
    options = dict(error_model="numpy", inline="always" if inline else "never",
                   fastmath={"reassoc"}, nogil=True)
    if _CACHE_DIR is None:
        return numba.njit(**options)(fn)
    saved, numba.config.CACHE_DIR = numba.config.CACHE_DIR, _CACHE_DIR
    try:  # the cache locator reads the folder when the function is decorated
        return numba.njit(cache=True, **options)(fn)
    finally:
        numba.config.CACHE_DIR = saved


if ENABLED:
    @numba.extending.overload(select)
    def _select_scalar(condition, if_true, if_false):
        """``select`` of scalars: a branch, not a 0-d array."""
        def impl(condition, if_true, if_false):
            return if_true if condition else if_false
        return impl

    @numba.extending.overload(power)
    def _power_scalar(base, exponent):
        """``power`` of scalars: the exponents of alpha = 0, 0.5, 1 and 2 (phi,
        phi', phi'' and the residual's (s + e)^alpha) by multiplication, division
        and sqrt; pow costs ~14 ns a member, and those are most games."""
        def impl(base, exponent):
            if exponent == 1:
                return base
            if exponent == 0:
                return 1.0
            if exponent == -1:
                return 1.0 / base
            if exponent == 2:
                return base * base
            if exponent == -2:
                return 1.0 / (base * base)
            if exponent == 0.5:
                return np.sqrt(base)
            if exponent == -0.5:
                return 1.0 / np.sqrt(base)
            return base ** exponent
        return impl


def supports(player: Player) -> bool:
    """True when the kernels solve this player's rows: known families, and alpha <
    inf or max-min read as total surplus (leximin is solvers/inner/leximin.py's)."""
    return ENABLED and not player.fairness.is_leximin and all(
        type(m.utility) in FAMILY_CODES for m in player.members)


# -- the definition's formulas, compiled --------------------------------------------
_quad_U = _jit(QuadraticUtility.U)
_quad_dU = _jit(QuadraticUtility.dU)
_quad_d2U = _jit(QuadraticUtility.d2U)
_quad_xbar = _jit(QuadraticUtility.zero_surplus_consumption)
_log_U = _jit(LogUtility.U)
_log_dU = _jit(LogUtility.dU)
_log_d2U = _jit(LogUtility.d2U)
_phi = _jit(alpha_phi)
_dphi = _jit(alpha_dphi)
_d2phi = _jit(alpha_d2phi)
_step = _jit(stationarity_step)
_response = _jit(quadratic_response, inline=True)
_response_slope = _jit(quadratic_response_slope, inline=True)
_quad_interval = _jit(quadratic_level_interval)
_EPS = float(np.finfo(float).eps)


@_jit(inline=True)
def _U(code, x, rec):  # noqa: N802
    if code == 0:
        return _quad_U(x, rec)
    return _log_U(x, rec)


@_jit(inline=True)
def _dU(code, x, rec):  # noqa: N802
    if code == 0:
        return _quad_dU(x, rec)
    return _log_dU(x, rec)


@_jit(inline=True)
def _d2U(code, x, rec):  # noqa: N802
    if code == 0:
        return _quad_d2U(x, rec)
    return _log_d2U(x, rec)


@_jit(inline=True)
def _xbar(code, price, rec):
    """Zero-surplus consumption: the family's closed form, else the generic search
    of Utility.zero_surplus_consumption (doubling, then 80 halvings), per member."""
    if code == 0:
        return _quad_xbar(price, rec)
    if _dU(code, 0.0, rec) - price <= 0:
        return 0.0
    hi = 1.0
    for _ in range(200):
        if _U(code, hi, rec) - price * hi < 0:
            break
        hi = 2 * hi
    lo = 0.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _U(code, mid, rec) - price * mid > 0:
            lo = mid
        else:
            hi = mid
    return lo


@_jit(inline=True)
def _code(family, codes, i):
    """Member i's family code: ``family`` itself unless MIXED."""
    return family if family >= 0 else codes[i]


# -- one member's response to a multiplier --------------------------------------------
@_jit(inline=True)
def _g(code, rec, x, price, weight, floor, alpha):
    """g_i(x) = w phi'(s + e) (U' - p), member i's marginal welfare."""
    s = _U(code, x, rec) - price * x
    return weight * _dphi(np.maximum(s + floor, 0.0), alpha) * (
        _dU(code, x, rec) - price)


@_jit(inline=True)
def _g_and_slope(code, rec, x, price, weight, floor, alpha):
    """g_i(x) and g_i'(x) (phi'' = -alpha phi' / s for every alpha > 0)."""
    s = np.maximum(_U(code, x, rec) - price * x + floor, 0.0)
    slope = _dU(code, x, rec) - price
    dphi = weight * _dphi(s, alpha)
    return dphi * slope, dphi * (_d2U(code, x, rec) - alpha * slope**2 / s)


@_jit(inline=True)
def _dg(code, rec, x, price, weight, floor, alpha):
    """g_i'(x) = w (phi''(s + e) (U' - p)^2 + phi'(s + e) U'')."""
    s = np.maximum(_U(code, x, rec) - price * x + floor, 0.0)
    slope = _dU(code, x, rec) - price
    return weight * (_d2phi(s, alpha) * slope**2 + _dphi(s, alpha) * _d2U(code, x, rec))


@_jit
def _member_newton(code, rec, lam, price, xbar, weight, floor, alpha, start):
    """x_i(lambda) by safeguarded Newton on g_i(x) = lambda over [0, xbar_i] (the
    numpy path's _members_newton, one member): from ``start`` when it lies inside,
    else the middle; a step below 1e-13 of xbar_i has converged."""
    g_lo = _g(code, rec, 0.0, price, weight, floor, alpha) - lam
    g_hi = _g(code, rec, xbar, price, weight, floor, alpha) - lam
    if g_lo <= 0:
        return 0.0
    if g_hi >= 0:
        return xbar
    lo, hi = 0.0, xbar
    x = 0.5 * (lo + hi)
    if not (g_lo > 0 and g_hi < 0):
        return x  # NaN ends: nothing to solve (the residual will say so)
    if 0 < start < hi:
        x = start
    scale = np.maximum(hi, 1e-300)
    for _ in range(MAX_ITERATIONS):
        val, dval = _g_and_slope(code, rec, x, price, weight, floor, alpha)
        val = val - lam
        if val > 0:
            lo = x
        else:
            hi = x
        step = x - val / dval
        if abs(step - x) <= 1e-13 * scale:
            return np.minimum(np.maximum(step, lo), hi)
        if not np.isfinite(step) or step <= lo or step >= hi:
            x = 0.5 * (lo + hi)
        else:
            x = step
        if hi - lo <= 1e-15 * scale:
            return x
    return x


@_jit
def _allocate(codes, params, lam, price, xbar, weight, floor, alpha, closed, x):
    """Every member at multiplier ``lam`` (``x`` in: starts; out: the allocation);
    returns (sum x, sum dx/dlambda, the latter 0 unless 0 < x_i < xbar_i)."""
    if closed:  # alpha a constant in each loop: its branches fold away (7x at 0)
        if alpha == 0:
            return _allocate_closed(params, lam, price, xbar, weight, floor, 0.0, x)
        if alpha == 0.5:
            return _allocate_closed(params, lam, price, xbar, weight, floor, 0.5, x)
        return _allocate_closed(params, lam, price, xbar, weight, floor, 1.0, x)
    total, slope = 0.0, 0.0
    for i in range(x.size):
        x[i] = _member_newton(codes[i], params[i], lam, price, xbar[i], weight[i],
                              floor[i], alpha, x[i])
        total += x[i]
        if 0 < x[i] < xbar[i]:
            d = 1.0 / _dg(codes[i], params[i], x[i], price, weight[i], floor[i], alpha)
            slope += d if np.isfinite(d) else 0.0
    return total, slope


@_jit(inline=True)
def _allocate_closed(params, lam, price, xbar, weight, floor, alpha, x):
    """``_allocate`` of quadratic members at alpha 0 or 1 (the closed forms)."""
    total, slope = 0.0, 0.0
    for i in range(x.size):  # no branch: the loop vectorizes
        rec = params[i]
        q = rec["b"] - price
        xi = _response(lam, q, rec["a"], 2 * rec["a"], floor[i], xbar[i], alpha)
        x[i] = xi
        total += xi
        d = _response_slope(lam, xi, q, rec["a"], 2 * rec["a"], floor[i], weight[i],
                            alpha)
        slope += select((0 < xi) & (xi < xbar[i]) & np.isfinite(d), d, 0.0)
    return total, slope


@_jit
def _bracket_end(codes, params, y, price, xbar, weight, floor, alpha, closed, x,
                 sign):
    """A finite end for an infinite lambda bracket (strict rule): +-1, 4, 16, ...
    until sum x(lambda) is on the right side of y (numpy: _lambda_bracket)."""
    step = 1.0
    while True:
        trial = sign * step
        for i in range(x.size):
            x[i] = 0.0
        total, _ = _allocate(codes, params, trial, price, xbar, weight, floor, alpha,
                             closed, x)
        if (total <= y) if sign > 0 else (total >= y):
            return trial
        step = step * 4.0
        if step > 1e300:
            return np.nan


@_jit
def _newton_step(z, r, slope, lo, hi, atol):
    """One step of the safeguarded Newton on a residual r(z) that decreases in z
    (numpy: solvers/inner/native.py _decreasing_root, one row): the bracket shrinks to
    the side of the sign, a step leaving it bisects. Returns (z, lo, hi, done)."""
    if r > 0:
        lo = z
    if r < 0:
        hi = z
    if not (abs(r) > atol and hi - lo > 1e-15 * np.maximum(abs(z), 1e-300)):
        return z, lo, hi, True
    newton = z - r / slope
    if not np.isfinite(newton) or newton <= lo or newton >= hi:
        return 0.5 * (lo + hi), lo, hi, False
    return newton, lo, hi, False


@_jit
def _lambda_root(codes, params, y, price, xbar, weight, floor, alpha, closed, lo, hi,
                 lam, x):
    """lambda with sum_i x_i(lambda) = y (numpy: _nested_root); ``x`` holds the
    members' starts and ends as the allocation at the returned lambda."""
    atol = ROOT_RTOL * y
    for _ in range(MAX_ITERATIONS):
        total, slope = _allocate(codes, params, lam, price, xbar, weight, floor, alpha,
                                 closed, x)
        lam, lo, hi, done = _newton_step(lam, total - y, slope, lo, hi, atol)
        if done:
            break
    return lam


# -- one row ------------------------------------------------------------------------
@_jit
def _row_setup(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar, weight,
               floor, out, family):
    """Bounds, weights, floors and priced-out flags at ``price``; returns the
    capacity (numpy: aggregame.allocation.inner_setup)."""
    if family == 0:
        return _row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar,
                             weight, floor, out, 0)
    return _row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar,
                         weight, floor, out, family)


@_jit(inline=True)
def _row_setup_of(codes, params, u0, price, w_in, e_in, w_out, e_out, xbar, weight,
                  floor, out, family):
    cap = 0.0
    for i in range(codes.size):
        priced_out = u0[i] <= price
        out[i] = priced_out
        weight[i] = select(priced_out, w_out, w_in)
        floor[i] = select(priced_out, e_out, e_in)
        xbar[i] = _xbar(_code(family, codes, i), price, params[i])
        cap += xbar[i]
    return cap


@_jit
def _end_multipliers(codes, params, price, xbar, weight, floor, alpha, family, g0,
                     gcap):
    """g_i at 0 and at xbar_i of every member (into ``g0``, ``gcap``), and the
    one-sided multipliers (max g_i(0), min g_i(xbar_i) over members with xbar_i > 0)."""
    if family == 0:
        return _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha, 0,
                                   g0, gcap)
    return _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha,
                               family, g0, gcap)


@_jit(inline=True)
def _end_multipliers_of(codes, params, price, xbar, weight, floor, alpha, family, g0,
                        gcap):
    lam_top, lam_bottom = -np.inf, np.inf
    for i in range(codes.size):
        rec, code = params[i], _code(family, codes, i)
        g0[i] = _g(code, rec, 0.0, price, weight[i], floor[i], alpha)
        gcap[i] = _g(code, rec, xbar[i], price, weight[i], floor[i], alpha)
        counts = xbar[i] > 0
        lam_top = np.maximum(lam_top, select(counts, g0[i], -np.inf))
        lam_bottom = np.minimum(lam_bottom, select(counts, gcap[i], np.inf))
    return lam_top, lam_bottom


@_jit
def _interior(codes, params, y, price, xbar, weight, floor, alpha, closed, g0, gcap,
              lam_top, lam_bottom, guess, warm, x, family):
    """lambda and x (in ``x``) of a purchase strictly inside (0, cap): joint Newton
    for families without a closed-form response (numpy: _joint_newton), else or
    where it does not settle the nested root (numpy: _nested_root). ``warm``: ``x``
    holds a start (the last solve's allocation)."""
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
        # a member Newton started there stopped on its tiny step, far from its root
        # (found by review). Members start from the middle instead, as cold rows do.
        warm = False
        x[:] = 0.0
    lam = 0.5 * (lo + hi)
    if not np.isfinite(lam):
        lam = 0.0
    if lo < guess < hi:
        lam = guess
    if not closed:
        joint = x.copy()
        if not warm:
            _allocate(codes, params, lam, price, xbar, weight, floor, alpha, closed,
                      joint)
        lam_j, ok = _joint_newton(codes, params, y, price, xbar, weight, floor, alpha,
                                  g0, gcap, lo, hi, lam, joint, family)
        if ok:
            x[:] = joint
            return lam_j
    return _lambda_root(codes, params, y, price, xbar, weight, floor, alpha, closed,
                        lo, hi, lam, x)


@_jit
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


@_jit(inline=True)
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
            value, dval = _g_and_slope(_code(family, codes, i), params[i], xi, price,
                                       weight[i], floor[i], alpha)
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


@_jit
def _finish(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out, alpha,
            strict_dead, cap, surplus, family):
    """(J, dJ/dy, residual) of the allocation ``x`` (``surplus`` filled), with alpha
    a constant in the member loop where it is 0, 1, 2 or 0.5 (its branches fold
    away), and the family too where it is quadratic alone."""
    if family == 0:
        return _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight,
                             floor, out, alpha, strict_dead, cap, surplus, 0)
    return _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight,
                         floor, out, alpha, strict_dead, cap, surplus, family)


@_jit(inline=True)
def _finish_alpha(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out,
                  alpha, strict_dead, cap, surplus, family):
    if alpha == 0:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 0.0, strict_dead, cap, surplus, family)
    if alpha == 1:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 1.0, strict_dead, cap, surplus, family)
    if alpha == 2:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 2.0, strict_dead, cap, surplus, family)
    if alpha == 0.5:
        return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight,
                           floor, out, 0.5, strict_dead, cap, surplus, family)
    return _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight, floor,
                       out, alpha, strict_dead, cap, surplus, family)


@_jit(inline=True)
def _finish_row(codes, params, y, price, slope_p, x, lam, xbar, weight, floor, out,
                alpha, strict_dead, cap, surplus, family):
    """One pass over the members (numpy: NativeInner._finish):

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
        rec, code, xi = params[i], _code(family, codes, i), x[i]
        u, du = _U(code, xi, rec), _dU(code, xi, rec)
        surplus[i] = u - price * xi
        shifted = np.maximum(surplus[i] + floor[i], 0.0)
        welfare += select(weight[i] > 0, weight[i] * _phi(shifted, alpha), 0.0)
        dead = dead | out[i]
        at_bound = xi >= xbar[i] * (1 - 1e-12)
        sensitivity += select(xi > 0, select(at_bound, lam / (du - price) * xi,
                                             weight[i] * _dphi(shifted, alpha) * xi),
                              0.0)
        below = np.maximum(below, -xi)
        above = np.maximum(above, xi - xbar[i])
        level = np.maximum(u - price * xi + floor[i], 1e-300)
        step = _step(lam, xi, xbar[i], weight[i], level, du - price,
                     _d2U(code, xi, rec), alpha)
        stationarity = np.maximum(stationarity,
                                  select(np.isnan(step), np.inf, abs(step)))
    if strict_dead and dead:
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
    forced = y <= 0 or y >= cap * (1 - 1e-14) or (strict_dead and dead)
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


@_jit
def solve_rows(codes, params, u0, alpha, w_in, e_in, w_out, e_out, strict_dead,
               closed, y, price, slope_p, guess, x_start, family):
    """Inner solutions of rows (y, price, p') of a player with alpha < inf.

    ``family``: the members' one code, or MIXED. ``guess`` is a multiplier to
    start the first row from (NaN: none) and
    ``x_start`` its allocation (length 0: none); later rows start from the last
    row strictly inside (0, cap) before them. (A row at an end is forced, x = 0 or
    xbar: the best response's batch (0, y_max, current, ...) once started the
    current purchase from x = xbar and lambda's lower bracket, not from the last
    round's solve.) Returns (x, surplus, welfare, tiebreak, lambda, derivative,
    residual), the fields of an InnerBatch.
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
        cap = _row_setup(codes, params, u0, p, w_in, e_in, w_out, e_out, xbar, weight,
                         floor, out, family)
        x[:] = start
        lam = _solve_row(codes, params, y[r], p, xbar, weight, floor, alpha, closed,
                         cap, guess, warm, x, g0, gcap, family)
        if n > 1 and 0 < y[r] < cap * (1 - 1e-14) and np.isfinite(lam):
            guess, warm = lam, True
            start[:] = x
        welfare[r], derivative[r], residual[r] = _finish(
            codes, params, y[r], p, slope_p[r], x, lam, xbar, weight, floor, out,
            alpha, strict_dead, cap, s_all[r], family)
        x_all[r] = x
        tiebreak[r], lams[r] = s_all[r].sum(), lam
    return x_all, s_all, welfare, tiebreak, lams, derivative, residual


@_jit
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


@_jit(inline=True)
def _solve_row_at(codes, params, y, price, xbar, weight, floor, alpha, closed, cap,
                  guess, warm, x, g0, gcap, family):
    """lambda of one row, and its allocation in ``x`` (numpy: NativeInner._solve):
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
    for i in range(n):  # starts inside each member's bounds
        x[i] = np.minimum(np.maximum(x[i], 0.0), xbar[i])
    return _interior(codes, params, y, price, xbar, weight, floor, alpha, closed, g0,
                     gcap, lam_top, lam_bottom, guess, warm, x, family)


@_jit
def _one_member(codes, params, y, price, xbar, weight, floor, alpha, x):
    """x = min(y, xbar), lambda = g(x) (numpy: NativeInner._solve_one_member)."""
    x[0] = np.minimum(np.maximum(y, 0.0), xbar[0])
    return _g(codes[0], params[0], x[0], price, weight[0], floor[0], alpha)


# -- max-min (total-surplus reading) ----------------------------------------------
@_jit
def _peak(code, rec, price, xbar):
    """Consumption where the surplus peaks (U' = p) in [0, xbar]: the quadratic
    formula, else 80 halvings (numpy: NativeInner._peak)."""
    if code == 0:
        return np.minimum(np.maximum((rec["b"] - price) / (2 * rec["a"]), 0.0), xbar)
    lo, hi = 0.0, xbar
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if _dU(code, mid, rec) - price > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@_jit
def _surplus_side(code, rec, level, price, lo, hi, rising):
    """Where s crosses ``level`` on the rising (or falling) side of the peak, on
    the side where s >= level: 80 halvings (numpy: _bisect_surplus)."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        above = _U(code, mid, rec) - price * mid >= level
        if rising:
            if above:
                hi = mid
            else:
                lo = mid
        elif above:
            lo = mid
        else:
            hi = mid
    return hi if rising else lo


@_jit
def _level_interval(code, rec, level, price, xbar):
    """[lo, hi]: the x in [0, xbar] with s(x) >= level (level >= 0), NaN if none
    (numpy: NativeInner._level_interval)."""
    if code == 0:
        q = rec["b"] - price
        a = rec["a"]
        disc = q * q - 4 * a * level
        root = np.sqrt(np.maximum(disc, 0.0))
        lo = np.minimum(np.maximum((q - root) / (2 * a), 0.0), xbar)
        hi = np.minimum(np.maximum((q + root) / (2 * a), 0.0), xbar)
        if disc < -1e-12 * q * q:  # the peak level itself keeps its one point
            return np.nan, np.nan
        return lo, hi
    peak = _peak(code, rec, price, xbar)
    if _U(code, peak, rec) - price * peak < level:
        return np.nan, np.nan
    return (_surplus_side(code, rec, level, price, 0.0, peak, True),
            _surplus_side(code, rec, level, price, peak, xbar, False))


@_jit
def _level_bounds(t, args):
    """Each member's interval at level t into ``lo_i``, ``hi_i``; ``free``: no
    requirement (need <= 0, or not counted) (numpy: _level_bounds)."""
    codes, params, price, xbar, floor, counted, s_max, lo_i, hi_i, free, y = args
    for i in range(codes.size):
        need = np.minimum(np.maximum(t - floor[i], 0.0), s_max[i])
        lo, hi = _level_interval(codes[i], params[i], need, price, xbar[i])
        free[i] = need <= 0 or not counted[i]
        lo_i[i] = 0.0 if free[i] else (0.0 if np.isnan(lo) else lo)
        hi_i[i] = xbar[i] if free[i] else (0.0 if np.isnan(hi) else hi)


@_jit
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
            slope += 1.0 / (_dU(codes[i], side[i], params[i]) - price)
    return (total - y, slope) if upper else (y - total, -slope)


@_jit
def _level_root(upper, t_hi, y, level_args, guess):
    """u = sqrt(t_hi - t) at the root of ``_level_sum(upper, ...)``: in u
    the binding member's bounds are linear, where in t their slope is infinite at
    t_hi (numpy: _top_level's in_u). -r(t(u)) decreases in u. Starts from level
    ``guess`` (the row before's root: 2 Newton steps, not 5) where it lies in
    [0, t_hi), else from numpy's u = sqrt(t_hi / 2)."""
    lo, hi = 0.0, np.sqrt(t_hi)
    u, atol = np.sqrt(0.5) * hi, ROOT_RTOL * y
    if 0 <= guess < t_hi:
        u = np.sqrt(t_hi - guess)
    for _ in range(MAX_ITERATIONS):
        r, slope = _level_sum(upper, t_hi - u * u, level_args)
        u, lo, hi, done = _newton_step(u, -r, 2 * u * slope, lo, hi, atol)
        if done:
            break
    return u


@_jit
def _top_level(t_hi, y, level_args, warm):
    """The largest t in [0, t_hi] whose intervals can add up to y: min of t_hi and
    the roots of both sums (numpy: _top_level). Leaves the intervals at that
    level in ``level_args``' lo_i, hi_i; ``warm`` holds each sum's last root (a
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


@_jit
def _at_marginal(code, rec, marginal, lo, hi):
    """x in [lo, hi] with U'(x) = marginal, clipped to the ends: safeguarded Newton
    (numpy: _members_at_marginal)."""
    top = _dU(code, lo, rec) - marginal
    bottom = _dU(code, hi, rec) - marginal
    if top <= 0:
        return lo
    if bottom >= 0:
        return hi
    z = 0.5 * (lo + hi)
    if not (top > 0 and bottom < 0):
        return z
    atol = 1e-15 * np.maximum(abs(marginal), 1e-300)
    for _ in range(MAX_ITERATIONS):
        z, lo, hi, done = _newton_step(z, _dU(code, z, rec) - marginal,
                                       _d2U(code, z, rec), lo, hi, atol)
        if done:
            break
    return z


@_jit
def _fill_balance(codes, params, price, lo_i, hi_i, nu, x):
    """sum_i x_i(nu) of the total-surplus fill, x_i(nu) in [lo_i, hi_i] with
    U_i' - p = nu (into ``x``), and its slope sum 1/U_i'' over members inside."""
    total, slope = 0.0, 0.0
    for i in range(codes.size):
        rec = params[i]
        if codes[i] == 0:
            free = (rec["b"] - price - nu) / (2 * rec["a"])
            x[i] = np.minimum(np.maximum(free, lo_i[i]), hi_i[i])
        else:
            x[i] = _at_marginal(codes[i], rec, price + nu, lo_i[i], hi_i[i])
        total += x[i]
        if lo_i[i] < x[i] < hi_i[i]:
            slope += 1.0 / _d2U(codes[i], x[i], rec)
    return total, slope


@_jit
def _fill_total_surplus(codes, params, y, price, lo_i, hi_i, x, guess):
    """max sum s_i over x in [lo, hi], sum x = y: water filling in nu (numpy:
    _fill_total_surplus, which starts at 0; here from ``guess``, the row before's
    nu, where it lies in the bracket: 2-3 Newton steps instead of 4-5); returns
    nu, the allocation in ``x``, its last rounding put on the members with room."""
    top, bottom = 0.0, 0.0
    for i in range(codes.size):
        top = np.maximum(top, abs(_dU(codes[i], hi_i[i], params[i]) - price))
        bottom = np.maximum(bottom, abs(_dU(codes[i], lo_i[i], params[i]) - price))
    lo, hi = -(top + bottom + 1), top + bottom + 1
    nu, atol = (guess if lo < guess < hi else 0.0), ROOT_RTOL * y
    for _ in range(MAX_ITERATIONS):
        total, slope = _fill_balance(codes, params, price, lo_i, hi_i, nu, x)
        nu, lo, hi, done = _newton_step(nu, total - y, slope, lo, hi, atol)
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


@_jit
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
        peaks[i] = _residual_peak(codes[i], params[i], price, xbar[i])
        peak_s = _peak_surplus(codes[i], params[i], price, xbar[i], peaks[i])
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
            lo, hi = _probe_interval(codes[i], rec, need, price, xbar[i], peaks[i])
            if np.isnan(lo):
                testing = False  # a member cannot reach the probe: not feasible
            sum_lo += lo
            sum_hi += hi
        need = level - floor[i] if counted[i] else -np.inf
        lo, hi = _probe_interval(codes[i], rec, need, price, xbar[i], peaks[i])
        lo = np.minimum(x[i] if np.isnan(lo) else lo, x[i])
        hi = np.maximum(x[i] if np.isnan(hi) else hi, x[i])
        step = (nu - (_dU(codes[i], x[i], rec) - price)) / _d2U(codes[i], x[i], rec)
        step = np.minimum(np.maximum(step, lo - x[i]), hi - x[i])
        worst = np.maximum(worst, np.inf if np.isnan(step) else abs(step))
    out = np.maximum(out, worst / cap)
    return np.maximum(out, 1.0) if (testing and sum_lo <= y <= sum_hi) else out


@_jit
def _residual_peak(code, rec, price, xbar):
    """Where the residual puts the member's surplus peak: nothing for quadratic
    members (their closed forms need none), else aggregame.allocation.
    surplus_peak's 100 halvings on U' - p."""
    if code == 0:
        return np.nan
    lo, hi = 0.0, xbar
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _dU(code, mid, rec) - price > 0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@_jit
def _peak_surplus(code, rec, price, xbar, peak):
    """The member's largest surplus: q^2 / 4a (quadratic_level_interval's top), or
    the surplus at ``peak`` (``_residual_peak``)."""
    if code == 0:
        return _quad_interval(rec["a"], rec["b"], 0.0, price, xbar)[2]
    return _U(code, peak, rec) - price * peak


@_jit
def _probe_interval(code, rec, need, price, xbar, peak):
    """[lo, hi] with s >= need for the residual's level probe: the closed form of
    quadratic_level_interval, or aggregame.allocation.level_interval's 100 halvings
    on each side of ``peak`` (``_residual_peak``); NaN where the peak is below
    need."""
    if code == 0:
        lo, hi, _ = _quad_interval(rec["a"], rec["b"], need, price, xbar)
        return lo, hi
    if _U(code, peak, rec) - price * peak < need:
        return np.nan, np.nan
    if need <= 0:
        return 0.0, xbar
    lo_a, lo_b, hi_a, hi_b = 0.0, peak, peak, xbar
    for _ in range(100):
        m1, m2 = 0.5 * (lo_a + lo_b), 0.5 * (hi_a + hi_b)
        if _U(code, m1, rec) - price * m1 >= need:
            lo_b = m1
        else:
            lo_a = m1
        if _U(code, m2, rec) - price * m2 >= need:
            hi_a = m2
        else:
            hi_b = m2
    return lo_b, hi_a


@_jit
def _maxmin_row(codes, params, y, price, slope_p, xbar, weight, floor, out, cap,
                scratch, x, surplus, guess, warm):
    """One max-min row (numpy: _solve_maxmin and _finish_maxmin): the top level,
    its intervals, the total-surplus fill; returns (welfare, tiebreak,
    tie-break derivative, residual, nu) with x and surplus filled; ``guess``
    starts the fill's nu, ``warm`` the level roots (``_top_level``)."""
    n = codes.size
    s_max, lo_i, hi_i = scratch[0], scratch[1], scratch[2]
    counted = weight > 0
    free = np.empty(n, dtype=np.bool_)
    t_hi = np.inf
    for i in range(n):
        s_max[i] = 0.0
        if xbar[i] > 0:
            peak = np.minimum(_peak(codes[i], params[i], price, xbar[i]), xbar[i])
            s_max[i] = _U(codes[i], peak, params[i]) - price * peak
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
        surplus[i] = _U(codes[i], x[i], params[i]) - price * x[i]
        if counted[i]:
            welfare = np.minimum(welfare, surplus[i] + floor[i])
            flat = flat or out[i]
        if x[i] > 0:
            coef = 1.0
            if x[i] >= xbar[i] * (1 - 1e-12):
                coef = nu / (_dU(codes[i], x[i], params[i]) - price)
            sensitivity += coef * x[i]
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


@_jit
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
        cap = _row_setup(codes, params, u0, p, w_in, e_in, w_out, e_out, xbar, weight,
                         floor, out, family)
        welfare[r], tiebreak[r], tie_derivative[r], residual[r], nu = _maxmin_row(
            codes, params, y[r], p, slope_p[r], xbar, weight, floor, out, cap,
            scratch, x_all[r], s_all[r], nu, warm)
        nus[r] = nu
    return x_all, s_all, welfare, tiebreak, tie_derivative, residual, nus


def warm_up() -> None:
    """Load (or compile, once per machine) every kernel now, rather than in the
    middle of the first solve that needs it."""
    if not ENABLED:
        return
    from aggregame.fairness import Fairness
    from aggregame.utilities import User

    members = (User("w0", QuadraticUtility(0.5, 3.0)), User("w1", LogUtility(2.0)))
    y, price, slope = np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.zeros(2)
    for fairness in (Fairness(1.0), Fairness("inf", maxmin="total-surplus")):
        CompiledPlayer(Player("w", members, fairness)).solve(y, price, slope)


_ANNOUNCED: set[str] = set()


def _announce_compile(entry: str) -> None:
    """Say once per process that ``entry`` is about to be compiled (its cache holds
    nothing yet): the first solve on a machine takes 5-15 s, not milliseconds."""
    if entry in _ANNOUNCED:
        return
    _ANNOUNCED.add(entry)
    import glob

    if _CACHE_DIR is not None and glob.glob(os.path.join(
            _CACHE_DIR, "**", f"compiled.{entry}-*.nbi"), recursive=True):
        return
    LOG.warning("compiling the native backend's kernels for this machine (%s; "
                "once, 5-15 s)%s", entry, "" if _CACHE_DIR else
                ": no writable cache folder, so every run compiles them again")


def _plain(v: np.ndarray) -> np.ndarray:
    """``v`` as a C-contiguous, writeable float64 array (a copy only if it is not
    one: np.require costs ~1 us a call, which a max-min search paid 3 times a row)."""
    if isinstance(v, np.ndarray) and v.dtype == np.float64 and \
            v.flags.c_contiguous and v.flags.writeable:
        return v
    return np.array(v, dtype=np.float64)


class CompiledPlayer:
    """A player's data in the kernels' form, and its solve."""

    def __init__(self, player: Player) -> None:
        f = player.fairness
        self.codes = np.empty(player.size, dtype=np.int64)
        self.params = np.zeros(player.size, dtype=PARAM_DTYPE)
        for fam in player.families:  # arrays per family, in member order
            self.codes[fam.index] = FAMILY_CODES[fam.family]
            for name, values in fam.params.items():
                self.params[name][fam.index] = values
        self.u0 = np.ascontiguousarray(player.marginal_at_zero, dtype=float)
        self.alpha = float(f.alpha)
        self.maxmin = f.is_maxmin
        (self.w_in, self.e_in), (self.w_out, self.e_out) = (
            f.member_terms(False), f.member_terms(True))
        # The strict rule's J = -inf once a counted member is priced out (alpha >= 1).
        self.strict_dead = f.rule is PricedOutRule.STRICT and f.alpha >= 1
        self.closed = bool(np.all(self.codes == 0) and f.alpha in CLOSED_FORM_ALPHAS)
        #: The code every member shares, or MIXED (see MIXED).
        self.family = int(self.codes[0]) if player.size and np.all(
            self.codes == self.codes[0]) else MIXED
        self.size = player.size
        _announce_compile("solve_maxmin_rows" if self.maxmin else "solve_rows")

    def solve(self, y: np.ndarray, price: np.ndarray, slope: np.ndarray,
              guess: float = math.nan, x_start: np.ndarray | None = None):
        """(x, surplus, welfare, tiebreak, lambda, derivative, tie-break derivative,
        residual, nu) of rows: InnerBatch's fields after y and price, and the
        max-min tie-break's multiplier (None for alpha < inf). ``guess`` and
        ``x_start`` start the first row (alpha < inf; NaN and None: no start)."""
        # Contiguous, writeable float arrays always: another layout (a strided
        # slice of purchases) or a read-only array is a new signature for numba,
        # compiled again for seconds.
        y, price, slope = _plain(y), _plain(price), _plain(slope)
        if self.maxmin:
            x, surplus, welfare, tiebreak, tie, residual, nu = solve_maxmin_rows(
                self.codes, self.params, self.u0, self.w_in, self.e_in, self.w_out,
                self.e_out, y, price, slope, self.family)
            nan = np.full(y.size, np.nan)
            return x, surplus, welfare, tiebreak, nan, nan.copy(), tie, residual, nu
        start = np.empty(0) if x_start is None else _plain(x_start)
        x, surplus, welfare, tiebreak, lam, derivative, residual = solve_rows(
            self.codes, self.params, self.u0, self.alpha, self.w_in, self.e_in,
            self.w_out, self.e_out, self.strict_dead, self.closed, y, price, slope,
            float(guess), start, self.family)
        return x, surplus, welfare, tiebreak, lam, derivative, None, residual, None
