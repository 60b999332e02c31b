"""Global certificate: SCIP's proven bound against the native scan and a closed form."""

import math

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import solver_available

from aggregame import (
    Game,
    GameDefinitionError,
    LinearPrice,
    LogUtility,
    Player,
    PowerPrice,
    QuadraticUtility,
    User,
    quadratic_users,
)
from aggregame.errors import GlobalCertificateError
from aggregame.models.joint import build_joint_best_response
from aggregame.solvers.certify.global_bound import Verdict, certify_global, scip_solver
from aggregame.solvers.equilibrium.best_response import best_response
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner.native import NativeInner

SCIP = solver_available(scip_solver)
needs_scip = pytest.mark.skipif(not SCIP, reason="SCIP not installed: "
                                                 "pip install 'pyscipopt>=5.5'")

#: The brief's target: relative regret bound at an equilibrium.
EQUILIBRIUM_RTOL = 1e-5
#: SCIP's bound and incumbent against the native scan, relative to the payoff range:
#: SCIP stops at gap 1e-6 and its feasibility tolerance (1e-6) can lift both a little.
AGREE_RTOL = 1e-5
#: Model welfare against the numpy welfare at the same allocation.
EVAL_RTOL = 1e-12


def two_aggregators(alpha, n=4, seed=3, c=0.05):
    rng = np.random.default_rng(seed)
    players = [Player.aggregator(f"A{k}", quadratic_users(
        rng.uniform(0.1, 0.9, n), rng.uniform(0.5, 10, n), f"a{k}_"), alpha=alpha,
        maxmin="total-surplus") for k in range(2)]
    return Game(tuple(players), LinearPrice(c))


def log_and_power_game(alpha=1.0):
    """An aggregator with a log-utility member, a one-member rival, a power price."""
    members = [User("q0", QuadraticUtility(0.3, 8.0)),
               User("q1", QuadraticUtility(0.6, 5.0)), User("w0", LogUtility(6.0))]
    return Game((Player.aggregator("mixed", members, alpha=alpha),
                 Player.individual(User("solo", QuadraticUtility(0.4, 7.0)))),
                PowerPrice(0.02, 1.5))


def pinned_maxmin_game():
    """Max-min aggregators with a poor member (b = 0.2) that a large rival prices
    out: their level is pinned at eps and the total-surplus tie-break decides."""
    rng = np.random.default_rng(3)
    players = [Player.aggregator(f"A{k}", quadratic_users(
        [*rng.uniform(0.1, 0.9, 3), 0.5], [*rng.uniform(2, 10, 3), 0.2], f"a{k}_"),
        alpha="inf", maxmin="total-surplus") for k in range(2)]
    big = Player.individual(User("big", QuadraticUtility(0.5, 50.0)))
    return Game((*players, big), LinearPrice(0.05))


GAMES = {
    "alpha0": lambda: two_aggregators(0.0),
    "alpha1": lambda: two_aggregators(1.0, n=5),
    "alpha2": lambda: two_aggregators(2.0, n=6, seed=5),
    "maxmin": lambda: two_aggregators("inf", n=3),
    "maxmin-pinned": pinned_maxmin_game,
    "log-power": lambda: log_and_power_game(1.0),
}


def _span(bound):
    """The payoff range the certificate divides by."""
    return bound.regret_bound / bound.relative_regret if bound.relative_regret > 0 \
        else 1.0


@needs_scip
@pytest.mark.solver
@pytest.mark.parametrize("name", sorted(GAMES))
def test_equilibrium_is_proved(name):
    game = GAMES[name]()
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium
    cert = certify_global(game, eq.profile, time_limit=10.0)
    for j, bound in enumerate(cert.players):
        assert bound.verdict is Verdict.PROVED, bound.message
        assert bound.relative_regret <= EQUILIBRIUM_RTOL, bound
        # The dual bound is an upper bound: SCIP's own incumbent never exceeds it.
        assert bound.best_payoff <= bound.upper_bound + 1e-9 * abs(bound.upper_bound)
        # Max-min players whose level sits at eps are judged by the tie-break.
        pinned = game.players[j].alpha == math.inf and bound.payoff <= \
            game.players[j].fairness.eps * (1 + 1e-9)
        assert bound.tiebreak == pinned
    assert cert.max_regret_bound == max(cert.regret_bounds)
    assert cert.proved


@needs_scip
@pytest.mark.solver
@pytest.mark.parametrize("name,factor", [("alpha0", 0.2), ("alpha1", 0.2),
                                         ("alpha2", 0.2), ("maxmin", 0.2),
                                         ("maxmin-pinned", 0.5),
                                         ("log-power", 0.3)])
def test_bound_matches_native_best_response_off_equilibrium(name, factor):
    """Away from equilibrium SCIP's bound and incumbent both meet the scan's best."""
    game = GAMES[name]()
    profile = solve_equilibrium(game).profile * factor
    cert = certify_global(game, profile, time_limit=10.0)
    total = profile.sum()
    for j, bound in enumerate(cert.players):
        inner = NativeInner(game, j)
        others = total - profile[j]
        native = best_response(inner, others, strategy="scan")
        at = inner.solve(np.array([profile[j]]), others)
        tol = AGREE_RTOL * _span(bound)
        assert bound.verdict is Verdict.PROVED, bound.message
        assert bound.payoff == pytest.approx(float(at.welfare[0]), rel=1e-9, abs=1e-12)
        assert bound.upper_bound >= native.welfare - tol
        assert bound.best_payoff >= native.welfare - tol
        if bound.tiebreak:  # level pinned at eps: the gain is in total surplus
            assert native.welfare == pytest.approx(bound.payoff, rel=1e-9)
            best, here = native.tiebreak, float(at.tiebreak[0])
            assert bound.tiebreak_upper_bound >= best - tol
        else:
            best, here = native.welfare, float(at.welfare[0])
        # Tight: the proven regret is the regret the scan finds, up to SCIP's gap.
        assert bound.regret_bound == pytest.approx(best - here, abs=tol)
    # The profile really is not an equilibrium, and the certificate says so.
    assert max(b.regret_bound / (AGREE_RTOL * _span(b)) for b in cert.players) > 100
    assert not cert.proved


@needs_scip
@pytest.mark.solver
@pytest.mark.parametrize("others", [0.0, 40.0, 500.0, 1000.0])
def test_one_member_quadratic_matches_closed_form(others):
    a, b, c = 0.4, 9.0, 0.01
    game = Game((Player.individual(User("u", QuadraticUtility(a, b))),
                 Player.individual(User("v", QuadraticUtility(0.5, 20.0)))),
                LinearPrice(c))
    y_star = max(0.0, (b - c * others) / (2 * (a + c)))
    payoff = b * y_star - a * y_star**2 - c * (others + y_star) * y_star

    def phi(s):  # alpha = 0 with the floor eps: J = s + eps
        return s + game.players[0].fairness.eps

    cert = certify_global(game, [0.0, others], time_limit=5.0)
    bound = cert.players[0]
    assert bound.verdict is Verdict.PROVED
    span = max(phi(payoff) - phi(0.0), 1.0)
    assert bound.upper_bound >= phi(payoff) - 1e-9 * span
    assert bound.upper_bound <= phi(payoff) + 1e-5 * span
    # A concave quadratic: a payoff loss d moves y by sqrt(d / (a + c)).
    assert bound.best_y == pytest.approx(y_star, abs=1e-2 * max(1.0, y_star))
    at_star = certify_global(game, [y_star, others], time_limit=5.0)
    assert at_star.players[0].relative_regret <= EQUILIBRIUM_RTOL


@needs_scip
@pytest.mark.solver
def test_viable_rule_fails_with_its_reason_not_a_wrong_bound():
    users = quadratic_users([0.5, 0.3], [6.0, 4.0])
    game = Game((Player.aggregator("V", users, alpha=1, rule="viable"),
                 Player.individual(User("solo", QuadraticUtility(0.5, 9.0)))),
                LinearPrice(0.05))
    cert = certify_global(game, [2.0, 3.0], time_limit=2.0)
    failed, solo = cert.players
    assert failed.verdict is Verdict.FAILED and "'viable'" in failed.message
    assert math.isinf(failed.regret_bound)
    assert solo.verdict is Verdict.PROVED
    assert not cert.proved


@needs_scip
@pytest.mark.solver
def test_purchase_beyond_the_feasible_interval_has_unbounded_regret():
    """No allocation of y > y_max gives every member s >= 0: J = -inf, regret inf."""
    game = log_and_power_game()
    y_max = game.feasible_max(0, 5.0)
    cert = certify_global(game, [1.5 * y_max, 5.0], time_limit=5.0)
    bound = cert.players[0]
    assert bound.payoff == -math.inf and bound.regret_bound == math.inf
    assert "no feasible allocation" in bound.message
    assert 0 <= bound.best_y <= y_max * (1 + 1e-6)
    assert not cert.proved


@pytest.mark.unit
@pytest.mark.parametrize("rule", ["viable", "strict"])
def test_model_refuses_rules_whose_member_set_moves(rule):
    users = quadratic_users([0.5], [6.0])
    game = Game((Player.aggregator("A", users, alpha=1, rule=rule),), LinearPrice(0.05))
    with pytest.raises(GlobalCertificateError, match=f"got rule '{rule}'"):
        build_joint_best_response(game, 0, 1.0)


@pytest.mark.unit
@pytest.mark.parametrize("name", sorted(GAMES))
def test_model_welfare_equals_native_welfare_at_the_same_point(name):
    """The Pyomo formulas (price, surplus, Phi) against numpy at a native allocation;
    every variable the solver sees has finite bounds."""
    game = GAMES[name]()
    others, j = 3.0, 0
    model = build_joint_best_response(game, j, others)
    y = 0.5 * model.y.ub
    batch = NativeInner(game, j).solve(np.array([y]), others)
    model.y.set_value(y)
    model.price.set_value(float(batch.price[0]))
    for i, name_i in enumerate(model.MEMBERS):
        model.x[name_i].set_value(float(batch.x[0, i]))
        model.surplus[name_i].set_value(float(batch.surplus[0, i]))
        assert model.x[name_i].ub >= batch.x[0, i]
    if game.players[j].fairness.is_maxmin:
        model.level.set_value(float(batch.welfare[0]))
    assert pyo.value(model.welfare) == pytest.approx(float(batch.welfare[0]),
                                                     rel=EVAL_RTOL)
    for con in model.component_data_objects(pyo.Constraint, active=True):
        if con.equality:  # price, surplus and balance hold at the native point
            assert pyo.value(con.body) == pytest.approx(pyo.value(con.upper),
                                                        abs=1e-9), con.name
    for var in model.component_data_objects(pyo.Var):
        assert var.lb is not None and var.ub is not None, var.name
        assert math.isfinite(var.lb) and math.isfinite(var.ub), var.name


@pytest.mark.unit
def test_bad_profile_is_one_line_naming_the_field():
    game = two_aggregators(0.0)
    with pytest.raises(GameDefinitionError, match="field 'profile'.*2 finite"):
        certify_global(game, [1.0, -2.0])
    with pytest.raises(GameDefinitionError, match="field 'time_limit'"):
        certify_global(game, [1.0, 2.0], time_limit=0)
