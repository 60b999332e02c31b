"""Benchmark: the whole report at the paper's sizes, as `aggregame report` runs it.

Runs `aggregame report --out DIR --workers W --json --markdown
benchmarks/results/studies.md` in a fresh folder (so benchmarks/results/studies.md is
written by the report itself, from this run), and writes
benchmarks/results/report_time.md: wall time per study and in all, the CPU time of
every process (the CLI and its workers; a loaded machine inflates wall time, not
this), and the load average around the run (the machine is shared).

``--breakdown`` instead times every task of every study, in this process and one at a
time, with a fresh solve cache, and writes benchmarks/results/report_breakdown.md:
CPU seconds by study and domain, where the time goes.

Run: python benchmarks/bench_report.py [--workers 2] | --breakdown
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_report(out: Path, workers: int) -> dict:
    """Run the CLI; its JSON, wall seconds, CPU seconds of it and its workers."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "aggregame.cli", "report", "--out", str(out),
         "--workers", str(workers), "--json", "-q", "--markdown",
         str(RESULTS / "studies.md")], capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"doc": json.loads(done.stdout), "wall": wall, "cpu": cpu,
            "load_before": load, "load_after": os.getloadavg()}


def breakdown() -> dict[tuple[str, str], float]:
    """CPU seconds per (study, domain), every task run here, one at a time."""
    from aggregame.studies import STUDIES
    from aggregame.studies.outcome import cache_folder
    from aggregame.studies.registry import STUDY_MODULES
    from aggregame.studies.report_model import ORDER

    cpu: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory() as cache, cache_folder(cache):
        for study in ORDER:
            module = STUDY_MODULES[STUDIES[study]]
            for params in module.tasks(module.DEFAULT_RUNS, 0, "native"):
                start = time.process_time()
                module.run(params)
                key = (study, params["domain"])
                cpu[key] = cpu.get(key, 0.0) + time.process_time() - start
    return cpu


def write(result: dict, workers: int) -> None:
    doc = result["doc"]
    lines = ["# The full report at the paper's sizes", "",
             f"`aggregame report --workers {workers}` on this machine "
             f"({os.cpu_count()} cores, shared), every study at the paper's size with "
             f"its robustness variants, in a fresh folder (no resumed run). Load "
             f"average (1, 5, 15 min) before: "
             f"{', '.join(f'{v:.1f}' for v in result['load_before'])}; after: "
             f"{', '.join(f'{v:.1f}' for v in result['load_after'])}.", "",
             f"Wall time in all: **{result['wall']:.0f} s**; CPU time of the command "
             f"and its workers: {result['cpu']:.0f} s (on {workers} workers a quiet "
             f"machine needs about {result['cpu'] / workers:.0f} s of wall time). "
             f"Where the time goes: report_breakdown.md.", "",
             "| study | wall s | runs computed |", "|---|---|---|"]
    lines += [f"| {s['name']} | {s['seconds']:.1f} | {s['ran']} |"
              for s in doc["studies"]]
    (RESULTS / "report_time.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_breakdown(cpu_by: dict[tuple[str, str], float]) -> None:
    by_study: dict[str, float] = {}
    by_domain: dict[str, float] = {}
    for (study, domain), v in cpu_by.items():
        by_study[study] = by_study.get(study, 0.0) + v
        by_domain[domain] = by_domain.get(domain, 0.0) + v
    lines = ["# Where the full report's time goes", "",
             "CPU seconds of every task of every study at the paper's sizes, run once, "
             "one at a time in one process, with a solve cache shared by the studies "
             "(as in `aggregame report`).", "",
             f"Total: {sum(cpu_by.values()):.0f} s. By study: "
             + ", ".join(f"{k} {v:.0f}" for k, v in by_study.items()) + ". By domain: "
             + ", ".join(f"{k} {v:.0f}" for k, v in by_domain.items()) + ".", "",
             "| study | domain | CPU s |", "|---|---|---|"]
    lines += [f"| {s} | {d} | {v:.1f} |" for (s, d), v in
              sorted(cpu_by.items(), key=lambda kv: -kv[1])]
    (RESULTS / "report_breakdown.md").write_text("\n".join(lines) + "\n",
                                                 encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", help="report folder (default: a fresh temporary one)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time every task by study and domain instead")
    args = parser.parse_args()
    if args.breakdown:
        cpu_by = breakdown()
        write_breakdown(cpu_by)
        print(f"CPU {sum(cpu_by.values()):.0f} s; {RESULTS / 'report_breakdown.md'}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "report"
        result = run_report(out, args.workers)
    write(result, args.workers)
    print(f"wall {result['wall']:.0f} s, CPU {result['cpu']:.0f} s; "
          f"{RESULTS / 'report_time.md'}")


if __name__ == "__main__":
    main()
