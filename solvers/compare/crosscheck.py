"""Cross-checks between methods.

``crosscheck`` solves one game by best response (both inner backends) and by the
stacked KKT system and tabulates them side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from aggregame.players import Game
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.results import Equilibrium
from aggregame.solvers.kkt.solve import solve_kkt

#: Methods agree in the cross-check when their profiles differ by less than this.
AGREEMENT_RTOL = 1e-6


def _row(label: str, eq: Equilibrium) -> dict:
    return {"method": label, "profile": np.round(eq.profile, 9).tolist(),
            "price": eq.price, "sum_J": float(np.nansum(eq.welfare)),
            "total_surplus": float(sum(s.sum() for s in eq.surpluses)),
            "max_regret": eq.max_regret, "certificate": _verdict(eq),
            "equilibrium": eq.is_equilibrium, "seconds": eq.seconds}


def _verdict(eq: Equilibrium) -> str:
    """How the regret is known: 'searched', or SCIP's 'proved'/'bounded'/'failed'
    (the worst over the players)."""
    verdicts = eq.certificate.verdicts or ("searched",)
    for worst in ("failed", "bounded", "proved"):
        if worst in verdicts:
            return worst
    return verdicts[0]


@dataclass
class Crosscheck:
    """Results of every method on one game, and whether they agree."""

    results: dict[str, Equilibrium]
    rtol: float = AGREEMENT_RTOL

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([_row(k, v) for k, v in self.results.items()])

    def disagreement(self) -> float:
        """Largest relative profile difference between any two methods."""
        profiles = [eq.profile for eq in self.results.values()]
        scale = max(1.0, max(float(np.max(np.abs(p))) for p in profiles))
        return max((float(np.max(np.abs(a - b))) / scale for a in profiles
                    for b in profiles), default=0.0)

    @property
    def agree(self) -> bool:
        return self.disagreement() <= self.rtol and all(
            eq.is_equilibrium for eq in self.results.values())


def crosscheck(game: Game, settings: DynamicsSettings | None = None,
               backends: Sequence[str] = ("native", "pyomo")) -> Crosscheck:
    """Best response with each backend, and the stacked KKT solve, on ``game``."""
    results = {}
    for backend in backends:
        results[f"best-response/{backend}"] = solve_equilibrium(game, backend, settings)
    results["kkt/pyomo"] = solve_kkt(game)
    return Crosscheck(results)


