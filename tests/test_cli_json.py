"""--json everywhere: every command prints one JSON object on stdout, results and
errors alike (``{"error": {"kind", "message", "file", "field"}}``), with the exit
status of docs/cli.md; and the inputs that were once silent or wrong now stop at the
door in one line naming the field."""

import json
import math

import numpy as np
import pytest

from aggregame.cli import ExitCode, main
from aggregame.cli.commands import COMMANDS

BAD_INPUT = int(ExitCode.BAD_INPUT)
GAME = ('[market]\nc = 0.001\n[[players]]\nname = "A"\nusers = [{name = "u", a = 1, '
        'b = 2}]\n[[individuals]]\nname = "v"\na = 1\nb = 3\n')


def run_json(capsys, *argv) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out, _ = capsys.readouterr()
    return code, json.loads(out)  # one object, nothing else on stdout


def scenario(tmp_path, text: str = GAME) -> str:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return str(path)


# One failing call per command (a bad value, a missing file, a broken folder).
FAILING = {
    "solve": lambda t: ["solve", str(t / "missing.toml")],
    "crosscheck": lambda t: ["crosscheck", "fig4", "--backends", "gurobi"],
    "uniqueness": lambda t: ["uniqueness", "fig4", "--methods", "newton"],
    "study": lambda t: ["study", "fig99", "--out", str(t)],
    "report": lambda t: ["report", "--out", str(t / "file.txt")],
    "compare": lambda t: ["compare", "fig4", "--workers", "0", "--out", str(t)],
    "equilibria": lambda t: ["equilibria", str(t / "missing.toml")],
    "scenarios": None, "check": None, "schema": None,  # no input to get wrong
}


@pytest.mark.unit
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_fails_as_one_json_object(capsys, tmp_path, monkeypatch,
                                                command):
    (tmp_path / "file.txt").write_text("a file, not a folder")
    argv = FAILING[command]
    if argv is None:  # a failure inside (a full disk), to see how it is reported
        def full(args):
            raise OSError(28, "No space left on device", str(tmp_path / "x.csv"))

        monkeypatch.setitem(COMMANDS, command, full)
        argv = lambda t: [command]  # noqa: E731
    code, doc = run_json(capsys, *argv(tmp_path))
    assert code == BAD_INPUT and doc["command"] == command
    assert doc["schema_version"] == 1 and set(doc) == {"schema_version", "command",
                                                       "error"}
    assert set(doc["error"]) == {"kind", "message", "file", "field"}
    assert doc["error"]["message"] and "\n" not in doc["error"]["message"]


@pytest.mark.unit
def test_json_errors_carry_file_and_field(capsys, tmp_path):
    path = scenario(tmp_path, GAME.replace("c = 0.001", "c = -1"))
    code, doc = run_json(capsys, "solve", path)
    assert code == BAD_INPUT and doc["error"] == {
        "kind": "scenario", "file": path, "field": "market.c",
        "message": f"{path}: market.c: linear price: field 'c' must be > 0, got -1"}
    code, doc = run_json(capsys, "solve", path, "--seed", "x")  # parse error
    assert code == BAD_INPUT and doc["error"]["kind"] == "usage"
    assert doc["command"] == "solve"
    code, doc = run_json(capsys, "solve",
                         scenario(tmp_path, GAME + "[solver]\ntol = 2\n"))
    assert doc["error"]["kind"] == "settings" and doc["error"]["field"] == "solver.tol"


@pytest.mark.unit
@pytest.mark.parametrize("argv", [["scenarios"], ["schema"], ["solve", "fig4"],
                                  ["uniqueness", "two_equilibria", "--starts", "2",
                                   "--methods", "best-response"]])
def test_commands_that_succeed_print_one_json_object(capsys, argv):
    code, doc = run_json(capsys, *argv)
    assert code == 0 and isinstance(doc, dict) and "error" not in doc


@pytest.mark.unit
def test_study_json_is_one_object(capsys, tmp_path):
    from aggregame.studies import run_study

    run_study("fig12", out=tmp_path, runs=1, seed=0, workers=1, progress=False)
    code, doc = run_json(capsys, "study", "fig12", "--out", str(tmp_path / "again"),
                         "--runs", "1", "--workers", "1")
    assert code == 0 and doc["name"] == "fig12" and doc["rows"] > 0


@pytest.mark.solver
def test_check_and_crosscheck_json(capsys):
    from conftest import SOLVER

    if not SOLVER:
        pytest.skip("Ipopt not installed")
    code, doc = run_json(capsys, "check")
    assert code == 0 and doc["ok"] is True
    code, doc = run_json(capsys, "crosscheck", "fig4", "--backends", "native")
    assert code == 0 and doc["ok"] is True


@pytest.mark.solver
def test_global_certificate_verdicts_are_in_the_json(capsys):
    pytest.importorskip("pyscipopt")
    code, doc = run_json(capsys, "solve", "fig4", "--certify", "global")
    verdicts = [p["certificate"]["verdict"] for p in doc["players"]]
    assert set(verdicts) <= {"proved", "bounded"} and len(verdicts) == 3
    # A bounded player carries its bound, so the JSON says "bounded by X".
    for p in doc["players"]:
        if p["certificate"]["verdict"] == "bounded":
            assert p["certificate"]["bound"] > 0 and p["certificate"]["reason"]
    code, doc = run_json(capsys, "solve", "fig4")
    assert [p["certificate"]["verdict"] for p in doc["players"]] == ["proved"] * 3


# -- once silent or wrong -----------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("flags", [["--dynamics", "jacobi"], ["--tol", "1e-5"],
                                   ["--max-rounds", "3"], ["--best-response", "scan"],
                                   ["--backend", "native"]])
def test_kkt_refuses_the_flags_of_rounds_it_does_not_run(capsys, tmp_path, flags):
    code, doc = run_json(capsys, "solve", scenario(tmp_path), "--method", "kkt",
                         *flags)
    assert code == BAD_INPUT and doc["error"]["kind"] == "usage"
    assert doc["error"]["message"].startswith(" ".join(flags[:1]))
    assert "not read by the stacked KKT system" in doc["error"]["message"]


@pytest.mark.unit
@pytest.mark.parametrize("market, field", [
    ('price = "power"\nc = 0.001\nk = 400', "market.k"),
    ('price = "power"\nc = 0.001\nk = 1e308', "market.k"),
    ('price = "power"\nc = 1e308\nk = 2', "market.c"),
    ('c = 1e308', "market.c"),
])
def test_unrepresentable_prices_name_their_field(capsys, tmp_path, market, field):
    users = "".join(f'[[individuals]]\nname = "v{k}"\na = 0.5\nb = {100 + k}\n'
                    for k in range(30))
    path = scenario(tmp_path, f"[market]\n{market}\n{users}")
    code, doc = run_json(capsys, "solve", path)
    assert code == BAD_INPUT and doc["error"]["field"] == field
    assert "overflows float64" in doc["error"]["message"]


@pytest.mark.unit
def test_the_range_of_k_is_the_one_the_message_states(capsys, tmp_path):
    """The message's bound on k is the representable range: k just below it
    solves, just above it is refused."""
    users = "".join(f'[[individuals]]\nname = "v{k}"\na = 0.5\nb = {100 + k}\n'
                    for k in range(30))
    path = scenario(tmp_path, f'[market]\nprice = "power"\nc = 0.001\nk = 400\n{users}')
    _, doc = run_json(capsys, "solve", path)
    k_max = float(doc["error"]["message"].split("k must be at most ")[1].split()[0])
    for k, ok in ((math.floor(k_max * 0.98), True), (math.ceil(k_max * 1.02), False)):
        path = scenario(tmp_path, f'[market]\nprice = "power"\nc = 0.001\nk = {k}\n'
                                  f'{users}')
        code, doc = run_json(capsys, "solve", path, "--max-rounds", "2")
        assert ("error" not in doc) == ok, (k, doc.get("error"))


@pytest.mark.unit
def test_tolerances_below_the_floor_are_refused_everywhere(tmp_path):
    from aggregame import GameDefinitionError, SettingsError
    from aggregame.settings import MIN_TOL, SolverSettings
    from aggregame.solvers.equilibrium.dynamics import DynamicsSettings

    for tol in (1e-13, MIN_TOL / 2, 0.0):
        with pytest.raises(GameDefinitionError, match=r"must be in \[1e-10, 1\)"):
            DynamicsSettings(tol=tol)
        with pytest.raises(SettingsError, match=r"tol: must be in \[1e-10, 1\)"):
            SolverSettings(tol=tol)
    assert DynamicsSettings(tol=MIN_TOL).tol == MIN_TOL


@pytest.mark.unit
def test_a_damped_oscillation_is_not_a_cycle_but_a_repeating_one_is():
    from aggregame.solvers.equilibrium.dynamics import _repeats

    limit, tol = np.array([14.7, 0.15]), 1e-10
    # Jacobi rounds contracting by -0.75 a round: passes within tol of old profiles
    # while its steps shrink (seen on a 3-player game: "cycling" at regret 0).
    damped = [limit + 1e-6 * (-0.75) ** n * np.array([1.0, -0.3]) for n in range(60)]
    assert not any(_repeats(damped[:n], tol) for n in range(3, 61))

    def revisits(path):  # the test the dynamics used to make: a revisit alone
        scale = tol * max(1.0, float(np.max(np.abs(path[-1]))))
        return any(np.all(np.abs(path[-1] - p) <= scale) for p in path[:-2])

    assert any(revisits(damped[:n]) for n in range(3, 61))
    two_cycle = [limit + (n % 2) * np.array([0.5, -0.1]) for n in range(6)]
    assert _repeats(two_cycle, tol)
    three_cycle = [limit + np.array([0.1 * (n % 3), 0.0]) for n in range(9)]
    assert _repeats(three_cycle, tol)


@pytest.mark.unit
def test_a_start_beyond_any_feasible_purchase_is_refused(capsys, tmp_path):
    """A power price overflowed (exit 3, RuntimeWarnings) when --start named
    purchases far above what any player can buy; the start is checked like the
    game, up to the largest total any purchase can reach."""
    from aggregame import GameDefinitionError
    from aggregame.scenario import load_scenario
    from aggregame.solvers.equilibrium.dynamics import (
        DynamicsSettings,
        solve_equilibrium,
    )

    path = scenario(tmp_path, GAME.replace("c = 0.001", 'price = "power"\nc = 0.001'
                                                       '\nk = 30'))
    for method in ("best-response", "kkt"):
        code, doc = run_json(capsys, "solve", path, "--start", "1e12,1",
                             "--method", method)
        assert code == BAD_INPUT and doc["error"]["kind"] == "usage"
        assert "is not in [0, 5]" in doc["error"]["message"]
    game = load_scenario(path).game
    assert game.reach == 5.0  # b / a of the two members at p(0) = 0
    with pytest.raises(GameDefinitionError, match="field 'start' purchase 6"):
        solve_equilibrium(game, settings=DynamicsSettings(start=(6.0, 0.0)))
    assert solve_equilibrium(game, settings=DynamicsSettings(start=(5.0, 0.0))
                             ).is_equilibrium
