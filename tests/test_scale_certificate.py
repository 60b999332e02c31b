"""The certificate and the dynamics on the scale games at alpha = inf.

Aggregators of the paper's small users under a flat price (benchmarks/
bench_leximin.py's ``scale_game``) reach rows where one member sits at its surplus
peak and caps the max-min level while the others hold it from beyond their peaks:
the row's allocation is known to ~1e-13 of the purchase, so the levels of the
members beside the satiated one differ from its level by their speed times that.
The level's dual bound must still read the satiated member as holding, or no
interval near such rows closes. Every bound here is checked against an independent
computation of the level (bisection on the level over closed-form member
intervals).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import relative_regret

from aggregame import Game, LinearPrice, Player, QuadraticUtility, User, quadratic_users
from aggregame.allocation import member_terms
from aggregame.solvers.certify.bounds import level_bound
from aggregame.solvers.certify.payoffs import LEVEL_TIE_RTOL, Payoffs, levels_tie
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

#: Consumption error of a row's allocation, relative to its purchase.
ROW_ACCURACY = 1e-13
#: The certificate's tolerance, and what the independent scan may find above it
#: at a proved profile (its own error).
RTOL = 1e-6
PROVED_SLACK = 1e-4


def true_level(a: np.ndarray, b: np.ndarray, floor: np.ndarray, y: float,
               q: float) -> float:
    """max t with s_i(x_i) + e_i >= t for all i, sum x = y, x_i in [0, xbar_i(q)],
    s_i = (b_i - q) x - a_i x^2: for a level t each member may consume any x
    between the roots of s_i = t - e_i (all of [0, xbar_i] where t <= e_i), and t
    is feasible when y lies between the sums of the roots."""
    room = b - q
    xbar = np.maximum(room, 0.0) / a
    peak = room**2 / (4 * a) + floor

    def feasible(t: float) -> bool:
        need = t - floor
        if np.any(need > peak - floor):
            return False
        disc = np.sqrt(np.maximum(room**2 - 4 * a * np.maximum(need, 0.0), 0.0))
        lo = np.where(need <= 0, 0.0, (room - disc) / (2 * a))
        hi = np.where(need <= 0, xbar, (room + disc) / (2 * a))
        return lo.sum() <= y <= hi.sum()

    lo, hi = float(floor.min()) - 1.0, float(peak.min())
    if not feasible(lo):
        return -math.inf
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if feasible(mid) else (lo, mid)
    return lo


@st.composite
def satiated_rows(draw):
    """(player, y, x, surplus, q, slope, width, floor, level): a row at price q
    where the last member sits at its peak and every other member holds the same
    level beyond its own peak, their consumptions off by ROW_ACCURACY y (one of
    them below)."""
    count = draw(st.integers(2, 6))
    a = np.array(draw(st.lists(st.floats(0.1, 0.9), min_size=count + 1,
                               max_size=count + 1)))
    q = draw(st.floats(0.1, 1.0))
    b = np.array(draw(st.lists(st.floats(2.0, 10.0), min_size=count,
                               max_size=count)) + [q + draw(st.floats(0.01, 0.3))])
    users = [User(f"m{k}", QuadraticUtility(float(a[k]), float(b[k])))
             for k in range(count + 1)]
    player = Player.aggregator("agg", users, alpha="inf", maxmin="total-surplus")
    _, floor = member_terms(player, np.zeros((1, count + 1), dtype=bool))
    floor = floor[0]
    room = b - q
    cap = room[-1] ** 2 / (4 * a[-1])  # the satiated member's largest surplus
    x = (room + np.sqrt(np.maximum(room**2 - 4 * a * cap, 0.0))) / (2 * a)
    x[-1] = room[-1] / (2 * a[-1])
    jitter = np.array([-1.0] + draw(st.lists(st.floats(-1.0, 1.0),
                                             min_size=count - 1,
                                             max_size=count - 1)) + [0.0])
    x = x + jitter * ROW_ACCURACY * x.sum()
    y = float(x.sum())
    surplus = (b - a * x) * x - q * x
    slope = draw(st.floats(1e-5, 1e-2))
    width = y * draw(st.floats(1e-9, 1e-3))
    return player, y, x, surplus, q, slope, width, floor, cap + floor[-1], a, b


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(satiated_rows())
def test_level_bound_reads_a_satiated_member_as_holding(row):
    """Valid: above the true level everywhere on the interval (the price rising
    from q at the given slope); tight: within 1e-9 of the satiated member's
    largest level, which caps the level from this row on."""
    player, y, x, surplus, q, slope, width, floor, cap, a, b = row
    window = (q, q + slope * width, slope)
    members = np.ones(x.size, dtype=bool)
    bound = level_bound(player, y, x, surplus, window, width, members, floor)
    truth = max(true_level(a, b, floor, float(z), q + slope * (float(z) - y))
                for z in np.linspace(y, y + width, 9))
    assert bound >= truth - 1e-12 * abs(truth)
    assert bound <= cap + 1e-9 * abs(cap)


# -- the scale game, shrunk: 30 aggregators of 10 small users ------------------------
def shrunk_scale_game(seed: int, reading: str) -> Game:
    """benchmarks/bench_leximin.py's scale game with 300 members: 30 aggregators of
    10 users, a ~ U(0.1, 0.9), b ~ U(0, 10), p = 0.2 / 300 Y."""
    rng = np.random.default_rng(seed)
    members = 300
    users = quadratic_users(rng.uniform(0.1, 0.9, members),
                            rng.uniform(0, 10, members), "s")
    return Game(tuple(Player.aggregator(f"agg{k}", users[10 * k:10 * (k + 1)],
                                        alpha="inf", maxmin=reading)
                      for k in range(30)), LinearPrice(0.2 / members))


@pytest.mark.slow
def test_total_surplus_scale_equilibrium_is_proved():
    """Seed 0: the rounds converge (regret ~1e-15), and aggregator 3's rows reach
    a satiated member's cap, where its bounds need the member read as holding the
    level. Every player is proved, and the independent scan of aggregator 3's
    payoff finds no gain either."""
    game = shrunk_scale_game(0, "total-surplus")
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium, eq.certificate.summary()
    regret, _ = relative_regret(game, 3, eq.profile, points=48)
    assert regret <= RTOL + PROVED_SLACK


@pytest.mark.slow
def test_leximin_scale_dynamics_settle_on_an_equilibrium():
    """Seed 3: a member barely priced in caps an aggregator's first level, whose
    spread over the purchase is ~1e-7 beside the floor 0.01. The leximin search's
    ties (1e-10 of the level) let the rounds creep along the flat first level
    ('cycling', the end point refuted at 3e-6); staying on ties and going on from
    the certificate's deviations settles on a profile the certificate proves."""
    eq = solve_equilibrium(shrunk_scale_game(3, "leximin"))
    assert eq.status.value == "converged"
    assert eq.is_equilibrium, eq.certificate.summary()
    # The rounds ended at a fixed point of the best responses: the last round
    # moved nobody.
    assert np.array_equal(eq.path[-1], eq.path[-2])


@pytest.mark.unit
def test_leximin_best_row_is_not_led_down_a_chain_of_ties():
    """Rows whose first level falls by 0.6 of the tie each while the second rises:
    each ties with its neighbour and beats it, so a running maximum ends at the
    last row, 50 ties below the largest first level. The best row's first level
    must tie with the largest one."""
    game = shrunk_scale_game(3, "leximin")
    pay = Payoffs(game, 0, 10.0)
    top = 0.010000076814
    step = 0.6 * LEVEL_TIE_RTOL * top
    for k in range(50):
        pay.rows.y.append(float(k))
        vector = np.full(10, 1.0)
        vector[0], vector[1] = top - k * step, 0.5 + 0.01 * k
        pay.rows.vectors.append(vector)
        pay.rows.welfare.append(float(vector[0]))
    # The profile's row ties with none: the largest first level is a gain.
    pay.rows.vectors[0] = pay.rows.vectors[0].copy()
    pay.rows.vectors[0][0] = top - 100 * step
    best = pay.best()
    firsts = [float(v[0]) for v in pay.rows.vectors]
    assert levels_tie(firsts[best], max(firsts))
    assert all(pay.compare(i, best) <= 0 for i in range(50)
               if levels_tie(firsts[i], max(firsts)))
