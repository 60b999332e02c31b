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

#: A study stops this soon after Ctrl-C, without waiting for its pending runs (240
#: of ~0.1 s each). Not a speed goal: room for a loaded machine.
PROMPT_SECONDS = 5.0

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


def test_ctrl_c_stops_promptly_and_keeps_finished_runs(tmp_path):
    proc, workers = start_study(tmp_path)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=10)
    assert time.monotonic() - sent < PROMPT_SECONDS
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
    assert time.monotonic() - sent < PROMPT_SECONDS
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


#: The same CLI, but each SVG goes to disk in two halves with a long stall between
#: them, announced in the file named by the first argument: a signal sent then meets
#: a figure half written.
STALLED_SVG_SCRIPT = """
import functools, io, pathlib, sys, time
from matplotlib.figure import Figure
import aggregame.studies as studies
studies.run_study = functools.partial(studies.run_study, users=40)
announce = pathlib.Path(sys.argv.pop(1))
real_savefig = Figure.savefig
def stalled_savefig(self, path, *args, format=None, **kw):
    if format != "svg":
        return real_savefig(self, path, *args, format=format, **kw)
    buf = io.BytesIO()
    real_savefig(self, buf, *args, format=format, **kw)
    data = buf.getvalue()
    with open(path, "wb") as fh:
        fh.write(data[:len(data) // 2])
        fh.flush()
        announce.write_text(str(path))
        time.sleep(60)
        fh.write(data[len(data) // 2:])
Figure.savefig = stalled_savefig
from aggregame.cli import main
sys.exit(main(sys.argv[1:]))
"""
#: A PNG ends with its IEND chunk (length 0, type, CRC).
PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def figure_study(script: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", script, *extra, "study", "fig4", "--runs", "1",
            "--workers", "1", "-q", "--out", str(out)]


def assert_figures_whole(folder: Path) -> list[str]:
    """Every PNG and SVG in ``folder`` is complete (a whole PNG, parseable SVG)."""
    import xml.etree.ElementTree as ET

    names = []
    for path in sorted(folder.glob("*.png")):
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(PNG_END), path
        names.append(path.name)
    for path in sorted(folder.glob("*.svg")):
        assert ET.parse(path).getroot().tag.endswith("svg"), path
        names.append(path.name)
    return names


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "int"])
def test_signal_while_a_figure_is_written_leaves_no_partial_file(tmp_path, sig):
    announce, out = tmp_path / "writing", tmp_path / "out"
    proc = subprocess.Popen(figure_study(STALLED_SVG_SCRIPT, out, str(announce)),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not announce.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    half = Path(announce.read_text())
    children = psutil.Process(proc.pid).children(recursive=True)
    # The signal meets a non-empty, half-written temporary file next to the figure.
    assert half.parent == out / "fig4" and half.name.startswith(".fig4.svg.")
    assert half.name.endswith(".tmp") and half.stat().st_size > 0
    proc.send_signal(sig)
    code = proc.wait(timeout=10)
    folder = out / "fig4"
    assert assert_figures_whole(folder) == ["fig4.png"]  # no SVG, not even partial
    assert not [c.pid for c in children if _alive(c)], "orphan workers"
    if sig == signal.SIGINT:
        assert code == 130
        assert list(folder.rglob("*.tmp")) == []
        return
    # SIGKILL cannot be cleaned up after by the killed process: the temporary file
    # stays hidden under its .tmp name, and the next run removes it and completes.
    assert code == -signal.SIGKILL and half.exists()
    again = subprocess.run(figure_study(SCRIPT, out), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    assert list(folder.rglob("*.tmp")) == []
    assert assert_figures_whole(folder) == ["fig4.png", "fig4.svg"]
