"""Solver choice on the command line and in scenario files: --solver, --solver-option
and [solver] name / [solver.options] reach the pyomo backend and the stacked KKT
system; a bad option or a missing solver is one line naming it, exit 2."""

import json
import shutil

import numpy as np
import pytest
from conftest import needs_ipopt
from test_cli import one_line
from test_cli import run as run_cli

from aggregame.cli import ExitCode

BAD_INPUT = int(ExitCode.BAD_INPUT)

#: Two aggregators of three members and a large user: solved in well under a second.
SMALL = """
[scenario]
name = "small"
description = "two small aggregators and a large user"

[market]
price = "linear"
c = 0.05

[defaults]
alpha = 1
rule = "floor"
eps = 0.01

[[players]]
name = "A"
users = [{name = "a1", a = 0.5, b = 6.0}, {name = "a2", a = 0.3, b = 4.0},
         {name = "a3", a = 0.8, b = 9.0}]

[[players]]
name = "B"
users = [{name = "b1", a = 0.4, b = 5.0}, {name = "b2", a = 0.6, b = 8.0},
         {name = "b3", a = 0.2, b = 3.0}]

[[individuals]]
name = "large"
a = 0.5
b = 10.0
"""


def run(capsys, *argv):
    return run_cli(capsys, *(str(a) for a in argv))


def profile(out: str) -> np.ndarray:
    return np.array([p["y"] for p in json.loads(out)["players"]])


def scenario(tmp_path, solver_table: str = "") -> str:
    path = tmp_path / "small.toml"
    path.write_text(SMALL + solver_table)
    return str(path)


@pytest.mark.unit
def test_linear_solver_this_ipopt_lacks_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "solve", scenario(tmp_path), "--backend", "pyomo",
                       "--solver-option", "linear_solver=ma27")
    assert code == BAD_INPUT
    assert "'linear_solver'" in one_line(err) and "ma27" in err


@pytest.mark.unit
def test_unavailable_solver_is_one_line(capsys, tmp_path):
    if shutil.which("ipopt"):
        pytest.skip("an ipopt executable is installed here")
    for argv in (["solve", scenario(tmp_path), "--backend", "pyomo"],
                 ["solve", scenario(tmp_path), "--method", "kkt"],
                 ["crosscheck", scenario(tmp_path)]):
        code, _, err = run(capsys, *argv, "--solver", "ipopt")
        assert code == BAD_INPUT
        assert "solver 'ipopt' needs the `ipopt` executable" in one_line(err)


@pytest.mark.unit
@pytest.mark.parametrize("table, expected", [
    ('[solver]\nname = "gurobi"\n', "[solver] name: must be one of"),
    ('[solver]\nname = "cyipopt"\n[solver.options]\ntol = [1]\n',
     "[solver] options.tol: must be a number, string or boolean"),
])
def test_bad_solver_table_is_one_line(capsys, tmp_path, table, expected):
    code, _, err = run(capsys, "solve", scenario(tmp_path, table))
    assert code == BAD_INPUT and expected in one_line(err)


@pytest.mark.unit
def test_solver_flags_need_a_solver_user(capsys, tmp_path):
    code, _, err = run(capsys, "solve", scenario(tmp_path), "--solver", "cyipopt")
    assert code == BAD_INPUT and "the native backend calls no solver" in one_line(err)


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("where", ["flag", "toml"])
def test_invalid_ipopt_option_names_it(capsys, tmp_path, where):
    if where == "flag":
        argv = [scenario(tmp_path), "--backend", "pyomo", "--solver-option",
                "tolerance=1e-8"]
    else:
        argv = [scenario(tmp_path, '[solver]\nbackend = "pyomo"\n'
                                   '[solver.options]\ntolerance = 1e-8\n')]
    code, _, err = run(capsys, "solve", *argv)
    assert code == BAD_INPUT
    assert "solver option 'tolerance'" in one_line(err) and "Ipopt" in err


@needs_ipopt
@pytest.mark.solver
def test_options_reach_the_inner_solver_from_flag_and_toml(capsys, tmp_path):
    """max_iter = 1 stops Ipopt before an optimum: the solve must fail, which shows
    the option reached it; without it the same scenario solves, and the pyomo
    backend agrees with the native one (which calls no solver)."""
    code, out, err = run(capsys, "solve", scenario(tmp_path), "--json")
    native = profile(out)
    assert code == 0, err
    code, out, err = run(capsys, "solve", scenario(tmp_path), "--backend", "pyomo",
                         "--solver-option", "tol=1e-10", "--json")
    assert code == 0, err
    np.testing.assert_allclose(profile(out), native, rtol=1e-7)
    assert json.loads(out)["solver"] == "cyipopt(tol=1e-10)"
    # A solver that stops short fails on valid input: exit 1, naming the solver.
    code, _, err = run(capsys, "solve", scenario(tmp_path), "--backend", "pyomo",
                       "--solver-option", "max_iter=1")
    assert code == ExitCode.NO_EQUILIBRIUM
    assert one_line(err).startswith("aggregame: solver failure: the pyomo backend "
                                    "(cyipopt(max_iter=1)): ")
    assert "did not reach an optimal solution" in err
    toml = scenario(tmp_path, '[solver]\nbackend = "pyomo"\nname = "cyipopt"\n'
                              '[solver.options]\nmax_iter = 1\n')
    code, out, err = run(capsys, "solve", toml, "--json")
    assert code == ExitCode.NO_EQUILIBRIUM and err == ""
    error = json.loads(out)["error"]
    assert error["kind"] == "solver-failure" and "cyipopt" in error["message"]
    assert "did not reach an optimal solution" in error["message"]
    # A flag overrides the file's option.
    code, _, err = run(capsys, "solve", toml, "--solver-option", "max_iter=3000")
    assert code == 0, err


@needs_ipopt
@pytest.mark.solver
def test_crosscheck_takes_solver_options_and_repeats(capsys, tmp_path):
    code, out, err = run(capsys, "crosscheck", scenario(tmp_path), "--json",
                         "--repeats", "2", "--solver-option", "tol=1e-10")
    doc = json.loads(out)
    assert code == 0 and doc["ok"], err
    assert doc["repeats"] == 2 and doc["solver"] == "cyipopt(tol=1e-10)"
    assert len(doc["equilibria"]) == 1
    # The option reaches the KKT system and the pyomo backend: max_iter = 1 fails
    # both (a verdict of crosscheck, exit 1), the native backend still solves.
    code, out, err = run(capsys, "crosscheck", scenario(tmp_path), "--json",
                         "--solver-option", "max_iter=1")
    doc = json.loads(out)
    assert code == 1 and set(doc["failed"]) >= {"best-response/pyomo"}, err
    assert "best-response/native" not in doc["failed"]


@pytest.mark.unit
def test_compare_solver_and_unprefixed_options(capsys):
    from aggregame.cli.parser import build_parser
    from aggregame.studies.compare import settings_from_args

    args = build_parser().parse_args(["compare", "fig4", "--solver", "highs",
                                      "--solver-option", "time_limit=5"])
    settings = settings_from_args(args)
    assert settings.solvers == ("highs",)
    assert dict(settings.options)["highs"] == (("time_limit", 5),)
    args = build_parser().parse_args(["compare", "fig4", "--solvers", "highs",
                                      "--solver-option", "highs:bogus_option=1"])
    from aggregame.errors import SolverOptionError

    with pytest.raises(SolverOptionError, match="'bogus_option'"):
        settings_from_args(args)


@pytest.mark.unit
@pytest.mark.parametrize("argv, expected", [
    (["--solver", "scip", "--solvers", "highs"], "give one of them"),
    (["--solvers", "cyipopt", "--solver-option", "scip:limits/time=5"],
     "not among the solvers run"),
    (["--methods", "kkt", "--backends", "native"], "nothing to run"),
])
def test_compare_flags_that_cannot_all_hold_are_one_line(capsys, tmp_path, argv,
                                                         expected):
    code, _, err = run(capsys, "compare", "two_equilibria", *argv, "--out",
                       tmp_path / "out", "-q")
    assert code == BAD_INPUT and expected in one_line(err)


@needs_ipopt
@pytest.mark.solver
def test_ipopt_option_values_are_read_as_ipopt_types(tmp_path):
    """tol = 1 (an integer for a real option) is 1.0; nan and inf are refused by
    name; print_level = 9 is checked without the probe's log filling its pipe."""
    import subprocess
    import sys

    from aggregame.errors import SolverOptionError
    from aggregame.solvers.solver_choice import SolverSpec

    assert dict(SolverSpec("cyipopt", {"tol": 1}).options)["tol"] == 1.0
    for bad in (float("nan"), float("inf")):
        with pytest.raises(SolverOptionError, match="'tol'.*finite"):
            SolverSpec("cyipopt", {"tol": bad})
    probe = ("from aggregame.solvers.solver_choice import SolverSpec; "
             "SolverSpec('cyipopt', {'print_level': 9, 'max_iter': 7})")
    done = subprocess.run([sys.executable, "-c", probe], timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.unit
def test_maxmin_key_and_flag_must_reach_a_max_min_player(capsys, tmp_path):
    code, _, err = run(capsys, "solve", scenario(tmp_path), "--maxmin", "leximin")
    assert code == BAD_INPUT and "no max-min player" in one_line(err)
    path = tmp_path / "own.toml"
    path.write_text(SMALL.replace('name = "A"\n', 'name = "A"\nmaxmin = "leximin"\n'))
    code, _, err = run(capsys, "solve", path)
    assert code == BAD_INPUT and "players[0].maxmin" in one_line(err)


@pytest.mark.unit
def test_file_options_errors_name_the_file_and_uniqueness_refuses_early(capsys,
                                                                       tmp_path):
    path = scenario(tmp_path, '\n[solver]\nbackend = "pyomo"\nname = "highs"\n'
                              '[solver.options]\nbogus_option = 1\n')
    code, _, err = run(capsys, "solve", path)
    line = one_line(err)
    assert code == BAD_INPUT and line.count("small.toml: [solver] options:") == 1
    assert "bogus_option" in line
    code, _, err = run(capsys, "uniqueness", "fig4_maxmin", "--maxmin", "leximin",
                       "--starts", "2", "--methods", "best-response,kkt")
    assert code == BAD_INPUT and "does not model leximin" in one_line(err)


@pytest.mark.unit
def test_compare_never_writes_into_someone_elses_folder(capsys, tmp_path):
    (tmp_path / "results.csv").write_text("mine\n")
    code, _, err = run(capsys, "compare", "two_equilibria", "--out", tmp_path, "-q")
    assert code == BAD_INPUT and "not a compare folder" in one_line(err)
    assert (tmp_path / "results.csv").read_text() == "mine\n"


@pytest.mark.unit
def test_an_interrupted_compare_folder_is_resumed(capsys, tmp_path):
    """An interrupted run leaves runs/ and no settings.json yet: still ours."""
    (tmp_path / "runs").mkdir()
    code, _, err = run(capsys, "compare", "two_equilibria", "--methods",
                       "best-response", "--backends", "native", "--out", tmp_path, "-q")
    assert code == 0, err
    assert (tmp_path / "settings.json").exists()
