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

from aggregame.solvers.best_response import best_response
from aggregame.solvers.native import NativeInner
from aggregame.studies.common import aggregated, small_users


@pytest.mark.unit
def test_scan_finds_a_peak_between_two_rising_samples():
    game = aggregated(small_users(200, 9), [4.0, 4.0])
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

    from aggregame.solvers.best_response import Candidate, _bracket

    def payoff(y):
        return -max(abs(y - peak) - plateau, 0.0) ** power

    ys = [0.0, 10.0] + probes
    cands = [Candidate(y, payoff(y), 0.0) for y in ys]
    lo, hi = _bracket(cands, SimpleNamespace(maxmin=True, y_max=10.0))
    top = [y for y in np.linspace(0.0, 10.0, 2001) if payoff(y) == 0.0]
    top = top or [min(max(peak, 0.0), 10.0)]
    assert any(lo <= y <= hi for y in top), (lo, hi, peak)
    assert lo <= hi
