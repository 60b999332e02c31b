"""The command line in process: exit codes, one-line errors, --json everywhere,
logging flags anywhere; and the study folder's lock, fingerprint and atomic files."""

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from aggregame.cli import ExitCode, main

BAD_INPUT = int(ExitCode.BAD_INPUT)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.unit
@pytest.mark.parametrize("argv, expected", [
    (["study", "fig5", "--workers", "0"], "argument --workers: must be an integer >= 1"),
    (["solve", "fig4", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
    (["solve", "fig4", "--seed", "1.5"], "argument --seed: must be an integer >= 0"),
    (["solve", "fig4", "--start", "a,b"], "argument --start: must be 'zero', 'random'"),
    (["solve", "fig4", "--start", "1,2"], "--start: needs one purchase per player (3)"),
    (["solve", "fig4", "--tol", "2"], "argument --tol: must be in [1e-10, 1)"),
    (["solve", "fig4", "--tol", "1e-13"], "argument --tol: must be in [1e-10, 1)"),
    (["solve", "nope"], "scenario 'nope' not found"),
    (["solve", "/dev/zero"], "/dev/zero: is a device or pipe"),
    (["uniqueness", "fig4", "--starts", "0"], "argument --starts: must be an integer"),
    (["uniqueness", "fig4", "--methods", "newton"], "--methods: unknown method(s)"),
    (["crosscheck", "fig4", "--backends", "gurobi"], "--backends: unknown backend(s)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["compare", "fig4", "--workers", "0"], "--workers must be an integer >= 1, got 0"),
])
def test_bad_command_line_values_exit_2_in_one_line(capsys, argv, expected):
    code, _, err = run(capsys, *argv)
    assert code == BAD_INPUT
    assert expected in one_line(err)


@pytest.mark.unit
def test_out_that_is_a_file_or_unwritable(capsys, tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    code, _, err = run(capsys, "study", "fig5", "--out", str(afile))
    assert code == BAD_INPUT and "is a file, not a folder" in one_line(err)
    code, _, err = run(capsys, "study", "fig5", "--out", str(afile / "sub"))
    assert code == BAD_INPUT and "cannot create" in one_line(err)
    code, _, err = run(capsys, "compare", "fig4", "--out", str(afile))
    assert code == BAD_INPUT and f"--out {afile}: is a file" in one_line(err)
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        code, _, err = run(capsys, "study", "fig5", "--out", str(ro))
        assert code == BAD_INPUT and "ro" in one_line(err)


@pytest.mark.unit
def test_dask_closed_port_and_garbage_address_fail_fast(capsys, tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    code, _, err = run(capsys, "study", "fig5", "-q", "--out", str(tmp_path),
                       "--dask", f"tcp://127.0.0.1:{port}")
    assert time.perf_counter() - start < 6.0
    assert code == BAD_INPUT and "cannot reach a Dask scheduler" in one_line(err)
    code, _, err = run(capsys, "study", "fig5", "-q", "--out", str(tmp_path),
                       "--dask", "not an address")
    assert code == BAD_INPUT and "--dask not an address" in one_line(err)


@pytest.mark.unit
def test_version_help_and_internal_errors(capsys, monkeypatch):
    import aggregame
    from aggregame.cli import commands

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"aggregame {aggregame.__version__}"

    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setitem(commands.COMMANDS, "scenarios", broken)
    code, _, err = run(capsys, "scenarios")
    assert code == ExitCode.INTERNAL_ERROR
    assert "internal error: KeyError" in one_line(err) and "--debug" in err
    code, _, err = run(capsys, "scenarios", "--debug")
    assert code == ExitCode.INTERNAL_ERROR and "Traceback" in err


@pytest.mark.unit
def test_full_disk_is_one_line_and_exit_2(capsys, monkeypatch):
    from aggregame.cli import commands

    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/out/results.csv")

    monkeypatch.setitem(commands.COMMANDS, "scenarios", full)
    code, _, err = run(capsys, "scenarios")
    assert code == BAD_INPUT
    assert one_line(err) == ("aggregame: error: /out/results.csv: "
                             "No space left on device")


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["-v", "scenarios"], ["scenarios", "-v"]])
def test_verbose_anywhere_logs_through_module_loggers(capsys, argv):
    import logging

    code, _, _ = run(capsys, *argv)
    assert code == 0 and logging.getLogger("aggregame").level == logging.INFO
    code, _, err = run(capsys, "solve", "fig4", "-v", "--max-rounds", "1")
    assert code == ExitCode.NO_EQUILIBRIUM
    assert "INFO aggregame.cli.commands: fig4: 3 players" in err
    code, _, err = run(capsys, "-q", "solve", "fig4", "--max-rounds", "1")
    assert "INFO" not in err
    assert any(isinstance(h, logging.NullHandler)
               for h in logging.getLogger("aggregame").handlers)


@pytest.mark.unit
@pytest.mark.parametrize("argv, field", [
    (["solve", "fig4"], "players"), (["scenarios"], "scenarios"),
    (["uniqueness", "two_equilibria", "--starts", "3", "--seed", "1", "--methods",
      "best-response"], "clusters"),
])
def test_json_has_a_schema_version_on_every_command(capsys, argv, field):
    code, out, _ = run(capsys, "--json", *argv)
    doc = json.loads(out)
    assert doc["schema_version"] == 1 and doc["command"] == argv[0]
    assert field in doc
    code2, out2, _ = run(capsys, *argv, "--json")  # after the command, the same
    assert code2 == code and json.loads(out2).keys() == doc.keys()


@pytest.mark.unit
def test_progress_bar_counts_rounds_without_a_fake_total(capsys):
    code, _, err = run(capsys, "solve", "fig4", "--progress")
    assert code == 0
    assert "round" in err and "/200" not in err and "max regret" in err


@pytest.mark.unit
def test_equilibrium_repr_is_one_short_line():
    from aggregame.scenario import load_scenario
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium

    eq = solve_equilibrium(load_scenario("fig3").game)
    text = repr(eq)
    assert "\n" not in text and len(text) < 300 and "400 players" in text


@pytest.mark.unit
def test_schema_command_prints_the_committed_schema():
    """In a fresh process, as a user runs it: the rules this test session defines
    (tests/test_recipes.py) are registered here and rightly widen the schema."""
    done = subprocess.run([sys.executable, "-m", "aggregame.cli", "schema"],
                          capture_output=True, text=True, timeout=120)
    committed = Path(__file__).parents[1] / "docs" / "scenario.schema.json"
    assert done.returncode == 0
    assert json.loads(done.stdout) == json.loads(committed.read_text())


@pytest.mark.solver
def test_crosscheck_json_and_multiple_equilibria(capsys):
    from conftest import SOLVER

    if not SOLVER:
        pytest.skip("Ipopt not installed")
    code, out, err = run(capsys, "crosscheck", "fig4_proportional", "--json",
                         "--backends", "native")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and len(doc["equilibria"]) == 1, err
    assert {m["method"] for m in doc["methods"]} == {"best-response/native",
                                                     "kkt/pyomo"}
    # Two equilibria: best response from zero ends near (53.9, 53.9), the KKT solve
    # from its own start near (500, 500); both certified, so exit 0, both listed.
    code, out, err = run(capsys, "crosscheck", "two_equilibria", "--backends",
                         "native", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"], err
    ends = sorted(round(e["profile"][0]) for e in doc["equilibria"])
    assert ends == [54, 500]
    code, out, _ = run(capsys, "crosscheck", "two_equilibria", "--backends", "native")
    assert code == 0 and "multiple equilibria" in out and "by kkt/pyomo" in out


# -- study folders ------------------------------------------------------------------
TINY = {"runs": 1, "seed": 3, "users": 6, "workers": 1, "progress": False}


@pytest.mark.unit
def test_study_folder_is_bound_to_its_settings(tmp_path):
    from aggregame import AggregameError
    from aggregame.studies import run_study

    first = run_study("fig12", out=tmp_path, **TINY)
    meta = json.loads((tmp_path / "fig12" / "settings.json").read_text())
    assert len(meta["fingerprint"]) == 64 and meta["code"].startswith("0.")
    assert run_study("fig12", out=tmp_path, **TINY).ran == 0
    with pytest.raises(AggregameError, match=r"other settings \(changed: seed\); use "
                                             r"another --out"):
        run_study("fig12", out=tmp_path, **{**TINY, "seed": 4})
    fresh = run_study("fig12", out=tmp_path / "other", **{**TINY, "seed": 4})
    assert fresh.ran == first.ran


@pytest.mark.unit
def test_a_locked_folder_is_refused_in_one_line(capsys, tmp_path):
    from aggregame.studies.files import FolderLock

    (tmp_path / "fig5").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from aggregame.studies.files import FolderLock\n"
        f"with FolderLock({str(tmp_path / 'fig5')!r}):\n"
        "    print('locked', flush=True); time.sleep(30)")], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run(capsys, "study", "fig5", "--out", str(tmp_path))
        assert code == BAD_INPUT and "another aggregame run" in one_line(err)
    finally:
        holder.kill()
        holder.wait()
    with FolderLock(tmp_path / "fig5"):  # released when its holder died
        pass


@pytest.mark.unit
def test_corrupt_run_files_are_recomputed_with_a_warning(tmp_path, caplog):
    from aggregame.studies import run_study

    first = run_study("fig12", out=tmp_path, **TINY)
    runs = sorted((tmp_path / "fig12" / "runs").glob("*.json"))
    runs[0].write_bytes(b"")
    runs[1].write_text('{"key": "something else", "rows": []}')
    again = run_study("fig12", out=tmp_path, **TINY)
    assert again.ran == 2 and "computing it again" in caplog.text
    pd.testing.assert_frame_equal(first.table, again.table)


@pytest.mark.unit
def test_files_respect_the_umask_and_failures_leave_no_temp(tmp_path, monkeypatch):
    from aggregame.studies import run_study
    from aggregame.studies.files import atomic_write

    old = os.umask(0o027)
    try:
        run_study("fig12", out=tmp_path, **TINY)
    finally:
        os.umask(old)
    folder = tmp_path / "fig12"
    for path in [*folder.glob("*.*"), *folder.glob("runs/*.json")]:
        if path.name != ".lock":
            assert path.stat().st_mode & 0o777 == 0o640, path

    target = tmp_path / "out.txt"
    target.write_text("old")

    def fails(path):
        path.write_text("half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with pytest.raises(OSError):
        atomic_write(target, fails)
    assert target.read_text() == "old" and sorted(tmp_path.glob(".*.tmp")) == []


@pytest.mark.unit
def test_importing_studies_leaves_matplotlib_alone(tmp_path):
    code = ("import matplotlib, sys\nbefore = matplotlib.get_backend()\n"
            "import aggregame.studies, aggregame.studies.plots as p\n"
            "fig, ax = p.figure(); ax.plot([0, 1]); p.save(fig, sys.argv[1], 'f')\n"
            "assert matplotlib.get_backend() == before, matplotlib.get_backend()\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    env = {**os.environ, "MPLBACKEND": "pdf"}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
