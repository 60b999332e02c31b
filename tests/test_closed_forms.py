"""Closed forms and the joint Newton of the native backend against independent
computations: the Cournot profile against a linear solve and a dense grid, the
certificate's closed-form maximizer against a dense grid (and a max-min single user,
whose payoff scale starts at 0), and the joint (x, lambda) Newton against the safe
bisection of solvers/inner/safe.py."""

import numpy as np
import pytest

from aggregame import (
    AffinePrice,
    Game,
    LinearPrice,
    Player,
    individuals,
    quadratic_users,
)
from aggregame.allocation import inner_setup
from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.closed_forms import single_user_equilibrium
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.inner.native import NativeInner
from aggregame.solvers.inner.safe import lambda_allocation

#: Closed forms and exact solves agree to rounding.
EXACT_RTOL = 1e-12
#: A dense grid of this many points locates a maximum to about 1/GRID of the interval.
GRID = 200_001


def _users_game(a, b, price):
    return Game(tuple(individuals(quadratic_users(a, b))), price)


@pytest.mark.unit
def test_single_user_equilibrium_matches_a_linear_solve_when_everyone_buys():
    rng = np.random.default_rng(4)
    a, b, c = rng.uniform(0.1, 0.9, 7), rng.uniform(5, 10, 7), 0.02
    y = single_user_equilibrium(_users_game(a, b, LinearPrice(c)))
    # (2 a_i + c) y_i + c Y = b_i for every buying player.
    expected = np.linalg.solve(np.diag(2 * a + c) + c * np.ones((7, 7)), b)
    np.testing.assert_allclose(y, expected, rtol=EXACT_RTOL)


@pytest.mark.unit
def test_single_user_equilibrium_is_a_best_response_on_a_dense_grid():
    # Affine price with p0 above some b: those users buy nothing.
    a = np.array([0.3, 0.5, 0.2, 0.8, 0.4])
    b = np.array([9.0, 1.5, 6.0, 0.8, 4.0])
    game = _users_game(a, b, AffinePrice(1.0, 0.3))
    y = single_user_equilibrium(game)
    assert y[0] > 0 and y[3] == 0.0
    for j in range(5):
        others = y.sum() - y[j]
        grid = np.linspace(0.0, 20.0, GRID)
        surplus = b[j] * grid - a[j] * grid**2 - (1.0 + 0.3 * (others + grid)) * grid
        assert abs(grid[np.argmax(surplus)] - y[j]) <= 2 * 20.0 / GRID


@pytest.mark.unit
@pytest.mark.parametrize("method", ["gauss-seidel", "jacobi"])
def test_closed_form_rounds_reach_the_closed_form_profile(method):
    rng = np.random.default_rng(5)
    game = _users_game(rng.uniform(0.1, 0.9, 9), rng.uniform(0, 10, 9),
                       LinearPrice(0.01))
    eq = solve_equilibrium(game, settings=DynamicsSettings(method=method))
    assert eq.is_equilibrium and set(eq.strategies) == {"closed-form"}
    np.testing.assert_allclose(eq.profile, single_user_equilibrium(game),
                               rtol=1e-9, atol=1e-9)


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 2.0, float("inf")])
def test_certificate_closed_form_finds_the_grid_maximum(alpha):
    """A profile off equilibrium by 5%: the deviation the certificate reports is the
    maximizer of the player's own payoff on a dense grid (max-min included: its
    sampled scale is 0 until the ends are evaluated)."""
    users = quadratic_users([0.4, 0.6], [8.0, 6.0])
    game = Game((Player.aggregator("solo", users[:1], alpha=alpha),
                 Player.individual(users[1])), LinearPrice(0.05))
    y = single_user_equilibrium(Game(tuple(individuals(users)), LinearPrice(0.05)))
    cert = certify(game, y * np.array([1.05, 1.0]))
    assert not cert.certified
    others = 1.0 * y[1]
    grid = np.linspace(0.0, game.feasible_max(0, others), GRID)
    surplus = 8.0 * grid - 0.4 * grid**2 - 0.05 * (others + grid) * grid
    step = grid[1]
    assert abs(cert.deviations[0] - grid[np.argmax(surplus)]) <= 2 * step
    at_equilibrium = certify(game, y)
    assert at_equilibrium.certified


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_joint_newton_matches_the_safe_bisection(alpha):
    rng = np.random.default_rng(6)
    users = quadratic_users(rng.uniform(0.1, 0.9, 30), rng.uniform(0, 10, 30), "m")
    game = Game((Player.aggregator("agg", users, alpha=alpha),), LinearPrice(0.01))
    y_max = game.feasible_max(0, 50.0)
    ys = y_max * np.array([0.01, 0.2, 0.5, 0.8, 0.99])
    batch = NativeInner(game, 0).solve(ys, 50.0)
    setup = inner_setup(game, 0, ys, 50.0)
    for k, y in enumerate(ys):
        x, _ = lambda_allocation(game.players[0], float(y), float(setup.price[k]),
                                 setup.xbar[k], setup.weight[k], setup.floor[k])
        np.testing.assert_allclose(batch.x[k], x, rtol=0, atol=1e-9 * y_max)


@pytest.mark.unit
def test_joint_newton_is_not_fooled_by_a_vanishing_newton_step():
    """alpha = 5, viable rule, tiny utilities: near s = 0, g' is so large that the
    Newton step is ~0 whatever g - lambda is. Warm single solves (walking down the
    purchases) once stopped 30% away from the batch's allocation; the batch is
    checked against the safe bisection too."""
    users = quadratic_users([0.001, 0.001, 0.001, 0.001], [0.001, 0.0005, 0.001, 0.001])
    game = Game((Player.aggregator("a", users[:1]),
                 Player.aggregator("b", users[1:3], alpha=5.0, rule="viable", eps=1e-6),
                 Player.aggregator("c", users[3:])), LinearPrice(1e-6))
    others = 0.5 * (game.feasible_max(0, 0.0) + game.feasible_max(2, 0.0))
    y_max = game.feasible_max(1, others)
    ys = y_max * np.array([0.05, 0.2, 0.37, 0.5, 0.63, 0.8, 0.97])
    batch = NativeInner(game, 1).solve(ys, others)
    warm = NativeInner(game, 1)
    singles = [warm.solve(np.array([y]), others) for y in ys[::-1]][::-1]
    setup = inner_setup(game, 1, ys, others)
    for k, y in enumerate(ys):
        x, _ = lambda_allocation(game.players[1], float(y), float(setup.price[k]),
                                 setup.xbar[k], setup.weight[k], setup.floor[k])
        np.testing.assert_allclose(batch.x[k], x, rtol=0, atol=1e-9 * y_max)
        np.testing.assert_allclose(singles[k].x[0], x, rtol=0, atol=1e-9 * y_max)
