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
aggregame.allocation (the marginal welfare and its slope, a member's response to a
multiplier, the surplus peak and level intervals, the residual's stationarity
step). numba compiles those lines for scalars (``jit.share``); numpy broadcasts them
over arrays.

Every row leaves with the optimality residual of aggregame.allocation (the same
formula, compiled, evaluated on the allocation apart from the solver); NativeInner
re-solves rows above tolerance with the numpy path and its safe bisection, and the
certificate re-proves the rows it used with numpy (solvers/certify/scan.py).

Loops over members are compiled with alpha a constant where it is 0, 1, 0.5 or 2
(``jit(inline=True)`` bodies called from a branch on alpha): the branches of phi,
phi' and ``power`` then fold away and the loops vectorize, 2-7 times faster on 10^4
members. numba is optional: without it (or with AGGREGAME_JIT=0) ``ENABLED`` is
False and NativeInner runs numpy alone. Compiled functions are cached on disk
(numba's ``cache=True``), so only the first run on a machine compiles.

Modules: ``jit`` (numba, the cache, ``jit`` and ``share``), ``members`` (the family
dispatch and what one member does), ``rows`` (alpha < inf), ``maxmin`` (max-min
read as total surplus), ``leximin`` (progressive filling by breakpoints). Rows the
kernels take: every alpha and both readings of max-min, with any number of members
(one-member players included), for the families in ``FAMILY_CODES``.
"""

from __future__ import annotations

import glob
import logging
import math
import os

import numpy as np

from aggregame.players import Player
from aggregame.solvers.inner.compiled.jit import CACHE_DIR, ENABLED, numba
from aggregame.solvers.inner.compiled.leximin import solve_leximin_rows
from aggregame.solvers.inner.compiled.maxmin import solve_maxmin_rows
from aggregame.solvers.inner.compiled.members import (
    FAMILY_CODES,
    MIXED,
    PARAM_DTYPE,
    closed_form_columns,
)
from aggregame.solvers.inner.compiled.rows import solve_rows

__all__ = ["ENABLED", "FAMILY_CODES", "MIXED", "CompiledPlayer", "numba",
           "solve_leximin_rows", "solve_maxmin_rows", "solve_rows", "supports",
           "warm_up"]

LOG = logging.getLogger(__name__)


def supports(player: Player) -> bool:
    """True when the kernels solve this player's rows: members of known families
    (any alpha, either reading of max-min)."""
    return ENABLED and all(f.family in FAMILY_CODES for f in player.families)


def warm_up() -> None:
    """Load (or compile, once per machine) every kernel now, rather than in the
    middle of the first solve that needs it."""
    if not ENABLED:
        return
    from aggregame.fairness import Fairness
    from aggregame.utilities import LogUtility, QuadraticUtility, User

    members = (User("w0", QuadraticUtility(0.5, 3.0)), User("w1", LogUtility(2.0)))
    y, price, slope = np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.zeros(2)
    for fairness in (Fairness(1.0), Fairness("inf", maxmin="total-surplus"),
                     Fairness("inf", maxmin="leximin")):
        CompiledPlayer(Player("w", members, fairness)).solve(y, price, slope)


_ANNOUNCED: set[str] = set()


def _announce_compile(entry: str) -> None:
    """Say once per process that ``entry`` is about to be compiled (its cache holds
    nothing yet): the first solve on a machine takes 5-15 s, not milliseconds."""
    if entry in _ANNOUNCED:
        return
    _ANNOUNCED.add(entry)
    if CACHE_DIR is not None and glob.glob(os.path.join(
            CACHE_DIR, "**", f"*.{entry}-*.nbi"), recursive=True):
        return
    LOG.warning("compiling the native backend's kernels for this machine (%s; "
                "once, 5-15 s)%s", entry, "" if CACHE_DIR else
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
        self.leximin = f.is_leximin
        #: Whether a member in the minimum, priced in and priced out (the rule's).
        self.counts = (bool(f.rule.counted(np.array(False))),
                       bool(f.rule.counted(np.array(True))))
        (self.w_in, self.e_in), (self.w_out, self.e_out) = (
            f.member_terms(False), f.member_terms(True))
        # J = -inf once a member is priced out, where the rule says so.
        self.void_priced_out = f.rule.void_when_priced_out(f)
        #: b and a of quadratic members in closed form (``closed_form_columns``).
        self.closed = closed_form_columns(self.codes, self.params, f.alpha)
        #: The code every member shares, or MIXED (see MIXED).
        self.family = int(self.codes[0]) if player.size and np.all(
            self.codes == self.codes[0]) else MIXED
        self.size = player.size
        _announce_compile("solve_leximin_rows" if self.leximin else
                          "solve_maxmin_rows" if self.maxmin else "solve_rows")

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
        if self.leximin:
            x, surplus, welfare, tiebreak, residual = solve_leximin_rows(
                self.codes, self.params, self.u0, self.w_in, self.e_in, self.w_out,
                self.e_out, *self.counts, y, price, self.family)
            nan = np.full(y.size, np.nan)
            return x, surplus, welfare, tiebreak, nan, nan.copy(), None, residual, None
        if self.maxmin:
            x, surplus, welfare, tiebreak, tie, residual, nu = solve_maxmin_rows(
                self.codes, self.params, self.u0, self.w_in, self.e_in, self.w_out,
                self.e_out, y, price, slope, self.family)
            nan = np.full(y.size, np.nan)
            return x, surplus, welfare, tiebreak, nan, nan.copy(), tie, residual, nu
        start = np.empty(0) if x_start is None else _plain(x_start)
        x, surplus, welfare, tiebreak, lam, derivative, residual = solve_rows(
            self.codes, self.params, self.u0, self.alpha, self.w_in, self.e_in,
            self.w_out, self.e_out, self.void_priced_out, self.closed, y, price, slope,
            float(guess), start, self.family)
        return x, surplus, welfare, tiebreak, lam, derivative, None, residual, None
