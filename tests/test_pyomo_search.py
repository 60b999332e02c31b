"""The written-once cyipopt path and the sequential best-response search: each
shortcut against the path it replaces (the rebuild path solves the nonlinear
s_i >= 0 rows and both max-min phases) or against finite differences."""

import numpy as np
import pytest
from conftest import needs_ipopt, one_aggregator_game

from aggregame import Game, LinearPrice, Player, quadratic_users
from aggregame.solvers.equilibrium import best_response as br
from aggregame.solvers.equilibrium import search
from aggregame.solvers.inner.native import NativeInner

OTHERS = 20.0  # p near 1-1.5: some of the 8 members priced out (as test_inner.py)
#: Ipopt's tol = 1e-9 on the scaled KKT: two formulations agree to about this.
PATH_RTOL = 1e-6
#: Central differences of the derivative with step CURV_STEP * y.
CURV_STEP = 1e-5
CURV_RTOL = 1e-4
#: Best responses of the two searches: both refine to Y_RTOL, golden to ~1e-9.
BR_RTOL = 1e-7


def paths(game, index=0):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    return PyomoInner(game, index), PyomoInner(game, index, reuse_nlp=False)


def central(inner, y, what, others=OTHERS):
    h = CURV_STEP * y
    rows = inner.solve(np.array([y - h, y + h]), others)
    return float(np.diff(getattr(rows, what))[0] / (2 * h))


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("alpha", [0, 1, 2])
def test_curvature_matches_finite_differences_of_the_derivative(small_users, alpha):
    game = one_aggregator_game(small_users, alpha)
    inner, _ = paths(game)
    y_max = game.feasible_max(0, OTHERS)
    for y in (0.3 * y_max, 0.6 * y_max):
        curv = float(inner.solve(np.array([y]), OTHERS).curvature[0])
        assert curv == pytest.approx(central(inner, y, "derivative"), rel=CURV_RTOL)


@needs_ipopt
@pytest.mark.solver
def test_maxmin_flat_row_skips_phase_one_and_matches_two_phases(small_users):
    game = one_aggregator_game(small_users, "inf")
    reuse, rebuild = paths(game)
    # Others buying past the poorest member's U'(0): it is priced out at every y.
    others = game.price.inverse(float(game.players[0].marginal_at_zero.min())) + 1
    y = 0.3 * game.feasible_max(0, others)
    a, b = (p.solve(np.array([y]), others) for p in (reuse, rebuild))
    assert reuse.counter.by_phase == {"tiebreak": 1}  # the level was known
    assert rebuild.counter.by_phase == {"welfare": 1, "tiebreak": 1}
    assert a.welfare[0] == pytest.approx(b.welfare[0], rel=PATH_RTOL)
    assert a.tiebreak[0] == pytest.approx(b.tiebreak[0], rel=PATH_RTOL)
    assert a.tiebreak_derivative[0] == pytest.approx(b.tiebreak_derivative[0],
                                                     rel=PATH_RTOL, abs=PATH_RTOL)
    np.testing.assert_allclose(a.x, b.x, atol=PATH_RTOL * y)
    assert float(a.curvature[0]) == pytest.approx(
        central(reuse, y, "tiebreak_derivative", others), rel=CURV_RTOL)


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize(("alpha", "share"), [(0, 0.99), (1, 0.9995)])
def test_surplus_as_bound_gives_the_total_derivative_at_capacity(small_users, alpha,
                                                                 share):
    """Near the capacity members sit at xbar_i: sigma_i comes from the bound's
    multiplier on the written path, from the s_i >= 0 row on the rebuild path."""
    game = one_aggregator_game(small_users, alpha)
    reuse, rebuild = paths(game)
    y = np.array([share * game.feasible_max(0, OTHERS)])
    a, b = reuse.solve(y, OTHERS), rebuild.solve(y, OTHERS)
    at_cap = np.isclose(a.x[0], game.players[0].zero_surplus_consumption(
        a.price[0]), rtol=1e-7) & (a.x[0] > 0)
    assert at_cap.any()  # the case this test is about
    native = NativeInner(game, 0).solve(y, OTHERS).derivative[0]
    assert a.derivative[0] == pytest.approx(b.derivative[0], rel=PATH_RTOL)
    assert a.derivative[0] == pytest.approx(native, rel=PATH_RTOL)


@needs_ipopt
@pytest.mark.solver
def test_one_member_rows_need_no_solver():
    alone = quadratic_users(np.array([0.4]), np.array([6.0]), prefix="alone")
    game = Game((Player.individual(alone[0]),
                 Player.aggregator("A", quadratic_users(np.array([0.3, 0.6]),
                                                        np.array([5.0, 8.0])))),
                LinearPrice(0.05))
    reuse, rebuild = paths(game)
    y = np.array([2.0, 5.0])
    a, b = reuse.solve(y, OTHERS), rebuild.solve(y, OTHERS)
    assert reuse.counter.solves == 0 and rebuild.counter.solves == 2
    for field in ("welfare", "multiplier", "derivative"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field),
                                   rtol=PATH_RTOL)


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("alpha", [1, "inf"])
def test_sequential_search_finds_the_old_searchs_best_response(small_users, alpha,
                                                               monkeypatch):
    from aggregame.solvers.inner.pyomo_backend import PyomoInner

    game = one_aggregator_game(small_users, alpha)
    y_max = game.feasible_max(0, OTHERS)
    found = {}
    for sequential in (True, False):
        monkeypatch.setattr(search, "SEQUENTIAL_SEARCH", sequential)
        inner = PyomoInner(game, 0)
        found[sequential] = [
            br.best_response(inner, OTHERS),
            br.best_response(inner, OTHERS, current=0.4 * y_max,
                             step_hint=0.01 * y_max)]
    if alpha == "inf":
        # Golden section on Ipopt's levels (known to ~1e-9) stops anywhere the
        # level is flat to that noise: ~1e-7 of y_max around a kink. The payoffs
        # must agree; the purchases to that width.
        for new, old in zip(found[True], found[False]):
            assert new.welfare == pytest.approx(old.welfare, rel=1e-8)
            assert new.y == pytest.approx(old.y, abs=1e-6 * y_max)
        return
    np.testing.assert_allclose([r.y for r in found[True]],
                               [r.y for r in found[False]], rtol=0,
                               atol=BR_RTOL * y_max)
