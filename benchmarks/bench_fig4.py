"""Benchmark: wall time per equilibrium on the paper's Fig. 4 setting, native backend.

Every alpha (0, 1, inf, 0.5, 2: the aggregators' alpha changed, see games.py), with
the shipped members (some priced out at equilibrium) and without the members that
would be. Each time is the median of ``--repeats`` runs measured in this one process;
the certificate (included in the equilibrium's time) is timed again on its own to
give its share. ``--pyomo`` adds the Pyomo backend's time and where it goes.
Writes benchmarks/results/fig4.md. Run: python benchmarks/bench_fig4.py [--repeats N]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from games import ALPHAS, fig4, label  # noqa: E402

from aggregame.solvers.certify.scan import certify  # noqa: E402
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium  # noqa: E402

OUT = Path(__file__).parent / "results" / "fig4.md"


def timed(game, repeats, backend="native"):
    """(median equilibrium seconds, median certificate seconds, equilibrium, median
    equilibrium CPU seconds, median certificate CPU seconds). CPU time (this
    process's) is what a shared, loaded machine does not inflate."""
    total, cert, cpu, cpu_cert, eq = [], [], [], [], None
    for _ in range(repeats):
        start, c0 = time.perf_counter(), time.process_time()
        eq = solve_equilibrium(game, backend=backend)
        total.append(time.perf_counter() - start)
        cpu.append(time.process_time() - c0)
        start, c0 = time.perf_counter(), time.process_time()
        certify(game, eq.profile)
        cert.append(time.perf_counter() - start)
        cpu_cert.append(time.process_time() - c0)
    return (statistics.median(total), statistics.median(cert), eq,
            statistics.median(cpu), statistics.median(cpu_cert))


def pyomo_breakdown(game):
    prof = cProfile.Profile()
    start = time.perf_counter()
    prof.enable()
    solve_equilibrium(game, backend="pyomo")
    prof.disable()
    total = time.perf_counter() - start
    nlp = ipopt = 0.0
    for (filename, _, func), (_, _, _, cum, _) in pstats.Stats(prof).stats.items():
        if func == "__init__" and filename.endswith("pyomo_nlp.py"):
            nlp += cum
        if func == "solve" and filename.endswith("cyipopt_interface.py"):
            ipopt += cum
    return total, nlp, ipopt


def numpy_only(alpha, priced_out, repeats):
    """Median CPU seconds of the same equilibrium on numpy alone (AGGREGAME_JIT=0,
    in a subprocess: the switch is read at import), and its profile."""
    code = (f"import sys, time, statistics, json; sys.path.insert(0, {str(HERE)!r}); "
            "from games import fig4; "
            "from aggregame.solvers.equilibrium.dynamics import solve_equilibrium; "
            f"g = fig4(float({str(alpha)!r}), {priced_out!r}); cpu = []\n"
            f"for _ in range({repeats}):\n"
            "    c0 = time.process_time(); e = solve_equilibrium(g); "
            "cpu.append(time.process_time() - c0)\n"
            "print(json.dumps([statistics.median(cpu), e.profile.tolist()]))")
    env = dict(os.environ, AGGREGAME_JIT="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True)
    cpu, profile = json.loads(out.stdout.strip().splitlines()[-1])
    return cpu, np.array(profile)


def native_table(repeats):
    lines = ["| alpha | members priced out at equilibrium | equilibrium CPU [ms] | "
             "certificate CPU [ms] | certificate share | equilibrium wall [ms] | "
             "goal [ms] | numpy alone CPU [ms] | rounds | "
             "solves (dynamics / certificate) | certified |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for priced_out in (True, False):
        for alpha in ALPHAS:
            game = fig4(alpha, priced_out)
            total, cert, eq, cpu, cpu_cert = timed(game, repeats)
            slow, profile = numpy_only(alpha, priced_out, max(1, repeats // 3))
            gap = float(np.max(np.abs(profile - eq.profile)) / np.max(eq.profile))
            out = sum(int((p.marginal_at_zero <= eq.price).sum())
                      for p in game.players)
            goal = 60 if alpha in (0.5, 2.0) else 25
            lines.append(
                f"| {label(alpha)} | {out} | {cpu * 1e3:.1f} | {cpu_cert * 1e3:.1f} | "
                f"{cpu_cert / cpu:.0%} | {total * 1e3:.1f} | {goal} | "
                f"{slow * 1e3:.1f} (profile gap {gap:.0e}) | {eq.iterations} "
                f"| {eq.evaluations} / {eq.certificate.evaluations} | "
                f"{eq.is_equilibrium} |")
            print(lines[-1], flush=True)
    return lines


def pyomo_lines(repeats):
    lines = ["", "Pyomo backend (alpha 0, 1, inf):", "",
             "| alpha | pyomo [s] | max rel. profile gap to native |", "|---|---|---|"]
    for alpha in (0.0, 1.0, float("inf")):
        game = fig4(alpha)
        e_nat = timed(game, 1)[2]
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            e_py = solve_equilibrium(game, backend="pyomo")
            times.append(time.perf_counter() - start)
        gap = float(abs(e_nat.profile - e_py.profile).max() / e_nat.profile.max())
        lines.append(f"| {label(alpha)} | {statistics.median(times):.2f} | {gap:.1e} |")
    total, nlp, ipopt = pyomo_breakdown(fig4(0.0))
    lines += ["", f"One alpha = 0 pyomo run under cProfile: {total:.2f} s, of which "
              f"building the NLP {nlp:.2f} s ({nlp / total:.0%}), Ipopt {ipopt:.2f} s "
              f"({ipopt / total:.0%})."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9, help="native repeats")
    parser.add_argument("--pyomo", type=int, default=0, metavar="REPEATS",
                        help="also time the pyomo backend (slow)")
    args = parser.parse_args()
    lines = [
        "# Fig. 4 setting: time per equilibrium, certificate included",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; native "
        f"backend, median of {args.repeats} runs in one process, "
        f"{time.strftime('%Y-%m-%d')}. The equilibrium's time includes its "
        "certificate; the certificate column times it again alone. CPU time is this "
        "process's (what a loaded machine does not inflate); wall time is also given. "
        "'priced out' "
        "counts members with U'(0) <= p at the equilibrium (0: the variant without "
        "members of b <= 2).",
        "",
    ]
    lines += native_table(args.repeats)
    if args.pyomo:
        lines += pyomo_lines(args.pyomo)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
