"""Leximin max-min, the native inner solve: progressive filling, and how rows rank.

A leximin player (docs/model.md, section "Leximin") ranks allocations and purchases by
its members' levels s_i + e_i sorted in increasing order, lexicographically
(aggregame.leximin). Its inner allocation is progressive filling. Below the members'
total peak consumption (U_i'(x) = p) a common water level t rises: every member whose
floor e_i is below t gets the consumption on the rising side of its surplus where
s_i + e_i = t, capped at its peak (satiated members freeze there); priced-out members
have xbar_i = 0 and stay at their floor. Above the total peak the extra purchase must
go to the falling sides: a common ceiling T comes down, members whose peak level is
below T stay at their peaks, the others sit where s_i + e_i = T on the falling side,
capped at xbar_i. Either way the total is monotone in the level, found by bisection,
and the result is the leximin allocation of y (moving consumption between two members
either lowers the lower level or is impossible). Every row is checked by
aggregame.leximin's residual.

``LexPayoff`` and its helpers rank the rows of a batch as sorted vectors, for the best
response (solvers/equilibrium/leximin_response.py) and the certificate
(solvers/certify/leximin.py).

The Pyomo backend, the stacked KKT and the global certificate model max-min by an
epigraph and do not represent leximin: :func:`aggregame.leximin.refuse` gives them one
clear error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from aggregame.allocation import (
    CHECK_HALVINGS,
    RESIDUAL_TOL,
    InnerSetup,
    allocation_error,
    forced_rows,
    level_interval,
    quadratic_level_interval,
    quadratic_parameters,
    utility_of,
    welfare_of,
)
from aggregame.errors import InnerSolveError
from aggregame.leximin import (
    LEX_TIE_RTOL,
    compare,
    levels,
    leximin_residual,
    peaks,
)
from aggregame.players import Player
from aggregame.solvers.inner.batch import InnerBatch

LOG = logging.getLogger(__name__)

#: Bisection steps on the level: 2^-200 of the bracket is far below rounding, and
#: the loop stops as soon as every row's bracket is two floats wide.
_LEVEL_STEPS = 200


# -- inner allocation -----------------------------------------------------------
def _roots(player: Player, need: np.ndarray, price: np.ndarray, xbar: np.ndarray,
           peak: np.ndarray, closed_form: bool) -> tuple[np.ndarray, np.ndarray]:
    """Consumptions on the rising and falling sides of each surplus where s = need
    (NaN where the peak is below need; 0 and xbar where need <= 0)."""
    quad = quadratic_parameters(player) if closed_form else None
    if quad is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            lo, hi, _ = quadratic_level_interval(*quad, need, price, xbar)
        return lo, hi
    return level_interval(utility_of, player, need, price, xbar, peak,
                          CHECK_HALVINGS)


def _fill(player: Player, setup: InnerSetup, rows: np.ndarray, rising: bool,
          closed_form: bool) -> np.ndarray:
    """Progressive filling of the given rows on the rising (or falling) sides."""
    y, price = setup.y[rows], setup.price_column[rows]
    xbar, floor = setup.xbar[rows], setup.floor[rows]
    counted = setup.weight[rows] > 0
    peak, top = peaks(player, price, xbar)
    ceiling = np.where(counted, top + floor, -np.inf).max(axis=1)
    base = np.where(counted, floor, np.inf).min(axis=1)

    def members(level: np.ndarray) -> np.ndarray:
        need = level[:, None] - floor
        lo, hi = _roots(player, need, price, xbar, peak, closed_form)
        # NaN: the level is above this member's peak level (satiated at the peak).
        side = lo if rising else hi
        x = np.where(np.isnan(side), peak, side)
        x = np.minimum(x, peak) if rising else np.maximum(x, peak)
        return np.where(counted, x, 0.0)

    # The total rises with the level on the rising sides and falls on the falling
    # sides; below = the end whose total is at most y.
    below, above = (base, ceiling) if rising else (ceiling, base)
    for _ in range(_LEVEL_STEPS):
        mid = 0.5 * (below + above)
        short = members(mid).sum(axis=1) <= y
        below, above = np.where(short, mid, below), np.where(short, above, mid)
        if np.all(np.abs(above - below) <= 4 * np.spacing(np.abs(mid) + 1e-300)):
            break
    x_lo, x_hi = members(below), members(above)
    s_lo, s_hi = x_lo.sum(axis=1), x_hi.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.clip((y - s_lo) / (s_hi - s_lo), 0.0, 1.0)
    share = np.where(np.isfinite(share), share, 0.0)
    return x_lo + share[:, None] * (x_hi - x_lo)


def progressive_filling(player: Player, setup: InnerSetup,
                        closed_form: bool = True) -> np.ndarray:
    """Leximin allocations (G, N) of the purchases in ``setup`` (see module doc).

    ``closed_form=False`` uses the generic bisection roots even for quadratic
    members: the safe re-solve of a row whose residual fails.
    """
    y, xbar = setup.y, setup.xbar
    x = np.zeros_like(xbar)
    at_cap = y >= setup.cap
    x[at_cap] = xbar[at_cap]
    peak, _ = peaks(player, setup.price_column, xbar)
    total_peak = np.where(setup.weight > 0, peak, 0.0).sum(axis=1)
    inside = (y > 0) & ~at_cap
    for rising in (True, False):
        rows = np.flatnonzero(inside & ((y <= total_peak) == rising))
        if rows.size:
            x[rows] = _fill(player, setup, rows, rising, closed_form)
    return x


def solve_leximin(player: Player, setup: InnerSetup) -> InnerBatch:
    """InnerBatch of a leximin player: progressive filling, each row checked by its
    residual; a failing row is filled again with bisection roots, and raises
    InnerSolveError if that fails too.

    ``welfare`` is the smallest level (the first sorted component) and
    ``tiebreak`` the total surplus, for callers that read a scalar; searches
    compare the whole sorted vector (:func:`batch_levels`).
    """
    x = progressive_filling(player, setup)
    residual = _residual(player, setup, x)
    bad = np.flatnonzero(~(residual <= RESIDUAL_TOL))
    if bad.size:
        part = setup.take(bad)
        LOG.info("player %r: progressive filling at %d purchase(s) has residual up "
                 "to %.3g; filling again with bisection roots", player.name,
                 bad.size, float(np.max(residual[bad])))
        x[bad] = progressive_filling(player, part, closed_form=False)
        residual[bad] = _residual(player, part, x[bad])
        _split_where_forced(player, setup, x, residual)
        worst = int(np.argmax(np.nan_to_num(residual, nan=np.inf)))
        if not residual[worst] <= RESIDUAL_TOL:
            raise InnerSolveError(
                f"inner problem of player '{player.name}' at purchase y = "
                f"{setup.y[worst]:.17g} (price {setup.price[worst]:.6g}): no leximin "
                f"allocation with residual below {RESIDUAL_TOL:g} (got "
                f"{residual[worst]:.3g})")
    surplus = player.evaluate("U", x) - setup.price_column * x
    welfare = welfare_of(player, surplus, setup.weight, setup.floor, setup.priced_out)
    infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
    welfare = np.where(infeasible, -np.inf, welfare)
    nan = np.full(setup.y.size, np.nan)
    return InnerBatch(setup.y, setup.price, x, surplus, welfare, surplus.sum(axis=1),
                      nan, nan.copy(), None, residual)


def _split_where_forced(player: Player, setup: InnerSetup, x: np.ndarray,
                        residual: np.ndarray) -> None:
    """Rows that still fail and whose members are priced in by rounding only (or
    one alone: ``forced_rows``) get y split in proportion to the capacities: the
    filling's level arithmetic is rounding there, and any split within the bounds
    is as good as another (the member alone takes all of y)."""
    forced = forced_rows(player, setup.y, setup.cap, setup.priced_out, setup.price)
    rows = np.flatnonzero(forced & ~(residual <= RESIDUAL_TOL) & (setup.cap > 0))
    if rows.size:
        share = setup.xbar[rows] / setup.cap[rows, None]
        x[rows] = np.minimum(setup.y[rows, None] * share, setup.xbar[rows])
        residual[rows] = _residual(player, setup.take(rows), x[rows])


def _residual(player: Player, setup: InnerSetup, x: np.ndarray) -> np.ndarray:
    res = leximin_residual(player, setup.y, setup.price, x, setup.xbar, setup.floor,
                           setup.weight > 0)
    # A row with one member priced in beyond rounding has one allocation.
    forced = forced_rows(player, setup.y, setup.cap, setup.priced_out, setup.price)
    res = np.where(forced, allocation_error(x, setup.y, setup.xbar), res)
    infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
    return np.where(infeasible, 0.0, res)


def batch_levels(player: Player, batch: InnerBatch) -> np.ndarray:
    """Sorted levels of every row of ``batch``; an infeasible purchase (J = -inf)
    gets -inf everywhere, so it loses to any feasible one."""
    out = levels(player, batch.surplus, batch.price)
    return np.where(np.isneginf(batch.welfare)[:, None], -np.inf, out)


# -- payoffs compared as sorted vectors -------------------------------------------
@dataclass(frozen=True)
class LexPayoff:
    """A purchase, its sorted levels, and the scalars callers read."""

    y: float
    levels: np.ndarray
    welfare: float
    tiebreak: float


def payoffs(player: Player, batch: InnerBatch) -> list[LexPayoff]:
    rows = batch_levels(player, batch)
    return [LexPayoff(float(y), row, float(w), float(t)) for y, row, w, t in
            zip(batch.y, rows, batch.welfare, batch.tiebreak)]


def best_of(cands: list[LexPayoff], atol: float) -> int:
    """Index of the lexicographically best payoff; the first one wins ties."""
    if atol == 0.0:
        rows = np.array([c.levels for c in cands])
        if not np.isnan(rows).any():
            return _exact_best(rows)
    best = 0
    for k, c in enumerate(cands):
        if compare(c.levels, cands[best].levels, atol) > 0:
            best = k
    return best


def _exact_best(rows: np.ndarray) -> int:
    """First row of the lexicographic maximum without tolerance, column by column:
    exact ties are an equivalence, so the rows left after every column are the
    maxima, and the scan of ``best_of`` would keep the first of them."""
    left = np.arange(rows.shape[0])
    for column in rows.T:
        values = column[left]
        left = left[values == values.max()]
        if left.size == 1:
            break
    return int(left[0])


def tie_tolerance(cands: list[LexPayoff]) -> float:
    """The relative tolerance of level comparisons (LEX_TIE_RTOL of the levels
    compared, whatever the candidates)."""
    return LEX_TIE_RTOL


def local_maxima(cands: list[LexPayoff], atol: float, count: int) -> list[int]:
    """Up to ``count`` samples (in purchase order) no worse than both neighbours,
    best first."""
    n = len(cands)
    peaks_ = [k for k in range(n)
              if (k == 0 or compare(cands[k].levels, cands[k - 1].levels, atol) >= 0)
              and (k == n - 1 or compare(cands[k].levels, cands[k + 1].levels,
                                         atol) >= 0)]
    chosen: list[int] = []
    while peaks_ and len(chosen) < count:
        k = peaks_[best_of([cands[i] for i in peaks_], atol)]
        chosen.append(k)
        peaks_.remove(k)
    return chosen
