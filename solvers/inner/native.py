"""Native inner backend: numpy, batched over purchases, with compiled rows first.

``NativeInner`` solves one player's inner problem for a batch of purchases. Rows go
through the compiled kernels (solvers/inner/compiled/) where they take the player;
a row they leave above RESIDUAL_TOL, and every row where they do not, is solved
with numpy: water filling in lambda for alpha < inf (solvers/inner/water_filling.py),
in the level for max-min read as total surplus (solvers/inner/level_filling.py),
progressive filling for leximin (solvers/inner/leximin.py). Every numpy row is
checked by its optimality residual, and a row above RESIDUAL_TOL is solved again by
the safe bisection of solvers/inner/safe.py, or raises InnerSolveError.
"""

from __future__ import annotations

import logging
import math
from dataclasses import fields

import numpy as np

from aggregame.allocation import RESIDUAL_TOL, InnerSetup, inner_setup, purchase_prices
from aggregame.errors import InnerSolveError
from aggregame.players import Game
from aggregame.solvers.inner import compiled as kernels
from aggregame.solvers.inner.batch import InnerBatch
from aggregame.solvers.inner.level_filling import LevelFilling
from aggregame.solvers.inner.leximin import solve_leximin
from aggregame.solvers.inner.malloc import keep_freed_arrays
from aggregame.solvers.inner.member_arrays import MemberArrays
from aggregame.solvers.inner.safe import lambda_allocations, maxmin_allocation
from aggregame.solvers.inner.water_filling import LambdaFilling, WarmPath

LOG = logging.getLogger(__name__)

#: Largest (purchases x members) block solved at once: 2^20 doubles are 8 MB per
#: array, and a solve keeps a few dozen arrays alive.
CHUNK_ELEMENTS = 2**20


def _rows_of(others_total, rows):
    """The others' total of the selected rows: one number for every row, or an
    array of one per row (a search over the total holds each row's price)."""
    return others_total[rows] if np.ndim(others_total) else others_total


class NativeInner:
    """Inner problem of ``game.players[index]`` solved with numpy, batched over y."""

    #: Evaluating many purchases in one call costs about as much as one: searches
    #: (golden section for max-min) may batch their probes.
    batched = True

    def __init__(self, game: Game, index: int, compiled: bool = True,
                 like: "NativeInner | None" = None) -> None:
        """``compiled=False`` keeps this player on numpy even where the compiled
        kernels could solve it (the certificate's second opinion, and tests).
        ``like``: a solver of the same player whose member arrays this one shares
        (they are read only); its starts stay its own."""
        self.game = game
        self.index = index
        self.player = game.players[index]
        self.fairness = self.player.fairness
        self._warm = WarmPath()
        members = MemberArrays(self.player) if like is None else like._lambda.members
        self._lambda = LambdaFilling(members, self._warm)
        self._levels = LevelFilling(members)
        #: The compiled kernels' form of the player, where they solve it (None:
        #: numpy alone: numba not installed, or a family the kernels do not know).
        if like is not None:
            self._compiled = like._compiled if compiled else None
        else:
            self._compiled = kernels.CompiledPlayer(self.player) if (
                compiled and kernels.supports(self.player)) else None
        keep_freed_arrays(self.player.size)

    @property
    def compiled(self) -> bool:
        """True when rows go through the compiled kernels first."""
        return self._compiled is not None

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

    def carry(self, batch: InnerBatch) -> None:
        """Start the next call from ``batch``'s last row strictly above y = 0 with
        a finite multiplier: a caller that solves a long sorted grid in chunks
        (the certificate at 10^6 members) then starts each chunk where the last
        one ended, as a single call would have."""
        inside = np.flatnonzero((batch.y > 0) & np.isfinite(batch.multiplier))
        if inside.size and batch.x.shape[1] > 1:
            k = int(inside[-1])
            self._warm.remember(float(batch.y[k]), float(batch.multiplier[k]),
                                batch.x[k:k + 1].copy())

    def _solve_compiled(self, y: np.ndarray, others_total: float,
                        fixed_price: float | None) -> InnerBatch:
        """Rows through the compiled kernels; a row whose residual is above
        RESIDUAL_TOL is solved again by the numpy path below (and there, if need
        be, by the safe bisection)."""
        price, slope = purchase_prices(self.game, y, others_total, fixed_price)
        # The kernel starts the first row strictly inside (0, cap) from the guess
        # (rows at the ends are forced): a best response's batch is (0, y_max,
        # current, ...), and a guess extrapolated to y = 0 is no start at all.
        first = float(y[0])
        if y.size > 1:  # (single rows, most calls, need no search)
            inside = np.flatnonzero((y > 0) & (y < y.max()))
            first = float(y[inside[0]]) if inside.size else first
        guess, start = (None, None) if self.fairness.is_maxmin else self._warm.guess(
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
            self._warm.remember(float(y[0]), float(batch.multiplier[0]), batch.x)
        return batch

    def _solve_numpy(self, y: np.ndarray, others_total: float,
                     fixed_price: float | None) -> InnerBatch:
        """Rows by numpy, in chunks of at most CHUNK_ELEMENTS (purchases x members),
        each checked by its residual and re-solved safely if it fails. Infinities
        and NaNs are expected on the way (phi' at s = 0, 1 / g' at a bound) and
        handled, so numpy's warnings are off."""
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

    def _solve(self, setup: InnerSetup) -> InnerBatch:
        if self.fairness.is_leximin:  # progressive filling (solvers/inner/leximin.py)
            return solve_leximin(self.player, setup)
        if self.fairness.is_maxmin:
            return self._levels.solve(setup)
        return self._lambda.solve(setup)

    def _resolve_safely(self, batch: InnerBatch, setup: InnerSetup,
                        rows: np.ndarray) -> None:
        """Replace the given rows of ``batch`` by the safe method's solutions (the
        rows of alpha < inf solved together: the bisection is row by row, its
        arithmetic batched)."""
        LOG.info("player %r: fast inner solve has residual above %g at %d purchase(s) "
                 "(y = %s); re-solving by bisection", self.player.name, RESIDUAL_TOL,
                 rows.size, ", ".join(f"{v:.17g}" for v in setup.y[rows[:5]]))
        some = setup.take(rows)
        if self.fairness.is_maxmin:
            solved = [maxmin_allocation(self.player, float(some.y[k]),
                                        float(some.price[k]), some.xbar[k],
                                        some.floor[k], some.priced_out[k])
                      for k in range(rows.size)]
            x = np.array([s[0] for s in solved])
            fixed = self._levels.finish(some, x, np.array([s[1] for s in solved]))
        else:
            x, lam = lambda_allocations(self.player, some.y, some.price, some.xbar,
                                        some.weight, some.floor)
            fixed = self._lambda.finish(some, x, lam)
        failed = np.flatnonzero(~(fixed.residual <= RESIDUAL_TOL))
        if failed.size:
            k = int(failed[0])
            raise InnerSolveError(
                f"inner problem of player '{self.player.name}' at purchase "
                f"y = {float(some.y[k])!r} (price {float(some.price[k])!r}): no "
                f"allocation with optimality residual below {RESIDUAL_TOL:g} "
                f"(fast path {batch.residual[rows[k]]:.3g}, bisection {fixed.residual[k]:.3g})")
        batch.put(rows, fixed)
