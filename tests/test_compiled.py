"""The compiled kernels (solvers/compiled.py) against numpy, and the certificate
against a fast path that lies.

* Every utility family is known to the kernels (else its players silently stay on
  the slow path).
* Kernel rows equal numpy rows member by member, for mixed quadratic and log
  aggregators, every alpha (max-min as total surplus) and rule (the random-game
  property tests cover quadratic members: tests/test_properties.py).
* A kernel that returns wrong payoffs or wrong allocations cannot make the
  certificate certify: it proves every row with the numpy definition and searches
  again where the proof fails.
* Without numba (AGGREGAME_JIT=0) the native backend runs numpy alone and finds the
  same equilibrium.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aggregame import Game, LinearPrice, Player, User, quadratic_users
from aggregame.allocation import RESIDUAL_TOL
from aggregame.scenario import load_scenario
from aggregame.solvers import certificate as cert_module
from aggregame.solvers import compiled
from aggregame.solvers.certificate import certify
from aggregame.solvers.dynamics import solve_equilibrium
from aggregame.solvers.native import NativeInner
from aggregame.utilities import UTILITY_FAMILIES, LogUtility

needs_numba = pytest.mark.skipif(not compiled.ENABLED,
                                 reason="numba not installed (or AGGREGAME_JIT=0)")

#: Allocations agree to this relative to the capacity; both solve to ~1e-13.
SAME_RTOL = 1e-10


def _mixed_player(alpha, rule, seed=0, n=9):
    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(0.0, 10.0, n), "q")
    users += [User(f"l{i}", LogUtility(w)) for i, w in enumerate(rng.uniform(1, 8, 4))]
    return Player.aggregator("mixed", users, alpha=alpha, rule=rule, eps=0.05,
                             maxmin="total-surplus")


@pytest.mark.unit
def test_every_utility_family_has_a_kernel():
    assert set(UTILITY_FAMILIES.values()) == set(compiled.FAMILY_CODES)


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0, 2.0, 5.0, float("inf")])
@pytest.mark.parametrize("rule", ["floor", "viable", "strict"])
def test_kernel_rows_equal_numpy_rows_with_log_members(alpha, rule):
    game = Game((_mixed_player(alpha, rule),), LinearPrice(0.02))
    y_max = game.feasible_max(0, 20.0)
    ys = np.concatenate([np.linspace(0.0, y_max, 33), [y_max * 1.01]])
    fast, slow = NativeInner(game, 0), NativeInner(game, 0, compiled=False)
    assert fast.compiled and not slow.compiled
    for batch in (fast.solve(ys, 20.0), *[fast.solve(ys[k:k + 1], 20.0)
                                          for k in range(ys.size)]):
        ref = slow.solve(batch.y, 20.0)
        assert np.all(batch.residual <= RESIDUAL_TOL)
        finite = np.isfinite(ref.welfare)
        np.testing.assert_array_equal(np.isfinite(batch.welfare), finite)
        # Where J = -inf (strict rule, a member priced out) every allocation is
        # optimal: nothing to compare.
        cap = y_max  # allocations on the feasible interval's scale
        # Max-min: at the top level the binding member's interval is a point known
        # to ~sqrt(rounding), so allocations agree to ~1e-9 there, not 1e-13.
        rtol = 1e-8 if np.isinf(alpha) else SAME_RTOL
        np.testing.assert_allclose(batch.x[finite], ref.x[finite], rtol=0,
                                   atol=rtol * cap)
        np.testing.assert_allclose(batch.welfare[finite], ref.welfare[finite],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(batch.tiebreak[finite], ref.tiebreak[finite],
                                   rtol=rtol, atol=1e-12)


def _off_equilibrium(scenario):
    """A Fig. 4 scenario with aggregator A's purchase cut by 30%: A gains by buying
    more (its regret is far above any tolerance)."""
    game = load_scenario(scenario).game
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium
    profile = eq.profile.copy()
    profile[0] *= 0.7
    return game, profile


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("lie", ["payoff", "allocation"])
@pytest.mark.parametrize("scenario", ["fig4_proportional", "fig4_maxmin"])
def test_certificate_is_not_fooled_by_a_lying_kernel(monkeypatch, lie, scenario):
    game, profile = _off_equilibrium(scenario)
    honest = certify(game, profile)
    assert not honest.certified and honest.relative_regrets[0] > 1e-3
    truth = compiled.CompiledPlayer.solve
    here = float(profile[0])

    def lying(self, y, price, slope, guess=np.nan, x_start=None):
        x, surplus, welfare, tiebreak, lam, derivative, tie, residual = truth(
            self, y, price, slope, guess, x_start)
        away = y != here
        if lie == "payoff":  # every deviation claimed far worse than it is
            welfare = np.where(away, welfare - 1e3, welfare)
        else:  # allocations that do not add up, claimed to be solutions
            x = np.where(away[:, None], 0.5 * x, x)
            welfare = np.where(away, -1e9, welfare)
        tiebreak = np.where(away, tiebreak - 1e3, tiebreak)
        return x, surplus, welfare, tiebreak, lam, derivative, tie, residual

    monkeypatch.setattr(compiled.CompiledPlayer, "solve", lying)
    # The search alone, on the lying rows, would certify the profile...
    dev, at = cert_module._search_deviations(game, 0, profile,
                                             float(profile[1:].sum()), compiled=True)
    assert cert_module._gain(dev, at, dev.best()) == (0.0, 0.0)
    assert not dev.proved()
    # ...the certificate does not.
    cert = certify(game, profile)
    assert not cert.certified
    np.testing.assert_allclose(cert.relative_regrets, honest.relative_regrets,
                               rtol=1e-9)


@pytest.mark.slow
def test_numpy_alone_gives_the_same_equilibrium():
    eq = solve_equilibrium(load_scenario("fig4_proportional").game)
    code = ("import json; from aggregame.scenario import load_scenario; "
            "from aggregame.solvers.dynamics import solve_equilibrium; "
            "from aggregame.solvers.native import NativeInner; "
            "g = load_scenario('fig4_proportional').game; "
            "assert not NativeInner(g, 0).compiled; "
            "e = solve_equilibrium(g); "
            "print(json.dumps([e.profile.tolist(), e.is_equilibrium]))")
    env = dict(os.environ, AGGREGAME_JIT="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    profile, certified = json.loads(out.stdout)
    assert certified and eq.is_equilibrium
    np.testing.assert_allclose(profile, eq.profile, rtol=1e-10)
