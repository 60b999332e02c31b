"""Benchmark of the scenario loader: 10^6 users read from one file, end to end.

For each case a scenario and its data file are written to a temporary folder, then
loaded in a fresh process (its peak resident memory, ru_maxrss, is its own):

* ``columns``: ``load_players`` (pyarrow reads the file, every rule of data/README.md
  is checked over whole columns, each player's members are arrays);
* ``users``: building one User object per member from those columns;
* ``game``: ``load_scenario`` in full (columns, users, players, the game and its
  float64 check), what ``aggregame solve`` pays before solving.

Cases: one aggregator of 10^6 members from a CSV, 100 aggregators selecting groups
of one CSV (read once), and the same 10^6 members from Parquet. Members are the
paper's small users (a ~ U(0.1, 0.9), b ~ U(0, 10)). Writes
benchmarks/results/loader.md. Run: python benchmarks/bench_loader.py [--members N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def write_case(folder: Path, members: int, case: str) -> Path:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 0.9, members), rng.uniform(0, 10, members)
    names = np.char.add("u", np.arange(members).astype(str))
    groups = np.char.add("g", (np.arange(members) % 100).astype(str))
    if case == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"name": names, "a": a, "b": b}),
                       folder / "users.parquet")
        players = '[[players]]\nname = "A"\nusers = "users.parquet"\n'
    else:
        with open(folder / "users.csv", "w") as fh:
            fh.write("name,group,a,b\n")
            fh.writelines(f"{n},{g},{x:.6f},{y:.6f}\n"
                          for n, g, x, y in zip(names, groups, a, b))
        players = ('[[players]]\nname = "A"\nusers = "users.csv"\n' if case == "one"
                   else "".join(f'[[players]]\nname = "A{k}"\nusers = "users.csv"\n'
                                f'group = "g{k}"\n' for k in range(100)))
    path = folder / "s.toml"
    path.write_text(f"[market]\nc = {0.001 * 200 / members}\n{players}")
    return path


def measure(path: str, step: str) -> dict:
    """One step, in this (fresh) process: seconds and peak memory."""
    import pyarrow.csv  # noqa: F401  (imports are not the loader's time)
    import pyarrow.parquet  # noqa: F401

    from aggregame.scenario import load_players, load_scenario

    start = time.perf_counter()
    if step == "columns":
        entries = load_players(path)
        count = sum(len(e.members) for e in entries)
    elif step == "users":
        entries = load_players(path)
        start = time.perf_counter()
        count = sum(len(e.members.users()) for e in entries)
    else:
        count = sum(p.size for p in load_scenario(path).game.players)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    return {"members": count, "seconds": seconds, "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10**6)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in ("one", "hundred", "parquet"):
            folder = Path(tmp) / case
            folder.mkdir()
            path = write_case(folder, args.members, case)
            size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
            for step in ("columns", "users", "game"):
                out = subprocess.run([sys.executable, __file__, "--measure", str(path),
                                      step], capture_output=True, text=True, check=True)
                row = {"case": case, "step": step, "file_mb": size,
                       **json.loads(out.stdout)}
                rows.append(row)
                print(row, flush=True)
    write_table(rows, args.members)


def write_table(rows: list[dict], members: int) -> None:
    lines = [f"# Scenario loader: {members:,} users from one file",
             "",
             f"Machine: {platform.machine()}, {platform.python_version()}; one run "
             "each, in a fresh process (peak = ru_maxrss of that process). "
             "`python benchmarks/bench_loader.py` regenerates this file.",
             "",
             "| case | step | file MB | members | seconds | peak MB |",
             "|---|---|---|---|---|---|"]
    labels = {"one": "1 aggregator, CSV", "hundred": "100 groups of one CSV",
              "parquet": "1 aggregator, Parquet"}
    for r in rows:
        lines.append(f"| {labels[r['case']]} | {r['step']} | {r['file_mb']:.1f} | "
                     f"{r['members']:,} | {r['seconds']:.2f} | {r['peak_mb']:.0f} |")
    lines += ["", "columns: `load_players` (read, check every rule, arrays per "
              "player); users: one User per member from the columns; game: "
              "`load_scenario` in full (columns, users, players, Game and its float64 "
              "check)."]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "loader.md").write_text("\n".join(lines) + "\n")
    print((RESULTS / "loader.md").read_text())


if __name__ == "__main__":
    main()
