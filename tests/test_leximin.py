"""Leximin max-min: progressive filling against independent oracles, the alpha -> inf
limit, the lexicographic best response and certificate, and the refusals."""

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from aggregame import (
    Fairness,
    Game,
    LinearPrice,
    MaxMinRule,
    Player,
    QuadraticUtility,
    ScenarioError,
    UnsupportedProblemError,
    User,
    quadratic_users,
)
from aggregame.allocation import RESIDUAL_TOL, inner_setup
from aggregame.leximin import compare, levels, leximin_residual
from aggregame.scenario import scenario_from_dict
from aggregame.solvers.certify.bounds import PriceWindow
from aggregame.solvers.certify.branch import _Fronts, _out_of_reach
from aggregame.solvers.certify.payoffs import Payoffs
from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.best_response import best_response
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner.leximin import LexPayoff, batch_levels, best_of
from aggregame.solvers.inner.native import NativeInner

#: Agreement of two computations of the same level (both to ~1e-13).
LEVEL_RTOL = 1e-9
EPS = 0.01


def aggregator(users, alpha="inf", rule="floor", maxmin="leximin", eps=EPS):
    return Player.aggregator("A", users, alpha=alpha, rule=rule, eps=eps,
                             maxmin=maxmin)


def users_of(seed, n, b_low=0.0):
    rng = np.random.default_rng(seed)
    return quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(b_low, 10, n))


def leximin_batch(users, ys, c=0.05, others=0.0, rule="floor"):
    game = Game((aggregator(users, rule=rule),), LinearPrice(c))
    return game, NativeInner(game, 0).solve(np.asarray(ys, float), others)


# -- progressive filling ----------------------------------------------------------
def grid_levels(users, y, price):
    """Sorted levels of every three-member allocation of y on a fine grid (the
    grid's allocations add up to y exactly and respect the bounds)."""
    a = np.array([u.utility.a for u in users])
    b = np.array([u.utility.b for u in users])
    xbar = np.maximum(b - price, 0) / a
    h = y / 1200
    x1, x2 = np.meshgrid(np.arange(0, y + h / 2, h), np.arange(0, y + h / 2, h))
    x = np.stack([x1.ravel(), x2.ravel(), y - x1.ravel() - x2.ravel()], axis=1)
    x = x[np.all((x >= 0) & (x <= xbar), axis=1)]
    return np.sort(-a * x**2 + (b - price) * x + EPS, axis=1), 4 * h * np.abs(b).max()


@pytest.mark.unit
@pytest.mark.parametrize("fraction", [0.15, 0.4, 0.7, 0.95])
def test_progressive_filling_beats_every_allocation_of_a_grid(fraction):
    """No allocation of a 1200 x 1200 grid is lexicographically better than
    progressive filling's, and the grid's best smallest level comes within its
    resolution of it (both regimes: below and above the members' total peak)."""
    users = users_of(11, 3, b_low=3.0)
    game = Game((aggregator(users),), LinearPrice(0.3))
    y = fraction * game.feasible_max(0, 0.0)
    batch = NativeInner(game, 0).solve(np.array([y]), 0.0)
    ours = batch_levels(game.players[0], batch)[0]
    grid, resolution = grid_levels(users, y, float(batch.price[0]))
    assert batch.residual[0] <= 1e-12
    diff = grid - ours
    differs = np.abs(diff) > 1e-10 * np.abs(ours).max()
    first = np.argmax(differs, axis=1)
    better = differs.any(axis=1) & (diff[np.arange(len(grid)), first] > 0)
    assert not better.any()
    assert grid[:, 0].max() >= ours[0] - resolution


@pytest.mark.unit
@pytest.mark.parametrize("rule", ["floor", "strict", "viable"])
def test_smallest_level_is_the_maxmin_level(rule):
    """The first sorted component is the largest minimum, which the total-surplus
    reading's own level root (another code path) finds too."""
    users = users_of(4, 12)
    game = Game((aggregator(users, rule=rule),), LinearPrice(0.3))
    ys = np.linspace(0, game.feasible_max(0, 0.0), 23)
    lex = NativeInner(game, 0).solve(ys, 0.0)
    other = Game((aggregator(users, rule=rule, maxmin="total-surplus"),),
                 LinearPrice(0.3))
    ts = NativeInner(other, 0).solve(ys, 0.0)
    assert lex.residual.max() <= 1e-10
    scale = np.abs(ts.welfare).max()
    assert np.allclose(lex.welfare, ts.welfare, rtol=0, atol=LEVEL_RTOL * scale)


@pytest.mark.unit
def test_residual_flags_an_allocation_that_is_not_leximin():
    users = users_of(2, 6, b_low=2.0)
    game, batch = leximin_batch(users, [3.0])
    setup = inner_setup(game, 0, np.array([3.0]), 0.0)
    x = batch.x.copy()
    inside = np.flatnonzero((x[0] > 1e-3) & (x[0] < setup.xbar[0] - 1e-3))
    i, k = inside[:2]
    x[0, i] += 1e-3  # a transfer between two members at the common level
    x[0, k] -= 1e-3
    counted = setup.weight > 0
    good = leximin_residual(game.players[0], setup.y, setup.price, batch.x,
                            setup.xbar, setup.floor, counted)
    bad = leximin_residual(game.players[0], setup.y, setup.price, x, setup.xbar,
                           setup.floor, counted)
    assert good[0] <= 1e-12 < RESIDUAL_TOL < bad[0]


# -- the alpha -> inf limit ---------------------------------------------------------
def alpha_fair_oracle(users, ys, price, alpha):
    """alpha-fair allocations (floor EPS) by nested bisection in log space: a
    multiplier lambda = +-exp(|u| - 700) (monotone in u), each member's x solving
    (s + e)^-alpha (U' - p) = lambda, compared through logarithms so that alpha = 32
    neither overflows nor underflows."""
    a = np.array([u.utility.a for u in users])[None, :]
    q = np.array([u.utility.b for u in users])[None, :] - price[:, None]
    xbar = np.maximum(q, 0) / a
    ys = np.asarray(ys)[:, None]

    def above(x, u):  # g(x) > lambda(u)
        slope = q - 2 * a * x
        log_s = np.log(np.maximum(q * x - a * x**2, 0) + EPS)
        with np.errstate(divide="ignore"):
            log_g = np.log(np.abs(slope)) - alpha * log_s
        log_l = np.abs(u) - 700
        pos = np.where(slope > 0, (u <= 0) | (log_g > log_l), False)
        neg = np.where(slope <= 0, (u < 0) & (log_g < log_l), False)
        return pos | neg

    def members(u):
        lo, hi = np.zeros_like(xbar * u), xbar + 0 * u
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            up = above(mid, u)
            lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
        return 0.5 * (lo + hi)

    ulo, uhi = np.full(ys.shape, -1500.0), np.full(ys.shape, 1500.0)
    for _ in range(90):
        mid = 0.5 * (ulo + uhi)
        over = members(mid).sum(axis=1, keepdims=True) > ys
        ulo, uhi = np.where(over, mid, ulo), np.where(over, uhi, mid)
    return members(0.5 * (ulo + uhi))


@pytest.mark.unit
def test_alpha_fair_allocations_approach_leximin():
    users = users_of(5, 5, b_low=2.0)
    game = Game((aggregator(users),), LinearPrice(0.05))
    ymax = game.feasible_max(0, 0.0)
    ys = np.linspace(0.05, 0.95, 8) * ymax
    lex = NativeInner(game, 0).solve(ys, 0.0)
    gaps = [np.abs(alpha_fair_oracle(users, ys, lex.price, alpha) - lex.x).max() / ymax
            for alpha in (8, 16, 32)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.01


@pytest.mark.unit
def test_alpha_fair_best_responses_approach_leximin():
    """An aggregator of four members against a fixed rival: the alpha-fair best
    purchase (maximum of J_alpha over a fine grid, oracle allocations) moves toward
    the leximin best response as alpha grows."""
    users = users_of(8, 4, b_low=3.0)
    c, others = 0.2, 10.0
    game = Game((aggregator(users), Player.individual(User("r", QuadraticUtility(
        0.5, 9.0)))), LinearPrice(c))
    lex = best_response(NativeInner(game, 0), others, strategy="scan")
    ymax = game.feasible_max(0, others)
    ys = np.linspace(0, ymax, 801)[1:-1]
    price = c * (others + ys)
    gaps = []
    for alpha in (8, 16, 32):
        x = alpha_fair_oracle(users, ys, price, alpha)
        a = np.array([u.utility.a for u in users])
        b = np.array([u.utility.b for u in users])
        s = np.maximum(-a * x**2 + (b - price[:, None]) * x, 0) + EPS
        # J_alpha = -sum s^-(alpha-1) / (alpha-1): its maximum is the minimum of
        # log sum exp(-(alpha-1) log s), which does not overflow at alpha = 32.
        j = int(np.argmin(logsumexp(-(alpha - 1) * np.log(s), axis=1)))
        gaps.append(abs(ys[j] - lex.y) / ymax)
    # Measured: 0.021, 0.011, 0.006 of the interval (the grid step is 0.00125).
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.01


# -- lexicographic order, best response, certificate --------------------------------
@pytest.mark.unit
def test_compare_is_lexicographic_with_a_tolerance():
    a = np.array([1.0, 2.0, 5.0])
    assert compare(a, np.array([1.0, 2.0, 4.0]), 1e-9) == 1
    assert compare(a, np.array([1.0 + 1e-12, 2.5, 0.0]), 1e-9) == -1
    assert compare(a, a + 1e-12, 1e-9) == 0
    assert compare(np.array([1.0, np.inf]), np.array([1.0, np.inf]), 0.0) == 0


@pytest.mark.unit
@settings(max_examples=200)
@given(st.lists(st.lists(st.sampled_from([-np.inf, 0.0, 0.01, 0.5, 0.5 + 1e-15, 2.0,
                                          np.inf]), min_size=3, max_size=3),
                min_size=1, max_size=12))
def test_exact_best_is_the_first_lexicographic_maximum(rows):
    """best_of without a tolerance (the zoom's) picks what a scan of pairwise
    comparisons picks: the first row no other row beats, ties included."""
    cands = [LexPayoff(float(k), np.array(r), 0.0, 0.0) for k, r in enumerate(rows)]
    scan = 0
    for k, c in enumerate(cands):
        if compare(c.levels, cands[scan].levels, 0.0) > 0:
            scan = k
    assert best_of(cands, 0.0) == scan


def two_aggregator_game(maxmin="leximin", n=6, c=0.02):
    users = users_of(21, 2 * n)
    players = tuple(Player.aggregator(f"A{k}", users[k::2], alpha="inf", maxmin=maxmin)
                    for k in range(2))
    large = Player.individual(User("large", QuadraticUtility(0.5, 60.0)))
    return Game(players + (large,), LinearPrice(c))


@pytest.mark.unit
def test_leximin_equilibrium_is_certified_and_a_move_is_not():
    game = two_aggregator_game()
    eq = solve_equilibrium(game)
    assert eq.converged and eq.certificate.certified
    profile = eq.profile.copy()
    y_max = game.feasible_max(0, float(profile[1:].sum()))
    profile[0] = 0.5 * (profile[0] + y_max)  # far from the leximin best response
    moved = certify(game, profile)
    assert not moved.certified and moved.relative_regrets[0] > 1e-3
    # The regret is the gain in the first sorted component that differs: recompute.
    inner = NativeInner(game, 0)
    others = float(profile[1:].sum())
    here = levels(game.players[0], inner.solve(profile[:1], others).surplus,
                  inner.solve(profile[:1], others).price)[0]
    there_b = inner.solve(np.array([moved.deviations[0]]), others)
    there = levels(game.players[0], there_b.surplus, there_b.price)[0]
    k = int(np.flatnonzero(np.abs(there - here) > 1e-9 * np.abs(there).max())[0])
    assert moved.regrets[0] == pytest.approx(there[k] - here[k], rel=1e-9)


@pytest.mark.unit
def test_leximin_buys_less_than_total_surplus():
    """Under the floor rule a max-min aggregator always has members priced out, so
    the total-surplus reading buys like alpha = 0; leximin holds its purchase down to
    keep its poorest members in (docs/model.md, section "Leximin")."""
    lex = solve_equilibrium(two_aggregator_game("leximin"))
    tot = solve_equilibrium(two_aggregator_game("total-surplus"))
    assert lex.certificate.certified and tot.certificate.certified
    assert lex.profile[:2].sum() < tot.profile[:2].sum()


@pytest.mark.unit
@settings(max_examples=60)
@given(seed=st.integers(0, 10**6), members=st.integers(2, 12),
       c=st.floats(0.005, 0.2), others=st.floats(0.0, 50.0),
       start=st.floats(0.0, 0.99), width=st.floats(1e-4, 1.0),
       rule=st.sampled_from(["floor", "viable"]))
def test_reach_test_leaves_open_every_interval_that_reaches_the_level(
        seed, members, c, others, start, width, rule):
    """The certificate's reach test (solvers/certify/branch.py) closes an interval
    only where no purchase in it lifts every member priced in at its left end to the
    level asked: against progressive filling on 400 purchases of the interval, a
    level just below the best one found there, or half-way to it, leaves the
    interval open."""
    game = Game((aggregator(users_of(seed, members), rule=rule),), LinearPrice(c))
    y_max = game.feasible_max(0, others)
    assume(y_max > 0)
    a = start * y_max
    b = min(a + width * y_max, y_max)
    pay = Payoffs(game, 0, others)
    front = _Fronts.of(pay, pay.evaluate([a]))
    inside, floor = front.inside, front.floor
    assume(inside.any())
    batch = NativeInner(game, 0).solve(np.linspace(a, b, 400), others)
    lowest = np.where(inside, batch.surplus + floor, np.inf).min(axis=1)
    top = float(lowest.max())
    window = PriceWindow.of(game, others, np.array([a]), np.array([b]))
    for level in (top - 1e-9 * abs(top), 0.5 * (float(lowest[0]) + top)):
        assert not _out_of_reach(pay, inside, floor, np.array([a]), np.array([b]),
                                 window, np.array([level]))[0]
    above = top + 0.1 * (top - float(lowest.min())) + 1e-6 * abs(top)
    closed = _out_of_reach(pay, inside, floor, np.array([a]), np.array([b]), window,
                           np.array([above]))[0]
    event(f"a level above the interval's best closes it: {bool(closed)}")


# -- refusals, TOML and CLI ---------------------------------------------------------
@pytest.mark.unit
def test_pyomo_and_kkt_refuse_leximin_and_global_names_the_player():
    from aggregame.solvers.certify import certify
    from aggregame.solvers.inner.pyomo_backend import PyomoInner
    from aggregame.solvers.kkt.solve import solve_kkt

    game = two_aggregator_game()
    for run in (lambda: PyomoInner(game, 0), lambda: solve_kkt(game)):
        with pytest.raises(UnsupportedProblemError, match="does not model leximin"):
            run()
    # SCIP bounds the smallest level only: each leximin player fails, named with the
    # reason; the others are bounded as usual.
    cert = certify(game, np.zeros(3), 1e-5, method="global", time_limit=5.0)
    for player, result in zip(game.players, cert.players):
        if player.fairness.is_leximin and player.size > 1:
            assert result.verdict.value == "failed"
            assert player.name in result.reason and "leximin" in result.reason
        else:
            assert result.verdict.value != "failed"
    assert not cert.certified


def scenario_doc(**defaults):
    return {"market": {"price": "linear", "c": 0.02},
            "defaults": {"alpha": "inf", **defaults},
            "players": [{"name": "A", "users": [
                {"name": "u1", "a": 0.5, "b": 4.0},
                {"name": "u2", "a": 0.3, "b": 6.0}]},
                {"name": "B", "maxmin": "leximin", "users": [
                    {"name": "v1", "a": 0.5, "b": 5.0}]}]}


@pytest.mark.unit
def test_toml_maxmin_default_per_player_and_bad_value():
    assert scenario_from_dict(scenario_doc()).game.players[0].fairness.maxmin is \
        MaxMinRule.LEXIMIN
    game = scenario_from_dict(scenario_doc(maxmin="total-surplus")).game
    assert [p.fairness.maxmin for p in game.players] == [MaxMinRule.TOTAL_SURPLUS,
                                                         MaxMinRule.LEXIMIN]
    with pytest.raises(ScenarioError, match=r"defaults\.maxmin.*'leximn'.*leximin"):
        scenario_from_dict(scenario_doc(maxmin="leximn"))
    assert Fairness(alpha="inf").is_leximin
    assert not Fairness(alpha=2.0).is_leximin


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "aggregame.cli", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.solver
def test_cli_maxmin_flag_overrides_the_scenario(tmp_path):
    """fig4_maxmin states total-surplus; --maxmin leximin switches its aggregators,
    which then buy less; the pyomo backend refuses leximin in one line."""
    small = tmp_path / "s.toml"
    doc = scenario_doc(maxmin="total-surplus")
    lines = ['[market]', 'price = "linear"', 'c = 0.02', '[defaults]', 'alpha = "inf"',
             'maxmin = "total-surplus"']
    for p in doc["players"]:
        lines += ['[[players]]', f'name = "{p["name"]}"']
        for u in p["users"]:
            lines += ['[[players.users]]', f'name = "{u["name"]}"', f'a = {u["a"]}',
                      f'b = {u["b"]}']
    small.write_text("\n".join(lines) + "\n")
    base = json.loads(run_cli("solve", str(small), "--json").stdout)
    lex = run_cli("solve", str(small), "--json", "--maxmin", "leximin")
    assert lex.returncode == 0, lex.stderr
    lex = json.loads(lex.stdout)
    assert lex["equilibrium"]
    assert lex["players"][0]["maxmin"] == "leximin"
    assert base["players"][0]["maxmin"] == "total-surplus"
    refused = run_cli("solve", str(small), "--maxmin", "leximin", "--backend", "pyomo")
    assert refused.returncode != 0
    assert refused.stderr.strip().count("\n") == 0
    assert "does not model leximin" in refused.stderr
