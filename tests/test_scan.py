"""The scan best response on a payoff that is not quasiconcave, against a dense grid.

Found by the full-size report (Figs. 10-11, alpha = 4, seed 9): an aggregator's payoff
rises to a peak at y ~ 7.1, falls, and rises again to y ~ 15; the scan's samples at 0
and 13.5 both had positive slopes, so no sign change showed the peak, and the
dynamics settled on a profile with relative regret 5e-4.
"""

import numpy as np
import pytest

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
