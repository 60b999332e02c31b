"""Certificate of equilibrium: every player's regret at a profile (MODEL.md).

regret_j = sup over feasible y_j' of J_j(y_j', y_-j) - J_j(y). The supremum comes from
the scan best response (grid, price-out points, refined roots), so the certificate
does not trust quasiconcavity. The exception is a one-member quadratic player under an
affine price: its payoff is a concave quadratic in y_j, and its closed form is exact. For a max-min player whose level is flat the regret is
its gain in total surplus, the tie-break it plays by.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aggregame.solvers.best_response import Candidate, best_response
from aggregame.solvers.inner import InnerSolver

#: A profile is an equilibrium when every regret is below this, relative to max(1, |J|).
CERTIFICATE_RTOL = 1e-7


@dataclass(frozen=True)
class Certificate:
    """Regret of each player at ``profile``, and the deviation that achieves it."""

    profile: np.ndarray
    regrets: np.ndarray
    deviations: np.ndarray
    welfare: np.ndarray
    rtol: float

    @property
    def max_regret(self) -> float:
        return float(np.max(self.regrets)) if self.regrets.size else 0.0

    @property
    def certified(self) -> bool:
        limit = self.rtol * np.maximum(1.0, np.abs(np.nan_to_num(self.welfare)))
        return bool(np.all(self.regrets <= limit))


def certify(inners: list[InnerSolver], profile: np.ndarray,
            rtol: float = CERTIFICATE_RTOL) -> Certificate:
    """Regret of every player at ``profile`` by a scan of its whole feasible interval."""
    profile = np.asarray(profile, dtype=float)
    total = float(profile.sum())
    regrets, deviations, welfare = [], [], []
    for j, inner in enumerate(inners):
        others = total - profile[j]
        here = inner.solve(np.array([profile[j]]), others)
        cur = Candidate(float(profile[j]), float(here.welfare[0]),
                        float(here.tiebreak[0]))
        br = best_response(inner, others, strategy="scan", current=profile[j])
        best = Candidate(br.y, br.welfare, br.tiebreak)
        maxmin = math.isinf(inner.game.players[j].alpha)
        if not math.isfinite(cur.welfare):
            regret = math.inf if math.isfinite(best.welfare) else 0.0
        elif best.beats(cur, maxmin):
            gain = best.welfare - cur.welfare
            regret = gain if gain > 0 and not (maxmin and gain <= 1e-11 * max(
                1.0, abs(cur.welfare))) else best.tiebreak - cur.tiebreak
        else:
            regret = max(best.welfare - cur.welfare, 0.0)
        regrets.append(regret)
        deviations.append(br.y)
        welfare.append(cur.welfare)
    return Certificate(profile, np.array(regrets), np.array(deviations),
                       np.array(welfare), rtol)
