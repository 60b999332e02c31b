"""Inner solves at large alpha (16 to 100), where (s + e)^-alpha spans 1e-100..1e100.

The native backend once refused every alpha >= 32 row of ordinary games: its safe
fallback bisected lambda on a map linear near 0, and lambda ~ 1e-32 was below its
resolution. Oracle: pairwise transfers. At an optimum of the alpha-fair welfare over
{sum x = y, 0 <= x <= xbar}, moving a small amount from one member to another never
raises the welfare; the welfare is computed here from the utilities directly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregame import Game, LinearPrice, Player, quadratic_users
from aggregame.solvers.inner.native import NativeInner


def _welfare(a, b, price, eps, alpha, x):
    """Sum of (s + e)^(1 - alpha) / (1 - alpha), in log space scaled to avoid
    underflow: only differences matter, and every term has the same sign."""
    s = -a * x**2 + b * x - price * x + eps
    logs = (1 - alpha) * np.log(s)
    top = logs.max()
    return -math.exp(top) * float(np.exp(logs - top).sum()) / (alpha - 1), s


@pytest.mark.unit
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 8), alpha=st.sampled_from((16.0, 32.0, 64.0, 100.0)),
       seed=st.integers(0, 2**32 - 1), fill=st.floats(0.05, 0.95))
def test_large_alpha_rows_are_solved_and_optimal(n, alpha, seed, fill):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, n), rng.uniform(4.0, 10.0, n)
    eps, c, others = 0.01, 0.005, 10.0
    game = Game((Player.aggregator("A", quadratic_users(a, b), alpha=alpha,
                                   eps=eps),), LinearPrice(c))
    cap = game.feasible_max(0, others)
    y = fill * cap
    row = NativeInner(game, 0).solve(np.array([y]), others)
    x = row.x[0]
    price = c * (others + y)
    assert x.sum() == pytest.approx(y, rel=1e-9)
    base, s = _welfare(a, b, price, eps, alpha, x)
    assert np.all(s > 0)
    step = 1e-6 * cap
    for i in range(n):
        for k in range(n):
            if i == k or x[i] < step or x[k] + step > (b[k] - price) / a[k]:
                continue
            moved = x.copy()
            moved[i] -= step
            moved[k] += step
            after, s_after = _welfare(a, b, price, eps, alpha, moved)
            if np.all(s_after > 0):
                assert after <= base + 1e-9 * abs(base), (i, k)
