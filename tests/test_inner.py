"""The inner problem: multipliers and total derivatives against finite differences,
the two backends against each other, the Block against the standalone model."""

import math

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import FD_RTOL, FD_STEP, needs_ipopt, one_aggregator_game

from aggregame import Game, InnerSolveError, LinearPrice, Player, quadratic_users
from aggregame.models.aggregator import add_aggregator, build_aggregator_model
from aggregame.solvers.inner.native import NativeInner

ALPHAS = [0, 0.5, 1, 2, "inf"]
RULES = ["floor", "viable", "strict"]
OTHERS = 20.0  # Y_-j: puts p near 1-1.5, so some of the 8 members get priced out
FRACTIONS = [0.15, 0.5, 0.85]
#: Native and Ipopt allocations agree to Ipopt's tolerance (tol = 1e-9 on scaled KKT).
BACKEND_ATOL = 1e-6


def backends(game):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    return {"native": NativeInner(game, 0), "pyomo": PyomoInner(game, 0)}


def fd(inner, ys, **kw):
    up = inner.solve(ys + FD_STEP, OTHERS, **kw).welfare
    down = inner.solve(ys - FD_STEP, OTHERS, **kw).welfare
    return (up - down) / (2 * FD_STEP)


def check_close(analytic, numeric, label):
    for a, n in zip(analytic, numeric):
        if not (math.isfinite(a) and math.isfinite(n)):
            continue
        assert a == pytest.approx(n, rel=FD_RTOL, abs=FD_RTOL), label


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_multiplier_and_total_derivative_match_finite_differences(small_users, alpha,
                                                                  rule):
    game = one_aggregator_game(small_users, alpha, rule)
    ys = np.array(FRACTIONS) * game.feasible_max(0, OTHERS)
    checked = 0
    for name, inner in backends(game).items():
        sol = inner.solve(ys, OTHERS)
        if math.isinf(game.players[0].alpha) and name == "native":
            assert np.all(np.isnan(sol.derivative))  # derivative-free by design
            continue
        check_close(sol.derivative, fd(inner, ys), f"{name} dJ/dy")
        price = float(sol.price[1])
        fixed = inner.solve(ys[1:2], OTHERS, fixed_price=price)
        check_close(fixed.multiplier, fd(inner, ys[1:2], fixed_price=price),
                    f"{name} lambda")
        checked += int(np.isfinite(sol.derivative).sum())
    if not (rule == "strict" and game.players[0].alpha >= 1):
        assert checked >= 3  # the test compared something


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_native_and_pyomo_agree(small_users, alpha, rule):
    game = one_aggregator_game(small_users, alpha, rule)
    ys = np.array(FRACTIONS) * game.feasible_max(0, OTHERS)
    b = backends(game)
    nat, pyo_sol = b["native"].solve(ys, OTHERS), b["pyomo"].solve(ys, OTHERS)
    np.testing.assert_array_equal(np.isfinite(nat.welfare), np.isfinite(pyo_sol.welfare))
    ok = np.isfinite(nat.welfare)
    np.testing.assert_allclose(nat.welfare[ok], pyo_sol.welfare[ok], rtol=1e-7, atol=1e-7)
    # Max-min: phase 2 of Ipopt keeps the level to 1e-9, which frees x by ~sqrt(1e-9).
    atol = 1e-3 if math.isinf(game.players[0].alpha) else BACKEND_ATOL
    np.testing.assert_allclose(nat.x[ok], pyo_sol.x[ok], atol=atol)
    np.testing.assert_allclose(nat.x.sum(axis=1), ys, rtol=1e-12)


@pytest.mark.unit
def test_total_derivative_differs_from_lambda_when_price_moves(small_users):
    """The paper's J' = lambda misses p'(Y) dPhi/dp; the difference is not small."""
    game = one_aggregator_game(small_users, 1.0, "floor", c=0.05)
    sol = NativeInner(game, 0).solve(np.array([5.0]), OTHERS)
    assert abs(sol.derivative[0] - sol.multiplier[0]) > 0.01
    check_close(sol.derivative, fd(NativeInner(game, 0), np.array([5.0])), "dJ/dy")


@needs_ipopt
@pytest.mark.solver
def test_block_in_a_market_model_matches_standalone(small_users):
    """Two aggregators as Blocks of one model, with y_j and p the model's own Vars."""
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    half = len(small_users) // 2
    a = Player.aggregator("A", small_users[:half], alpha=1)
    b = Player.aggregator("B", small_users[half:], alpha=0.5)
    market = pyo.ConcreteModel()
    market.y = pyo.Var(["A", "B"], bounds=(0, None))
    market.p = pyo.Var(bounds=(0, None))
    market.agg = pyo.Block(["A", "B"])
    for name, player in (("A", a), ("B", b)):
        add_aggregator(market.agg[name], player, purchase=market.y[name],
                       price=market.p, objective=False)
    market.y["A"].fix(6.0)
    market.y["B"].fix(4.0)
    market.p.fix(1.2)
    for blk in market.agg.values():
        for i in blk.MEMBERS:
            blk.x[i].set_value(0.1)
    market.obj = pyo.Objective(expr=sum(blk.welfare for blk in market.agg.values()),
                               sense=pyo.maximize)
    results = ipopt_solver().solve(market)
    assert results.solver.termination_condition == pyo.TerminationCondition.optimal
    for name, player, y in (("A", a, 6.0), ("B", b, 4.0)):
        alone = build_aggregator_model(player, purchase=y, price=1.2)
        for i in alone.MEMBERS:
            alone.x[i].set_value(0.1)
        ipopt_solver().solve(alone)
        for i in alone.MEMBERS:
            assert market.agg[name].x[i].value == pytest.approx(alone.x[i].value,
                                                                abs=1e-7)
        # And both match the native backend at the same y and p.
        game = Game((player,), LinearPrice(0.01))
        nat = NativeInner(game, 0).solve(np.array([y]), 0.0, fixed_price=1.2)
        np.testing.assert_allclose([alone.x[i].value for i in alone.MEMBERS], nat.x[0],
                                   atol=1e-7)


@pytest.mark.unit
def test_block_refuses_to_overwrite():
    from aggregame import quadratic_users

    m = pyo.ConcreteModel()
    player = Player.aggregator("A", quadratic_users([0.5], [3.0]))
    add_aggregator(m, player)
    with pytest.raises(ValueError, match="already has a component 'x'"):
        add_aggregator(m, player)


@needs_ipopt
@pytest.mark.solver
def test_non_optimal_ipopt_raises_and_keeps_model(small_users):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    game = one_aggregator_game(small_users, 1.0)
    inner = PyomoInner(game, 0, {"max_iter": 1})
    with pytest.raises(InnerSolveError, match=r"did not reach an optimal solution .* "
                                              r"player 'A'.*termination"):
        inner.solve(np.array([5.0]), OTHERS)
    # The same model solves once the options allow it: nothing was left half-changed.
    inner.solver.config.options["max_iter"] = 3000
    ok = inner.solve(np.array([5.0]), OTHERS)
    assert ok.x.sum() == pytest.approx(5.0)


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("reuse_nlp", [True, False])
def test_options_beside_a_solver_are_kept(small_users, reuse_nlp):
    """``options`` given with ``solver=`` reach the solver with the spec's own: an
    iteration limit of 0 ends every solve short, the one started from the native
    allocation too (it raises), where the same spec without it solves."""
    from aggregame.solvers.inner.pyomo_backend import PyomoInner
    from aggregame.solvers.solver_choice import SolverSpec

    game = one_aggregator_game(small_users, 1.0)
    spec = SolverSpec("cyipopt", {"tol": 1e-9})
    inner = PyomoInner(game, 0, {"max_iter": 0, "tol": 1e-3}, solver=spec,
                       reuse_nlp=reuse_nlp)
    assert dict(inner.spec.options) == {"max_iter": 0, "tol": 1e-3}
    with pytest.raises(InnerSolveError, match="did not reach an optimal solution"):
        inner.solve(np.array([5.0]), OTHERS)
    ok = PyomoInner(game, 0, solver=spec, reuse_nlp=reuse_nlp).solve(
        np.array([5.0]), OTHERS)
    assert ok.x.sum() == pytest.approx(5.0)


@needs_ipopt
@pytest.mark.solver
def test_resolve_gives_same_answer(small_users):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    inner = PyomoInner(one_aggregator_game(small_users, 2.0), 0)
    first = inner.solve(np.array([3.0, 7.0, 3.0]), OTHERS)
    np.testing.assert_allclose(first.x[0], first.x[2], atol=1e-9)
    assert inner.counter.solves == 3  # the model was built once and re-solved


@pytest.mark.unit
def test_maxmin_tiebreak_derivative_when_level_is_flat(small_users):
    """Floor rule with a member priced out: the max-min level is eps whatever y is,
    the tie-break (total surplus) decides, and its derivative is checked against
    finite differences and against the alpha = 0 player's derivative (docs/model.md,
    section "Max-min": max-min then behaves exactly like alpha = 0)."""
    maxmin = NativeInner(one_aggregator_game(small_users, "inf", "floor"), 0)
    social = NativeInner(one_aggregator_game(small_users, 0, "floor"), 0)
    game = maxmin.game
    # Others' purchase high enough that the member with the smallest U'(0) is out.
    u0 = game.players[0].marginal_at_zero
    others = float(np.sort(u0)[0] / game.price.c + 1.0)
    ys = np.array([0.2, 0.5, 0.8]) * game.feasible_max(0, others)
    sol = maxmin.solve(ys, others)
    np.testing.assert_allclose(sol.welfare, game.players[0].fairness.eps)
    assert np.all(np.isfinite(sol.tiebreak_derivative))
    up = maxmin.solve(ys + FD_STEP, others).tiebreak
    down = maxmin.solve(ys - FD_STEP, others).tiebreak
    check_close(sol.tiebreak_derivative, (up - down) / (2 * FD_STEP), "dT/dy")
    np.testing.assert_allclose(sol.tiebreak_derivative, social.solve(ys, others).derivative,
                               rtol=1e-9, atol=1e-12)
    # Where nobody is priced out the level moves with y: no tie-break derivative.
    low = maxmin.solve(np.array([1.0]), 0.0)
    assert np.isnan(low.tiebreak_derivative[0])


@pytest.mark.unit
def test_large_batches_are_chunked_without_changing_results(small_users, monkeypatch):
    import aggregame.solvers.inner.native as native

    inner = NativeInner(one_aggregator_game(small_users, 1.0), 0)
    ys = np.linspace(0.0, inner.game.feasible_max(0, OTHERS), 37)
    whole = inner.solve(ys, OTHERS)
    monkeypatch.setattr(native, "CHUNK_ELEMENTS", 5 * len(small_users))
    chunked = inner.solve(ys, OTHERS)
    np.testing.assert_array_equal(whole.x, chunked.x)
    np.testing.assert_array_equal(whole.derivative, chunked.derivative)


@pytest.mark.unit
def test_price_out_points_are_capped_for_large_aggregators():
    from aggregame import quadratic_users
    from aggregame.solvers.equilibrium import scan as br

    rng = np.random.default_rng(0)
    users = quadratic_users(rng.uniform(0.1, 0.9, 2000), rng.uniform(0, 10, 2000))
    game = Game((Player.aggregator("big", users),), LinearPrice(0.001))
    y_max = game.feasible_max(0, 0.0)
    every = np.array([game.price.inverse(float(b)) for b in np.unique(
        game.players[0].marginal_at_zero)])
    every = every[(every > 0) & (every < y_max)]
    assert every.size > br.MAX_PRICE_OUT_POINTS  # the cap applies here
    spread = br.price_out_points(game, 0, 0.0, y_max)
    assert spread.size == br.MAX_PRICE_OUT_POINTS // 2
    assert spread[0] == every[0] and spread[-1] == every[-1]
    near = 0.5 * y_max
    kept = br.price_out_points(game, 0, 0.0, y_max, near=[near])
    assert kept.size <= br.MAX_PRICE_OUT_POINTS // 2 + br.NEAR_PRICE_OUT_POINTS
    # The price-out points around `near` are all kept.
    at = int(np.searchsorted(every, near))
    assert set(every[at - 3:at + 3]) <= set(kept)


@needs_ipopt
@pytest.mark.solver
def test_pyomo_tiebreak_derivative_matches_native(small_users):
    game = one_aggregator_game(small_users, "inf", "floor")
    others = float(np.sort(game.players[0].marginal_at_zero)[0] / game.price.c + 1.0)
    ys = np.array([0.0, 0.2, 0.5, 0.8]) * game.feasible_max(0, others)
    b = backends(game)
    np.testing.assert_allclose(b["pyomo"].solve(ys, others).tiebreak_derivative,
                               b["native"].solve(ys, others).tiebreak_derivative,
                               rtol=1e-6, atol=1e-6)


@pytest.mark.unit
def test_a_lone_member_barely_priced_in_takes_the_whole_purchase():
    """Three of four members priced out, the fourth 5.7e-12 below its threshold:
    its surplus U(x) - p x at x ~ 1e-12 is below the rounding of either term, and
    a stationarity test read that rounding as failure (InnerSolveError at a
    purchase the aggregate search asks about). Its allocation is forced: all of y
    to the lone member, the others nothing (the bounds)."""
    from aggregame import quadratic_users

    users = quadratic_users(
        np.array([0.8197927065695021, 0.976262446210192, 0.23559771646767214,
                  0.326759477435163]),
        np.array([3.105570399024543, 4.791745713422057, 4.474256893482721,
                  5.655972329160261]), "u")
    game = Game((Player.aggregator("A", users, alpha=1.0, rule="viable"),),
                LinearPrice(1.0))
    price, y = 5.655972329154604, 1.5738037930618655e-12
    batch = NativeInner(game, 0).solve(np.array([y]), np.array([price - y]))
    np.testing.assert_allclose(batch.x[0], [0.0, 0.0, 0.0, y], rtol=1e-12, atol=0)
    assert batch.residual[0] <= 1e-6


def price_out_row_game(alpha):
    """One aggregator of 8 members and the price 3.6e-8 below its lowest member's
    U'(0): that member's box [0, xbar] is ~1e-7 wide."""
    rng = np.random.default_rng(0)
    users = quadratic_users(rng.uniform(0.1, 0.9, 8), rng.uniform(0, 10, 8))
    game = Game((Player.aggregator("A", users, alpha=alpha),), LinearPrice(0.01))
    price = float(game.players[0].marginal_at_zero.min()) - 3.6e-8
    cap = float(game.players[0].zero_surplus_consumption(price).sum())
    return game, price, np.linspace(0.013 * cap, 0.987 * cap, 8)


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("warm", [True, False])
def test_rows_next_to_a_price_out_point_are_solved(warm):
    """Rows Ipopt does not solve from its own starts (next to a member's price-out
    point) are solved from the native allocation; Ipopt's answer meets the residual
    contract, computed from Ipopt's own allocation and multiplier, and agrees with
    the native backend's; the multiplier matches the finite difference of J. (The
    default cyipopt path, the reused NLP; the Pyomo-model path of reuse_nlp=False
    does not accept Ipopt's "very little progress" end, module docstring.)"""
    from aggregame.allocation import RESIDUAL_TOL
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    game, price, ys = price_out_row_game(3.0)
    inner = PyomoInner(game, 0, warm_start=warm)
    got = inner.solve(ys, 0.0, fixed_price=price)
    # Measured: Ipopt's own starts fail six of these eight rows.
    assert inner.counter.by_phase.get("native-start", 0) > 0
    assert (got.residual <= RESIDUAL_TOL).all()
    native = NativeInner(game, 0).solve(ys, 0.0, fixed_price=price)
    # At alpha = 3 the residual contract leaves the member next to its price-out
    # point some room: measured, the rows Ipopt ends "optimal" from its own start
    # (the first and last) are 8.4e-6 from the native allocation, their welfare
    # 4.2e-7 lower and their multiplier 7e-5 (relative) off; the rows solved from
    # the native allocation agree to 1e-11.
    np.testing.assert_allclose(got.welfare, native.welfare, rtol=1e-6)
    np.testing.assert_allclose(got.x, native.x, atol=1e-5)
    up = NativeInner(game, 0).solve(ys + FD_STEP, 0.0, fixed_price=price).welfare
    down = NativeInner(game, 0).solve(ys - FD_STEP, 0.0, fixed_price=price).welfare
    np.testing.assert_allclose(got.multiplier, (up - down) / (2 * FD_STEP),
                               rtol=1e-4, atol=FD_RTOL)


@needs_ipopt
@pytest.mark.solver
def test_inner_failure_names_exact_purchase_and_price():
    """A row that fails every start raises one error with y and p exact (repr)."""
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    game, price, ys = price_out_row_game(3.0)
    inner = PyomoInner(game, 0, {"max_iter": 0})
    with pytest.raises(InnerSolveError) as caught:
        inner.solve(ys[3:4], 0.0, fixed_price=price)
    message = str(caught.value)
    assert f"y = {float(ys[3])!r}" in message and f"p = {price!r}" in message
    assert "native backend's allocation" in message and "\n" not in message


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_a_member_priced_in_by_little_but_with_room_is_still_checked(alpha):
    """A member priced in by 5e-9 of the price, with a tiny curvature, has room for
    the whole purchase: its share is not rounding, and an allocation that gives it
    everything (the other member, priced in by 2, gets nothing) must fail the
    residual, not pass as 'forced'. The native solve passes it."""
    from aggregame import quadratic_users
    from aggregame.allocation import RESIDUAL_TOL
    from aggregame.allocation.residual import allocation_evidence

    others, y = 1.0, 0.5
    price = others + y  # LinearPrice(1)
    b1 = price * (1 + 5e-9)
    users = quadratic_users([0.5, (b1 - price) / 100.0], [3.0, b1], "m")
    game = Game((Player.aggregator("A", users, alpha=alpha),), LinearPrice(1.0))
    good = NativeInner(game, 0).solve(np.array([y]), others)
    assert good.residual[0] <= RESIDUAL_TOL
    wrong = allocation_evidence(game, 0, np.array([y]), others,
                                np.array([[0.0, y]]), np.array([0.0]))
    assert not wrong.forced[0] and wrong.residual[0] > RESIDUAL_TOL
    assert wrong.welfare[0] < good.welfare[0]
