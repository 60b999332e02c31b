"""Branch and bound over a player's feasible interval: what lies between samples.

Every interval between two neighbouring evaluated purchases gets an upper bound on the
gain any purchase inside it could have over the profile's own (solvers/certify/
bounds.py says why the bounds hold), in the component of the player's payoff that
decides (the payoff itself; max-min's level, or its total surplus where the level is
pinned; leximin's first component where the vectors can differ, after a test that
closes the intervals where no purchase reaches the profile's level at all). An
interval whose bound is below the target is closed; the others are split at their midpoints, all of
them evaluated in one batch, until every interval is closed (the regret is proved
below the target) or the budget is spent (the regret is bounded by the largest bound
left, or not at all).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aggregame.allocation import (
    counted_members,
    member_terms,
    quadratic_level_interval,
    quadratic_parameters,
)
from aggregame.solvers.certify.bounds import (
    PriceWindow,
    level_bound,
    linear_bound,
    member_sensitivity,
)
from aggregame.solvers.certify.payoffs import PayoffKind, Payoffs, levels_tie

#: Purchases the branch and bound evaluates per player at most...
MAX_BOUND_ROWS = 8192
#: ...and purchases x members (a row of a large aggregator costs its members).
MAX_BOUND_ELEMENTS = 2**26


@dataclass(frozen=True)
class BoundOutcome:
    """Largest proven relative gain over the profile (inf: none proven), whether
    every interval closed below the target, and the rows evaluated for it."""

    relative_bound: float
    closed: bool
    rows: int


@dataclass
class _Reference:
    """The profile's payoff in the quantities the bounds compare with."""

    welfare: float
    tiebreak: float
    pinned: bool
    count: int = 0          # leximin: members priced out (pinned at the floor)
    lowest: float = math.nan  # leximin: smallest level of the members priced in


def bound_regret(pay: Payoffs, target: float,
                 stop: Callable[[list[int]], bool] | None = None) -> BoundOutcome:
    """Branch and bound on ``pay``'s rows (row 0 is the profile's purchase) until
    every interval's relative gain bound is <= ``target`` or the budget is spent,
    or ``stop(new rows)`` says the rows just evaluated settle the verdict (no
    bound then: relative_bound inf)."""
    ref = _reference(pay, 0)
    ys = np.array(pay.rows.y)
    order = np.unique(ys, return_index=True)[1]
    left = order[:-1].tolist()
    right = order[1:].tolist()
    spent = 0
    budget = min(MAX_BOUND_ROWS, max(16, MAX_BOUND_ELEMENTS // max(pay.player.size, 1)))
    worst = 0.0
    while True:
        gains = _interval_gains(pay, ref, np.array(left), np.array(right), target)
        closed = gains <= target
        worst = max(worst, float(gains[closed].max(initial=0.0)))
        open_left = [a for a, c in zip(left, closed) if not c]
        open_right = [b for b, c in zip(right, closed) if not c]
        if not open_left:
            return BoundOutcome(worst, True, spent)
        mids = np.array([0.5 * (pay.rows.y[a] + pay.rows.y[b])
                         for a, b in zip(open_left, open_right)])
        splittable = (mids > np.array([pay.rows.y[a] for a in open_left])) & (
            mids < np.array([pay.rows.y[b] for b in open_right]))
        if spent + mids.size > budget or not splittable.all():
            rest = float(gains[~closed].max())
            return BoundOutcome(max(worst, rest), False, spent)
        new = pay.evaluate(mids)
        spent += mids.size
        if stop is not None and stop(new):
            return BoundOutcome(math.inf, False, spent)
        left = [k for a, m in zip(open_left, new) for k in (a, m)]
        right = [k for m, b in zip(new, open_right) for k in (m, b)]


def _reference(pay: Payoffs, i: int) -> _Reference:
    r = pay.rows
    ref = _Reference(r.welfare[i], r.tiebreak[i], pay.pinned(r.y[i]))
    if pay.kind is PayoffKind.LEXIMIN:
        front = _Fronts.of(pay, [i])
        ref.count, ref.lowest = int(front.count[0]), float(front.lowest[0])
    return ref


def _interval_gains(pay: Payoffs, ref: _Reference, left: np.ndarray,
                    right: np.ndarray, target: float) -> np.ndarray:
    """Relative gain bound of each interval [y_left, y_right] over the profile."""
    r = pay.rows
    a = np.array([r.y[k] for k in left])
    b = np.array([r.y[k] for k in right])
    window = PriceWindow.of(pay.game, pay.others, a, b)
    # Payoffs of -inf (log of a zero surplus) and bounds of +inf are expected: the
    # gains read a NaN as no bound (``_relative``), so numpy's warnings are off.
    with np.errstate(invalid="ignore", over="ignore"):
        if pay.kind is PayoffKind.SCALAR:
            return _scalar_gains(pay, ref, left, a, b, window, target)
        if pay.kind is PayoffKind.MAXMIN:
            return _maxmin_gains(pay, ref, left, a, b, window)
        return _leximin_gains(pay, ref, left, a, b, window)


def _relative(gain: np.ndarray, span: float) -> np.ndarray:
    """Gains over the payoff's scale; a gain <= 0 is 0, any gain over a scale of 0
    (a flat payoff) infinite."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(gain <= 0, 0.0, gain / span if span > 0 else np.inf)
    return np.where(np.isnan(rel), np.inf, rel)


# -- alpha-fair (and every one-member player) --------------------------------------
def _scalar_gains(pay, ref, left, a, b, window, target) -> np.ndarray:
    r = pay.rows
    value = np.array([r.welfare[k] for k in left])
    lam = np.array([r.multiplier[k] for k in left])
    width = b - a
    span = pay.span("welfare")
    # First order where it closes the interval; the price term where it does not.
    upper = linear_bound(value, lam, width)
    tight = (_relative(upper - ref.welfare, span) > target) & np.isfinite(lam)
    if tight.any():
        sub = PriceWindow(window.low[tight], window.high[tight], window.slope[tight])
        sensitivity = _scalar_sensitivity(pay, lam[tight], a[tight], sub)
        with np.errstate(invalid="ignore"):
            slope = lam[tight] - sub.slope * sensitivity
        upper[tight] = linear_bound(value[tight], slope, width[tight])
    # J(a) = -inf or an infinite multiplier (y = 0 without a floor): the right end.
    bad = ~np.isfinite(upper) & (a == 0)
    for k in np.flatnonzero(bad):
        upper[k] = _right_end_bound(pay, float(a[k]), float(b[k]),
                                    float(window.low[k]))
    return _relative(upper - ref.welfare, span)


def _scalar_sensitivity(pay, lam, a, window) -> np.ndarray:
    """D_lo of each interval (see bounds.py): the purchase itself where the payoff is
    a total surplus (alpha = 0, and a one-member max-min player's level), the
    members' envelope bound otherwise."""
    fairness = pay.player.fairness
    if fairness.alpha == 0 or fairness.is_maxmin:
        return a.copy()
    priced_out = pay.player.marginal_at_zero[None, :] <= window.low[:, None]
    finite = np.isfinite(lam) & (lam > 0)
    out = np.zeros(lam.size)
    if finite.any():
        sub = PriceWindow(window.low[finite], window.high[finite],
                          window.slope[finite])
        out[finite] = member_sensitivity(pay.game, pay.j, lam[finite], sub,
                                         priced_out[finite])
    return out


def _right_end_bound(pay: Payoffs, a: float, b: float, price: float) -> float:
    """V(b, p_a) where the fixed-price payoff rises at b (so on all of [a, b]), else
    inf. One member: its payoff at x = b and price p_a; else a fixed-price solve."""
    if pay.one_member is not None:
        util = pay.player.members[0].utility
        rising = float(util.dU(b, util.params())) > price
        value = _one_member_value(pay, b, price)
    else:
        row = pay.inner.solve(np.array([b]), pay.others, fixed_price=price)
        rising = bool(row.multiplier[0] >= 0)
        value = float(row.welfare[0])
    return value if rising and not math.isnan(value) else math.inf


def _one_member_value(pay: Payoffs, y: float, price: float) -> float:
    util = pay.player.members[0].utility
    xbar = float(type(util).zero_surplus_consumption(np.array(price),
                                                      util.params()))
    if y > xbar:
        return -math.inf
    surplus = float(util.U(y, util.params())) - price * y
    return pay.one_member.welfare(surplus, bool(pay.player.marginal_at_zero[0]
                                                <= price))


# -- max-min, total-surplus reading -----------------------------------------------
def _maxmin_gains(pay, ref, left, a, b, window) -> np.ndarray:
    r = pay.rows
    out = np.empty(a.size)
    span_level, span_tb = pay.span("welfare"), pay.span("tiebreak")
    for n, (k, lo, hi) in enumerate(zip(left, a, b)):
        width = hi - lo
        if pay.pinned(float(lo)):
            level_tie = ref.pinned or levels_tie(pay.pinned_level, ref.welfare)
            if not level_tie:
                out[n] = 0.0  # the level is the floor there, below the profile's
                continue
            # Pinned: the total surplus over [0, xbar] decides, a total-surplus
            # payoff (alpha = 0): D_lo is the purchase itself.
            slope = r.multiplier[k] - window.slope[n] * lo
            upper = linear_bound(np.array([r.tiebreak[k]]), np.array([slope]),
                                 np.array([width]))[0]
            out[n] = _relative(np.array([upper - ref.tiebreak]), span_tb)[0]
            continue
        x, surplus, floor, counted = _row_members(pay, k)
        upper = level_bound(pay.player, float(lo), x, surplus, _window(window, n),
                            float(width), counted, floor)
        out[n] = _relative(np.array([upper - ref.welfare]), span_level)[0]
    return out


def _row_members(pay: Payoffs, k: int):
    """Row k's allocation, surpluses, floors and counted members."""
    batch, i = pay.rows.source[k]
    price = float(batch.price[i])
    priced_out = pay.player.marginal_at_zero <= price
    _, floor = member_terms(pay.player, priced_out[None, :])
    counted = counted_members(pay.player, priced_out[None, :])[0]
    return batch.x[i], batch.surplus[i], floor[0], counted


# -- leximin ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Fronts:
    """What the bounds of leximin rows read, one row each: members priced out and
    counted, the smallest level of the members priced in (inf: none), and the
    rows' members. The priced-out members sit at their floor, below every member
    priced in (whose surplus is >= 0), so the sorted vector starts with them: the
    first component that can differ between two rows is the smallest level of the
    members priced in, or a count of floors."""

    count: np.ndarray
    lowest: np.ndarray
    x: np.ndarray
    surplus: np.ndarray
    floor: np.ndarray
    inside: np.ndarray

    @classmethod
    def of(cls, pay: Payoffs, rows: list[int]) -> "_Fronts":
        source = [pay.rows.source[k] for k in rows]
        price = np.array([pay.rows.price[k] for k in rows])
        priced_out = pay.player.marginal_at_zero[None, :] <= price[:, None]
        _, floor = member_terms(pay.player, priced_out)
        counted = counted_members(pay.player, priced_out)
        surplus = np.array([batch.surplus[i] for batch, i in source])
        inside = counted & ~priced_out
        return cls(np.sum(counted & priced_out, axis=1),
                   np.where(inside, surplus + floor, np.inf).min(axis=1),
                   np.array([batch.x[i] for batch, i in source]), surplus, floor,
                   inside)


def _window(window: PriceWindow, n: int) -> tuple[float, float, float]:
    return float(window.low[n]), float(window.high[n]), float(window.slope[n])


def _leximin_gains(pay, ref, left, a, b, window) -> np.ndarray:
    out = np.empty(a.size)
    pin = pay.pinned_level
    fronts = _Fronts.of(pay, list(left))
    # The profile's component the interval compares with, and its value.
    same = fronts.count == ref.count
    column = np.where(same, ref.count, fronts.count)
    base = np.where(same, ref.lowest, pin)
    # Members priced out at the left row beyond the profile's: a floor where the
    # profile has its smallest level priced in.
    more = fronts.count > ref.count
    out[more] = 0.0 if ref.lowest > pin and not levels_tie(ref.lowest, pin) \
        else math.inf
    reach = ~more & fronts.inside.any(axis=1)
    out[~more & ~reach] = 0.0  # no member priced in: nothing above the floors
    beyond = np.zeros(a.size, dtype=bool)
    beyond[reach] = _out_of_reach(pay, fronts.inside[reach], fronts.floor[reach],
                                  a[reach], b[reach],
                                  PriceWindow(window.low[reach], window.high[reach],
                                              window.slope[reach]), base[reach])
    out[beyond] = 0.0
    for n in np.flatnonzero(reach & ~beyond):
        # A bound at or below ``base`` is no gain, whichever bound it is: the level
        # bound may stop at the first such one.
        upper = level_bound(pay.player, float(a[n]), fronts.x[n], fronts.surplus[n],
                            _window(window, n), float(b[n] - a[n]),
                            fronts.inside[n], fronts.floor[n], enough=float(base[n]))
        span = pay.span(int(column[n])) if column[n] < pay.player.size else 0.0
        out[n] = _relative(np.array([upper - base[n]]), span)[0]
    return out


#: Relative margin by which an interval must be out of reach (``_out_of_reach``), far
#: above the rounding of the roots and sums that decide it.
REACH_RTOL = 1e-9


def _out_of_reach(pay: Payoffs, inside: np.ndarray, floor: np.ndarray, a: np.ndarray,
                  b: np.ndarray, window: PriceWindow, base: np.ndarray
                  ) -> np.ndarray:
    """True for each interval [a, b] on which no purchase lifts every member priced
    in at a (``inside``, floors ``floor``) to ``base``: the first component that can
    differ then stays below the profile's, no gain. Decided without a level bound;
    quadratic members only.

    At price q member i reaches ``base`` from r_i(q), the lower root of
    U_i(x) - q x + e_i = base (0 where e_i >= base; none where its peak is below),
    increasing and convex in q with slope r_i / (U_i'(r_i) - q). The members priced
    out at a consume nothing at any higher price, so purchase y reaches ``base``
    only if sum_i r_i(p(y)) <= y, and p(y) >= p_a + p'_lo (y - a) gives
    sum_i r_i(p(y)) >= R + D (y - a) with R = sum_i r_i(p_a) and D = p'_lo sum_i
    r_i'(p_a). No y in [a, b] qualifies when R - a > max(0, (1 - D) (b - a)), or when
    a member cannot reach ``base`` even at p_a.
    """
    quad = quadratic_parameters(pay.player)
    out = np.zeros(a.size, dtype=bool)
    if quad is None or not a.size:
        return out
    qa, qb = quad
    price = window.low[:, None]
    need = base[:, None] - floor
    xbar = pay.player.zero_surplus_consumption(window.low)
    margin = REACH_RTOL * np.maximum(np.abs(base), np.finfo(float).tiny)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        root, _, top = quadratic_level_interval(qa, qb, need, price, xbar)
        never = np.any(inside & (top < need - margin[:, None]), axis=1)
        # A peak within the margin of ``base``: rounding decides, the bound must.
        unsure = np.any(inside & np.isnan(root) & ~(top < need - margin[:, None]),
                        axis=1)
        r = np.where(inside & ~np.isnan(root), root, 0.0)
        rise = qb - 2 * qa * r - price
        slope = np.where(r > 0, np.where(rise > 0, r / rise, np.inf), 0.0)
        total = r.sum(axis=1)
        d = window.slope * slope.sum(axis=1)
        room = np.where(d >= 1, 0.0, (1 - d) * (b - a))
        far = total - a > room + REACH_RTOL * np.maximum(total, b)
    # Members neither priced in nor out (none under the package's rules) could take
    # part of the purchase: not decided here.
    alone = np.all(inside | (pay.player.marginal_at_zero[None, :] <= price), axis=1)
    return alone & (never | (~unsure & far))
