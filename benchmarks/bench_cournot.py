"""Benchmark: n single quadratic users (a Cournot game) under a linear price.

Time per equilibrium (median of ``--repeats`` in one process) for n = 12 up to
``--max``, the certificate reported separately (timed alone: the dynamics' share is
the difference), and the time per player to show how it grows with n.
Writes benchmarks/results/cournot.md. Run: python benchmarks/bench_cournot.py
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from games import cournot  # noqa: E402

from aggregame.solvers.certify.scan import certify  # noqa: E402
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium  # noqa: E402

OUT = Path(__file__).parent / "results" / "cournot.md"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max", type=int, default=10_000)
    args = parser.parse_args()
    lines = [
        "# Cournot: n single quadratic users, p = 0.001 (12 / n) Y",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; native "
        f"backend, median of {args.repeats} runs (1 beyond n = 1000), "
        f"{time.strftime('%Y-%m-%d')}. Times are this process's CPU time (the machine "
        "was shared and loaded; wall time also given). Rounds are closed-form "
        "best responses (docs/model.md, 'One-member players').",
        "",
        "| n | equilibrium with certificate, CPU [ms] | without certificate [ms] | "
        "certificate [ms] | equilibrium wall [ms] | per player [us] (with "
        "certificate) | rounds | certificate solves | certified |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    n = 12
    for n in [k for k in (12, 100, 1000, 10_000, 100_000) if k <= args.max]:
        game = cournot(n)
        total, cert, wall = [], [], []
        for _ in range(args.repeats if n <= 1000 else 1):
            start, c0 = time.perf_counter(), time.process_time()
            eq = solve_equilibrium(game)
            total.append(time.process_time() - c0)
            wall.append(time.perf_counter() - start)
            c0 = time.process_time()
            certify(game, eq.profile)
            cert.append(time.process_time() - c0)
        t, c = statistics.median(total), statistics.median(cert)
        lines.append(f"| {n:,} | {t * 1e3:.2f} | {(t - c) * 1e3:.2f} | {c * 1e3:.2f} | "
                     f"{statistics.median(wall) * 1e3:.2f} | {t / n * 1e6:.0f} | "
                     f"{eq.iterations} | {eq.certificate.evaluations} | "
                     f"{eq.is_equilibrium} |")
        print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
