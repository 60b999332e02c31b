"""Benchmark: stacked KKT (Ipopt) against best response, and how each grows.

Games: 2 aggregators of n members (the paper's small-user draws) + the large user,
c = 0.001 * 200 / (2 n) so prices stay comparable, alpha = 1 and alpha = 0 (floor
rule). Best response is timed with the native backend (median of 5) and with the
pyomo backend (one run, up to n = 100); the KKT solve once per size. Writes
benchmarks/results/kkt.md. Run: python benchmarks/bench_kkt.py
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

import numpy as np

from aggregame import Game, LinearPrice, Player, QuadraticUtility, User, quadratic_users
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.kkt.solve import solve_kkt

OUT = Path(__file__).parent / "results" / "kkt.md"
SIZES = (25, 50, 100, 200)


def game(n: int, alpha: float) -> Game:
    rng = np.random.default_rng(11)
    aggs = [Player.aggregator(f"A{k}", quadratic_users(rng.uniform(0.1, 0.9, n),
                                                       rng.uniform(0, 10, n), f"a{k}_"),
                              alpha=alpha) for k in range(2)]
    large = Player.individual(User("large", QuadraticUtility(0.5, 200.0)))
    return Game((*aggs, large), LinearPrice(0.001 * 200 / (2 * n)))


def timed(fn, repeats=1):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    """Time both methods per size and alpha; write the table."""
    lines = ["# Stacked KKT against best response", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}; "
             f"{time.strftime('%Y-%m-%d')}; 2 aggregators of n members + 1 large user.",
             "", "| alpha | n per aggregator | BR native [s] | BR pyomo [s] | KKT [s] | "
             "KKT Ipopt solves | KKT / BR native | max rel. profile gap | all certified |",
             "|---|---|---|---|---|---|---|---|---|"]
    for alpha in (1.0, 0.0):
        for n in SIZES:
            g = game(n, alpha)
            t_nat, br = timed(lambda: solve_equilibrium(g), 5)
            t_py, brp = (timed(lambda: solve_equilibrium(g, "pyomo")) if n <= 100
                         else (float("nan"), None))
            t_kkt, kkt = timed(lambda: solve_kkt(g))
            gap = float(np.max(np.abs(kkt.profile - br.profile)) / br.profile.max())
            ok = br.is_equilibrium and kkt.is_equilibrium and (
                brp is None or brp.is_equilibrium)
            lines.append(f"| {alpha:g} | {n} | {t_nat:.3f} | {t_py:.2f} | {t_kkt:.2f} | "
                         f"{kkt.iterations} | {t_kkt / t_nat:.0f} | {gap:.1e} | {ok} |")
            print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
