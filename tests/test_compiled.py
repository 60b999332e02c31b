"""The compiled kernels (solvers/inner/compiled/) against numpy, and the certificate
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

from aggregame import AffinePrice, Game, LinearPrice, Player, User, quadratic_users
from aggregame.allocation import (
    LEVEL_PROBE_RTOL,
    RESIDUAL_TOL,
    evaluate,
    inner_setup,
    purchase_prices,
    quadratic_level_interval,
    welfare_of,
)
from aggregame.errors import InnerSolveError, SettingsError
from aggregame.leximin import leximin_residual
from aggregame.scenario import load_scenario
from aggregame.solvers.certify import proof
from aggregame.solvers.certify import scan as cert_module
from aggregame.solvers.certify.certificate import CERTIFICATE_RTOL
from aggregame.solvers.certify.proof import rows_proved
from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner import compiled
from aggregame.solvers.inner.leximin import batch_levels
from aggregame.solvers.inner.native import NativeInner
from aggregame.utilities import UTILITY_FAMILIES, LogUtility

needs_numba = pytest.mark.skipif(not compiled.ENABLED,
                                 reason="numba not installed (or AGGREGAME_JIT=0)")

#: Allocations agree to this relative to the capacity; both solve to ~1e-13.
SAME_RTOL = 1e-10


def _mixed_player(alpha, rule, seed=0, n=9, maxmin="total-surplus"):
    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(0.0, 10.0, n), "q")
    users += [User(f"l{i}", LogUtility(w)) for i, w in enumerate(rng.uniform(1, 8, 4))]
    return Player.aggregator("mixed", users, alpha=alpha, rule=rule, eps=0.05,
                             maxmin=maxmin)


@pytest.mark.unit
def test_every_utility_family_has_a_kernel():
    assert set(UTILITY_FAMILIES.values()) == set(compiled.FAMILY_CODES)


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("alpha", [2.0, float("inf")])
@pytest.mark.parametrize("one_family", [True, False])
def test_kernels_refuse_an_unknown_family_code(alpha, one_family):
    """A member of a family the kernels have no branch for is an error, never
    another family's numbers (a third family read as log, say)."""
    kernel = compiled.CompiledPlayer(_mixed_player(alpha, "floor"))
    unknown = max(compiled.FAMILY_CODES.values()) + 1
    kernel.codes[:] = unknown
    kernel.family = unknown if one_family else compiled.MIXED
    with pytest.raises(ValueError, match="unknown utility family"):
        kernel.solve(np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.zeros(2))


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
        # What the searches follow: the multiplier and the total derivative
        # (alpha < inf), the tie-break's derivative where the level is flat, and
        # the tie-break's multiplier nu (max-min, inside the interval: at y = 0 it
        # is not unique).
        inside = finite & (batch.y > 0) & (batch.y < 0.999 * y_max)
        names = (("tiebreak_derivative", "tiebreak_multiplier") if np.isinf(alpha)
                 else ("multiplier", "derivative"))
        for name in names:
            ours, theirs = getattr(batch, name)[inside], getattr(ref, name)[inside]
            np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), name)
            both = ~np.isnan(ours)
            np.testing.assert_allclose(ours[both], theirs[both], rtol=1e-6,
                                       atol=1e-9 * np.abs(theirs[both]).max(initial=0),
                                       err_msg=name)


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("rule", ["floor", "viable", "strict"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_leximin_kernel_rows_equal_numpy_rows(rule, seed):
    """The kernels' progressive filling by breakpoints against numpy's bisection on
    the level (another algorithm): the same allocations, the same sorted levels,
    and both residuals small, below and above the members' total peak."""
    player = _mixed_player("inf", rule, seed=seed, maxmin="leximin")
    game = Game((player,), LinearPrice(0.02))
    y_max = game.feasible_max(0, 20.0)
    ys = np.concatenate([np.linspace(0.0, y_max, 41), [y_max * 1.01]])
    fast, slow = NativeInner(game, 0), NativeInner(game, 0, compiled=False)
    assert fast.compiled and not slow.compiled
    batch, ref = fast.solve(ys, 20.0), slow.solve(ys, 20.0)
    assert np.all(batch.residual <= RESIDUAL_TOL)
    finite = np.isfinite(ref.welfare)
    np.testing.assert_array_equal(np.isfinite(batch.welfare), finite)
    np.testing.assert_allclose(batch.x[finite], ref.x[finite], rtol=0,
                               atol=1e-8 * y_max)
    ours, theirs = batch_levels(player, batch), batch_levels(player, ref)
    scale = np.abs(theirs[np.isfinite(theirs)]).max()
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=0,
                               atol=1e-9 * scale)
    # The kernel's residual is the definition's (aggregame.leximin), recomputed by
    # numpy from the kernel's allocations.
    setup = inner_setup(game, 0, ys, 20.0)
    again = leximin_residual(player, setup.y, setup.price, batch.x, setup.xbar,
                             setup.floor, setup.weight > 0)
    np.testing.assert_allclose(batch.residual[finite], again[finite], rtol=1e-6,
                               atol=1e-15)


def _alone(scenario):
    """Aggregator A of a Fig. 4 scenario alone against the price (others = 0)."""
    game = load_scenario(scenario).game
    return Game((game.players[0],), game.price)


def _viable_game():
    rng = np.random.default_rng(1)
    users = quadratic_users(rng.uniform(0.1, 0.9, 8), rng.uniform(2, 10, 8), "q")
    return Game((Player.aggregator("V", users, alpha=1.0, rule="viable"),),
                LinearPrice(0.05))


def _maxmin_game():
    users = quadratic_users([0.2, 0.3, 0.5, 0.4], [6.0, 8.0, 5.0, 0.5], "u")
    return Game((Player.aggregator("M", users, alpha="inf", eps=0.01,
                                   maxmin="total-surplus"),), AffinePrice(1.0, 0.05))


def _uneven_maxmin_game():
    """Two members whose peak levels differ 10^4-fold, nobody priced out."""
    users = quadratic_users([1.0, 0.01], [4.0, 20.0], "u")
    return Game((Player.aggregator("M", users, alpha="inf", eps=0.01,
                                   maxmin="total-surplus"),), AffinePrice(1.0, 0.05))


def _leximin_game():
    rng = np.random.default_rng(3)
    users = quadratic_users(rng.uniform(0.1, 0.9, 7), rng.uniform(2, 10, 7), "q")
    return Game((Player.aggregator("L", users, alpha="inf", eps=0.01,
                                   maxmin="leximin"),), LinearPrice(0.05))


def _claims(game, y, x):
    """(x, surplus, welfare, tiebreak) a liar reports for allocations x: the
    definition's own payoffs of them, so only their optimality is a lie."""
    player, setup = game.players[0], inner_setup(game, 0, y, 0.0)
    surplus = evaluate(player, "U", x) - setup.price_column * x
    return x, surplus, welfare_of(player, surplus, setup.weight, setup.floor,
                                  setup.priced_out), surplus.sum(axis=1)


def _worst_first(game, y):
    """Allocations that fill the members of least U'(0) first."""
    setup = inner_setup(game, 0, y, 0.0)
    x = np.zeros_like(setup.xbar)
    for r in range(y.size):
        left = y[r]
        for i in np.argsort(game.players[0].marginal_at_zero):
            x[r, i] = min(left, setup.xbar[r, i])
            left -= x[r, i]
    return x


def _one_at_zero_surplus(game, y, x):
    """One member at its zero-surplus point (J = -inf under viable, alpha = 1)."""
    setup = inner_setup(game, 0, y, 0.0)
    x = x.copy()
    for r in range(y.size):
        fits = np.flatnonzero((setup.xbar[r] > 0) & (setup.xbar[r] <= 0.9 * y[r]))
        if fits.size and y[r] < setup.cap[r]:
            i = fits[np.argmax(setup.xbar[r, fits])]
            rest = np.where(np.arange(x.shape[1]) == i, 0.0, setup.xbar[r])
            x[r] = rest * (y[r] - setup.xbar[r, i]) / rest.sum()
            x[r, i] = setup.xbar[r, i] * (1 + 1e-12)
    return x


def _past_a_bound(game, y, x):
    """0.9e-6 of the capacity parked on a priced-out member (xbar = 0): balance
    exact, bounds off by less than the residual's tolerance."""
    setup = inner_setup(game, 0, y, 0.0)
    x = x.copy()
    for r in range(y.size):
        out = np.flatnonzero(setup.xbar[r] == 0)
        if out.size and 0 < y[r] < setup.cap[r]:
            gap = 0.9e-6 * setup.cap[r]
            x[r] = x[r] * (1 - gap / y[r])
            x[r, out[0]] = gap
    return x


def _level_short(game, y, x):
    """Max-min: the total-surplus fill at a level half a residual probe step
    (LEVEL_PROBE_RTOL x the largest peak level) below the right one."""
    player, setup = game.players[0], inner_setup(game, 0, y, 0.0)
    a, b = (np.array([getattr(m.utility, k) for m in player.members]) for k in "ab")
    x = x.copy()
    for r in range(y.size):
        p, counted = setup.price[r], setup.weight[r] > 0
        if not 0 < y[r] < setup.cap[r] * (1 - 1e-9):
            continue
        level = np.min(np.where(counted, evaluate(player, "U", x[r]) - p * x[r]
                                + setup.floor[r], np.inf))
        peaks = np.where(b > p, (b - p) ** 2 / (4 * a), 0.0) + setup.floor[r]
        need = np.where(counted, level - 0.5 * LEVEL_PROBE_RTOL * peaks.max()
                        - setup.floor[r], -np.inf)
        with np.errstate(all="ignore"):
            lo, hi, _ = quadratic_level_interval(a, b, need, p, setup.xbar[r])
        if np.isnan(lo).any() or not lo.sum() <= y[r] <= hi.sum():
            continue
        nu_lo, nu_hi = -1e6, 1e6  # the fill in [lo, hi] by bisection on nu
        for _ in range(200):
            nu = 0.5 * (nu_lo + nu_hi)
            if np.clip((b - p - nu) / (2 * a), lo, hi).sum() > y[r]:
                nu_lo = nu
            else:
                nu_hi = nu
        x[r] = np.clip((b - p - nu) / (2 * a), lo, hi)
        x[r] += (y[r] - x[r].sum()) * (hi - x[r] if y[r] > x[r].sum() else x[r] - lo) \
            / max(np.sum(hi - x[r] if y[r] > x[r].sum() else x[r] - lo), 1e-300)
    return x


#: (lie, game, profile as a fraction of the honest best response): each a way a
#: wrong fast path could hide a profitable deviation from the certificate.
LIES = {
    # every deviation claimed far worse than it is
    "payoff": ("fig4_proportional", 0.7),
    # allocations that do not add up, claimed to be solutions
    "allocation": ("fig4_proportional", 0.7),
    # a member left at zero surplus: J = -inf, where the residual once read 0
    "zero surplus": ("viable", 0.5),
    # a bad fill with no multiplier: the stationarity check once switched off
    "no multiplier": ("fig4_proportional", 0.7),
    # every deviation 0.9e-6 of the capacity short: within the residual's 1e-6,
    # yet worth 3e-6 of the payoff's scale (a regret of 1.8e-6 hidden)
    "short": ("fig4_proportional", 0.999),
    # max-min: the right level, the worst total surplus
    "worst tie-break": ("maxmin", 0.6),
    # leximin: the members of least U'(0) filled first, claimed the leximin fill
    "leximin worst first": ("leximin", 0.6),
    # a member past its bound by less than the residual's tolerance (found by
    # the second review: the drift counted the balance, not the bounds)
    "past a bound": ("fig4_proportional", 0.999),
    # max-min: a level half a residual probe step short, whose step (1e-7 of the
    # largest peak level) is far above the certificate's scale here
    "level short": ("uneven maxmin", 0.99),
}


def _lie(kind, game, here):
    truth = compiled.CompiledPlayer.solve

    def lying(self, y, price, slope, guess=np.nan, x_start=None):
        x, surplus, welfare, tiebreak, lam, derivative, tie, residual, nu = truth(
            self, y, price, slope, guess, x_start)
        away = y != here
        if kind == "payoff":
            welfare = np.where(away, welfare - 1e3, welfare)
            tiebreak = np.where(away, tiebreak - 1e3, tiebreak)
        elif kind == "allocation":
            x = np.where(away[:, None], 0.5 * x, x)
            welfare = np.where(away, -1e9, welfare)
        else:
            fake = {"zero surplus": lambda: _one_at_zero_surplus(game, y, x),
                    "no multiplier": lambda: _worst_first(game, y),
                    "past a bound": lambda: _past_a_bound(game, y, x),
                    "level short": lambda: _level_short(game, y, x),
                    "short": lambda: x * (1 - 0.9e-6 * inner_setup(
                        game, 0, y, 0.0).cap[:, None] / np.maximum(y, 1e-300)[:, None]),
                    "worst tie-break": lambda: _worst_first(game, y),
                    "leximin worst first": lambda: _worst_first(game, y)}[kind]()
            claimed = _claims(game, y, np.where(away[:, None], fake, x))
            x, surplus, welfare, tiebreak = claimed
            residual = np.where(away, 0.0, residual)
            if kind == "no multiplier":
                lam = np.where(away, np.nan, lam)
            if kind == "level short":  # nu of the short fill: U' - p inside
                nu = _fill_nu(game, y, x, nu)
        return x, surplus, welfare, tiebreak, lam, derivative, tie, residual, nu
    return lying


def _fill_nu(game, y, x, nu):
    """nu of fills: U' - p of the member with the most room on both sides."""
    setup = inner_setup(game, 0, y, 0.0)
    slope = evaluate(game.players[0], "dU", x) - setup.price_column
    room = np.minimum(x, setup.xbar - x)
    pick = np.argmax(room, axis=1)
    return np.where(np.isfinite(nu), slope[np.arange(y.size), pick], nu)


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("kind", list(LIES))
def test_certificate_is_not_fooled_by_a_lying_kernel(monkeypatch, kind):
    where, fraction = LIES[kind]
    game = {"viable": _viable_game, "maxmin": _maxmin_game,
            "uneven maxmin": _uneven_maxmin_game, "leximin": _leximin_game}.get(where, lambda: _alone(where))()
    best = float(solve_equilibrium(game).profile[0])
    profile = np.array([fraction * best])
    honest = certify(game, profile)
    assert not honest.certified
    monkeypatch.setattr(compiled.CompiledPlayer, "solve",
                        _lie(kind, game, float(profile[0])))
    # The search alone, on the lying rows, would understate the regret...
    alone, rows = cert_module._player_regret(game, 0, profile, CERTIFICATE_RTOL,
                                             compiled=True)
    assert alone.relative_regret < honest.relative_regrets[0]
    assert not rows_proved(rows)
    # ...the certificate does not: it searches again on numpy alone.
    cert = certify(game, profile)
    assert not cert.certified
    assert cert.relative_regrets[0] >= 0.5 * honest.relative_regrets[0]


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("kind", ["payoff", "allocation", "no multiplier"])
def test_certificate_at_scale_reproves_a_subset_and_every_payoff(monkeypatch, kind):
    """Beyond PROOF_ELEMENTS the residual is re-proved on a subset of the rows
    (payoffs on all of them): made small here, the same verdicts as in full, and
    the lies that payoffs or missing multipliers give away still refused."""
    game = _alone("fig4_proportional")
    profile = np.array([0.7 * float(solve_equilibrium(game).profile[0])])
    full = certify(game, profile)
    monkeypatch.setattr(proof, "PROOF_ELEMENTS", 10 * game.players[0].size)
    _, rows = cert_module._player_regret(game, 0, profile, CERTIFICATE_RTOL,
                                         compiled=True)
    count = len(rows.rows)
    assert 2 < proof._checked(rows, np.arange(count)).sum() < count
    subset = certify(game, profile)
    np.testing.assert_allclose(subset.relative_regrets, full.relative_regrets,
                               rtol=1e-12)
    monkeypatch.setattr(compiled.CompiledPlayer, "solve",
                        _lie(kind, game, float(profile[0])))
    _, rows = cert_module._player_regret(game, 0, profile, CERTIFICATE_RTOL,
                                         compiled=True)
    assert not rows_proved(rows)


@needs_numba
@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 2.0, float("inf")])
@pytest.mark.parametrize("where", [0.7, 1.0])
def test_certificate_in_parts_and_batches(monkeypatch, alpha, where):
    """A large player's rows come in batches of a few rows, each half of an
    evaluation with its own inner solver (made small here): two threads give the
    very certificate of one, and both match the certificate of one batch per
    evaluation to the rows' rounding, on and off equilibrium; a lying kernel is
    still refused."""
    from aggregame.solvers.certify import payoffs

    rng = np.random.default_rng(5)
    users = quadratic_users(rng.uniform(0.1, 0.9, 60), rng.uniform(0, 10, 60), "u")
    extra = {"maxmin": "leximin"} if np.isinf(alpha) else {}
    game = Game((Player.aggregator("A", users, alpha=alpha, **extra),),
                LinearPrice(0.01))
    profile = np.array([where * float(solve_equilibrium(game).profile[0])])
    whole = certify(game, profile)
    monkeypatch.setattr(payoffs, "SPLIT_MEMBERS", 10)
    monkeypatch.setattr(payoffs, "CHUNK_ELEMENTS", 3 * 60)
    monkeypatch.setenv("AGGREGAME_THREADS", "1")
    one = certify(game, profile)
    monkeypatch.setenv("AGGREGAME_THREADS", "2")
    two = certify(game, profile)
    assert [p.verdict for p in one.players] == [p.verdict for p in two.players] \
        == [p.verdict for p in whole.players]
    np.testing.assert_array_equal(one.relative_regrets, two.relative_regrets)
    np.testing.assert_allclose(one.relative_regrets, whole.relative_regrets,
                               rtol=1e-6, atol=1e-12)
    monkeypatch.setattr(compiled.CompiledPlayer, "solve",
                        _lie("payoff", game, float(profile[0])))
    _, rows = cert_module._player_regret(game, 0, profile, CERTIFICATE_RTOL,
                                         compiled=True)
    assert not rows_proved(rows)


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.5, 2.0, float("inf")])
def test_certificate_in_threads_equals_one_thread(monkeypatch, alpha):
    """Players certified in threads (large games; here forced by AGGREGAME_THREADS)
    give the very certificate of one thread, on and off equilibrium, a lying
    kernel included (the re-proof and the numpy search run in the threads too)."""
    rng = np.random.default_rng(11)
    extra = {"maxmin": "total-surplus"} if np.isinf(alpha) else {}
    players = tuple(Player.aggregator(
        f"agg{k}", quadratic_users(rng.uniform(0.1, 0.9, 30), rng.uniform(0, 10, 30),
                                   f"m{k}"), alpha=alpha, **extra) for k in range(4))
    game = Game(players, LinearPrice(0.002))
    profile = solve_equilibrium(game).profile * np.array([1.0, 0.6, 1.0, 1.3])

    def both():
        out = []
        for count in ("1", "3"):
            monkeypatch.setenv("AGGREGAME_THREADS", count)
            assert cert_module.threads(game) == int(count)
            out.append(certify(game, profile))
        return out

    one, threaded = both()
    np.testing.assert_array_equal(threaded.relative_regrets, one.relative_regrets)
    np.testing.assert_array_equal(threaded.deviations, one.deviations)
    assert threaded.evaluations == one.evaluations
    assert not one.certified
    monkeypatch.setattr(compiled.CompiledPlayer, "solve",
                        _lie("payoff", game, float(profile[0])))
    lied, lied_threaded = both()
    np.testing.assert_array_equal(lied_threaded.relative_regrets,
                                  lied.relative_regrets)
    np.testing.assert_allclose(lied.relative_regrets, one.relative_regrets,
                               rtol=1e-6, atol=1e-12)


@needs_numba
@pytest.mark.unit
def test_row_after_a_bracket_search_starts_its_members_afresh():
    """Strict rule (infinite lambda bracket): a tiny purchase after the batch's
    forced row searched its bracket end, whose allocation (~1e-12 a member) was
    left as every member's Newton start; members stopped on the tiny first step
    and the row missed y by 11 (residual 0.92; found by review)."""
    users = quadratic_users([0.28847842, 0.59590524], [0.41282374, 7.71908884], "m")
    player = Player.aggregator("agg", users, alpha=3.7, rule="strict")
    game = Game((player, Player.aggregator("o", quadratic_users([0.5], [5.0], "o"))),
                LinearPrice(0.3))
    y_max = game.feasible_max(0, 2.0)
    y = np.concatenate([np.linspace(0.05, 0.95, 10) * y_max,
                        [y_max * (1 - 1e-15), 7.946252036900259e-13]])
    price, slope = purchase_prices(game, y, 2.0)
    rows = compiled.CompiledPlayer(player).solve(y, price, slope)
    assert np.all(rows[7] <= 1e-12), rows[7]


@pytest.mark.unit
@pytest.mark.parametrize("rule", ["strict", "floor"])
def test_half_alpha_tiny_purchase_adds_up(rule):
    """alpha = 1/2 in closed form at a purchase of 2^-39 y_max: (q - t) / 2a alone
    cancelled there and missed y by 2e-6 of it (found by review). Without a floor
    the form 2 D / (q + t) is exact; with one (e >> s) x_i is known to rounding of
    xbar_i, as at alpha = 0, so the balance to rounding of the capacity."""
    rng = np.random.default_rng(5)
    users = quadratic_users(rng.uniform(0.1, 0.9, 50), rng.uniform(1, 10, 50), "m")
    game = Game((Player.aggregator("agg", users, alpha=0.5, rule=rule),),
                LinearPrice(0.001))
    cap = game.feasible_max(0, 0.0)
    y = np.array([2.0 ** -39 * cap])
    tol = 1e-12 * y[0] if rule == "strict" else 64 * np.finfo(float).eps * cap
    for inner in (NativeInner(game, 0), NativeInner(game, 0, compiled=False)):
        sol = inner.solve(y, 0.0)
        assert abs(sol.x.sum() - y[0]) <= tol


@pytest.mark.unit
def test_threaded_certificate_stops_at_the_first_error(monkeypatch):
    """An error in one player's search (or Ctrl-C) ends the certificate: players not
    started are not searched first."""
    import time

    game = Game(tuple(Player.aggregator(f"p{k}", quadratic_users([0.5, 0.4],
                                                                 [3.0, 2.0], f"m{k}"))
                      for k in range(30)), LinearPrice(0.01))
    calls = []

    def regret(game, j, profile, rtol):
        calls.append(j)
        if j == 0:
            raise InnerSolveError("player 0 failed")
        time.sleep(0.05)

    monkeypatch.setattr(cert_module, "player_regret", regret)
    monkeypatch.setenv("AGGREGAME_THREADS", "2")
    with pytest.raises(InnerSolveError):
        certify(game, np.ones(30))
    assert len(calls) < 10


@pytest.mark.unit
@pytest.mark.parametrize("setting", ["two", "0", "-1", "1.5"])
def test_bad_thread_count_is_one_clear_error(monkeypatch, setting):
    monkeypatch.setenv("AGGREGAME_THREADS", setting)
    game = _alone("fig4_proportional")
    with pytest.raises(SettingsError, match="AGGREGAME_THREADS"):
        certify(game, np.array([1.0]))


@pytest.mark.slow
def test_numpy_alone_gives_the_same_equilibrium():
    eq = solve_equilibrium(load_scenario("fig4_proportional").game)
    code = ("import json; from aggregame.scenario import load_scenario; "
            "from aggregame.solvers.equilibrium.dynamics import solve_equilibrium; "
            "from aggregame.solvers.inner.native import NativeInner; "
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
