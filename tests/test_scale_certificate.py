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

from aggregame import Player, QuadraticUtility, User
from aggregame.allocation import member_terms
from aggregame.solvers.certify.bounds import level_bound

#: Consumption error of a row's allocation, relative to its purchase.
ROW_ACCURACY = 1e-13


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
