"""The fast paths of the native backend and the certificate against their slow,
independent versions: closed-form level intervals vs bisection, the member Newton vs
the safe bisection, the lean single-row solve vs the batch, and the certificate's
concave shortcut vs the full grid."""

import numpy as np
import pytest

from aggregame import Game, LinearPrice, Player, PowerPrice, quadratic_users
from aggregame.allocation import (
    CHECK_HALVINGS,
    CLOSED_FORM_ALPHAS,
    RESIDUAL_TOL,
    inner_setup,
    level_interval,
    marginal_of,
    maxmin_residual,
    quadratic_level_interval,
    quadratic_response,
    quadratic_response_slope,
    surplus_peak,
    utility_of,
)
from aggregame.solvers.inner import compiled
from aggregame.solvers.inner.compiled.jit import jit
from aggregame.solvers.inner.native import NativeInner
from aggregame.solvers.inner.safe import lambda_allocation, lambda_allocations


def _aggregator(alpha, rule="floor", n=12, seed=3, b_low=0.0):
    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(b_low, 10.0, n), "m")
    return Player.aggregator("agg", users, alpha=alpha, rule=rule,
                             maxmin="total-surplus")


@pytest.mark.unit
def test_quadratic_level_interval_matches_bisection():
    player = _aggregator(float("inf"), n=40)
    rng = np.random.default_rng(0)
    price = rng.uniform(0.0, 8.0, (5, 1))
    xbar = player.zero_surplus_consumption(price[:, 0])
    peak = surplus_peak(marginal_of, player, price, np.zeros_like(xbar), xbar,
                        CHECK_HALVINGS)
    a, b = player.families[0].params["a"], player.families[0].params["b"]
    top = np.where(b > price, (b - price) ** 2 / (4 * a), 0.0)
    # Levels below, near and above each member's peak, and <= 0 (no requirement).
    need = top * rng.uniform(-0.2, 1.2, top.shape)
    lo, hi = level_interval(utility_of, player, need, price, xbar, peak,
                            CHECK_HALVINGS)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 where need <= 0
        lo2, hi2, top2 = quadratic_level_interval(a, b, need, price, xbar)
    np.testing.assert_array_equal(np.isnan(lo), np.isnan(lo2))
    ok = ~np.isnan(lo)
    scale = xbar.max()
    np.testing.assert_allclose(lo2[ok], lo[ok], rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(hi2[ok], hi[ok], rtol=0, atol=1e-12 * scale)
    surplus_at_peak = player.evaluate("U", peak) - price * peak
    np.testing.assert_allclose(top2, surplus_at_peak, rtol=1e-12, atol=1e-14)


def _bisected_response(lam, q, a, floor, alpha):
    """x in [0, xbar] with g(x) = (q - 2 a x) phi'(q x - a x^2 + e) = lambda, by
    bisection on g (decreasing), written here from phi' = D^-alpha alone."""
    xbar = np.where(q > 0, q / a, 0.0)

    def g(x):
        level = np.maximum(q * x - a * x * x + floor, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (q - 2 * a * x) / level ** alpha

    lo, hi = np.zeros_like(xbar), xbar.copy()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        up = g(mid) > lam
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return 0.5 * (lo + hi), xbar


@pytest.mark.unit
@pytest.mark.parametrize("alpha", CLOSED_FORM_ALPHAS)
def test_quadratic_closed_form_response_matches_bisection(alpha):
    """x_i(lambda) in closed form, numpy and compiled, against bisection on g over
    lambdas of every sign and magnitude (0, +-1e-200 ... +-1e200, +-inf), floors 0
    and > 0, members priced in and out; its slope against central differences."""
    rng = np.random.default_rng(7)
    n = 4000
    a = 10.0 ** rng.uniform(-3, 2, n)
    q = np.where(rng.random(n) < 0.1, -rng.uniform(0, 1, n),
                 10.0 ** rng.uniform(-3, 2, n))
    floor = np.where(rng.random(n) < 0.5, 0.0, 10.0 ** rng.uniform(-6, 2, n))
    g0 = np.where(floor > 0, q / np.maximum(floor, 1e-300) ** alpha, np.inf)
    magnitudes = 10.0 ** rng.uniform(-200, 200, n)
    lam = np.select([rng.random(n) < 0.05, rng.random(n) < 0.05],
                    [0.0, np.inf * np.sign(rng.normal(size=n))],
                    np.where(rng.random(n) < 0.5, rng.uniform(-2, 1, n) * g0,
                             magnitudes * np.sign(rng.normal(size=n))))
    lam = np.where(np.isnan(lam), 1.0, lam)
    truth, xbar = _bisected_response(lam, q, a, floor, alpha)
    with np.errstate(all="ignore"):
        x = quadratic_response(lam, q, a, 2 * a, floor, xbar, alpha)
    assert np.all((x >= 0) & (x <= xbar))
    err = np.abs(x - truth) / np.maximum(xbar, 1e-300)
    assert err.max() <= 1e-9, (err.argmax(), lam[err.argmax()], err.max())
    if compiled.ENABLED:
        response = jit(quadratic_response)  # the kernels' compiled form
        kernel = [response(*args, alpha) for args in zip(lam, q, a, 2 * a, floor, xbar)]
        np.testing.assert_allclose(kernel, x, rtol=1e-13, atol=1e-300)
    # dx/dlambda where the member is well inside (0, xbar) at a finite lambda.
    inside = (x > 1e-3 * xbar) & (x < (1 - 1e-3) * xbar) & np.isfinite(lam) & (lam != 0)
    # The step on lambda's own scale: |lambda| or, for tiny ones, g's size, q / D^alpha
    # at the surplus peak.
    peak_level = q[inside] ** 2 / (4 * a[inside]) + floor[inside]
    h = 1e-6 * (np.abs(lam[inside]) + q[inside] / peak_level ** alpha)
    with np.errstate(all="ignore"):
        up = quadratic_response(lam[inside] + h, q[inside], a[inside], 2 * a[inside],
                                floor[inside], xbar[inside], alpha)
        down = quadratic_response(lam[inside] - h, q[inside], a[inside],
                                  2 * a[inside], floor[inside], xbar[inside], alpha)
        slope = quadratic_response_slope(lam[inside], x[inside], q[inside], a[inside],
                                         2 * a[inside], floor[inside], 1.0, alpha)
    np.testing.assert_allclose(slope, (up - down) / (2 * h), rtol=1e-4)
    assert inside.sum() > 200


@pytest.mark.unit
def test_maxmin_residual_flags_a_level_that_is_not_the_largest():
    player = _aggregator(float("inf"), b_low=2.0)  # nobody priced out: level moves
    game = Game((player,), LinearPrice(0.001))
    setup = inner_setup(game, 0, np.array([20.0]), 100.0)
    good = NativeInner(game, 0).solve(np.array([20.0]), 100.0)
    assert good.residual[0] <= RESIDUAL_TOL
    # Move consumption from the poorest member to the richest: same balance, lower
    # level, so a higher level is feasible and the residual must say so.
    x = good.x.copy()
    poor, rich = np.argmin(good.surplus[0]), np.argmax(good.surplus[0])
    moved = 0.2 * x[0, poor]
    x[0, poor] -= moved
    x[0, rich] += moved
    bad = maxmin_residual(player, setup.y, setup.price, x, setup.xbar, setup.floor,
                          setup.priced_out)
    assert bad[0] >= 1.0


@pytest.mark.unit
def test_maxmin_strict_level_pinned_at_zero_is_accepted():
    # A counted member priced out under strict pins the level at 0; the allocation's
    # level may round to -1e-17 and must not be taken for a suboptimal one.
    player = _aggregator(float("inf"), rule="strict", n=11, seed=5)
    game = Game((player,), PowerPrice(0.0683, 1.5))
    y_max = game.feasible_max(0, 0.0)
    ys = np.linspace(0.0, y_max, 13)
    batch = NativeInner(game, 0).solve(ys, 0.0)
    assert np.all(batch.residual <= RESIDUAL_TOL)


@pytest.mark.unit
@pytest.mark.parametrize("rule", ["floor", "viable", "strict"])
def test_max_min_log_members_match_safe_bisection(rule):
    """Members without a closed form (log utilities): the total-surplus fill by
    Newton in nu (and per member on U' = p + nu) against the safe bisection, member
    by member, with rows batched and single, and every residual in tolerance."""
    from aggregame import LogUtility, User
    from aggregame.solvers.inner.safe import maxmin_allocation

    rng = np.random.default_rng(3)
    users = [User(f"l{i}", LogUtility(w))
             for i, w in enumerate(rng.uniform(0.5, 5, 25))]
    player = Player.aggregator("agg", users, alpha="inf", rule=rule, eps=0.01,
                               maxmin="total-surplus")
    game = Game((player,), LinearPrice(0.01))
    others = 100.0
    y_max = game.feasible_max(0, others)
    ys = np.linspace(0.0, y_max, 7)
    batch = NativeInner(game, 0).solve(ys, others)
    setup = inner_setup(game, 0, ys, others)
    assert np.all(batch.residual <= RESIDUAL_TOL)
    for k, y in enumerate(ys):
        x, _ = maxmin_allocation(player, float(y), float(setup.price[k]),
                                 setup.xbar[k], setup.floor[k], setup.priced_out[k])
        np.testing.assert_allclose(batch.x[k], x, rtol=0, atol=1e-9 * y_max)
        one = NativeInner(game, 0).solve(np.array([y]), others)
        np.testing.assert_allclose(one.x[0], x, rtol=0, atol=1e-9 * y_max)


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_member_newton_matches_safe_bisection(alpha):
    player = _aggregator(alpha, n=30)
    game = Game((player,), LinearPrice(0.001))
    inner = NativeInner(game, 0)
    y_max = game.feasible_max(0, 300.0)
    for y in np.linspace(0.05, 0.95, 7) * y_max:
        sol = inner.solve(np.array([y]), 300.0)
        setup = inner_setup(game, 0, np.array([y]), 300.0)
        x, _ = lambda_allocation(player, y, float(setup.price[0]), setup.xbar[0],
                                 setup.weight[0], setup.floor[0])
        assert sol.residual[0] <= RESIDUAL_TOL
        # The bisection in log space is the less accurate of the two (measured:
        # 1.4e-9 of y_max at alpha = 5, where Newton's residual is 1e-16).
        np.testing.assert_allclose(sol.x[0], x, rtol=0, atol=1e-7 * y_max)


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 1.0, 3.0])
def test_safe_bisection_of_many_rows_is_that_of_each_row(alpha):
    """The safe path solves the failed rows of a batch together; each row halves
    until its own brackets close, so the batch changes no bit of any row."""
    player = _aggregator(alpha, rule="viable", n=9)
    game = Game((player,), LinearPrice(0.01))
    ys = np.linspace(0.0, 1.0, 13)[1:-1] ** 3 * game.feasible_max(0, 50.0)
    setup = inner_setup(game, 0, ys, 50.0)
    x, lam = lambda_allocations(player, setup.y, setup.price, setup.xbar,
                                setup.weight, setup.floor)
    for k, y in enumerate(ys):
        one_x, one_lam = lambda_allocation(player, float(y), float(setup.price[k]),
                                           setup.xbar[k], setup.weight[k],
                                           setup.floor[k])
        assert np.array_equal(x[k], one_x) and lam[k] == one_lam


@pytest.mark.unit
def test_concave_shortcut_agrees_with_the_bounds(monkeypatch):
    """One-member players under a convex price skip the samples and the bounds
    between them (their payoff is concave: the tangent at the maximum bounds it);
    the general path, forced by calling the price not convex, gives the same
    verdicts and regrets, with several times the evaluations."""
    import aggregame.solvers.certify.scan as cert
    from aggregame import individuals

    rng = np.random.default_rng(7)
    users = quadratic_users(rng.uniform(0.1, 0.9, 6), rng.uniform(1.0, 10.0, 6), "c")
    game = Game(tuple(individuals(users)), PowerPrice(0.01, 1.5))
    assert game.price.convex
    for profile in (np.full(6, 1.0), rng.uniform(0.0, 3.0, 6)):
        fast = cert.certify(game, profile)
        monkeypatch.setattr(PowerPrice, "convex", False)
        slow = cert.certify(game, profile)
        monkeypatch.undo()
        assert fast.evaluations < slow.evaluations / 3
        assert fast.verdicts == slow.verdicts
        np.testing.assert_allclose(fast.regrets, slow.regrets, rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose(fast.deviations, slow.deviations, rtol=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("seed", range(4))
def test_one_member_players_at_once_match_one_at_a_time(seed):
    """The one-pass certificate of one-member quadratic players (arrays over the
    players) gives the verdicts, regrets and deviations of the per-player path, on
    and off equilibrium, whatever the rule and alpha."""
    from aggregame.solvers.certify import scan
    from aggregame.solvers.certify.one_member import certify_one_members, eligible
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, 8), rng.uniform(0.5, 10.0, 8), "c")
    rule = ("floor", "viable", "strict", "floor")[seed]
    alpha = (0.0, 1.0, 2.0, float("inf"))[seed]
    players = tuple(Player.aggregator(u.name, [u], alpha=alpha, rule=rule)
                    for u in users)
    game = Game(players, PowerPrice(0.01, 1.0 + 0.5 * (seed % 2)))
    equilibrium = solve_equilibrium(game).profile
    for profile in (equilibrium, equilibrium * rng.uniform(0.5, 1.5, 8)):
        together = certify_one_members(game, profile, 1e-6, eligible(game))
        for j in range(8):
            alone, _ = scan._player_regret(game, j, profile, 1e-6, compiled=True)
            assert together[j].verdict is alone.verdict, (j, profile)
            assert together[j].relative_regret == pytest.approx(
                alone.relative_regret, rel=1e-6, abs=1e-12)
            if alone.relative_regret > 1e-9:
                assert together[j].deviation == pytest.approx(alone.deviation,
                                                              rel=1e-6)


@pytest.mark.unit
@pytest.mark.parametrize("members, setting, expected", [
    (19_999, "", False), (20_000, "", True), (10**6, "0", False)])
def test_malloc_thresholds_only_for_large_players(monkeypatch, members, setting,
                                                  expected):
    """glibc's thresholds are set once, for a player of LARGE_MEMBERS members or
    more, and never with AGGREGAME_MALLOC=0 (a setting of the whole process)."""
    import platform

    from aggregame.solvers.inner import malloc

    calls = []

    class FakeLibc:
        def mallopt(self, name, value):
            calls.append((name, value))
            return 1

    monkeypatch.setattr(malloc, "_DONE", [])
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda *a, **k: FakeLibc())
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setenv("AGGREGAME_MALLOC", setting)
    malloc.keep_freed_arrays(members)
    malloc.keep_freed_arrays(members)
    assert calls == (list(malloc.SETTINGS) if expected else [])
