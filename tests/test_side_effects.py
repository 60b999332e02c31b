"""Nothing is written where the user did not ask: solver options that touch files
are refused from scenario files and need --allow-file-options on the command line,
checking options never opens a file, and a study folder's lock, results and
settings are never reached through a symbolic link. A full disk names the file."""

import errno
import json
import os
import subprocess
import sys

import pytest

from aggregame import SettingsError
from aggregame.cli import ExitCode, main
from aggregame.errors import FileOptionError, SolverOptionError
from aggregame.scenario import load_scenario
from aggregame.settings import FILE_OPTIONS, LIBRARY_VALUES, file_option

BAD_INPUT = int(ExitCode.BAD_INPUT)
TINY = {"runs": 1, "seed": 3, "users": 6, "workers": 1, "progress": False}
GAME = ('[market]\nc = 0.001\n[[players]]\nname = "A"\nusers = [{name = "u", a = 1, '
        'b = 2}, {name = "w", a = 0.5, b = 3}]\n')


@pytest.fixture
def victim(tmp_path):
    """A file of 3,000 bytes that no option may create, empty or change."""
    path = tmp_path / "victim.txt"
    path.write_bytes(b"x" * 3000)
    return path


def untouched(path) -> bool:
    return path.read_bytes() == b"x" * 3000


def _solver_of(family: str) -> str:
    return {"ipopt": "cyipopt", "scip": "scip", "highs": "highs"}[family]


@pytest.mark.unit
@pytest.mark.parametrize("family, key", [(f, k) for f, keys in FILE_OPTIONS.items()
                                         for k in keys])
def test_every_file_option_is_refused_in_a_scenario_file(tmp_path, victim, family,
                                                         key):
    value = "true" if key.endswith(("_to_file", "_save")) else json.dumps(str(victim))
    path = tmp_path / "s.toml"
    path.write_text(GAME + f'[solver]\nname = "{_solver_of(family)}"\n'
                           f'[solver.options]\n"{key}" = {value}\n')
    with pytest.raises(SettingsError, match="a scenario file may not set it") as info:
        load_scenario(path)
    assert info.value.field == f"solver.options.{key}" and untouched(victim)


@pytest.mark.unit
def test_spellings_and_library_values_do_not_slip_through():
    for key in ("OUTPUT_FILE", " output_file", "Option_File_Name"):
        assert file_option("cyipopt", key, "x") == "reads or writes a file"
    for key, values in LIBRARY_VALUES.items():
        for value in values:
            assert "loads a library" in file_option("cyipopt", key, value.upper())
    assert file_option("cyipopt", "linear_solver", "mumps") is None
    assert file_option("scip", "limits/gap", 1e-6) is None


@pytest.mark.unit
@pytest.mark.parametrize("solver, key", [("cyipopt", "output_file"),
                                         ("cyipopt", "option_file_name"),
                                         ("highs", "log_file"),
                                         ("highs", "solution_file"),
                                         ("scip", "visual/vbcfilename")])
def test_checking_an_allowed_file_option_opens_no_file(tmp_path, victim, solver, key):
    pytest.importorskip({"cyipopt": "cyipopt", "highs": "highspy",
                         "scip": "pyscipopt"}[solver])
    from aggregame.solvers.solver_choice import SolverSpec

    fresh = tmp_path / "fresh.txt"
    for target in (victim, fresh):
        with pytest.raises(FileOptionError, match="--allow-file-options"):
            SolverSpec(solver, {key: str(target)})
        spec = SolverSpec(solver, {key: str(target)}, allow_files=True)
        assert dict(spec.options)[key] == str(target)
    assert untouched(victim) and not fresh.exists()
    with pytest.raises(SolverOptionError, match="must be a file name"):
        SolverSpec(solver, {key: 3}, allow_files=True)


@pytest.mark.unit
def test_checking_options_reads_no_options_file(tmp_path, monkeypatch):
    """Ipopt reads ./ipopt.opt by default; the probe that checks an option must
    not (an ipopt.opt there naming an output file would be followed)."""
    pytest.importorskip("cyipopt")
    from aggregame.solvers import solver_choice

    written = tmp_path / "from-ipopt-opt.txt"
    (tmp_path / "ipopt.opt").write_text(f"output_file {written}\nfile_print_level 5\n")
    monkeypatch.chdir(tmp_path)
    solver_choice._validate_ipopt_option.cache_clear()
    solver_choice.SolverSpec("cyipopt", {"tol": 3.3e-7, "mu_strategy": "adaptive"})
    assert not written.exists()


@pytest.mark.unit
def test_cli_file_options_need_the_flag_and_are_never_opened_when_refused(
        tmp_path, victim, capsys):
    path = tmp_path / "s.toml"
    path.write_text(GAME)
    for extra in ([], ["--backend", "pyomo"], ["--method", "kkt"]):
        code = main(["solve", str(path), *extra, "--solver-option",
                     f"output_file={victim}"])
        err = capsys.readouterr().err
        assert code == BAD_INPUT and untouched(victim)
        assert "--allow-file-options" in err or "native backend calls no solver" in err
    # In the scenario file: refused even with the flag (the flag is for the user's
    # own options, on the command line).
    path.write_text(GAME + f'[solver.options]\noutput_file = "{victim}"\n')
    assert main(["solve", str(path), "--allow-file-options"]) == BAD_INPUT
    assert "a scenario file may not set it" in capsys.readouterr().err
    assert untouched(victim)


@pytest.mark.solver
def test_an_allowed_output_file_is_written_by_the_solve_only(tmp_path, capsys):
    from conftest import SOLVER

    if not SOLVER:
        pytest.skip("Ipopt not installed")
    path = tmp_path / "s.toml"
    path.write_text(GAME)
    log = tmp_path / "ipopt.log"
    code = main(["solve", str(path), "--backend", "pyomo", "--allow-file-options",
                 "--solver-option", f"output_file={log}", "--solver-option",
                 "file_print_level=5", "-q"])
    assert code == ExitCode.OK, capsys.readouterr().err
    assert log.exists() and "Ipopt" in log.read_text()


# -- study folders ------------------------------------------------------------------
@pytest.mark.unit
def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, victim,
                                                                   capsys):
    from aggregame.studies import run_study
    from aggregame.studies.files import LinkRefusedError

    folder = tmp_path / "out" / "fig12"
    folder.mkdir(parents=True)
    (folder / ".lock").symlink_to(victim)
    with pytest.raises(LinkRefusedError, match=r"\.lock: is a symbolic link"):
        run_study("fig12", out=tmp_path / "out", **TINY)
    assert untouched(victim)
    code = main(["study", "fig12", "--out", str(tmp_path / "out"), "--runs", "1",
                 "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == BAD_INPUT and doc["error"]["kind"] == "link-refused"
    assert untouched(victim)
    (folder / ".lock").unlink()
    os.mkfifo(folder / ".lock")  # not a regular file either: refused, no hang
    with pytest.raises(LinkRefusedError, match="not a regular file"):
        run_study("fig12", out=tmp_path / "out", **TINY)


@pytest.mark.unit
def test_results_and_settings_are_never_read_or_written_through_links(tmp_path,
                                                                      victim):
    from aggregame.studies import run_study

    first = run_study("fig12", out=tmp_path, **TINY)
    folder = tmp_path / "fig12"
    runs = sorted((folder / "runs").glob("*.json"))
    borrowed = tmp_path / "borrowed.json"
    borrowed.write_text(runs[0].read_text())
    runs[0].unlink()
    runs[0].symlink_to(borrowed)  # a valid result, but someone else's file
    runs[1].unlink()
    runs[1].symlink_to(victim)
    again = run_study("fig12", out=tmp_path, **TINY)
    assert again.ran == 2 and untouched(victim)
    assert not runs[0].is_symlink() and not runs[1].is_symlink()
    assert borrowed.read_text() == runs[0].read_text()  # recomputed, same result
    assert again.table.equals(first.table)
    settings = folder / "settings.json"
    settings.unlink()
    settings.symlink_to(victim)
    from aggregame import AggregameError

    with pytest.raises(AggregameError, match="holds results of other settings"):
        run_study("fig12", out=tmp_path, **TINY)
    assert untouched(victim)


@pytest.mark.unit
def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch, capsys):
    from aggregame.studies import files

    target = tmp_path / "results.csv"

    def no_space_anonymous(path):  # pyarrow and fsync name no file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as info:
        files.atomic_write(target, no_space_anonymous)
    assert info.value.filename == str(target) and info.value.errno == errno.ENOSPC
    assert sorted(tmp_path.iterdir()) == []

    real_fsync = os.fsync

    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full_fsync)
    code = main(["study", "fig12", "--out", str(tmp_path / "out"), "--runs", "1",
                 "-q"])
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    err = capsys.readouterr().err.strip()
    assert code == BAD_INPUT and err.endswith(": No space left on device")
    assert err.startswith(f"aggregame: error: {tmp_path / 'out' / 'fig12'}/")
    assert ".tmp" not in err


@pytest.mark.unit
def test_runs_above_the_maximum_are_refused_before_anything_runs(tmp_path, capsys):
    from aggregame import AggregameError
    from aggregame.studies import MAX_RUNS, run_study

    code = main(["study", "fig5", "--runs", "1000000000", "--out", str(tmp_path)])
    assert code == BAD_INPUT and f"from 1 to {MAX_RUNS}" in capsys.readouterr().err
    with pytest.raises(AggregameError, match=f"from 1 to {MAX_RUNS}"):
        run_study("fig5", out=tmp_path, runs=10**9)
    assert list(tmp_path.iterdir()) == []  # nothing created, nothing allocated


@pytest.mark.unit
def test_an_empty_dask_address_is_refused_not_run_locally(tmp_path, capsys):
    from aggregame import AggregameError
    from aggregame.studies import run_study

    for address in ("", "  "):
        code = main(["study", "fig12", "--dask", address, "--out", str(tmp_path)])
        assert code == BAD_INPUT and "empty" in capsys.readouterr().err
        with pytest.raises(AggregameError, match="--dask: an empty scheduler address"):
            run_study("fig12", out=tmp_path, dask_address=address, **TINY)


@pytest.mark.unit
def test_extreme_numbers_leave_no_warning_on_stderr(tmp_path):
    """Numbers numpy cannot carry are refused at the door (one line naming the
    field); those it can are solved without a RuntimeWarning reaching stderr."""
    cases = {"c = 1e308": ("market.c", 2), "c = 1e300": ("market.c", 2),
             "c = 1e100": (None, 0), "c = 1e-300": (None, 0)}
    for change, (field, code) in cases.items():
        path = tmp_path / "s.toml"
        path.write_text(GAME.replace("c = 0.001", change))
        out = subprocess.run([sys.executable, "-W", "default", "-m", "aggregame.cli",
                              "solve", str(path), "--json"], capture_output=True,
                             text=True)
        assert out.returncode == code and out.stderr == "", (change, out.stderr)
        doc = json.loads(out.stdout)
        if field:
            assert doc["error"]["field"] == field
