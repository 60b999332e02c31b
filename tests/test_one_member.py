"""The one-member payoff by formula (aggregame.one_member) against the native inner
solver, an independent computation of the same J: every alpha (max-min in both
readings), every priced-out rule, quadratic and log members, three price families,
and purchases at the ends of the feasible interval, inside, beyond it and at prices
that price the member out. Then the outcome a single-user run reports from it
against the inner solvers', and the scan rounds of such a run."""

import math

import numpy as np
import pytest

from aggregame import (
    AffinePrice,
    Game,
    LinearPrice,
    LogUtility,
    Player,
    PowerPrice,
    QuadraticUtility,
    User,
)
from aggregame.errors import GameDefinitionError
from aggregame.one_member import OneMemberPayoff
from aggregame.solvers.equilibrium.closed_forms import single_user_equilibrium
from aggregame.solvers.equilibrium.dynamics import (
    DynamicsSettings,
    make_inners,
    solve_equilibrium,
)
from aggregame.solvers.equilibrium.results import Equilibrium
from aggregame.solvers.inner.native import NativeInner

#: The formula and the solver compute the same floats up to a few roundings.
MATCH_RTOL = 1e-12
ALPHAS = (0.0, 0.5, 1.0, 2.0, 7.0, math.inf)
RULES = ("floor", "viable", "strict")
#: Fractions of the feasible interval tried (1.1: beyond it, infeasible).
FRACTIONS = (0.0, 1e-9, 0.1, 0.5, 0.9, 1 - 1e-9, 1.0, 1.1)


def _close(mine: float, theirs: float) -> bool:
    if not (math.isfinite(mine) and math.isfinite(theirs)):
        return mine == theirs
    return abs(mine - theirs) <= MATCH_RTOL * max(1.0, abs(theirs))


def _random_game(rng, alpha, rule, maxmin) -> Game:
    # Log members only below max-min: the native max-min path bisects a log
    # member's level interval, ~0.3 s a solve, and shares the one-member formulas.
    if rng.random() < 0.5 or math.isinf(alpha):
        util = QuadraticUtility(a=float(rng.uniform(0.05, 2.0)),
                                b=float(rng.uniform(0.5, 10.0)))
    else:
        util = LogUtility(w=float(rng.uniform(0.5, 10.0)))
    eps = float(rng.choice([0.0, 1e-3, 0.1])) if rule != "floor" else float(
        rng.choice([1e-3, 0.01, 0.1]))
    me = Player.aggregator("me", [User("u", util)], alpha=alpha, rule=rule, eps=eps,
                           maxmin=maxmin)
    other = Player.individual(User("v", QuadraticUtility(a=1.0, b=1.0)))
    kind = rng.integers(3)
    c = float(rng.uniform(0.05, 1.0))
    price = (LinearPrice(c) if kind == 0 else AffinePrice(float(rng.uniform(0, 1)), c)
             if kind == 1 else PowerPrice(c, float(rng.choice([1.0, 1.5, 2.0]))))
    return Game((me, other), price)


def _compare(payoff, y, others, sol, k, beyond, priced_out):
    """One purchase: the formula's point against row k of the native solve."""
    point = payoff(y, others)
    welfare = float(sol.welfare[k])
    if beyond:  # infeasible: only the verdict is defined, not an allocation
        assert point.welfare == welfare == -math.inf, (y, others)
        return
    # s = U(x) - p x cancels: its rounding is relative to U(x) and p x, not to s.
    scale = abs(point.surplus) + abs(float(sol.price[k])) * point.x + 1.0
    assert abs(point.surplus - float(sol.surplus[k, 0])) <= MATCH_RTOL * scale
    assert point.tiebreak == point.surplus
    assert _close(point.x, float(sol.x[k, 0])), (y, others)
    # J near s + e = 0 (alpha >= 1) magnifies that rounding without bound: the
    # rules are compared on the solver's own surplus, J itself where it is tame.
    assert _close(payoff.welfare(float(sol.surplus[k, 0]), priced_out), welfare)
    fairness = payoff.player.fairness
    level = point.surplus + fairness.floor
    if priced_out:  # x = 0, s = 0 exactly: nothing to round
        assert _close(point.welfare, welfare), (y, others)
    elif level > 1e-6:  # the surplus's rounding, carried through phi to first order
        dphi = 1.0 if fairness.is_maxmin else float(fairness.dphi(level))
        tol = MATCH_RTOL * (scale * dphi + abs(welfare))
        assert abs(point.welfare - welfare) <= tol, (y, others)


@pytest.mark.unit
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_formula_equals_native_inner_solve(alpha, rule):
    rng = np.random.default_rng(int(alpha if math.isfinite(alpha) else 99)
                                + 1000 * RULES.index(rule))
    readings = ("total-surplus", "leximin") if math.isinf(alpha) else ("leximin",)
    priced_out_seen = 0
    for maxmin in readings:
        for _ in range(6):
            game = _random_game(rng, alpha, rule, maxmin)
            payoff, inner = OneMemberPayoff.of(game, 0), NativeInner(game, 0)
            util = game.players[0].members[0].utility
            # Others from nothing to a total whose price alone prices the member out.
            out_total = game.price.inverse(util.marginal_at_zero())
            for others in (0.0, 0.3 * out_total, 0.9 * out_total, 1.5 * out_total):
                y_max = game.feasible_max(0, others)
                ys = np.array(FRACTIONS) * y_max if y_max > 0 else np.array([0.0, 0.5])
                sol = inner.solve(ys, others)
                for k, y in enumerate(ys):
                    priced_out = util.marginal_at_zero() <= float(sol.price[k])
                    priced_out_seen += priced_out
                    _compare(payoff, float(y), others, sol, k, y > y_max, priced_out)
    assert priced_out_seen > 0  # the priced-out branches were exercised


@pytest.mark.unit
def test_formula_refuses_an_aggregator():
    users = [User(f"u{i}", QuadraticUtility(a=1.0, b=2.0)) for i in range(2)]
    game = Game((Player.aggregator("agg", users),), LinearPrice(0.1))
    assert OneMemberPayoff.of(game, 0) is None
    with pytest.raises(GameDefinitionError, match="'members' must hold one member"):
        OneMemberPayoff(game.players[0], game.price)


def _users_game(n: int = 5) -> Game:
    rng = np.random.default_rng(3)
    users = [User(f"u{i}", QuadraticUtility(a=float(a), b=float(b)))
             for i, (a, b) in enumerate(zip(rng.uniform(0.1, 0.9, n),
                                            rng.uniform(0.5, 10.0, n)))]
    return Game(tuple(Player.individual(u) for u in users), AffinePrice(0.3, 0.05))


@pytest.mark.unit
def test_single_user_run_reports_what_the_inner_solvers_would():
    game = _users_game()
    eq = solve_equilibrium(game)  # closed-form rounds: no inner solver built
    assert eq.strategies[0] == "closed-form" and eq.is_equilibrium
    solved = Equilibrium.from_run(
        game, eq.profile, make_inners(game), converged=True, status="converged",
        iterations=eq.iterations, path=eq.path, certificate=eq.certificate,
        backend="native", method=eq.method, settings={})
    for j in range(len(game.players)):
        assert _close(eq.welfare[j], solved.welfare[j])
        assert _close(eq.allocations[j][0], solved.allocations[j][0])
        assert _close(eq.surpluses[j][0], solved.surpluses[j][0])


@pytest.mark.unit
def test_scan_rounds_on_single_users_build_their_inner_solvers():
    game = _users_game()
    eq = solve_equilibrium(game, settings=DynamicsSettings(best_response="scan"))
    assert eq.strategies[0] == "scan" and eq.is_equilibrium
    exact = single_user_equilibrium(game)
    assert np.allclose(eq.profile, exact, rtol=1e-8, atol=1e-8)
