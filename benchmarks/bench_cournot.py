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

from aggregame.solvers.certificate import certify  # noqa: E402
from aggregame.solvers.dynamics import solve_equilibrium  # noqa: E402

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
        f"{time.strftime('%Y-%m-%d')}.",
        "",
        "| n | equilibrium without certificate [ms] | certificate [ms] | per player "
        "[us] (without certificate) | rounds | certificate solves | certified |",
        "|---|---|---|---|---|---|---|",
    ]
    n = 12
    for n in [k for k in (12, 100, 1000, 10_000, 100_000) if k <= args.max]:
        game = cournot(n)
        total, cert = [], []
        for _ in range(args.repeats if n <= 1000 else 1):
            start = time.perf_counter()
            eq = solve_equilibrium(game)
            total.append(time.perf_counter() - start)
            start = time.perf_counter()
            certify(game, eq.profile)
            cert.append(time.perf_counter() - start)
        t, c = statistics.median(total), statistics.median(cert)
        lines.append(f"| {n:,} | {(t - c) * 1e3:.1f} | {c * 1e3:.1f} | "
                     f"{(t - c) / n * 1e6:.0f} | {eq.iterations} | "
                     f"{eq.certificate.evaluations} | {eq.is_equilibrium} |")
        print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
