"""Benchmark: max-min read as leximin against max-min read as total surplus.

Games: every shipped scenario with a max-min player (data/*.toml), the benchmark
games at alpha = inf (benchmarks/games.py: Fig. 4 with and without priced-out
members) and the alpha = inf rows of the scale benchmark (100 aggregators of the
paper's small users, benchmarks/bench_scale.py's game, up to ``--max`` members).
Each game is solved twice, its max-min players read by ``with_maxmin_rule`` as
total surplus and as leximin: ``solve_equilibrium`` (native backend; Gauss-Seidel
rounds and the certificate of every player's regret). The time is the median of
``--repeats`` runs after one warm-up run (kernels compiled and loaded), wall clock.
Both readings must certify; the ratio is leximin / total surplus (goal: <= 3).

Writes benchmarks/results/leximin.md. Run: python benchmarks/bench_leximin.py
[--repeats 5] [--max 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from games import fig4

from aggregame import Game, LinearPrice, Player, quadratic_users
from aggregame.leximin import with_maxmin_rule
from aggregame.scenario import load_scenario
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

OUT = Path(__file__).parent / "results" / "leximin.md"
DATA = Path(__file__).parent.parent / "data"
GOAL = 3.0


def scale_game(members: int, players: int = 100, seed: int = 1) -> Game:
    """bench_scale.py's game at alpha = inf: ``players`` aggregators sharing
    ``members`` small users, p = 0.001 * 200 / members Y."""
    rng = np.random.default_rng(seed)
    users = quadratic_users(rng.uniform(0.1, 0.9, members),
                            rng.uniform(0, 10, members), "s")
    per = members // players
    return Game(tuple(Player.aggregator(f"agg{k}", users[k * per:(k + 1) * per],
                                        alpha="inf")
                      for k in range(players)),
                LinearPrice(0.001 * 200 / members))


def games(largest: int) -> list[tuple[str, Game]]:
    out = []
    for path in sorted(DATA.glob("*.toml")):
        game = load_scenario(path).game
        if any(p.fairness.is_maxmin and p.size > 1 for p in game.players):
            out.append((path.name, game))
    out += [("fig4 alpha=inf", fig4(float("inf"))),
            ("fig4 alpha=inf priced-in", fig4(float("inf"), False))]
    size = 1000
    while size <= largest:
        out.append((f"scale {size:,} members alpha=inf", scale_game(size)))
        size *= 10
    return out


def timed(game: Game, repeats: int) -> tuple[float, object]:
    eq = solve_equilibrium(game)  # warm-up: kernels loaded, caches filled
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        eq = solve_equilibrium(game)
        times.append(time.perf_counter() - start)
    return statistics.median(times), eq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max", type=float, default=1e5)
    args = parser.parse_args()
    rows = []
    for name, game in games(int(args.max)):
        repeats = args.repeats if max(p.size for p in game.players) < 10**4 else 1
        ts, ts_eq = timed(with_maxmin_rule(game, "total-surplus"), repeats)
        lx, lx_eq = timed(with_maxmin_rule(game, "leximin"), repeats)
        row = (name, ts, lx, lx / ts, ts_eq.is_equilibrium, lx_eq.is_equilibrium,
               lx_eq.max_regret, float(np.sum(ts_eq.profile)),
               float(np.sum(lx_eq.profile)), repeats,
               (ts_eq.evaluations, lx_eq.evaluations),
               (ts_eq.certificate.evaluations, lx_eq.certificate.evaluations))
        print(row, flush=True)
        rows.append(row)
    write(rows)


def verdict(ratio: float, certified_ts: bool, certified_lex: bool) -> str:
    """A ratio counts only between two certified equilibria."""
    if not (certified_ts and certified_lex):
        return "not comparable (not certified)"
    return "met" if ratio <= GOAL else "missed"


def write(rows: list[tuple]) -> None:
    load = os.getloadavg()[0]
    lines = [
        "# Leximin against total surplus (max-min's two readings)", "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores (load average {load:.1f} at the end); "
        f"{time.strftime('%Y-%m-%d')}. Each time is solve_equilibrium (native "
        "backend, the certificate included), median of the runs after one warm-up "
        "run, wall clock. Leximin rows are solved in the compiled kernels by "
        "progressive filling over sorted level breakpoints "
        "(solvers/inner/compiled/leximin.py), each row with its own residual. "
        "Inner rows: the dynamics' (every best response), and the last "
        "certificate's (every player). "
        f"Goal: ratio <= {GOAL:g} on every game.", "",
        "| game | total surplus [s] | leximin [s] | ratio | certified (ts / lex) "
        "| leximin max regret | total purchase (ts / lex) | rows, dynamics "
        "(ts / lex) | rows, certificate (ts / lex) | runs | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (name, ts, lx, ratio, ok_ts, ok_lx, regret, y_ts, y_lx, runs, dyn,
         cert) in rows:
        lines.append(
            f"| {name} | {ts:.3f} | {lx:.3f} | {ratio:.2f} | {ok_ts} / {ok_lx} | "
            f"{regret:.1e} | {y_ts:.4g} / {y_lx:.4g} | {dyn[0]} / {dyn[1]} | "
            f"{cert[0]} / {cert[1]} | {runs} | {verdict(ratio, ok_ts, ok_lx)} |")
    met = sum(verdict(r[3], r[4], r[5]) == "met" for r in rows)
    lines += ["", f"Goal met on {met} of {len(rows)} games.", ""]
    OUT.write_text("\n".join(lines))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
