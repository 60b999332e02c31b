"""Invariants over random games (hypothesis): the whole class, not hand-picked cases.

* A batch of purchases gives, member by member, what the same purchases give one at a
  time (the defect class behind a certified non-equilibrium: a batched max-min solve
  returned a lower level than the single one). Every row carries an optimality
  residual below tolerance.
* The Pyomo backend agrees with the native one on the same rows.
* A certified profile survives an independent search: no purchase on a fine grid
  of each player's feasible interval does better beyond the certificate tolerance.
"""

import math

import numpy as np
import pytest
from conftest import needs_ipopt
from hypothesis import event, given, settings
from hypothesis import strategies as st
from strategies import games, purchases, social_welfare_games

from aggregame.allocation import RESIDUAL_TOL, inner_setup
from aggregame.errors import InnerSolveError
from aggregame.leximin import with_maxmin_rule
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner.native import NativeInner

#: Batched and single solves agree to this, relative to the capacity (allocations)
#: or to the row's payoff scale (welfare): both are solved to ~1e-13.
SAME_RTOL = 1e-9


def _others(game, j, fraction):
    caps = [game.feasible_max(k, 0.0) for k in range(len(game.players)) if k != j]
    return fraction * float(sum(caps))


def _sensitivity(player, setup, k, s_a, s_b):
    """Bound on |J(s_a) - J(s_b)| for row k by the mean value theorem: phi' falls,
    so each member's term moves by at most w phi'(min(s_a, s_b) + e) |s_a - s_b|
    (max-min: the level by at most max |s_a - s_b|). Near the capacity under the
    viable rule s + e ~ 1e-13 and phi' ~ 1e26 at alpha = 2: surpluses equal to
    4e-14 give J apart by 5e-5 relative, and that is J's conditioning, not a
    solver disagreeing."""
    gap = np.abs(s_a - s_b)
    f = player.fairness
    if f.is_maxmin:
        return float(gap.max())
    low = np.maximum(np.minimum(s_a, s_b) + setup.floor[k], 0.0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.where(setup.weight[k] > 0, setup.weight[k] * f.dphi(low) * gap, 0.0)
    return float(np.sum(terms))


def _rounding(game, j, others, batch):
    """How far rounding alone moves J and the total surplus of these rows: each
    surplus s = U - p x is known to ~64 ulp of |U| + p x, and phi' carries that
    into J (1e-14 at J = 0.022, s + e ~ 1e-6, alpha = 0.5: phi' = 1e3 there)."""
    player = game.players[j]
    setup = inner_setup(game, j, batch.y, others)
    s_noise = 64 * np.finfo(float).eps * (np.abs(batch.surplus) + 2 * np.abs(
        setup.price_column * batch.x))
    f = player.fairness
    level = np.maximum(batch.surplus - s_noise + setup.floor, 1e-300)
    with np.errstate(over="ignore"):
        gain = 1.0 if f.is_maxmin else np.where(setup.weight > 0,
                                                setup.weight * f.dphi(level), 0.0)
    total = np.sum(gain * s_noise, axis=1) + np.sum(s_noise, axis=1)
    return float(np.max(total + 64 * np.finfo(float).eps * np.abs(
        np.nan_to_num(batch.welfare))))


def _assert_rows_equal(batch, singles, label, alpha, player=None, setup=None):
    # Allocations are compared on the scale of the feasible interval, as the residual
    # measures them: x = (b - p - lambda) / 2a cancels to ulp(b - p) / 2a absolute.
    scale = max(float(np.max(batch.y)), 1e-300)
    # Payoffs on the scale of their range over the rows, as the certificate does.
    finite = batch.welfare[np.isfinite(batch.welfare)]
    span = max(float(np.ptp(finite)) if finite.size else 0.0, 1e-300)
    s_scale = max(float(np.max(np.abs(batch.surplus))), 1e-300)
    for k, one in enumerate(singles):
        if np.isneginf(batch.welfare[k]) and np.isneginf(one.welfare[0]):
            continue  # J = -inf (strict rule): every allocation is optimal
        np.testing.assert_allclose(batch.x[k], one.x[0], rtol=0,
                                   atol=SAME_RTOL * scale + 1e-300, err_msg=label)
        w, v = batch.welfare[k], one.welfare[0]
        if np.all(np.abs(batch.surplus[k]) <= 1e-12 * s_scale):
            # At the capacity every surplus is 0 up to rounding (~1e-16 of U): under
            # the viable rule J = sum phi(s) and phi = 2 sqrt(s) at alpha = 0.5 turns
            # that rounding into J ~ 1e-8 either way. The allocations above agree;
            # J there is noise around phi(0) = 0, not a solver's answer.
            continue
        # Surpluses as the allocations allow: s_i moves by |U_i' - p| per unit of
        # x_i, and near the capacity (surpluses ~1e-12 of their scale at alpha = 5)
        # allocations equal to 5e-10 of it leave surpluses 6e-13 apart.
        moved_s = 0.0 if player is None else np.abs(
            player.evaluate("dU", batch.x[k]) - batch.price[k]) * SAME_RTOL * scale
        gap = np.abs(batch.surplus[k] - one.surplus[0])
        assert np.all(gap <= SAME_RTOL * s_scale + moved_s), (
            label, batch.surplus[k], one.surplus[0])
        if math.isfinite(w) or math.isfinite(v):
            # Equal surpluses, then phi: phi(z) = z^(1 - alpha) / (1 - alpha) turns a
            # relative rounding r of z (~1e-7 where s + e ~ 1e-6 is a difference of
            # terms ~0.1) into |1 - alpha| r in J (J ~ -4e23 at alpha = 5).
            gain = max(1.0, abs(1.0 - alpha)) if math.isfinite(alpha) else 1.0
            moved = 0.0 if player is None else 2 * _sensitivity(
                player, setup, k, batch.surplus[k], one.surplus[0])
            assert w == pytest.approx(v, rel=1e-6 * gain,
                                      abs=SAME_RTOL * span + moved), label


@pytest.mark.unit
@settings(max_examples=60)
@given(game=games(), fraction=st.floats(0.0, 1.0), data=st.data())
def test_native_batch_equals_one_at_a_time(game, fraction, data):
    j = data.draw(st.integers(0, len(game.players) - 1))
    others = _others(game, j, fraction)
    ys = purchases(game, j, others)
    batch = NativeInner(game, j).solve(ys, others)
    assert np.all(batch.residual <= RESIDUAL_TOL)
    singles = [NativeInner(game, j).solve(np.array([y]), others) for y in ys]
    player, setup = game.players[j], inner_setup(game, j, ys, others)
    alpha = player.alpha
    _assert_rows_equal(batch, singles, f"player {j}, others {others:g}", alpha,
                       player, setup)
    # The same object solving the rows one after another (warm state carried over)
    # gives the same as fresh objects.
    warm = NativeInner(game, j)
    _assert_rows_equal(batch, [warm.solve(np.array([y]), others) for y in ys[::-1]][::-1],
                       "warm-started single solves", alpha, player, setup)
    # And the compiled kernels (the default path where they apply) give what
    # numpy alone gives, row by row.
    numpy_only = NativeInner(game, j, compiled=False).solve(ys, others)
    assert np.all(numpy_only.residual <= RESIDUAL_TOL)
    _assert_rows_equal(batch, [numpy_only.take(np.array([k])) for k in range(ys.size)],
                       "numpy path", alpha, player, setup)


@pytest.mark.unit
@settings(max_examples=40)
@given(game=games(), fraction=st.floats(0.0, 1.0), data=st.data())
def test_total_surplus_maxmin_batch_equals_one_at_a_time_and_numpy(game, fraction,
                                                                    data):
    """The same invariants for max-min read as total surplus (the random games draw
    leximin, which only numpy solves): the compiled kernels' batches, their single
    rows, and numpy's rows agree."""
    game = with_maxmin_rule(game, "total-surplus")
    j = data.draw(st.integers(0, len(game.players) - 1))
    others = _others(game, j, fraction)
    ys = purchases(game, j, others)
    player, setup = game.players[j], inner_setup(game, j, ys, others)
    batch = NativeInner(game, j).solve(ys, others)
    assert np.all(batch.residual <= RESIDUAL_TOL)
    singles = [NativeInner(game, j).solve(np.array([y]), others) for y in ys]
    _assert_rows_equal(batch, singles, f"player {j}", player.alpha, player, setup)
    numpy_only = NativeInner(game, j, compiled=False).solve(ys, others)
    _assert_rows_equal(batch, [numpy_only.take(np.array([k])) for k in range(ys.size)],
                       "numpy path", player.alpha, player, setup)


@needs_ipopt
@pytest.mark.solver
@settings(max_examples=8)
@given(game=games(max_players=2), fraction=st.floats(0.0, 1.0), data=st.data())
def test_pyomo_batch_equals_one_at_a_time_and_native(game, fraction, data):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    # The total-surplus reading of max-min: the pyomo backend does not model leximin.
    game = with_maxmin_rule(game, "total-surplus")
    j = data.draw(st.integers(0, len(game.players) - 1))
    others = _others(game, j, fraction)
    ys = purchases(game, j, others)[1:-1:2]
    try:
        batch = PyomoInner(game, j).solve(ys, others)
        singles = [PyomoInner(game, j).solve(np.array([y]), others) for y in ys]
    except InnerSolveError:
        # Ipopt could not prove a row (badly scaled games, see the closing note of
        # issue 8): it must raise, never return an unproved row; that is what is
        # checked here. Counted in hypothesis's statistics.
        event("Ipopt refused a row")
        return
    native = NativeInner(game, j).solve(ys, others)
    finite = np.isfinite(native.welfare)
    np.testing.assert_array_equal(finite, np.isfinite(batch.welfare))
    span = max(float(np.ptp(native.welfare[finite])) if finite.any() else 0.0, 1e-300)
    # Ipopt's rows are accepted at residual 1e-6 of the capacity, and a warm-started
    # batch takes another path than cold single solves: payoffs agree to 1e-6 of
    # their range over the rows (not of |J|, which eps can dominate: J = 2e-6 + a
    # surplus of 1e-10 at scale 1e-3).
    # To first order a row off by RESIDUAL_TOL of the capacity in allocation units
    # is off by |lambda| times that in payoff (near the capacity, where surpluses
    # vanish, Ipopt's slightly infeasible rows even beat the exact optimum).
    drift = np.abs(np.nan_to_num(native.multiplier[finite])) * RESIDUAL_TOL * max(ys)
    tol = 1e-6 * span + 1e-7 * np.abs(native.welfare[finite]) + drift
    single = np.array([one.welfare[0] for one in singles])
    assert np.all(np.abs(single[finite] - batch.welfare[finite]) <= tol)
    assert np.all(np.abs(native.welfare[finite] - batch.welfare[finite]) <= tol), (
        native.welfare, batch.welfare, span)


@pytest.mark.unit
@settings(max_examples=25)
@given(game=games(max_players=3))
def test_certified_profiles_survive_an_independent_grid(game):
    try:
        eq = solve_equilibrium(game)
    except InnerSolveError:
        # A row no method could prove is refused, not used (known on some games at
        # 1e3 scale: issue 8 stays open for it).
        event("inner solve refused")
        return
    if not eq.is_equilibrium:
        return  # reported as such: nothing is claimed
    total = eq.total
    for j in range(len(game.players)):
        others = total - eq.profile[j]
        y_max = game.feasible_max(j, others)
        inner = NativeInner(game, j)
        here = inner.solve(np.array([eq.profile[j]]), others)
        grid = np.linspace(0.0, y_max, 401)
        vals = np.array([inner.solve(np.array([y]), others).welfare[0] for y in grid])
        finite = np.isfinite(vals)
        if not finite.any():
            continue
        # The certificate's scale: best minus median of the samples (robust to J
        # falling towards -inf near price-out points under the viable rule).
        span = float(vals[finite].max() - np.median(vals[finite])) or float(
            np.ptp(vals[finite]))
        gain = float(vals[finite].max() - here.welfare[0])
        tol = eq.certificate.rtol * span
        if game.players[j].fairness.is_maxmin:
            tol += 1e-9 * span  # levels that tie are decided by total surplus
        assert gain <= tol + 1e-12 * abs(here.welfare[0]), (j, gain, span)


@pytest.mark.unit
@settings(max_examples=60)
@given(game=games(max_players=3), fraction=st.floats(0.0, 1.0), data=st.data())
def test_floor_rule_payoff_is_continuous_at_price_out_points(game, fraction, data):
    """Why the certificate samples a price-out point once under the floor rule (both
    sides under viable and strict): there a priced-out member keeps its term, so J
    (and the total surplus) takes the same value on either side, up to the
    payoff's slope times the gap."""
    from aggregame import Game, Player
    from aggregame.fairness import PricedOutRule
    from aggregame.solvers.equilibrium.scan import price_out_points

    j = data.draw(st.integers(0, len(game.players) - 1))
    p = game.players[j]
    floor_rule = Player.aggregator(p.name, p.members, alpha=p.alpha,
                                   rule=PricedOutRule.FLOOR, maxmin=p.fairness.maxmin,
                                   eps=p.fairness.eps or 1e-2 * p.members[0].utility.b)
    game = Game(game.players[:j] + (floor_rule,) + game.players[j + 1:], game.price)
    # Others' total putting one member's price-out point inside the interval.
    b = data.draw(st.sampled_from([m.utility.b for m in p.members]))
    others = max(game.price.inverse(b) - fraction * game.feasible_max(
        j, game.price.inverse(b)), 0.0)
    y_max = game.feasible_max(j, others)
    points = price_out_points(game, j, others, y_max)
    if points.size == 0:
        event("no price-out point in range")
        return
    inner = NativeInner(game, j)
    delta = 1e-9 * max(y_max, 1.0)
    grid = inner.solve(np.linspace(0.0, y_max, 33), others)
    # The certificate's scale: best minus median (a range would let J -> -1e20
    # near a viable member's price-out point hide any jump).
    span = sum(float(v.max() - np.median(v)) for v in (grid.welfare, grid.tiebreak)
               if np.all(np.isfinite(v))) + 1e-300
    # The payoff's own change over the gap: 10 x the steepest slope of the grid.
    ys = np.linspace(0.0, y_max, 33)
    moves = [10 * 2 * delta * float(np.max(np.abs(np.diff(v) / np.diff(ys))))
             for v in (grid.welfare, grid.tiebreak) if np.all(np.isfinite(v))]
    tol = 1e-6 * span + max(moves, default=0.0)
    for k in points:
        sides = inner.solve(np.array([k - delta, k + delta]), others)
        noise = _rounding(game, j, others, sides)
        assert abs(sides.welfare[1] - sides.welfare[0]) <= tol + noise, k
        assert abs(sides.tiebreak[1] - sides.tiebreak[0]) <= tol + noise, k


@pytest.mark.unit
@settings(max_examples=60)
@given(game=social_welfare_games(), fraction=st.floats(0.0, 1.0), data=st.data())
def test_social_welfare_payoff_is_concave_then_decreasing(game, fraction, data):
    """A social-welfare aggregator's payoff is concave up to its maximum and
    decreasing after it (docs/model.md, section "Quasiconcavity and the best
    response"), whatever the rule and however many members the price drives out. A
    fine grid of each interval must show it: second differences <= 0 left of the
    best sample, first differences <= 0 right of it (both to rounding)."""
    j = data.draw(st.integers(0, len(game.players) - 1))
    others = _others(game, j, fraction)
    y_max = game.feasible_max(j, others)
    if y_max <= 0:
        return
    welfare = NativeInner(game, j).solve(np.linspace(0.0, y_max, 401), others).welfare
    top = int(np.argmax(welfare))
    noise = 1e-9 * (float(np.max(np.abs(welfare))) + 1e-300)
    if top + 1 < welfare.size:
        assert np.all(np.diff(welfare[top:]) <= noise), "rises after its maximum"
    if top >= 2:
        assert np.all(np.diff(welfare[:top + 1], 2) <= noise), "not concave before it"
    event("interior maximum" if 0 < top < welfare.size - 1 else "maximum at an end")


@pytest.mark.unit
@settings(max_examples=30)
@given(game=games(max_players=3), fraction=st.floats(0.0, 1.0), data=st.data())
def test_max_min_level_is_flat_once_a_counted_member_is_priced_out(game, fraction,
                                                                   data):
    """What lets the certificate read a max-min level as its floor, exactly, and
    rank by total surplus alone (solvers/certify/payoffs.py, ``Payoffs.pinned``):
    from the first purchase at which a counted member is priced out (floor,
    strict), the level is the same for every larger purchase."""
    from aggregame import Game, Player
    from aggregame.fairness import PricedOutRule
    from aggregame.solvers.certify.payoffs import Payoffs

    j = data.draw(st.integers(0, len(game.players) - 1))
    p = game.players[j]
    rule = data.draw(st.sampled_from((PricedOutRule.FLOOR, PricedOutRule.STRICT)))
    maxmin = Player.aggregator(p.name, p.members, alpha=math.inf, rule=rule,
                               maxmin="total-surplus",
                               eps=p.fairness.eps or 1e-2 * p.members[0].utility.b)
    game = Game(game.players[:j] + (maxmin,) + game.players[j + 1:], game.price)
    b = float(maxmin.marginal_at_zero.min())
    others = max(game.price.inverse(b) - fraction * game.feasible_max(
        j, game.price.inverse(b)), 0.0)
    pay = Payoffs(game, j, others)
    y_max = game.feasible_max(j, others)
    ys = np.linspace(0.0, y_max, 201)
    flat = np.array([pay.pinned(float(y)) for y in ys])
    if not flat.any():
        event("no pinned level in range")
        return
    rows = NativeInner(game, j).solve(ys[flat], others)
    levels = rows.welfare
    # Equal to the rounding of the surpluses (U(x) - p x) and of the level itself.
    rounding = 64 * np.finfo(float).eps * float(np.max(
        np.abs(rows.surplus) + 2 * rows.price[:, None] * rows.x))
    assert np.ptp(levels) <= 1e-12 * float(np.max(np.abs(levels))) + rounding
    # The certificate reads them as the floor itself.
    pay.evaluate(ys[flat])
    assert set(pay.rows.welfare) == {maxmin.fairness.floor}


@pytest.mark.unit
@settings(max_examples=25)
@given(game=games(max_players=3), fraction=st.floats(1e-9, 0.3), data=st.data())
def test_pinned_max_min_ranks_by_the_social_welfare_payoff(game, fraction, data):
    """Why the certificate treats a max-min player whose level is pinned on the
    whole interval (a counted member priced out at y = 0; floor, strict) like a
    social-welfare aggregator: every member's need is then 0, so the total surplus
    it ranks purchases by is the alpha = 0 payoff minus n e, row by row (the bound
    of its total surplus is the alpha = 0 one, solvers/certify/branch.py)."""
    from aggregame import Game, Player
    from aggregame.fairness import PricedOutRule
    from aggregame.solvers.certify.payoffs import Payoffs

    j = data.draw(st.integers(0, len(game.players) - 1))
    p = game.players[j]
    rule = data.draw(st.sampled_from((PricedOutRule.FLOOR, PricedOutRule.STRICT)))
    eps = p.fairness.eps or 1e-2 * p.members[0].utility.b

    def with_player(alpha):
        q = Player.aggregator(p.name, p.members, alpha=alpha, rule=rule, eps=eps,
                              maxmin="total-surplus")
        return Game(game.players[:j] + (q,) + game.players[j + 1:], game.price)

    maxmin, social = with_player(math.inf), with_player(0.0)
    others = game.price.inverse(float(p.marginal_at_zero.min())) * (1 + fraction)
    y_max = maxmin.feasible_max(j, others)
    assert Payoffs(maxmin, j, others).pinned(0.0)
    if y_max <= 0:
        event("nothing to buy")
        return
    ys = np.linspace(0.0, y_max, 41)
    total = NativeInner(maxmin, j).solve(ys, others).tiebreak
    floor = eps * p.size if rule is PricedOutRule.FLOOR else 0.0
    welfare = NativeInner(social, j).solve(ys, others).welfare - floor
    scale = float(np.max(np.abs(welfare))) + floor + 1e-300
    np.testing.assert_allclose(total, welfare, rtol=0, atol=1e-9 * scale)
