"""Benchmark: wall time per equilibrium on the paper's Fig. 4 setting, both backends.

Writes benchmarks/results/fig4.md. Run: python benchmarks/bench_fig4.py [--repeats N]
For the Pyomo backend it also splits the time of one run with cProfile: building the
NL problem for Ipopt (PyomoNLP: Pyomo's NL writer and ASL), Ipopt itself, and the rest
(our Python: the best-response driver, the native bookkeeping, reading duals).
"""

from __future__ import annotations

import argparse
import cProfile
import platform
import pstats
import statistics
import time
from pathlib import Path

from aggregame.scenario import load_scenario
from aggregame.solvers.dynamics import solve_equilibrium

SCENARIOS = {"0": "fig4", "1": "fig4_proportional", "inf": "fig4_maxmin"}
OUT = Path(__file__).parent / "results" / "fig4.md"


def timed(game, backend, repeats):
    times, eq = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        eq = solve_equilibrium(game, backend=backend)
        times.append(time.perf_counter() - start)
    return statistics.median(times), eq


def pyomo_breakdown(game):
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    solve_equilibrium(game, backend="pyomo")
    prof.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(prof)
    nlp = ipopt = 0.0
    for (filename, _, func), (_, _, _, cum, _) in stats.stats.items():
        if func == "__init__" and filename.endswith("pyomo_nlp.py"):
            nlp += cum
        if func == "solve" and filename.endswith("cyipopt_interface.py"):
            ipopt += cum
    return total, nlp, ipopt


def main() -> None:
    """Time each alpha on both backends, then profile one pyomo run; write the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7, help="native repeats")
    parser.add_argument("--pyomo-repeats", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for alpha, name in SCENARIOS.items():
        game = load_scenario(name).game
        t_nat, e_nat = timed(game, "native", args.repeats)
        t_py, e_py = timed(game, "pyomo", args.pyomo_repeats)
        gap = float(abs(e_nat.profile - e_py.profile).max() / e_nat.profile.max())
        rows.append((alpha, t_nat, t_py, t_py / t_nat, e_nat.iterations, gap,
                     e_nat.is_equilibrium and e_py.is_equilibrium))
        print(rows[-1], flush=True)
    total, nlp, ipopt = pyomo_breakdown(load_scenario("fig4").game)
    lines = [
        "# Fig. 4 setting: time per equilibrium",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"Python {platform.python_version()}; native median of {args.repeats}, pyomo "
        f"median of {args.pyomo_repeats}; one run, {time.strftime('%Y-%m-%d')}.",
        "",
        "| alpha | native [ms] | pyomo [s] | pyomo / native | rounds | max rel. profile gap | both certified |",
        "|---|---|---|---|---|---|---|",
    ]
    for alpha, tn, tp, ratio, it, gap, ok in rows:
        lines.append(f"| {alpha} | {tn * 1e3:.1f} | {tp:.2f} | {ratio:.0f} | {it} | "
                     f"{gap:.1e} | {ok} |")
    lines += [
        "",
        "Where the pyomo backend's time goes (alpha = 0, one run under cProfile, which "
        "inflates Python time):",
        "",
        "| part | seconds | share |",
        "|---|---|---|",
        f"| building the NLP for Ipopt (PyomoNLP: NL writer + ASL) | {nlp:.2f} | "
        f"{nlp / total:.0%} |",
        f"| Ipopt (cyipopt solve) | {ipopt:.2f} | {ipopt / total:.0%} |",
        f"| everything else (driver, parameter updates, duals) | {total - nlp - ipopt:.2f} "
        f"| {(total - nlp - ipopt) / total:.0%} |",
        f"| total | {total:.2f} | 100% |",
    ]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
