"""The 24-hour example (ramps, storage, two aggregators' hourly bids) run as CI runs
it, and its purchases checked against deviations priced by HiGHS's duals of the
user's model and paid for by the native backend: code that shares nothing with the
price tables and the dynamics that produced them."""

import runpy
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

from aggregame import Game
from aggregame.price import AffinePrice

ROOT = Path(__file__).resolve().parents[1]
#: A sampled deviation may not gain more than this, relative to the payoff's size.
REGRET_RTOL = 1e-6
#: Deviations tried for each desk, as factors of its purchase.
FACTORS = (0.0, 0.9, 1.1)


def _payoff(player, y, price):
    from aggregame.solvers.inner.native import NativeInner

    game = Game((player,), AffinePrice(max(price, 0.0), 1e-15))
    return float(NativeInner(game, 0).solve(np.array([float(y)]), 0.0).welfare[0])


@pytest.mark.slow
@pytest.mark.skipif(not pyo.SolverFactory("highs").available(False),
                    reason="HiGHS (highspy) not installed")
def test_the_hourly_example_is_an_equilibrium_of_the_models_own_prices():
    ex = runpy.run_path(str(ROOT / "examples" / "hourly_market.py"),
                        run_name="hourly_example")
    out = ex["main"]()
    assert out["ok"] and out["certified"]
    hours = list(ex["HOURS"])
    np.testing.assert_allclose(ex["highs_prices"](out["demands"]), out["prices"],
                               rtol=1e-6)
    for name, by_hour in out["players"].items():
        bought = out["purchases"][name]
        for k, t in enumerate(hours):
            here = _payoff(by_hour[t], bought[k], out["prices"][k])
            for factor in FACTORS:
                d = out["demands"].copy()
                d[k] += (factor - 1.0) * bought[k]
                price = ex["highs_prices"](d)[k]
                gain = _payoff(by_hour[t], factor * bought[k], price) - here
                assert gain <= REGRET_RTOL * max(1.0, abs(here)), (name, t, factor)
