"""The inner problem: multipliers and total derivatives against finite differences,
the two backends against each other, the Block against the standalone model."""

import math

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import FD_RTOL, FD_STEP, needs_ipopt, one_aggregator_game

from aggregame import Game, InnerSolveError, LinearPrice, Player
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
    iteration limit of 1 ends the solve short (it raises), where the same spec
    without it solves."""
    from aggregame.solvers.inner.pyomo_backend import PyomoInner
    from aggregame.solvers.solver_choice import SolverSpec

    game = one_aggregator_game(small_users, 1.0)
    spec = SolverSpec("cyipopt", {"tol": 1e-9})
    inner = PyomoInner(game, 0, {"max_iter": 1, "tol": 1e-3}, solver=spec,
                       reuse_nlp=reuse_nlp)
    assert dict(inner.spec.options) == {"max_iter": 1, "tol": 1e-3}
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
