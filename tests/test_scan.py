"""The scan best response on a payoff that is not quasiconcave, against a dense grid.

Found by the full-size report (Figs. 10-11, alpha = 4, seed 9): an aggregator's payoff
rises to a peak at y ~ 7.1, falls, and rises again to y ~ 15; the scan's samples at 0
and 13.5 both had positive slopes, so no sign change showed the peak, and the
dynamics settled on a profile with relative regret 5e-4.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregame.solvers.equilibrium.best_response import best_response
from aggregame.solvers.inner.native import NativeInner
from aggregame.studies.common import Domain, aggregated, small_users


@pytest.mark.unit
def test_scan_finds_a_peak_between_two_rising_samples():
    game = aggregated(small_users(200, 9), [4.0, 4.0], Domain(large="K=400"))
    j, others = 1, 5.76 + 199.59
    got = best_response(NativeInner(game, j), others, strategy="scan")
    ys = np.linspace(0.0, 30.0, 3001)
    grid = NativeInner(game, j).solve(ys, others).welfare
    best = float(grid.max())
    assert got.welfare >= best - 1e-9 * abs(best), (got.y, ys[int(grid.argmax())])


@pytest.mark.unit
@settings(max_examples=200)
@given(peak=st.floats(0.0, 10.0), power=st.floats(0.3, 3.0),
       probes=st.lists(st.floats(0.0, 10.0), min_size=1, max_size=6),
       plateau=st.floats(0.0, 2.0))
def test_probe_bracket_holds_the_maximum_of_a_quasiconcave_payoff(
        peak, power, probes, plateau):
    """The bisection's max-min bracket (best probe's neighbours) must contain the
    maximizer of any quasiconcave payoff, here -max(|y - peak| - plateau, 0)^power
    (a flat top of half-width ``plateau``: ties must widen the bracket, never cut
    the top off)."""
    from types import SimpleNamespace

    from aggregame.solvers.equilibrium.bisection import _bracket
    from aggregame.solvers.equilibrium.search import Candidate

    def payoff(y):
        return -max(abs(y - peak) - plateau, 0.0) ** power

    ys = [0.0, 10.0] + probes
    cands = [Candidate(y, payoff(y), 0.0) for y in ys]
    lo, hi = _bracket(cands, SimpleNamespace(maxmin=True, y_max=10.0))
    top = [y for y in np.linspace(0.0, 10.0, 2001) if payoff(y) == 0.0]
    top = top or [min(max(peak, 0.0), 10.0)]
    assert any(lo <= y <= hi for y in top), (lo, hi, peak)
    assert lo <= hi


@pytest.mark.unit
def test_secant_stop_never_ends_a_search_away_from_a_root(monkeypatch):
    """Found by review: the secant stop inside brentq went through the nearest
    point seen, here the bracket's end where the slope is -1.4e74 (alpha = 5), so
    its step was ~1e-74 wherever it stood, and the search stopped at y = 1.58 (slope
    -0.89, J = -0.17) where the root is at 0.136 (J = -9.2e-4). With the stop or
    without it (the old search) the best response must be the same."""
    import aggregame.solvers.equilibrium.best_response as br
    import aggregame.solvers.equilibrium.search as search
    from aggregame import Game, LinearPrice, Player, quadratic_users

    users = quadratic_users([413.81213567394684, 212.9406066117046, 6209.433036483197],
                            [88.4851756290129, 745.4058858737328, 633.6545846015467])
    game = Game((Player.aggregator("A", users, alpha=5.0, rule="viable", eps=0.01),),
                LinearPrice(27.44350299822119))
    others = 0.0874071880944381
    found = {}
    for flag in (True, False):
        monkeypatch.setattr(search, "SEQUENTIAL_SEARCH", flag)
        found[flag] = br.best_response(NativeInner(game, 0), others)
    assert found[True].welfare == pytest.approx(found[False].welfare, rel=1e-9)
    assert found[True].y == pytest.approx(found[False].y, rel=1e-8)


@pytest.mark.unit
def test_a_player_void_at_every_purchase_has_regret_zero_proved():
    """Strict rule, alpha = 2: J = -inf once a member is priced out. With the others
    buying enough that a member is priced out already at y = 0, J is -inf at every
    purchase (the price only rises with y): no deviation gains, and the scan proves
    it instead of sampling a payoff that is -inf everywhere. Checked against the
    payoff itself on a grid."""
    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.solvers.certify.certificate import Verdict
    from aggregame.solvers.certify.scan import certify

    users = quadratic_users(np.array([0.5, 0.5]), np.array([1.0, 8.0]), "m")
    solo = quadratic_users(np.array([0.1]), np.array([9.0]), "s")
    game = Game((Player.aggregator("A", users, alpha=2.0, rule="strict"),
                 Player.individual(solo[0])), LinearPrice(0.5))
    profile = np.array([1.0, 4.0])  # price 2.5 at y_A = 0: member m0 (b = 1) out
    inner = NativeInner(game, 0)
    grid = np.linspace(0.0, 10.0, 41)
    assert np.all(np.isneginf(inner.solve(grid, np.full(grid.size, 4.0)).welfare))
    cert = certify(game, profile)
    assert cert.players[0].verdict is Verdict.PROVED
    assert cert.players[0].regret == 0.0
