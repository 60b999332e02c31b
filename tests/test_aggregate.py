"""Every equilibrium by the search over the total, against brute force.

The brute force shares nothing with the engine: for two one-member players it
computes each one's best response to the other's purchase by a dense scan of its
payoff (then the first-order root beside the best sample), and finds the fixed
points of y1 -> BR1(BR2(y1)) where that map is continuous (a jump of a best
response is not a fixed point).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from aggregame import (
    Game,
    LinearPrice,
    Player,
    QuadraticUtility,
    SaturatingPrice,
    User,
    quadratic_users,
)
from aggregame.scenario import load_scenario
from aggregame.solvers.equilibrium.aggregate import find_equilibria, solve_aggregate
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium


def _alone(users, price) -> Game:
    return Game(tuple(Player.individual(User(f"u{k}", QuadraticUtility(a, b)))
                      for k, (a, b) in enumerate(users)), price)


def _best_response(a: float, b: float, price, other: float, top: float) -> float:
    """Argmax over [0, top] of b y - a y^2 - p(other + y) y: a dense scan, then
    the root of its slope beside the best sample."""
    z = np.linspace(0.0, top, 20001)
    s = b * z - a * z * z - price.value(other + z) * z
    k = int(np.argmax(s))
    lo, hi = z[max(k - 1, 0)], z[min(k + 1, z.size - 1)]

    def slope(y):
        return b - 2 * a * y - price.value(other + y) - price.derivative(other + y) * y

    if slope(lo) > 0 > slope(hi):
        return brentq(slope, lo, hi, xtol=1e-12)
    return float(z[k])


def brute_force(game: Game, top: float) -> list[np.ndarray]:
    """Equilibria of two one-member quadratic players, by best responses."""
    (a1, b1), (a2, b2) = [(p.members[0].utility.a, p.members[0].utility.b)
                          for p in game.players]

    def gap(y1: float) -> tuple[float, float]:
        y2 = _best_response(a2, b2, game.price, y1, top)
        return _best_response(a1, b1, game.price, y2, top) - y1, y2

    grid = np.linspace(0.0, top, 1201)
    values = [gap(float(y))[0] for y in grid]
    found = []
    for k in range(grid.size - 1):
        if values[k] == 0 or values[k] * values[k + 1] < 0:
            root = brentq(lambda y: gap(y)[0], grid[k], grid[k + 1], xtol=1e-10) \
                if values[k] != 0 else float(grid[k])
            g, y2 = gap(root)
            if abs(g) < 1e-6:  # a fixed point, not a jump of a best response
                found.append(np.array([root, y2]))
    return found


@pytest.mark.unit
@pytest.mark.parametrize("case, expected", [
    ((5.97, 48.2, [(4e-4, 6.07), (6.2e-4, 6.26)]), 3),
    ((9.9, 50.0, [(1e-4, 10.0), (1e-4, 10.0)]), 2),
    ((7.71, 89.3, [(1e-4, 7.95), (2.77e-4, 7.42)]), 1),
])
def test_exact_set_against_brute_force(case, expected):
    """0, 1, 2 or 3 equilibria: the engine's set, proved complete, is the brute
    force's, and each is certified."""
    P, w, users = case
    game = _alone(users, SaturatingPrice(P, w))
    found = find_equilibria(game)
    assert found.complete, found.why
    brute = brute_force(game, 3000.0)
    assert len(found.equilibria) == len(brute) == expected
    for eq, ref in zip(found.equilibria, sorted(brute, key=lambda v: v.sum())):
        assert eq.certified
        np.testing.assert_allclose(eq.profile, ref, rtol=1e-6, atol=1e-6)


@pytest.mark.unit
def test_a_game_without_equilibrium_is_proved_to_have_none():
    """Zero equilibria, complete, is an answer: Z's roots are all candidates that
    a player would leave for a far purchase (the concave price's other peak)."""
    game = _alone([(1.0045344772632145e-4, 7.953431821849269),
                   (2.768830983151494e-4, 7.420165240885762)],
                  SaturatingPrice(7.710242901850403, 89.28606256504834))
    found = find_equilibria(game)
    assert found.complete and not found.equilibria, found.why
    assert found.rejected  # the roots of Z were found and refuted
    assert found.verdict() == "no equilibrium (proved)"
    assert brute_force(game, 3000.0) == []


@pytest.mark.unit
def test_two_equilibria_scenario_has_exactly_two():
    found = find_equilibria(load_scenario("two_equilibria").game)
    assert found.complete and len(found.equilibria) == 2
    assert [round(float(eq.profile[0]), 1) for eq in found.equilibria] == [53.9, 500.0]
    assert len(found.rejected) == 1  # the middle root: a candidate, not an equilibrium


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(3))
def test_social_welfare_aggregators_are_proved_unique_and_agree_with_dynamics(seed):
    """Aggregators at alpha = 0 and individuals under a linear price: every reply
    falls with the total, so the equilibrium is unique (proved); it is the one the
    dynamics reach."""
    rng = np.random.default_rng(seed)
    players = [Player.aggregator(f"agg{k}", quadratic_users(
        rng.uniform(0.1, 0.9, 20), rng.uniform(0.0, 10.0, 20), f"m{k}"),
        rule=("floor", "viable", "strict")[seed]) for k in range(4)]
    players.append(Player.individual(User("large", QuadraticUtility(0.5, 200.0))))
    game = Game(tuple(players), LinearPrice(0.005))
    found = find_equilibria(game)
    assert found.unique and found.equilibria[0].certified
    gs = solve_equilibrium(game)
    assert gs.is_equilibrium
    np.testing.assert_allclose(found.equilibria[0].profile, gs.profile, rtol=1e-7,
                               atol=1e-7)


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [2.0, float("inf")])
def test_other_aggregators_are_found_not_proved(alpha):
    """Where no theorem holds, the engine finds the equilibrium the dynamics reach
    and says the set is not proved complete (at alpha = inf it finds a second one,
    at tiny purchases, which the dynamics from zero do not reach)."""
    rng = np.random.default_rng(5)
    players = tuple(Player.aggregator(f"agg{k}", quadratic_users(
        rng.uniform(0.1, 0.9, 15), rng.uniform(0.0, 10.0, 15), f"m{k}"), alpha=alpha,
        maxmin="total-surplus") for k in range(3))
    game = Game(players, LinearPrice(0.01))
    found = find_equilibria(game)
    assert not found.complete and "not proved" in found.verdict()
    gs = solve_equilibrium(game)
    assert gs.is_equilibrium
    assert any(np.allclose(eq.profile, gs.profile, rtol=1e-5, atol=1e-5)
               for eq in found.equilibria)


@pytest.mark.unit
def test_solve_aggregate_returns_a_certified_equilibrium_or_says_why():
    eq = solve_aggregate(load_scenario("fig4").game)
    assert eq.is_equilibrium and eq.method == "aggregate"
    none = _alone([(1.0045344772632145e-4, 7.953431821849269),
                   (2.768830983151494e-4, 7.420165240885762)],
                  SaturatingPrice(7.710242901850403, 89.28606256504834))
    eq = solve_aggregate(none)
    assert not eq.is_equilibrium and not eq.certified


@pytest.mark.slow
def test_replies_on_a_local_dask_cluster_equal_the_local_run():
    """One shard of players per worker (members shipped once): the same equilibria,
    bit for bit, the same verdict."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        for name in ("fig4", "two_equilibria"):
            game = load_scenario(name).game
            local, remote = find_equilibria(game), find_equilibria(game, dask=client)
            assert remote.verdict() == local.verdict()
            assert [eq.profile.tolist() for eq in remote.equilibria] == \
                [eq.profile.tolist() for eq in local.equilibria]
