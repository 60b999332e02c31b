"""The optimality residual of an inner allocation, and the evidence of a row.

The residual is how the backends prove each row of a batch: it is measured in units
of allocation, relative to the capacity sum_i xbar_i, so 1e-6 means the same for
every alpha (a stationarity gap in units of marginal welfare would be multiplied by
(s + e)^-alpha, i.e. by 10^200 at alpha = 100). It reads the allocation and its
multiplier only, never how a backend found them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aggregame.allocation.members import (
    CHECK_HALVINGS,
    counted_members,
    evaluate,
    level_interval,
    marginal_of,
    quadratic_level_interval,
    quadratic_parameters,
    stationarity_step,
    surplus_peak,
    utility_of,
)
from aggregame.allocation.rows import (
    allocation_error,
    bounds_violation,
    forced_rows,
    inner_setup,
    welfare_of,
)

if TYPE_CHECKING:
    from aggregame.players import Game, Player

#: not a solution: the backend re-solves it by a safe method or raises.
RESIDUAL_TOL = 1e-6
#: A purchase within this of the capacity (relative) leaves the members surpluses
#: below their rounding: a payoff of -inf there (viable, strict) is not a failure.
NEAR_CAPACITY_RTOL = 1e-12
#: Ulps of max(U', p) that the rounding of U' - p and of the multiplier's own
#: rounding amount to, in a member's stationarity step (``optimality_residual``).
STEP_ROUNDING_ULPS = 16.0
#: Relative step of the level used to test that a max-min level is the largest one.
LEVEL_PROBE_RTOL = 1e-7


def settled_residual(residual: np.ndarray, error: np.ndarray, welfare: np.ndarray,
                     y: np.ndarray, cap: np.ndarray, forced: np.ndarray) -> np.ndarray:
    """The residual a row carries: 0 for a purchase above the capacity (J = -inf,
    nothing to prove); the allocation's error alone (balance, bounds) for a forced
    row (``forced_rows``) and for a row whose J is -inf.

    J = -inf between 0 and the capacity (viable, strict, alpha >= 1) means a
    counted member at zero surplus. Optimal allocations keep every surplus
    positive, but a surplus can be below its own rounding (a member barely priced
    in, w log(1 + x) with x ~ 1e-9; within NEAR_CAPACITY_RTOL of the capacity), and
    a residual in allocation units cannot tell that from a solver's failure: the
    certificate cross-checks such rows with another solver
    (solvers/certify/scan.py, ``_Deviations.proved``).
    """
    out = np.where(forced | np.isneginf(welfare), error, residual)
    return np.where(y > cap * (1 + 1e-12) + 1e-300, 0.0, out)


def optimality_residual(player: Player, y: np.ndarray, price: np.ndarray,
                        x: np.ndarray, lam: np.ndarray, xbar: np.ndarray,
                        weight: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """KKT residual of each row (alpha < inf), in allocation units over the capacity.

    Balance |sum x - y|, bounds 0 <= x <= xbar, and stationarity: member i's Newton
    step toward g_i(x_i) = lambda, (lambda - g_i) / g_i', where
    g_i = w phi'(s + e)(U' - p) is its marginal welfare. Written as
    (lambda / (w phi') - (U' - p)) / (U'' - alpha (U' - p)^2 / (s + e)), which never
    forms phi' alone, so it stays finite for any alpha. The step is projected onto
    [0, xbar_i]: at x_i = 0 only g_i > lambda violates, at xbar_i only g_i < lambda.
    Members with weight 0 must sit at 0 (their bounds).
    """
    f = player.fairness
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    balance = np.abs(x.sum(axis=-1) - y)
    bounds = bounds_violation(x, xbar)
    slope = evaluate(player, "dU", x) - p2
    curvature = evaluate(player, "d2U", x)
    level = np.maximum(evaluate(player, "U", x) - p2 * x + floor, 1e-300)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        step = stationarity_step(lam[:, None], x, xbar, weight, level, slope,
                                 curvature, f.alpha)
        # What rounding alone moves the step by: U' - p is known to a few ulps of
        # max(U', p), and the step divides it by at least |U''|. A member priced in
        # by a few ulps has a step that is all rounding; it is not a violation.
        rounding = STEP_ROUNDING_ULPS * np.finfo(float).eps * np.maximum(
            np.abs(slope + p2), np.abs(p2)) / np.abs(curvature)
        excess = np.maximum(np.abs(step) - rounding, 0.0)
    # After the clip a step is finite or NaN (no finite step): NaN counts as an
    # infinite violation (np.where: np.nan_to_num costs five array passes).
    stationarity = np.where(np.isnan(step), np.inf, excess).max(axis=-1)
    out = np.maximum(np.maximum(balance, bounds), stationarity) / cap
    return np.where(np.isfinite(lam), out, np.maximum(balance, bounds) / cap)


def maxmin_residual(player: Player, y: np.ndarray, price: np.ndarray, x: np.ndarray,
                    xbar: np.ndarray, floor: np.ndarray, priced_out: np.ndarray,
                    nu: np.ndarray | None = None,
                    level_step: float | None = None) -> np.ndarray:
    """Residual of a max-min row: balance and bounds (allocation units over the
    capacity), and 1 where a level higher than the allocation's by LEVEL_PROBE_RTOL
    is feasible (the level is then not the largest: not a solution).

    With ``nu`` (each row's multiplier of sum x = y in the total-surplus stage)
    also the tie-break's optimality: within the intervals where every counted
    member keeps the allocation's level, each member's Newton step toward
    U_i' - p = nu, projected onto its interval (members held at an end with the
    right sign do not move), in allocation units over the capacity. Without it
    (a backend that gives no nu) the total surplus is not checked, and the level
    alone is: then an allocation at the right level but with too little total
    surplus (a worst-first fill) passes.

    ``level_step`` (absolute) replaces LEVEL_PROBE_RTOL times the members' largest
    peak level as the probe's step: the certificate's proof asks it of its own
    scale, which can be thousands of times smaller (a probe step 0.5 of a level
    too long can step over a regret of 1e-4).

    The level test does not use the backends' level roots: plain bisection on each
    member's surplus, or for quadratic members the closed form of
    ``quadratic_level_interval`` (written here, tested against the bisection), so a
    wrong level root cannot pass it. Where a priced-out member pins the top level at
    its floor (0 under strict), a level below it by rounding is still the largest,
    so the probe step is at least the surpluses' rounding.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _maxmin_residual(player, y, price, x, xbar, floor, priced_out,
                               level_step)
        if nu is None:
            return out
        return np.maximum(out, _tiebreak_residual(player, price, x, xbar, floor,
                                                  priced_out, nu))


def _tiebreak_residual(player, price, x, xbar, floor, priced_out, nu):
    """The total-surplus stage's projected Newton steps (see ``maxmin_residual``)."""
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    counted = counted_members(player, priced_out)
    level = np.where(counted, evaluate(player, "U", x) - p2 * x + floor,
                     np.inf).min(axis=-1)
    need = np.where(counted, level[:, None] - floor, -np.inf)
    quad = quadratic_parameters(player)
    if quad is not None:
        lo, hi, _ = quadratic_level_interval(*quad, need, p2, xbar)
    else:
        peak = surplus_peak(marginal_of, player, p2, np.zeros_like(xbar), xbar,
                            CHECK_HALVINGS)
        lo, hi = level_interval(utility_of, player, need, p2, xbar, peak,
                                CHECK_HALVINGS)
    # x keeps its own level, so it lies in its interval; rounding may put an end a
    # hair inside (or make the binding member's one-point interval empty).
    lo = np.minimum(np.where(np.isnan(lo), x, lo), x)
    hi = np.maximum(np.where(np.isnan(hi), x, hi), x)
    step = (nu[:, None] - (evaluate(player, "dU", x) - p2)) / evaluate(player, "d2U", x)
    step = np.minimum(np.maximum(step, lo - x), hi - x)
    return np.where(np.isnan(step), np.inf, np.abs(step)).max(axis=-1) / cap


def _maxmin_residual(player, y, price, x, xbar, floor, priced_out, level_step=None):
    p2 = np.asarray(price, dtype=float)[:, None]
    cap = np.maximum(xbar.sum(axis=-1), 1e-300)
    out = np.maximum(np.abs(x.sum(axis=-1) - y), bounds_violation(x, xbar)) / cap
    counted = counted_members(player, priced_out)
    surplus = evaluate(player, "U", x) - p2 * x
    level = np.where(counted, surplus + floor, np.inf).min(axis=-1)
    quad = quadratic_parameters(player)
    if quad is not None:
        peaks = quadratic_level_interval(*quad, np.zeros_like(x), p2, xbar)[2]
    else:
        peak = surplus_peak(marginal_of, player, p2, np.zeros_like(xbar), xbar,
                            CHECK_HALVINGS)
        peaks = evaluate(player, "U", peak) - p2 * peak
    top = np.where(counted, peaks + floor, np.inf).min(axis=-1)
    # The level is known to the rounding of the surpluses, U(x) - p x: a probe
    # within that of the level tests nothing (with top = 0 it would "find" a level
    # 1e-17 above an allocation whose level rounds to -1e-17).
    noise = 64 * np.finfo(float).eps * (np.abs(surplus) + p2 * x).max(axis=-1)
    # The level's scale is the members' surplus scale, not the top level itself,
    # which is 0 when a counted member is priced out (strict rule).
    scale = np.abs(peaks + floor).max(axis=-1)
    step = LEVEL_PROBE_RTOL * scale if level_step is None else level_step
    probe = level + np.maximum(step, noise)
    need = np.where(counted, probe[:, None] - floor, -np.inf)
    if quad is not None:
        lo, hi, _ = quadratic_level_interval(*quad, need, p2, xbar)
    else:
        lo, hi = level_interval(utility_of, player, need, p2, xbar, peak,
                                CHECK_HALVINGS)
    possible = ~np.isnan(lo).any(axis=-1) & (np.nansum(lo, axis=-1) <= y) & (
        y <= np.nansum(hi, axis=-1)) & np.isfinite(level) & (probe < top)
    return np.where(possible, np.maximum(out, 1.0), out)


@dataclass(frozen=True)
class Evidence:
    """What the definition says of given allocations (``allocation_evidence``).

    welfare, tiebreak : (G,) J and the total surplus, recomputed from x.
    residual : (G,) the row's residual (``settled_residual``), or None if not asked.
    balance : (G,) |sum x - y|, in allocation units.
    bounds : (G,) the largest violation of 0 <= x_i <= xbar_i, over the capacity.
    forced, at_capacity : (G,) ``forced_rows``, and y within NEAR_CAPACITY_RTOL of
        the capacity or above it.
    """

    welfare: np.ndarray
    tiebreak: np.ndarray
    residual: np.ndarray | None
    balance: np.ndarray
    bounds: np.ndarray
    forced: np.ndarray
    at_capacity: np.ndarray


def allocation_evidence(game: Game, j: int, y: np.ndarray, others_total: float,
                        x: np.ndarray, multiplier: np.ndarray,
                        residual: bool = True,
                        level_step: float | None = None) -> Evidence:
    """The definition's verdict on allocations ``x`` (G, N) of player j at purchases
    ``y``, computed from them alone: what a backend's rows claim, recomputed.
    ``multiplier`` is each row's lambda (alpha < inf) or nu (max-min: the
    total-surplus stage's), which the residual checks the allocation against.

    Stricter than the solvers' own residual where the claim cannot be checked:
    a row between 0 and the capacity with a finite J but no finite multiplier
    (alpha < inf; the solvers accept it where lambda overflows) is not proved, nor
    a max-min row without nu. ``residual=False`` skips the residual (payoffs only);
    ``level_step``: see ``maxmin_residual``.
    """
    player = game.players[j]
    setup = inner_setup(game, j, y, others_total)
    surplus = evaluate(player, "U", x) - setup.price_column * x
    welfare = welfare_of(player, surplus, setup.weight, setup.floor, setup.priced_out)
    infeasible = setup.y > setup.cap * (1 + 1e-12) + 1e-300
    welfare = np.where(infeasible, -np.inf, welfare)
    forced = forced_rows(player, setup.y, setup.cap, setup.priced_out, setup.price)
    res = None
    if residual:
        if player.fairness.is_maxmin:
            res = maxmin_residual(player, setup.y, setup.price, x, setup.xbar,
                                  setup.floor, setup.priced_out, multiplier,
                                  level_step)
        else:
            res = optimality_residual(player, setup.y, setup.price, x, multiplier,
                                      setup.xbar, setup.weight, setup.floor)
        unproved = ~forced & np.isfinite(welfare) & ~np.isfinite(multiplier)
        res = settled_residual(np.where(unproved, np.inf, res),
                               allocation_error(x, setup.y, setup.xbar), welfare,
                               setup.y, setup.cap, forced)
    bounds = bounds_violation(x, setup.xbar) / np.maximum(setup.cap, 1e-300)
    return Evidence(welfare, surplus.sum(axis=-1), res, np.abs(x.sum(axis=-1) - y),
                    bounds, forced, setup.y >= setup.cap * (1 - NEAR_CAPACITY_RTOL))
