"""The uniqueness probe of the paper's Conjecture 1: many starts, clustered ends.

``probe_uniqueness`` runs best response and the KKT solve from many random starting
profiles, clusters the end points, and keeps as equilibria only the clusters whose
points pass the regret certificate: a KKT point with positive regret is reported, not
counted. A probe finds equilibria; it never shows that there are no others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from aggregame.players import Game
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.equilibrium.starts import random_starts
from aggregame.solvers.kkt.solve import KKTSettings, solve_kkt

#: Two profiles are the same when max_j |y_j - y'_j| <= this * max(1, max_j y_j).
SAME_PROFILE_RTOL = 1e-5


@dataclass(eq=False)
class Cluster:
    """End points that coincide, with how many runs of each method reached them."""

    profile: np.ndarray
    runs: dict[str, int] = field(default_factory=dict)
    certified: bool = False
    max_regret: float = np.inf
    converged: bool = False


@dataclass
class UniquenessReport:
    """Every run of the probe and the clusters of their end points."""

    runs: pd.DataFrame
    clusters: list[Cluster]

    @property
    def equilibria(self) -> list[Cluster]:
        return [c for c in self.clusters if c.certified and c.converged]

    @property
    def not_equilibria(self) -> list[Cluster]:
        return [c for c in self.clusters if not (c.certified and c.converged)]

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{
            "cluster": k, "profile": np.round(c.profile, 6).tolist(),
            "equilibrium": c.certified and c.converged, "max_regret": c.max_regret,
            **{f"runs_{m}": n for m, n in c.runs.items()}}
            for k, c in enumerate(self.clusters)])


def probe_uniqueness(game: Game, starts: int = 10, seed: int = 0,
                     methods: Sequence[str] = ("best-response", "kkt"),
                     rtol: float = SAME_PROFILE_RTOL,
                     progress: Callable[[int, int], None] | None = None
                     ) -> UniquenessReport:
    """Run each method from ``starts`` random profiles and cluster the end points.

    A cluster counts as an equilibrium when one of its runs converged and passed the
    regret certificate; KKT points with positive regret stay visible as clusters that
    are not equilibria.
    """
    profiles = random_starts(game, starts, seed)
    rows, clusters = [], []
    total = len(methods) * starts
    done = 0
    for method in methods:
        for k, start in enumerate(profiles):
            t0 = time.perf_counter()
            if method == "best-response":
                # The scan best response: quasiconcavity is what is being probed.
                eq = solve_equilibrium(game, "native", DynamicsSettings(
                    start=tuple(start), best_response="scan"))
            elif method == "kkt":
                # One run per start: the multistart would report another start's end.
                eq = solve_kkt(game, KKTSettings(multistart=False), start=start)
            else:
                raise ValueError(f"unknown method {method!r}")
            cluster = _assign(clusters, eq.profile, rtol)
            cluster.runs[method] = cluster.runs.get(method, 0) + 1
            ok = eq.converged and eq.certified
            if ok or not cluster.converged:
                cluster.converged = cluster.converged or eq.converged
                cluster.certified = cluster.certified or ok
            cluster.max_regret = min(cluster.max_regret, eq.max_regret)
            index = next(i for i, c in enumerate(clusters) if c is cluster)
            rows.append({"method": method, "start": k, "start_profile": start.tolist(),
                         "profile": eq.profile.tolist(), "status": eq.status,
                         "converged": eq.converged, "certified": eq.certified,
                         "max_regret": eq.max_regret, "cluster": index,
                         "seconds": time.perf_counter() - t0})
            done += 1
            if progress is not None:
                progress(done, total)
    return UniquenessReport(pd.DataFrame(rows), clusters)


def _assign(clusters: list[Cluster], profile: np.ndarray, rtol: float) -> Cluster:
    scale = rtol * max(1.0, float(np.max(np.abs(profile))))
    for c in clusters:
        if float(np.max(np.abs(c.profile - profile))) <= scale:
            return c
    clusters.append(Cluster(profile.copy()))
    return clusters[-1]
