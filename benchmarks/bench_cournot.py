"""Benchmark: n single quadratic users (a Cournot game) from a scenario file, against
a plain numpy reference loop written here.

For each n a scenario folder is written to a temporary folder (``users.csv`` with the
users, ``cournot.toml`` with ``[[individuals]] users = "users.csv"`` and a linear
price c = 0.001 * 12 / n), and loaded by ``load_scenario`` (timed apart: "load").
"solve" is ``solve_equilibrium(game, settings)`` on the loaded game with the file's
settings: Gauss-Seidel rounds of closed-form best responses, the certificate of
every player's regret, and the result (allocations, welfare); "certificate" is
``certify`` alone at the equilibrium. Each is the median of ``--repeats`` runs in
one process after one warm-up run, in wall time (perf_counter); CPU time beside it.

The reference is the loop anyone would write in numpy: Gauss-Seidel rounds of
y_j = max(0, (b_j - c Y_-j) / (2 (a_j + c))) until no purchase moves by more than
tol * max(1, max y) (the settings' own tolerance); "reference + regret" adds a
regret check on a grid of 64 deviations per player (arrays over players), the least
a reference must do to say its answer is an equilibrium (ours proves it: a concave
payoff's tangent bound, solvers/certify/one_member.py). Both answers are compared.

Writes benchmarks/results/cournot.md. Run: python benchmarks/bench_cournot.py
[--repeats 101] [--max 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from aggregame.scenario import load_scenario
from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium

OUT = Path(__file__).parent / "results" / "cournot.md"
#: Deviations per player of the reference's regret check.
GRID = 64


def write_scenario(folder: Path, n: int, seed: int = 0) -> Path:
    """users.csv (a ~ U(0.1, 0.9), b ~ U(0, 10)) and cournot.toml in ``folder``."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, n), rng.uniform(0, 10, n)
    rows = "".join(f"c{i},{float(a[i])!r},{float(b[i])!r}\n" for i in range(n))
    (folder / "users.csv").write_text("name,a,b\n" + rows)
    path = folder / "cournot.toml"
    path.write_text(f'[market]\nprice = "linear"\nc = {0.001 * 12 / n!r}\n\n'
                    '[[individuals]]\nusers = "users.csv"\n')
    return path


def reference_rounds(a: np.ndarray, b: np.ndarray, c: float, tol: float,
                     max_rounds: int) -> np.ndarray:
    """Plain Gauss-Seidel best-response rounds in numpy."""
    y = np.zeros_like(a)
    gain = 1.0 / (2 * (a + c))
    for _ in range(max_rounds):
        old = y.copy()
        total = y.sum()
        for j in range(a.size):
            others = total - y[j]
            y[j] = max(0.0, (b[j] - c * others) * gain[j])
            total = others + y[j]
        if np.abs(y - old).max() <= tol * max(1.0, y.max()):
            break
    return y


def reference_regret(a: np.ndarray, b: np.ndarray, c: float, y: np.ndarray
                     ) -> float:
    """Largest gain of a deviation on a grid of GRID purchases per player (up to
    b_j / a_j, where its utility returns to zero), over the profile's payoffs."""
    others = y.sum() - y
    grid = np.linspace(0.0, 1.0, GRID)[None, :] * (b / a)[:, None]

    def surplus(z, o):
        return b[:, None] * z - a[:, None] * z * z - c * (o[:, None] + z) * z

    here = surplus(y[:, None], others)[:, 0]
    return float(np.max(surplus(grid, others).max(axis=1) - here))


def timed(run, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``run()`` (after one warm-up call)."""
    run()
    wall, cpu = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def measure(n: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = write_scenario(Path(tmp), n)
        start = time.perf_counter()
        scenario = load_scenario(path)
        load = time.perf_counter() - start
    game = scenario.game
    settings = DynamicsSettings(**scenario.solver.dynamics_kwargs())
    eq = solve_equilibrium(game, settings=settings)
    solve, solve_cpu = timed(lambda: solve_equilibrium(game, settings=settings),
                             repeats)
    cert, _ = timed(lambda: certify(game, eq.profile, settings.certificate_rtol),
                    repeats)
    a = np.array([p.columns.params["a"][0] for p in game.players])
    b = np.array([p.columns.params["b"][0] for p in game.players])
    c = game.price.c
    y_ref = reference_rounds(a, b, c, settings.tol, settings.max_rounds)
    ref, _ = timed(lambda: reference_rounds(a, b, c, settings.tol,
                                            settings.max_rounds), repeats)
    ref_regret, _ = timed(lambda: reference_regret(
        a, b, c, reference_rounds(a, b, c, settings.tol, settings.max_rounds)),
        repeats)
    return {"n": n, "load": load, "solve": solve, "solve_cpu": solve_cpu,
            "cert": cert, "ref": ref, "ref_regret": ref_regret,
            "rounds": eq.iterations, "certified": eq.is_equilibrium,
            "gap": float(np.abs(eq.profile - y_ref).max()),
            "regret_ref": reference_regret(a, b, c, y_ref)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=101)
    parser.add_argument("--max", type=int, default=10_000)
    args = parser.parse_args()
    lines = [
        "# Cournot: n single quadratic users from a scenario file, against numpy",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores (shared; load average {os.getloadavg()[0]:.1f} at "
        f"the start), {time.strftime('%Y-%m-%d')}. `python benchmarks/"
        "bench_cournot.py` regenerates this file; its docstring says what each "
        "column measures. Times are medians of "
        f"{args.repeats} runs (fewer beyond n = 1000) after a warm-up, wall clock, "
        "in milliseconds.",
        "",
        "| n | load [ms] | solve [ms] | solve CPU [ms] | of which certificate [ms] | "
        "numpy reference, rounds [ms] | numpy reference + regret grid [ms] | "
        "solve / reference + regret | rounds | certified | max difference to "
        "the reference | reference's grid regret |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in [k for k in (12, 100, 1000, 10_000) if k <= args.max]:
        r = measure(n, args.repeats if n <= 1000 else max(3, args.repeats // 20))
        lines.append(
            f"| {n:,} | {r['load'] * 1e3:.1f} | {r['solve'] * 1e3:.3f} | "
            f"{r['solve_cpu'] * 1e3:.3f} | {r['cert'] * 1e3:.3f} | "
            f"{r['ref'] * 1e3:.3f} | {r['ref_regret'] * 1e3:.3f} | "
            f"{r['solve'] / r['ref_regret']:.2f} | {r['rounds']} | "
            f"{r['certified']} | {r['gap']:.1e} | {r['regret_ref']:.1e} |")
        print(lines[-1], flush=True)
    lines += ["", "The reference's rounds alone are a lower bound no equilibrium "
              "with evidence can reach: they neither check nor prove anything. "
              "Its grid regret is a sample (a deviation between grid points is "
              "not excluded); the solve's certificate is a proof.", ""]
    OUT.write_text("\n".join(lines))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
