"""Scenario files with a market model (``[market] model = "module:function"``): the
shipped example refused without --allow-code, solved with it (against the closed-form
merit order of the same generators), and every refusal one line with exit 2."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_cli import one_line, run

from aggregame import Game
from aggregame.cli import ExitCode
from aggregame.errors import ScenarioError
from aggregame.price import MeritOrderPrice
from aggregame.scenario import load_scenario
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.market.scenario_code import read_scenario_market

EXAMPLE = Path(__file__).parents[1] / "examples" / "market_model"
SCENARIO = EXAMPLE / "dispatch.toml"
#: The generators of examples/market_model/dispatch.py, written out again here for
#: the closed form.
C1 = (1.0, 2.0, 3.0, 4.0, 6.0)
C2 = (0.05, 0.02, 0.1, 0.03, 0.05)
CAP = (20.0, 40.0, 30.0, 50.0, 60.0)


@pytest.fixture
def copy(tmp_path):
    """The example in a folder of its own (tests add files beside it)."""
    for name in ("dispatch.toml", "dispatch.py"):
        shutil.copy(EXAMPLE / name, tmp_path / name)
    return tmp_path / "dispatch.toml"


def with_model(toml: Path, model: str) -> Path:
    """``toml``: the example with ``[market] model = model``."""
    text = SCENARIO.read_text().replace('model = "dispatch:dispatch_model"',
                                        f'model = "{model}"')
    toml.write_text(text)
    return toml


@pytest.mark.unit
@pytest.mark.parametrize("command", ["solve", "equilibria", "crosscheck", "uniqueness",
                                     "compare"])
def test_code_is_refused_without_the_flag(capsys, copy, command):
    (copy.parent / "dispatch.py").write_text("raise SystemExit('imported!')\n")
    more = ["--backends", "native", "--methods", "best-response", "--out",
            str(copy.parent / "out")] if command == "compare" else []
    code, _, err = run(capsys, command, str(copy), *more)
    assert code == ExitCode.BAD_INPUT
    line = one_line(err)
    assert "runs Python code" in line and "--allow-code" in line
    code, out, _ = run(capsys, "solve", str(copy), "--json")
    error = json.loads(out)["error"]
    assert code == ExitCode.BAD_INPUT and error["field"] == "market.model"
    with pytest.raises(ScenarioError, match="allow_code=True"):
        load_scenario(copy)


@pytest.mark.solver
def test_the_example_is_solved_with_the_flag(capsys):
    """The equilibrium against the user's model is the one against the closed-form
    merit order of the same generators (an independent price)."""
    scenario = load_scenario(SCENARIO, allow_code=True,
                             market_reader=read_scenario_market)
    merit = MeritOrderPrice(C1, C2, CAP)
    ys = np.linspace(0.0, 199.0, 41)
    np.testing.assert_allclose(scenario.game.price.value(ys), merit.value(ys),
                               rtol=1e-9)
    got = solve_equilibrium(scenario.game)
    ref = solve_equilibrium(Game(scenario.game.players, merit))
    assert got.is_equilibrium and ref.is_equilibrium
    np.testing.assert_allclose(got.profile, ref.profile, rtol=1e-6)
    code, out, _ = run(capsys, "solve", str(SCENARIO), "--allow-code", "--json")
    assert code == ExitCode.OK
    shown = [p["y"] for p in json.loads(out)["players"]]
    np.testing.assert_allclose(shown, ref.profile, rtol=1e-6)


@pytest.mark.unit
def test_a_module_outside_the_folder_is_refused(capsys, copy, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "evil.py"
    outside.write_text((EXAMPLE / "dispatch.py").read_text())
    os.symlink(outside, copy.parent / "evil.py")
    code, _, err = run(capsys, "solve", str(with_model(copy, "evil:dispatch_model")),
                       "--allow-code")
    assert code == ExitCode.BAD_INPUT
    assert "evil.py links outside the scenario's folder" in one_line(err)
    with_model(copy, "../dispatch:dispatch_model")
    code, _, err = run(capsys, "solve", str(copy), "--allow-code")
    assert code == ExitCode.BAD_INPUT and "must be 'module:function'" in one_line(err)


@pytest.mark.unit
@pytest.mark.parametrize("code_text, message", [
    ("raise ValueError('no data\\nfor today')\n",
     "importing dispatch.py raised ValueError: no data for today"),
    ("def dispatch_model():\n    return 1 / 0\n",
     "calling dispatch:dispatch_model() raised ZeroDivisionError"),
])
def test_a_module_that_raises_is_one_line(capsys, copy, code_text, message):
    (copy.parent / "dispatch.py").write_text(code_text)
    code, _, err = run(capsys, "solve", str(copy), "--allow-code")
    assert code == ExitCode.BAD_INPUT
    assert message in one_line(err)


@pytest.mark.unit
def test_market_model_keys_are_checked(copy):
    copy.write_text(copy.read_text().replace('balance = "balance"',
                                             'balance = "balance"\nc = 0.01'))
    with pytest.raises(ScenarioError, match="market.c"):
        load_scenario(copy, allow_code=True, market_reader=read_scenario_market)
