"""Native (numpy) inner backend: water filling in lambda, vectorized over members.

For alpha < inf and a multiplier lambda, member i's allocation solves
g_i(x) = w_i phi'(s_i(x) + e_i) (U_i'(x) - p) = lambda on [0, xbar_i]; g_i is strictly
decreasing there (docs/model.md, section "Allocation for a given lambda"), so
x_i(lambda) is unique
and sum_i x_i(lambda) is decreasing: the inner problem is a 1-D root in lambda.
Closed forms: quadratic users with alpha = 0 (a clip) and alpha = 1 (a quadratic in x);
otherwise a safeguarded Newton per member, all members and all purchases at once.

Max-min (alpha = inf) is water filling in the level t: each member needs x in the
interval where s_i + e_i >= t; t* is the largest level whose intervals can add up to
y_j, and the total surplus then decides within those intervals (docs/model.md,
section "Max-min").
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, fields

import numpy as np

from aggregame.allocation import (
    CLOSED_FORM_ALPHAS,
    RESIDUAL_TOL,
    InnerSetup,
    allocation_error,
    forced_rows,
    inner_setup,
    maxmin_residual,
    optimality_residual,
    price_sensitivity,
    purchase_prices,
    quadratic_response,
    quadratic_response_slope,
    settled_residual,
    welfare_of,
)
from aggregame.errors import InnerSolveError
from aggregame.players import Game
from aggregame.solvers.inner import compiled as kernels
from aggregame.solvers.inner.batch import (
    JOINT_MATCH_RTOL,
    JOINT_NEWTON_STEPS,
    MAX_ITERATIONS,
    ROOT_RTOL,
    InnerBatch,
)
from aggregame.solvers.inner.leximin import solve_leximin
from aggregame.solvers.inner.safe import lambda_allocation, maxmin_allocation
from aggregame.utilities import QuadraticUtility

LOG = logging.getLogger(__name__)

#: Largest (purchases x members) block solved at once: 2^20 doubles are 8 MB per
#: array, and a solve keeps a few dozen arrays alive.
CHUNK_ELEMENTS = 2**20
#: Inner solves run under one np.errstate(all="ignore") set in ``NativeInner.solve``
#: (infinities and NaNs are expected and handled: phi' at s = 0, 1/g' at a bound), so
#: hot loops need none of their own: entering np.errstate costs ~2 us, and an alpha = 1
#: inner solve entered it ~20 times.
_QUIET = contextlib.nullcontext()


def _decreasing_root(residual, lo: np.ndarray, hi: np.ndarray, start: np.ndarray,
                     atol: np.ndarray, active: np.ndarray | None = None):
    """Row-wise root of a residual that decreases in z, by safeguarded Newton.

    ``residual(z)`` returns (r, dr/dz, aux); ``lo``/``hi`` bracket the roots
    (r(lo) >= 0 >= r(hi)). A Newton step leaving the bracket becomes a bisection, so
    this converges on the piecewise-smooth residuals of water filling. Returns the
    roots and the ``aux`` evaluated there. Rows where ``active`` is False keep
    ``start``.
    """
    z = start
    active = np.ones(z.shape, dtype=bool) if active is None else active.copy()
    aux = None
    for _ in range(MAX_ITERATIONS):
        r, slope, aux = residual(z)
        lo = np.where(r > 0, z, lo)
        hi = np.where(r < 0, z, hi)
        active &= (np.abs(r) > atol) & (hi - lo > 1e-15 * np.maximum(np.abs(z), 1e-300))
        if not active.any():
            break
        with _QUIET:
            newton = z - r / slope
        bad = ~np.isfinite(newton) | (newton <= lo) | (newton >= hi)
        z = np.where(active, np.where(bad, 0.5 * (lo + hi), newton), z)
    return z, aux


@dataclass(frozen=True)
class _LevelProblem:
    """Rows of a max-min solve: purchases (G,), price column (G, 1), member bounds,
    floors, counted members and peak surpluses (G, N), and the top level (G,)."""

    y: np.ndarray
    p2: np.ndarray
    xbar: np.ndarray
    floor: np.ndarray
    counted: np.ndarray
    s_max: np.ndarray
    t_hi: np.ndarray


def _rows_of(others_total, rows):
    """The others' total of the selected rows: one number for every row, or an
    array of one per row (a search over the total holds each row's price)."""
    return others_total[rows] if np.ndim(others_total) else others_total


class NativeInner:
    """Inner problem of ``game.players[index]`` solved with numpy, batched over y."""

    #: Evaluating many purchases in one call costs about as much as one: searches
    #: (golden section for max-min) may batch their probes.
    batched = True

    def __init__(self, game: Game, index: int, compiled: bool = True) -> None:
        """``compiled=False`` keeps this player on numpy even where the compiled
        kernels could solve it (the certificate's second opinion, and tests)."""
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.fairness = self.player.fairness
        #: (y, lambda, x) of the last two single-purchase solves: searches call with
        #: nearby purchases, so Newton started from their secant (or from the last
        #: one) needs a few steps, not 5-6 (see ``_warm_guess``).
        self._warm_path: list[tuple[float, float, np.ndarray]] = []
        #: The compiled kernels' form of the player, where they solve it (None:
        #: numpy alone, e.g. leximin, or numba not installed).
        self._compiled = kernels.CompiledPlayer(self.player) if (
            compiled and kernels.supports(self.player)) else None
        n = self.player.size
        self._u0 = self.player.marginal_at_zero
        # Dense per-member parameters by family, broadcast over the batch axis.
        self._families = self.player.families
        self._all_quadratic = all(f.family is QuadraticUtility for f in self._families)
        # Quadratic members at alpha 0, 1/2 or 1 have x_i(lambda) in closed form.
        self._closed_form_members = (self._all_quadratic
                                     and self.fairness.alpha in CLOSED_FORM_ALPHAS)
        if self._all_quadratic:
            fam = self._families[0]
            order = np.argsort(fam.index)
            self._a = np.empty(n)
            self._b = np.empty(n)
            self._a[fam.index[order]] = fam.params["a"][order]
            self._b[fam.index[order]] = fam.params["b"][order]
            self._two_a = 2 * self._a  # per-call 2 a, bit for bit

    @property
    def compiled(self) -> bool:
        """True when rows go through the compiled kernels first."""
        return self._compiled is not None

    # -- utility pieces over (G, N) ---------------------------------------------
    def _U(self, x):  # noqa: N802
        if self._all_quadratic:
            return -self._a * x**2 + self._b * x
        return self.player.evaluate("U", x)

    def _dU(self, x):  # noqa: N802
        if self._all_quadratic:
            return self._b - self._two_a * x
        return self.player.evaluate("dU", x)

    def _d2U(self, x):  # noqa: N802
        if self._all_quadratic:
            return np.broadcast_to(-self._two_a, x.shape)
        return self.player.evaluate("d2U", x)

    # -- member response to a multiplier -------------------------------------
    def _g_at_zero(self, price, weight, floor, shape):
        """g_i(0): quadratic members have U(0) = 0 and U'(0) = b, so s = 0 and
        g_i(0) = w phi'(max(e, 0)) (b - p), the same floats as ``_g`` at x = 0 in
        a third of the array operations (it runs on every inner solve)."""
        if not self._all_quadratic:
            return self._g(np.zeros(shape), price, weight, floor)
        with _QUIET:
            return weight * self.fairness.dphi(np.maximum(floor, 0.0)) * (
                self._b - price)

    def _g(self, x, price, weight, floor):
        """g_i(x) = w phi'(s + e) (U' - p), the marginal welfare of member i."""
        s = self._U(x) - price * x
        with _QUIET:
            return weight * self.fairness.dphi(np.maximum(s + floor, 0.0)) * (
                self._dU(x) - price)

    def _dg(self, x, price, weight, floor):
        s = np.maximum(self._U(x) - price * x + floor, 0.0)
        slope = self._dU(x) - price
        f = self.fairness
        with _QUIET:
            return weight * (f.d2phi(s) * slope**2 + f.dphi(s) * self._d2U(x))

    def _members_at(self, lam, price, xbar, weight, floor, start=None):
        """x_i(lambda): argmax over [0, xbar_i] of w phi(s_i + e_i) - lambda x_i
        (``start``: a guess for the iterative families, e.g. the last iterate's)."""
        lam = lam[:, None]
        if self._closed_form_members:  # x_i(lambda) in closed form (allocation)
            with _QUIET:  # lambda = 0 or +-inf: limits the formula takes as 0 or inf
                return quadratic_response(lam, self._b - price, self._a, self._two_a,
                                          floor, xbar, self.fairness.alpha)
        return self._members_newton(lam, price, xbar, weight, floor, start)

    def _g_and_slope(self, x, price, weight, floor):
        """g_i(x) and g_i'(x) together (one surplus, one power of it)."""
        s = np.maximum(self._U(x) - price * x + floor, 0.0)
        slope = self._dU(x) - price
        f = self.fairness
        with _QUIET:
            dphi = weight * f.dphi(s)
            # phi'' = -alpha phi' / s for every alpha > 0 (phi' = s^-alpha).
            return dphi * slope, dphi * (self._d2U(x) - f.alpha * slope**2 / s)

    def _members_newton(self, lam, price, xbar, weight, floor, start=None):
        """Safeguarded Newton on g_i(x) = lambda over [0, xbar_i], all at once.

        ``start`` (e.g. the allocation at the previous multiplier of the outer root)
        is where Newton begins inside the bracket; the bracket is always [0, xbar].
        Newton converges quadratically, so once a step is below 1e-13 of the bracket
        the error after it is far below rounding: the member stops there.
        """
        shape = np.broadcast_shapes(lam.shape, xbar.shape)
        lo = np.zeros(shape)
        hi = np.broadcast_to(xbar, shape).copy()
        g_lo = self._g(lo, price, weight, floor) - lam
        g_hi = self._g(hi, price, weight, floor) - lam
        x = np.where(g_lo <= 0, 0.0, np.where(g_hi >= 0, hi, 0.5 * (lo + hi)))
        active = (g_lo > 0) & (g_hi < 0)
        if start is not None:
            x = np.where(active & (start > 0) & (start < hi), start, x)
        scale = np.maximum(hi, 1e-300)
        for _ in range(MAX_ITERATIONS):
            if not active.any():
                break
            val, dval = self._g_and_slope(x, price, weight, floor)
            val = val - lam
            lo = np.where(active & (val > 0), x, lo)
            hi = np.where(active & (val <= 0), x, hi)
            with _QUIET:
                step = x - val / dval
            # A Newton step this small has converged: taken, clipped into the
            # bracket (at the root, rounding may put it a hair past x = lo or hi).
            small = np.abs(step - x) <= 1e-13 * scale
            bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
            new = np.where(small, np.clip(step, lo, hi),
                           np.where(bad, 0.5 * (lo + hi), step))
            done = small | (hi - lo <= 1e-15 * scale)
            x = np.where(active, new, x)
            active = active & ~done
        return x

    def _member_slope(self, x, lam, price, xbar, weight, floor):
        """dx_i/dlambda (0 at the bounds): 1 / g_i'(x_i) for interior members."""
        interior = (x > 0) & (x < xbar)
        with _QUIET:
            if self._closed_form_members:  # (members of weight 0 are never interior)
                slope = quadratic_response_slope(lam[:, None], x, self._b - price,
                                                 self._a, self._two_a, floor, weight,
                                                 self.fairness.alpha)
            else:
                slope = 1.0 / self._dg(x, price, weight, floor)
        return np.where(interior & np.isfinite(slope), slope, 0.0)

    # -- the lambda root ------------------------------------------------------
    def _lambda_bracket(self, y, price, xbar, weight, floor, hi, lo):
        """Finite ends of the lambda bracket: infinite ends (strict rule) double
        away from 0 until the bracket holds."""
        g = y.shape[0]
        if np.isfinite(hi).all() and np.isfinite(lo).all():
            return hi, lo  # floor and viable rules: nothing to search for
        hi = np.where(np.isfinite(hi), hi, np.nan)
        lo = np.where(np.isfinite(lo), lo, np.nan)
        for side, sign in ((0, 1.0), (1, -1.0)):
            end = hi if side == 0 else lo
            missing = np.isnan(end)
            step = np.ones(g)
            while missing.any():
                trial = sign * step
                total = self._members_at(trial, price, xbar, weight, floor).sum(axis=1)
                ok = (total <= y) if side == 0 else (total >= y)
                end = np.where(missing & ok, trial, end)
                missing = missing & ~ok
                step = step * 4.0
                if step.max() > 1e300:
                    break
            if side == 0:
                hi = end
            else:
                lo = end
        return hi, lo

    def _solve_lambda(self, y, price, xbar, weight, floor, hi, lo):
        """lambda with sum_i x_i(lambda) = y, row by row (y strictly inside (0, cap)).

        ``hi`` = max_i g_i(0) and ``lo`` = min_i g_i(xbar_i) bracket it: every member
        is at 0 above ``hi`` and at xbar below ``lo`` (both infinite under strict).
        Families without a closed-form x_i(lambda) first try Newton on (x, lambda)
        together (``_joint_newton``); rows it does not settle take the nested root.
        """
        g = y.shape[0]
        hi, lo = self._lambda_bracket(y, price, xbar, weight, floor, hi, lo)
        lam = 0.5 * (lo + hi)
        lam = np.where(np.isfinite(lam), lam, 0.0)
        # Single rows start from the previous single solves (searches and grids
        # call with nearby purchases).
        warm = None
        if g == 1:
            guess, warm = self._warm_guess(float(y[0]), xbar.shape[1])
            if warm is not None:
                warm = np.clip(warm, 0.0, xbar)
            if guess is not None and lo[0] < guess < hi[0]:
                lam = np.array([guess])
        if not self._closed_form_members:
            start = warm if warm is not None else self._members_at(
                lam, price, xbar, weight, floor)
            lam_j, x_j, ok = self._joint_newton(y, price, xbar, weight, floor, lam,
                                                start, lo, hi)
            if not ok.all():
                rest = ~ok
                lam_j[rest], x_j[rest] = self._nested_root(
                    y[rest], price[rest], xbar[rest], weight[rest], floor[rest],
                    lam[rest], lo[rest], hi[rest], warm)
            lam, x = lam_j, x_j
        else:
            lam, x = self._nested_root(y, price, xbar, weight, floor, lam, lo, hi, warm)
        if g == 1:
            self._remember(float(y[0]), float(lam[0]), x)
        return lam, x

    def _remember(self, y: float, lam: float, x: np.ndarray) -> None:
        """Keep a single solve's (y, lambda, x) for ``_warm_guess``."""
        if math.isfinite(lam):
            self._warm_path = self._warm_path[-1:] + [(y, lam, x)]

    def _warm_guess(self, y: float, rows: int
                    ) -> tuple[float | None, np.ndarray | None]:
        """Start (lambda, x) for a single purchase: the secant of the last two
        single solves extrapolated to ``y`` (x still to be clipped into [0, xbar]),
        else the last solve's, else (None, None); x is None unless it has shape
        (1, ``rows``). On a grid walk or a search's nearby probes it saves one to two
        Newton steps of about five."""
        if not self._warm_path:
            return None, None
        y2, l2, x2 = self._warm_path[-1]
        if x2.shape != (1, rows):
            return l2, None
        if len(self._warm_path) == 2:
            y1, l1, x1 = self._warm_path[0]
            if y2 != y1 and x1.shape == x2.shape:
                t = (y - y2) / (y2 - y1)
                guess = l2 + (l2 - l1) * t
                if math.isfinite(guess):
                    return guess, x2 + (x2 - x1) * t
        return l2, x2

    def _nested_root(self, y, price, xbar, weight, floor, lam, lo, hi, warm):
        """Safeguarded Newton in lambda, each step solving every member exactly."""
        last = [warm if warm is not None and warm.shape == xbar.shape else None]

        def residual(lam):
            # Sum too big -> lambda too small: decreasing in lambda. Members start
            # from the previous iterate's allocation (close once lambda settles).
            x = self._members_at(lam, price, xbar, weight, floor, last[0])
            last[0] = x
            slope = self._member_slope(x, lam, price, xbar, weight, floor).sum(axis=1)
            return x.sum(axis=1) - y, slope, x

        return _decreasing_root(residual, lo, hi, lam, ROOT_RTOL * y)

    def _joint_newton(self, y, price, xbar, weight, floor, lam, x, lo, hi):
        """Newton on the inner KKT system in (x, lambda) at once.

        For the members interior at lambda (g_i(0) > lambda > g_i(xbar_i)),
        linearizing g_i(x_i) = lambda' gives x_i' = x_i + (lambda' - g_i) h_i with
        h_i = 1 / g_i'(x_i); sum_i x_i' = y then fixes lambda'. One member evaluation
        per step, where the nested root needs a full member solve per lambda step
        (measured on Fig. 4 at alpha = 2: ~20 member evaluations per inner solve by
        the nested root, ~5 here). Steps stay inside the bracket and inside each
        member's (0, xbar_i) (halfway to a bound they would cross). A row is
        accepted only where, at the returned (x, lambda), sum x = y to ROOT_RTOL and
        every interior member's remaining Newton step is below 1e-13 of its xbar_i:
        the nested root's own stopping rules. Returns (lambda, x, accepted rows).
        """
        with _QUIET:
            g0 = self._g_at_zero(price, weight, floor, xbar.shape)
            gcap = self._g(xbar, price, weight, floor)
        atol = ROOT_RTOL * y
        ok = np.zeros(y.shape, dtype=bool)
        x = x.copy()
        for _ in range(JOINT_NEWTON_STEPS):
            col = lam[:, None]
            interior = (g0 > col) & (gcap < col)
            x = np.where(g0 <= col, 0.0, np.where(gcap >= col, xbar, x))
            x = np.where(interior & ((x <= 0) | (x >= xbar)), 0.5 * xbar, x)
            val, dval = self._g_and_slope(x, price, weight, floor)
            with _QUIET:
                h = np.where(interior, 1.0 / dval, 0.0)
                move = np.where(interior, (val - col) * h, 0.0)
            finite = np.isfinite(move).all(axis=1) & np.isfinite(h).all(axis=1)
            # The step alone is blind where g_i' is huge (alpha = 5, s near 0: h ~ 0
            # whatever g_i - lambda is; found by the batch/single property test), so
            # g_i = lambda must also hold relatively; rows failing it (lambda ~ 0
            # too) take the nested root.
            matched = np.abs(val - col) <= JOINT_MATCH_RTOL * np.abs(col)
            ok = finite & (np.abs(x.sum(axis=1) - y) <= atol) & np.all(
                (np.abs(move) <= 1e-13 * np.maximum(xbar, 1e-300))
                & (matched | ~interior), axis=1)
            if ok.all():
                break
            with _QUIET:
                new_lam = lam + (y - x.sum(axis=1) + move.sum(axis=1)) / h.sum(axis=1)
            inside = np.isfinite(new_lam) & (new_lam > lo) & (new_lam < hi)
            new_lam = np.where(inside, new_lam, 0.5 * (lam + np.where(
                new_lam >= hi, hi, lo)))
            with _QUIET:
                step = x + (new_lam[:, None] - val) * h
            step = np.where(step <= 0, 0.5 * x, np.where(step >= xbar,
                                                       0.5 * (x + xbar), step))
            keep = ok | ~finite
            x = np.where(keep[:, None] | ~interior, x, step)
            lam = np.where(keep, lam, new_lam)
        return lam, x, ok

    # -- public --------------------------------------------------------------
    def solve(self, y: np.ndarray, others_total: float,
              fixed_price: float | None = None) -> InnerBatch:
        """Inner solutions for purchases ``y`` (see InnerSolver.solve).

        Batches of more than CHUNK_ELEMENTS (purchases x members) are solved in
        chunks, which bounds memory for large aggregators. Every row is checked by its
        optimality residual; a row above RESIDUAL_TOL is solved again by the safe
        bisection of solvers/inner/safe.py, and raises InnerSolveError if that
        fails too.
        """
        y = np.atleast_1d(np.asarray(y, dtype=float))
        if self._compiled is not None:
            return self._solve_compiled(y, others_total, fixed_price)
        return self._solve_numpy(y, others_total, fixed_price)

    def _solve_compiled(self, y: np.ndarray, others_total: float,
                        fixed_price: float | None) -> InnerBatch:
        """Rows through the compiled kernels (solvers/inner/compiled.py); a row whose
        residual is above RESIDUAL_TOL is solved again by the numpy path below
        (and there, if need be, by the safe bisection)."""
        price, slope = purchase_prices(self.game, y, others_total, fixed_price)
        # The kernel starts the first row strictly inside (0, cap) from the guess
        # (rows at the ends are forced): a best response's batch is (0, y_max,
        # current, ...), and the guess extrapolated to y = 0 was no start at all.
        first = float(y[0])
        if y.size > 1:  # (single rows, most calls, need no search)
            inside = np.flatnonzero((y > 0) & (y < y.max()))
            first = float(y[inside[0]]) if inside.size else first
        guess, start = (None, None) if self.fairness.is_maxmin else self._warm_guess(
            first, self.player.size)
        *fields_, nu = self._compiled.solve(y, price, slope,
                                            math.nan if guess is None else guess,
                                            None if start is None else start[0])
        batch = InnerBatch(y, price, *fields_, tiebreak_multiplier=nu)
        bad = ~(batch.residual <= RESIDUAL_TOL)
        if bad.any():
            rows = np.flatnonzero(bad)
            LOG.info("player %r: compiled inner solve left %d row(s) above residual "
                     "%g; solving them with numpy", self.player.name, rows.size,
                     RESIDUAL_TOL)
            batch.put(rows, self._solve_numpy(y[rows], _rows_of(others_total, rows),
                                              fixed_price))
        if y.size == 1 and not self.fairness.is_maxmin:
            self._remember(float(y[0]), float(batch.multiplier[0]), batch.x)
        return batch

    def _solve_numpy(self, y: np.ndarray, others_total: float,
                     fixed_price: float | None) -> InnerBatch:
        """Rows by numpy, in chunks of at most CHUNK_ELEMENTS (purchases x members),
        each checked by its residual and re-solved safely if it fails."""
        rows = max(1, CHUNK_ELEMENTS // self.player.size)
        if y.size > rows:
            parts = [self._solve_numpy(y[k:k + rows],
                                       _rows_of(others_total, slice(k, k + rows)),
                                       fixed_price)
                     for k in range(0, y.size, rows)]
            return InnerBatch(*(None if getattr(parts[0], f.name) is None else
                                np.concatenate([getattr(p, f.name) for p in parts])
                                for f in fields(InnerBatch)))
        setup = inner_setup(self.game, self.index, y, others_total, fixed_price)
        with np.errstate(all="ignore"):
            batch = self._solve(setup)
            bad = ~(batch.residual <= RESIDUAL_TOL)
            if bad.any():
                self._resolve_safely(batch, setup, np.flatnonzero(bad))
        return batch

    def _resolve_safely(self, batch: InnerBatch, setup: InnerSetup,
                        rows: np.ndarray) -> None:
        """Replace the given rows of ``batch`` by the safe method's solutions."""
        for k in rows:
            one = setup.take(np.array([k]))
            y, price = float(one.y[0]), float(one.price[0])
            LOG.info("player %r: fast inner solve at y = %.17g has residual %.3g; "
                     "re-solving by bisection", self.player.name, y, batch.residual[k])
            if self.fairness.is_maxmin:
                x, nu = maxmin_allocation(self.player, y, price, one.xbar[0],
                                          one.floor[0], one.priced_out[0])
                fixed = self._finish_maxmin(one, x[None], np.array([nu]))
            else:
                x, lam = lambda_allocation(self.player, y, price, one.xbar[0],
                                           one.weight[0], one.floor[0])
                fixed = self._finish(one, x[None], np.array([lam]))
            if not fixed.residual[0] <= RESIDUAL_TOL:
                raise InnerSolveError(
                    f"inner problem of player '{self.player.name}' at purchase "
                    f"y = {y:.17g} (price {price:.6g}): no allocation with optimality "
                    f"residual below {RESIDUAL_TOL:g} (fast path "
                    f"{batch.residual[k]:.3g}, bisection {fixed.residual[0]:.3g})")
            batch.put(np.array([k]), fixed)

    def _solve(self, setup: InnerSetup) -> InnerBatch:
        if self.fairness.is_leximin:  # progressive filling (solvers/inner/leximin.py)
            return solve_leximin(self.player, setup)
        if self.fairness.is_maxmin:
            return self._solve_maxmin(setup)
        if self.player.size == 1:
            return self._solve_one_member(setup)
        y, p2, xbar = setup.y, setup.price_column, setup.xbar
        weight, floor = setup.weight, setup.floor
        x = np.zeros((y.size, self.player.size))
        lam = np.full(y.size, np.nan)
        at_zero = y <= 0
        at_cap = y >= setup.cap * (1 - 1e-14)
        inside = ~(at_zero | at_cap)
        with _QUIET:
            g0 = self._g_at_zero(p2, weight, floor, xbar.shape)
            gcap = self._g(xbar, p2, weight, floor)
        viable = xbar > 0
        # One-sided multipliers at the ends of the feasible interval; they also
        # bracket the multiplier inside it.
        lam_top = np.where(viable, g0, -np.inf).max(axis=1)
        lam_bottom = np.where(viable, gcap, np.inf).min(axis=1)
        lam[at_zero] = lam_top[at_zero]
        lam[at_cap] = lam_bottom[at_cap]
        x[at_cap] = xbar[at_cap]
        if inside.any():
            lam_in, x_in = self._solve_lambda(y[inside], p2[inside], xbar[inside],
                                              weight[inside], floor[inside],
                                              lam_top[inside], lam_bottom[inside])
            lam[inside] = lam_in
            x[inside] = x_in
        return self._finish(setup, x, lam)

    def _solve_one_member(self, setup: InnerSetup) -> InnerBatch:
        """One member takes the whole purchase: x = min(y, xbar), lambda = g(x).

        No root and no stationarity to check (lambda is defined by the allocation),
        so the residual is the balance |x - y| alone; the total derivative is
        g(x) - p' w phi'(s + e) x (at xbar too: there lambda / (U' - p) = w phi').
        Same values as the general path (_finish), in a dozen array operations.
        """
        y, p2, xbar = setup.y, setup.price_column, setup.xbar
        weight, floor = setup.weight, setup.floor
        x = np.minimum(np.maximum(y, 0.0)[:, None], xbar)
        surplus = self._U(x) - p2 * x
        infeasible = y > setup.cap * (1 + 1e-12) + 1e-300
        welfare = welfare_of(self.player, surplus, weight, floor, setup.priced_out)
        welfare = np.where(infeasible, -np.inf, welfare)
        with _QUIET:
            dphi = weight * self.fairness.dphi(np.maximum(surplus + floor, 0.0))
            lam = (dphi * (self._dU(x) - p2))[:, 0]
            derivative = lam - setup.price_slope * np.where(x > 0, dphi * x, 0.0)[:, 0]
        derivative = np.where(infeasible | ~np.isfinite(welfare), np.nan, derivative)
        cap = np.maximum(setup.cap, 1e-300)
        residual = settled_residual(
            np.abs(x[:, 0] - y) / cap, np.abs(x[:, 0] - y) / cap, welfare, y,
            setup.cap, forced_rows(self.player, y, setup.cap, setup.priced_out))
        return InnerBatch(y, setup.price, x, surplus, welfare, surplus[:, 0], lam,
                          derivative, None, residual)

    def _finish(self, setup: InnerSetup, x: np.ndarray, lam: np.ndarray
                ) -> InnerBatch:
        """Welfare, total derivative and residual of allocations ``x`` (alpha < inf)."""
        player, p2 = self.player, setup.price_column
        xbar, weight, floor = setup.xbar, setup.weight, setup.floor
        infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
        surplus = self._U(x) - p2 * x
        welfare = welfare_of(player, surplus, weight, floor, setup.priced_out)
        welfare = np.where(infeasible, -np.inf, welfare)
        # Coefficient w phi'(s + e) + sigma: lambda / (U' - p) wherever x_i > 0
        # (interior: stationarity; at xbar: it defines sigma_i).
        slope_u = self._dU(x) - p2
        with _QUIET:
            interior = weight * self.fairness.dphi(np.maximum(surplus + floor, 0.0))
            at_bound = lam[:, None] / slope_u
            coef = np.where(x >= xbar * (1 - 1e-12), at_bound, interior)
            coef = np.where(x > 0, coef, 0.0)
            derivative = lam + setup.price_slope * price_sensitivity(x, coef)
        derivative = np.where(infeasible | ~np.isfinite(welfare), np.nan, derivative)
        residual = optimality_residual(player, setup.y, setup.price, x, lam, xbar,
                                       weight, floor)
        residual = settled_residual(
            residual, allocation_error(x, setup.y, xbar), welfare, setup.y, setup.cap,
            forced_rows(player, setup.y, setup.cap, setup.priced_out))
        return InnerBatch(setup.y, setup.price, x, surplus, welfare,
                          surplus.sum(axis=1), lam, derivative, None, residual)

    # -- max-min ----------------------------------------------------------------
    def _level_interval(self, level, price, xbar):
        """[lo_i, hi_i]: the x in [0, xbar_i] with s_i(x) >= level (level > 0)."""
        if self._all_quadratic:
            q = self._b - price
            a = self._a
            disc = q * q - 4 * a * level
            root = np.sqrt(np.maximum(disc, 0.0))
            lo = np.clip((q - root) / (2 * a), 0.0, xbar)
            hi = np.clip((q + root) / (2 * a), 0.0, xbar)
            # At the peak level disc is 0 up to rounding: keep that one-point interval.
            empty = disc < -1e-12 * q * q
            return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)
        # Generic: the surplus is concave; bisect each side of its peak.
        peak = self._peak(price, xbar)
        s_peak = self._U(peak) - price * peak
        empty = s_peak < level
        lo = self._bisect_surplus(level, price, np.zeros_like(peak), peak, rising=True)
        hi = self._bisect_surplus(level, price, peak, xbar, rising=False)
        return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)

    def _peak(self, price, xbar):
        """Consumption where member i's surplus peaks (U' = p), within [0, xbar]."""
        if self._all_quadratic:
            return np.clip((self._b - price) / self._two_a, 0.0, xbar)
        # Bisection: the peak is where s is flattest, so Newton's x there (~1e-10
        # off, measured on log members) moves allocations that sit at their peak.
        lo, hi = np.zeros_like(xbar), xbar.copy()
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            up = self._dU(mid) - price > 0
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        return 0.5 * (lo + hi)

    def _bisect_surplus(self, level, price, lo, hi, rising):
        """The x in [lo, hi] where s_i crosses ``level`` on the side of the peak
        where s rises (``rising``) or falls; the side where s >= level. Bisection:
        Newton crawls here, since the roots near a peak are nearly double."""
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = self._U(mid) - price * mid >= level
            if rising:
                lo, hi = np.where(above, lo, mid), np.where(above, mid, hi)
            else:
                lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        return hi if rising else lo

    def _level_problem(self, setup: InnerSetup) -> "_LevelProblem":
        """Rows' data of the max-min level search, with the top level t_hi (the
        smallest peak surplus plus floor among the counted members)."""
        xbar, floor = setup.xbar, setup.floor
        counted = setup.weight > 0  # under strict, priced-out members count (t = 0)
        s_max = np.where(xbar > 0, self._max_surplus(setup.price_column, xbar), 0.0)
        t_hi = np.where(counted, s_max + floor, np.inf).min(axis=1)
        t_hi = np.maximum(np.where(np.isfinite(t_hi), t_hi, 0.0), 0.0)
        return _LevelProblem(setup.y, setup.price_column, xbar, floor, counted, s_max,
                             t_hi)

    def _level_bounds(self, lp: "_LevelProblem", t: np.ndarray):
        """Each member's interval [lo_i, hi_i] at level t, and the free members."""
        # Capped at the peak surplus: at t = t_hi rounding would otherwise make
        # the binding member's one-point interval empty.
        need = np.minimum(np.maximum(t[:, None] - lp.floor, 0.0), lp.s_max)
        lo_i, hi_i = self._level_interval(need, lp.p2, lp.xbar)
        # A member whose requirement is <= 0 may take anything in [0, xbar].
        free = (need <= 0) | ~lp.counted
        # Empty intervals (NaN) read as [0, 0]; np.where, not np.nan_to_num, which
        # costs ~10 us a call and ran ~15 times per max-min solve.
        lo_i = np.where(free, 0.0, np.where(np.isnan(lo_i), 0.0, lo_i))
        hi_i = np.where(free, lp.xbar, np.where(np.isnan(hi_i), 0.0, hi_i))
        return lo_i, hi_i, free

    def _top_level(self, lp: "_LevelProblem") -> np.ndarray:
        """Level t*: the largest t in [0, t_hi] with sum lo_i(t) <= y <= sum hi_i(t),
        i.e. min(t_hi, root of sum hi_i(t) = y, root of sum lo_i(t) = y); both sums
        are monotone in t (uncounted members span [0, xbar] whatever t is)."""
        y, p2 = lp.y, lp.p2

        def level_slopes(x, free):
            # d x / d t = 1 / s'(x) on either side of a member's surplus peak.
            with _QUIET:
                d = 1.0 / (self._dU(x) - p2)
            return np.where(free, 0.0, d)

        def upper(t):
            lo_i, hi_i, free = self._level_bounds(lp, t)
            return hi_i.sum(axis=1) - y, level_slopes(hi_i, free).sum(axis=1), None

        def lower(t):
            lo_i, hi_i, free = self._level_bounds(lp, t)
            return y - lo_i.sum(axis=1), -level_slopes(lo_i, free).sum(axis=1), None

        t_star = lp.t_hi.copy()
        top = np.sqrt(lp.t_hi)
        for residual in (upper, lower):
            at_top = residual(lp.t_hi)[0] >= 0  # feasible all the way up: no root
            if at_top.all():
                continue

            # In u = sqrt(t_hi - t): the member whose peak sets t_hi has
            # lo_i, hi_i = (q -+ sqrt(4 a (peak - t))) / 2a, linear in u, where in t
            # its slope is infinite at t_hi and Newton crawled (~11 steps a root
            # on Fig. 4 as max-min; ~4 in u). -r(t(u)) decreases in u.
            def in_u(u, residual=residual):
                r, slope, _ = residual(lp.t_hi - u * u)
                return -r, 2 * u * slope, None

            # Rows feasible up to t_hi keep t_hi (u = 0): they are not solved, and the
            # start is what an inactive row returns.
            root, _ = _decreasing_root(in_u, np.zeros(y.size), top.copy(),
                                       np.where(at_top, 0.0, np.sqrt(0.5) * top),
                                       ROOT_RTOL * y, active=~at_top)
            t_star = np.minimum(t_star,
                                np.where(at_top, lp.t_hi, lp.t_hi - root * root))
        return t_star

    def _solve_maxmin(self, setup: InnerSetup) -> InnerBatch:
        """Top level, its intervals, then total surplus within them."""
        lp = self._level_problem(setup)
        lo_i, hi_i, _ = self._level_bounds(lp, self._top_level(lp))
        x, nu = self._fill_total_surplus(lp.y, lp.p2, lo_i, hi_i)
        return self._finish_maxmin(setup, x, nu)

    def _finish_maxmin(self, setup: InnerSetup, x: np.ndarray, nu: np.ndarray
                       ) -> InnerBatch:
        """Welfare, tie-break derivative and residual of max-min allocations ``x``."""
        player, p2, xbar = self.player, setup.price_column, setup.xbar
        y, cap = setup.y, setup.cap
        surplus = self._U(x) - p2 * x
        welfare = welfare_of(player, surplus, setup.weight, setup.floor,
                             setup.priced_out)
        infeasible = y > cap * (1 + 1e-12)
        welfare = np.where(infeasible, -np.inf, welfare)
        nan = np.full(y.size, np.nan)
        # A counted priced-out member pins the level (at its floor) for every larger
        # y too, since the price only rises: the tie-break, an alpha = 0 problem on
        # [0, xbar], decides alone, and its derivative is nu + p' dT/dp with the
        # alpha = 0 coefficients (1 + sigma_i = nu / (U' - p) at xbar).
        counted = setup.weight > 0
        flat = (setup.priced_out & counted).any(axis=1) & (y < cap * (1 - 1e-14))
        slope_u = self._dU(x) - p2
        with _QUIET:
            coef = np.where(x >= xbar * (1 - 1e-12), nu[:, None] / slope_u, 1.0)
        coef = np.where(x > 0, coef, 0.0)
        tie_slope = nu + setup.price_slope * price_sensitivity(x, coef)
        residual = maxmin_residual(player, y, setup.price, x, xbar, setup.floor,
                                   setup.priced_out, nu)
        residual = settled_residual(residual, allocation_error(x, y, xbar), welfare,
                                    y, cap,
                                    forced_rows(player, y, cap, setup.priced_out))
        return InnerBatch(y, setup.price, x, surplus, welfare, surplus.sum(axis=1),
                          nan, nan.copy(),
                          np.where(flat & np.isfinite(nu), tie_slope, np.nan), residual,
                          tiebreak_multiplier=nu)

    def _members_at_marginal(self, marginal, lo, hi):
        """x_i in [lo_i, hi_i] with U_i'(x_i) = marginal_i (clipped to the ends):
        safeguarded Newton per member (U' decreases, U'' is its slope)."""
        marginal = np.broadcast_to(marginal, lo.shape)
        top = self._dU(lo) - marginal
        bottom = self._dU(hi) - marginal
        active = (top > 0) & (bottom < 0)
        start = np.where(top <= 0, lo, np.where(bottom >= 0, hi, 0.5 * (lo + hi)))

        def residual(z):
            return self._dU(z) - marginal, self._d2U(z), None

        atol = 1e-15 * np.maximum(np.abs(marginal), 1e-300)
        x, _ = _decreasing_root(residual, lo.copy(), hi.copy(), start, atol,
                                active=active)
        return x

    def _max_surplus(self, p2, xbar):
        peak = np.minimum(self._peak(p2, xbar), xbar)
        return self._U(peak) - p2 * peak

    def _fill_total_surplus(self, y, p2, lo_i, hi_i):
        """max sum_i s_i s.t. x in [lo, hi], sum x = y: water filling in nu.

        Returns the allocation and nu, the multiplier of sum x = y (U_i' - p = nu for
        members strictly inside their interval). Safeguarded Newton in nu, with
        dx_i/dnu = 1 / U_i''(x_i) for the members inside their interval; each
        member's x_i(nu) is a clip for quadratic members, else a safeguarded Newton
        on U_i'(x) - p = nu (it was 80 bisections per nu step and 200 nu
        bisections: ~20 ms a row for log members).
        """
        def at(nu):
            if self._all_quadratic:
                free = (self._b - p2 - nu[:, None]) / self._two_a
                return np.clip(free, lo_i, hi_i)
            return self._members_at_marginal(p2 + nu[:, None], lo_i, hi_i)

        span = np.abs(self._dU(hi_i) - p2).max() + np.abs(self._dU(lo_i) - p2).max() + 1
        nu_lo = np.full(y.size, -span)
        nu_hi = np.full(y.size, span)

        def residual(nu):
            x = at(nu)
            inside = (x > lo_i) & (x < hi_i)
            with _QUIET:
                slope = np.where(inside, 1.0 / self._d2U(x), 0.0).sum(axis=1)
            return x.sum(axis=1) - y, slope, x

        nu, x = _decreasing_root(residual, nu_lo, nu_hi, np.zeros(y.size),
                                 ROOT_RTOL * y)
        # Put the last rounding residue on members with room, so sum x = y exactly.
        resid = y - x.sum(axis=1)
        room = np.where(resid[:, None] > 0, hi_i - x, x - lo_i)
        share = room / np.maximum(room.sum(axis=1, keepdims=True), 1e-300)
        return x + resid[:, None] * share, nu
