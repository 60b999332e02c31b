"""Benchmark of scale (native backend): 100 aggregators, 10^3 to 10^6 members in total.

Each size runs in its own process so its peak resident memory (ru_maxrss) is its own.
Members are the paper's small users (a ~ U(0.1, 0.9), b ~ U(0, 10)), split evenly;
the price p = c Y has c = 0.001 * 200 / members, so the market clears at a similar
price whatever the size (the paper's c for 200 users). Floor rule, alpha 0 and 1
(``--alphas``; inf is max-min read as total surplus). The time is one run per size (the certificate included; its time and
solves are reported apart). Writes benchmarks/results/scale.md (a table per alpha)
and benchmarks/results/scale.png (time and peak memory against members, log-log,
with the slope fitted from 10^4 up).
Run: python benchmarks/bench_scale.py [--max 1e6] [--alphas 0 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
PLAYERS = 100


def run_one(members: int, alpha: float, seed: int) -> dict:
    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.solvers.certify.scan import certify, threads
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    # Load (or compile) the kernels first: the timed solve is the steady state.
    warm = Game((Player.aggregator("w", quadratic_users([0.5, 0.4], [3.0, 2.0], "w"),
                                   alpha=alpha, **({"maxmin": "total-surplus"}
                                                   if np.isinf(alpha) else {})),),
                LinearPrice(0.01))
    solve_equilibrium(warm)
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, members), rng.uniform(0, 10, members)
    users = quadratic_users(a, b, "s")
    per = members // PLAYERS
    # Max-min in its total-surplus reading, as the Fig. 4 tables time it (leximin,
    # the default, is the progressive filling of solvers/inner/leximin.py).
    extra = {"maxmin": "total-surplus"} if np.isinf(alpha) else {}
    players = tuple(Player.aggregator(f"agg{k}", users[k * per:(k + 1) * per],
                                      alpha=alpha, **extra) for k in range(PLAYERS))
    game = Game(players, LinearPrice(0.001 * 200 / members))
    build = time.perf_counter() - start
    start, cpu0 = time.perf_counter(), time.process_time()
    eq = solve_equilibrium(game)
    solve, cpu = time.perf_counter() - start, time.process_time() - cpu0
    start, cpu0 = time.perf_counter(), time.process_time()
    cert = certify(game, eq.profile)
    return {"members": members, "alpha": alpha, "build_s": build, "solve_s": solve,
            "dynamics_solves": eq.evaluations,
            "solve_cpu_s": cpu, "cert_cpu_s": time.process_time() - cpu0,
            "cert_s": time.perf_counter() - start, "cert_solves": cert.evaluations,
            "rounds": eq.iterations, "certified": eq.is_equilibrium,
            "max_regret": eq.max_regret, "price": eq.price,
            "certificate_threads": threads(game),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def slope(rows: list[dict], key: str) -> float:
    """Fitted exponent of ``key`` against members, from 10^4 members up."""
    pts = [(r["members"], r[key]) for r in rows if r["members"] >= 10_000]
    if len(pts) < 2:
        return float("nan")
    x, y = np.log10(np.array(pts)).T
    return float(np.polyfit(x, y, 1)[0])


def table(alpha: float, rows: list[dict]) -> list[str]:
    lines = [
        f"## alpha = {alpha:g}", "",
        "| members | build game [s] | equilibrium wall [s] | equilibrium CPU [s] | "
        "certificate alone wall / CPU [s] | certificate threads | solves (dynamics / "
        "certificate) | rounds | certified | peak RSS [MB] | wall ratio to previous "
        "size |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    prev = None
    for r in rows:
        ratio = "" if prev is None else f"{r['solve_s'] / prev:.1f}"
        lines.append(f"| {r['members']:,} | {r['build_s']:.2f} | "
                     f"{r['solve_s']:.2f} | {r['solve_cpu_s']:.2f} | "
                     f"{r['cert_s']:.2f} / {r['cert_cpu_s']:.2f} | "
                     f"{r.get('certificate_threads', 1)} | {r['dynamics_solves']} / "
                     f"{r['cert_solves']} | {r['rounds']} | "
                     f"{r['certified']} | {r['peak_rss_mb']:.0f} | {ratio} |")
        prev = r["solve_s"]
    lines += ["", f"Fitted slope from 10^4 members: wall time "
              f"{slope(rows, 'solve_s'):.2f}, peak RSS "
              f"{slope(rows, 'peak_rss_mb'):.2f}. Goal at 10^6: <= 10 s, <= 1 GB, "
              "<= 11x from 10^5.", ""]
    return lines


def plot(results: dict[float, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for alpha, rows in results.items():
        n = [r["members"] for r in rows]
        for ax, key in zip(axes, ("solve_s", "peak_rss_mb")):
            ax.loglog(n, [r[key] for r in rows], "o-",
                      label=f"alpha = {alpha:g} (slope {slope(rows, key):.2f})")
    axes[0].set_ylabel("equilibrium with certificate, wall [s]")
    axes[1].set_ylabel("peak resident memory [MB]")
    for ax in axes:
        ax.set_xlabel("members (100 aggregators)")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=120)


def main() -> None:
    """Run each size in a subprocess; write the tables and the figure."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max", type=float, default=1e6, help="largest member count")
    parser.add_argument("--alphas", type=float, nargs="+",
                        default=[0.0, 1.0, float("inf"), 0.5, 2.0])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.alphas[0], seed=1)))
        return
    results: dict[float, list[dict]] = {}
    load = os.getloadavg()[0]
    for alpha in args.alphas:
        results[alpha] = []
        size = 1000
        while size <= args.max:
            out = subprocess.run([sys.executable, __file__, "--one", str(size),
                                  "--alphas", str(alpha)], capture_output=True,
                                 text=True, check=True)
            results[alpha].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[alpha][-1], flush=True)
            size *= 10
    lines = [f"# Scale: {PLAYERS} aggregators, native backend", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}; one "
             f"run per size, {time.strftime('%Y-%m-%d')}. Peak RSS includes Python, "
             "numpy, numba and the game's User objects. Times are wall clock (load "
             f"average {load:.1f} on {os.cpu_count()} cores at the start; CPU time, "
             "all threads, beside it). The compiled kernels (solvers/inner/compiled.py) "
             "solve every row; their cache was warm. From 20,000 members the "
             "certificate checks players in threads (certificate.threads). "
             "Figure: scale.png.", ""]
    for alpha, rows in results.items():
        lines += table(alpha, rows)
    (RESULTS / "scale.md").write_text("\n".join(lines))
    plot(results)
    print((RESULTS / "scale.md").read_text())


if __name__ == "__main__":
    main()
