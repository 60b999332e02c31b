"""Benchmark of scale from scenario files, end to end: load, solve, certificate.

For each case and size a scenario is written to a temporary folder (its members'
file written by pyarrow, not timed), then run in a fresh process so that its peak
resident memory (VmHWM) is its own:

* ``import``: the package imported and the compiled kernels loaded from their cache
  (one tiny game solved), what any run pays once; its RSS is the baseline;
* ``load``: ``load_scenario`` (pyarrow reads the file once, every rule checked over
  whole columns, players hold their members as columns);
* ``solve``: ``solve_equilibrium`` (Gauss-Seidel) or, with the ``aggregate``
  method, ``solve_aggregate`` (the search over the total), each ending with the
  certificate of every player's regret.

Cases: one aggregator of every member, from a CSV and from Parquet (a single
player: its equilibrium is its best response against the price); 100 aggregators
selecting groups of one CSV (a ``group`` column) solved by ``--method aggregate``.
Members are the paper's small users (a ~ U(0.1, 0.9), b ~ U(0, 10), seed 1) under
p = c Y with c = 0.001 * 200 / members (the paper's c for 200 users), so the price
is alike at every size; the scenario's default alpha (0, social welfare) and rule.

Memory per member is (peak RSS - baseline RSS) / members. Writes
benchmarks/results/scale.md and scale.png (time and memory against members,
log-log), keeping every measured row in scale.json (a later run replaces the sizes
it measures). Run: python benchmarks/bench_scale.py [--max 1e7] [--min 1e7]
[--cases one-parquet]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
SAVED = RESULTS / "scale.json"
GROUPS = 100
#: (case, label, file suffix, groups, method)
CASES = (("one-csv", "1 aggregator, CSV", "csv", 0, "gauss-seidel"),
         ("one-parquet", "1 aggregator, Parquet", "parquet", 0, "gauss-seidel"),
         ("hundred-csv", "100 aggregators (groups of one CSV), --method aggregate",
          "csv", GROUPS, "aggregate"))
#: The issue's goals: (members, case) -> (seconds, MB).
GOALS = {(10**6, "one-csv"): (10.0, 1024.0), (10**6, "one-parquet"): (10.0, 1024.0),
         (10**6, "hundred-csv"): (15.0, None), (10**7, "one-csv"): (120.0, 8192.0),
         (10**7, "one-parquet"): (120.0, 8192.0),
         (10**7, "hundred-csv"): (120.0, 8192.0)}


def write_scenario(folder: Path, members: int, suffix: str, groups: int) -> Path:
    """The members' file (pyarrow) and a scenario selecting it."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 0.9, members), rng.uniform(0, 10, members)
    columns = {"name": pa.array(np.char.add("u", np.arange(members).astype(str)))}
    if groups:
        group = (np.arange(members) * groups // members).astype(str)
        columns["group"] = pa.array(np.char.add("g", group))
    columns |= {"a": pa.array(a), "b": pa.array(b)}
    table = pa.table(columns)
    data = folder / f"users.{suffix}"
    if suffix == "parquet":
        pq.write_table(table, data)
    else:
        pacsv.write_csv(table, data, pacsv.WriteOptions(quoting_style="none"))
    lines = ["[market]", 'price = "linear"', f"c = {0.001 * 200 / members!r}", ""]
    if groups:
        for g in range(groups):
            lines += ["[[players]]", f'name = "agg{g}"', f'users = "{data.name}"',
                      f'group = "g{g}"', ""]
    else:
        lines += ["[[players]]", 'name = "A"', f'users = "{data.name}"', ""]
    path = folder / "scale.toml"
    path.write_text("\n".join(lines))
    return path


def rss_mb() -> float:
    """This process's peak resident memory: VmHWM, whose high-water mark starts at
    exec (ru_maxrss keeps the parent's peak at fork, the benchmark's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(path: str, method: str) -> dict:
    """In this fresh process: import and kernels, load, solve with certificate."""
    start = time.perf_counter()
    from aggregame import Game, LinearPrice, Player, quadratic_users
    from aggregame.scenario import load_scenario
    from aggregame.solvers.equilibrium.aggregate import solve_aggregate
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    solve_equilibrium(Game((Player.aggregator(
        "w", quadratic_users([0.5, 0.4], [3.0, 2.0], "w")),), LinearPrice(0.01)))
    imported, base = time.perf_counter() - start, rss_mb()
    start = time.perf_counter()
    game = load_scenario(path).game
    loaded = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    eq = solve_aggregate(game) if method == "aggregate" else solve_equilibrium(game)
    solved, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"members": sum(p.size for p in game.players), "import_s": imported,
            "load_s": loaded, "solve_s": solved, "solve_cpu_s": cpu,
            "total_s": loaded + solved, "certified": bool(eq.is_equilibrium),
            "max_regret": float(eq.max_regret), "base_mb": base, "peak_mb": rss_mb()}


def slope(rows: list[dict], key: str) -> float:
    """Fitted exponent of ``key`` against members, from 10^5 members up."""
    pts = [(r["members"], r[key]) for r in rows if r["members"] >= 10**5]
    if len(pts) < 2:
        return float("nan")
    x, y = np.log10(np.array(pts)).T
    return float(np.polyfit(x, y, 1)[0])


def goal(row: dict, case: str) -> str:
    target = GOALS.get((row["members"], case))
    if target is None:
        return ""
    seconds, mb = target
    met = row["total_s"] <= seconds and (mb is None or row["peak_mb"] <= mb)
    limit = f"<= {seconds:g} s" + ("" if mb is None else f", <= {mb / 1024:g} GB")
    return f"{limit}: {'met' if met else 'missed'}"


def table(case: str, label: str, rows: list[dict]) -> list[str]:
    lines = [f"## {label}", "",
             "| members | import + kernels [s] | load [s] | solve + certificate "
             "wall / CPU [s] | load + solve [s] | certified (max regret) | peak RSS "
             "[MB] | baseline RSS [MB] | bytes per member | goal |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = (r["peak_mb"] - r["base_mb"]) * 2**20 / r["members"]
        lines.append(
            f"| {r['members']:,} | {r['import_s']:.2f} | {r['load_s']:.2f} | "
            f"{r['solve_s']:.2f} / {r['solve_cpu_s']:.2f} | {r['total_s']:.2f} | "
            f"{r['certified']} ({r['max_regret']:.1e}) | {r['peak_mb']:.0f} | "
            f"{r['base_mb']:.0f} | {per:.0f} | {goal(r, case)} |")
    lines += ["", f"Fitted slope from 10^5 members: load + solve "
              f"{slope(rows, 'total_s'):.2f}, peak RSS {slope(rows, 'peak_mb'):.2f}.",
              ""]
    return lines


def plot(results: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {case: label for case, label, *_ in CASES}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for case, rows in results.items():
        n = [r["members"] for r in rows]
        for ax, key in zip(axes, ("total_s", "peak_mb")):
            ax.loglog(n, [r[key] for r in rows], "o-",
                      label=f"{labels[case]} (slope {slope(rows, key):.2f})")
    axes[0].set_ylabel("load + solve + certificate, wall [s]")
    axes[1].set_ylabel("peak resident memory [MB]")
    for ax in axes:
        ax.set_xlabel("members (from a scenario file)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=120)


def main() -> None:
    """Write each case and size, run it in a subprocess; tables and the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=float, default=1e6, help="largest member count")
    parser.add_argument("--max-aggregate", type=float, default=1e6,
                        help="largest member count of the 100-aggregator case")
    parser.add_argument("--min", type=float, default=1e3, help="smallest member count")
    parser.add_argument("--cases", nargs="+", default=[c[0] for c in CASES],
                        choices=[c[0] for c in CASES])
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    # Rows of earlier runs are kept (scale.json): a run may add one size (10^7).
    results: dict[str, list[dict]] = json.loads(SAVED.read_text()) if \
        SAVED.exists() else {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for case, _, suffix, groups, method in CASES:
            if case not in args.cases:
                continue
            size = int(args.min)
            largest = args.max_aggregate if groups else args.max
            while size <= largest:
                folder = Path(tmp) / f"{case}-{size}"
                folder.mkdir()
                path = write_scenario(folder, size, suffix, groups)
                out = subprocess.run([sys.executable, __file__, "--one", str(path),
                                      method], capture_output=True, text=True,
                                     check=False)
                if out.returncode:
                    print(out.stderr, file=sys.stderr)
                    raise SystemExit(f"{case} at {size:,} members failed")
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row["file_mb"] = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
                row["load_average"] = load
                results[case] = sorted([r for r in results.get(case, [])
                                        if r["members"] != size] + [row],
                                       key=lambda r: r["members"])
                SAVED.write_text(json.dumps(results, indent=1))
                print(case, row, flush=True)
                for f in folder.iterdir():
                    f.unlink()
                size *= 10
    write(results)


def write(results: dict[str, list[dict]]) -> None:
    loads = [r["load_average"] for rows in results.values() for r in rows
             if "load_average" in r]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "unknown"
    lines = ["# Scale from scenario files: load, solve, certificate", "",
             f"Machine: {platform.machine()}, Python {platform.python_version()}, "
             f"{os.cpu_count()} cores (load average {load} at the runs' starts); one "
             f"run per size, {time.strftime('%Y-%m-%d')}, each in a fresh process. "
             "Times are wall clock. `import + kernels` is paid once by any run (the "
             "package imported, the compiled kernels loaded from their warm cache) "
             "and is not in `load + solve`; its RSS is the baseline. Bytes per member "
             "= (peak RSS - baseline RSS) / members. Members are held as columns "
             "(no object per member). Figure: scale.png. "
             "`python benchmarks/bench_scale.py [--max 1e7]` regenerates both.", ""]
    for case, label, *_ in CASES:
        if results.get(case):
            lines += table(case, label, results[case])
    (RESULTS / "scale.md").write_text("\n".join(lines))
    plot(results)
    print((RESULTS / "scale.md").read_text())


if __name__ == "__main__":
    main()
