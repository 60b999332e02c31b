"""Real signals on a tiny study run through the command line: Ctrl-C once and twice,
SIGKILL of the main process. Each must end fast, leave no worker behind and no
partial or temporary file; the finished runs stay and a rerun completes the study."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow

#: The real CLI, with the studies' small-user count cut so runs take ~0.1 s each.
SCRIPT = """
import functools, sys
import aggregame.studies as studies
studies.run_study = functools.partial(studies.run_study, users=40)
from aggregame.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_study(out: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, "study", "fig6", "--runs",
                             "40", "--workers", "2", "-q", "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    runs = out / "fig6" / "runs"
    before = len(list(runs.glob("*.json")))
    deadline = time.monotonic() + 60
    while len(list(runs.glob("*.json"))) <= before:  # wait for a newly finished run
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2
    return proc, workers


def assert_clean(out: Path, workers: list[psutil.Process]) -> None:
    deadline = time.monotonic() + 3
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w.pid for w in workers if _alive(w)], "orphan workers"
    runs = out / "fig6" / "runs"
    assert not list(runs.glob(".*.tmp"))
    for path in runs.glob("*.json"):
        assert isinstance(json.loads(path.read_text())["rows"], list)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_ctrl_c_stops_within_two_seconds_and_keeps_finished_runs(tmp_path):
    proc, workers = start_study(tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert code == 130 and proc.stderr.read().strip() == "aggregame: interrupted"
    assert_clean(tmp_path, workers)
    kept = len(list((tmp_path / "fig6" / "runs").glob("*.json")))
    assert 0 < kept < 6 * 40


def test_second_ctrl_c_does_not_hang(tmp_path):
    proc, workers = start_study(tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert_clean(tmp_path, workers)


def test_sigkill_of_the_main_process_leaves_no_worker_and_resume_completes(tmp_path):
    proc, workers = start_study(tmp_path)
    proc.kill()
    proc.wait(timeout=10)
    assert_clean(tmp_path, workers)
    # The lock died with its holder: the same study resumes (interrupted once more
    # by Ctrl-C to keep this test short) and keeps the runs of the killed one.
    kept = len(list((tmp_path / "fig6" / "runs").glob("*.json")))
    again, workers = start_study(tmp_path)
    again.send_signal(signal.SIGINT)
    assert again.wait(timeout=10) == 130
    assert_clean(tmp_path, workers)
    assert len(list((tmp_path / "fig6" / "runs").glob("*.json"))) > kept
