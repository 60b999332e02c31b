"""Benchmark of scale (native backend): 100 aggregators, 10^3 to 10^6 members in total.

Each size runs in its own process so its peak resident memory (ru_maxrss) is its own.
Members are the paper's small users (a ~ U(0.1, 0.9), b ~ U(0, 10)), split evenly;
the price p = c Y has c = 0.001 * 200 / members, so the market clears at a similar
price whatever the size (the paper's c for 200 users). alpha = 1, floor rule.
Writes benchmarks/results/scale.md. Run: python benchmarks/bench_scale.py [--max 1e6]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "scale.md"
PLAYERS = 100


def run_one(members: int, alpha: float, seed: int) -> dict:
    import numpy as np

    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.solvers.dynamics import solve_equilibrium

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, members), rng.uniform(0, 10, members)
    users = quadratic_users(a, b, "s")
    per = members // PLAYERS
    players = tuple(Player.aggregator(f"agg{k}", users[k * per:(k + 1) * per],
                                      alpha=alpha) for k in range(PLAYERS))
    game = Game(players, LinearPrice(0.001 * 200 / members))
    build = time.perf_counter() - start
    start = time.perf_counter()
    eq = solve_equilibrium(game)
    solve = time.perf_counter() - start
    return {"members": members, "build_s": build, "solve_s": solve,
            "rounds": eq.iterations, "certified": eq.is_equilibrium,
            "max_regret": eq.max_regret, "price": eq.price,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    """Run each size in a subprocess and write the table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=float, default=1e6, help="largest member count")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.alpha, seed=1)))
        return
    rows = []
    size = 1000
    while size <= args.max:
        out = subprocess.run([sys.executable, __file__, "--one", str(size), "--alpha",
                              str(args.alpha)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
        size *= 10
    lines = [
        f"# Scale: {PLAYERS} aggregators, native backend, alpha = {args.alpha:g}",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}; one run "
        f"per size, {time.strftime('%Y-%m-%d')}. Peak RSS includes Python, numpy and "
        "the game's User objects.",
        "",
        "| members | build game [s] | equilibrium [s] | per member [us] | rounds | "
        "certified | peak RSS [MB] | time ratio to previous size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    prev = None
    for r in rows:
        ratio = "" if prev is None else f"{r['solve_s'] / prev:.1f}"
        lines.append(f"| {r['members']:,} | {r['build_s']:.2f} | {r['solve_s']:.2f} | "
                     f"{r['solve_s'] / r['members'] * 1e6:.1f} | {r['rounds']} | "
                     f"{r['certified']} | {r['peak_rss_mb']:.0f} | {ratio} |")
        prev = r["solve_s"]
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
