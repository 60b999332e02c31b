"""A scenario's market model: imported from the scenario's folder only, and only when
code is allowed; every refusal is one line naming the file, the field and the value."""

import json
import os
import sys
import textwrap

import numpy as np
import pytest

from aggregame.errors import ScenarioError
from aggregame.price import MeritOrderPrice
from aggregame.solvers.market.scenario_code import MarketSpec, load_market_price

MARKET_CODE = textwrap.dedent('''
    import pyomo.environ as pyo

    C1, C2, CAP = (1.0, 2.0, 3.0), (0.05, 0.02, 0.1), (20.0, 40.0, 30.0)

    def build():
        m = pyo.ConcreteModel(name="user market")
        m.G = pyo.RangeSet(0, 2)
        m.q = pyo.Var(m.G, bounds={g: (0.0, CAP[g]) for g in range(3)})
        m.demand = pyo.Param(mutable=True, initialize=0.0)
        m.balance = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.demand)
        m.cost = pyo.Objective(expr=sum(C1[g] * m.q[g] + C2[g] * m.q[g] ** 2
                                        for g in m.G))
        return m

    def renamed():
        m = build()
        m.D = pyo.Param(mutable=True, initialize=0.0)
        m.balance.deactivate()
        m.supply = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.D)
        return m

    def broken():
        raise RuntimeError("no data\\nfor today")

    def not_a_model():
        return 42

    NOT_CALLABLE = 3
''')


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "market.py").write_text(MARKET_CODE)
    return tmp_path


def load(folder, model, allow=True, **names):
    return load_market_price(MarketSpec.parse(model, "s.toml", **names), folder,
                             allow_code=allow, source="s.toml")


@pytest.mark.solver
def test_the_named_function_gives_the_market_price(folder):
    price = load(folder, "market:build")
    ref = MeritOrderPrice((1.0, 2.0, 3.0), (0.05, 0.02, 0.1), (20.0, 40.0, 30.0))
    ys = np.linspace(0.0, 89.0, 57)
    np.testing.assert_allclose(price.value(ys), ref.value(ys), rtol=1e-9)
    other = load(folder, "market:renamed", demand="D", balance="supply")
    np.testing.assert_allclose(other.value(ys), ref.value(ys), rtol=1e-9)
    assert not any(name.startswith("_aggregame_scenario") for name in sys.modules)


@pytest.mark.unit
def test_nothing_is_imported_without_the_explicit_flag(folder):
    (folder / "market.py").write_text("raise SystemExit('imported!')\n" + MARKET_CODE)
    with pytest.raises(ScenarioError, match="runs Python code.*--allow-code"):
        load(folder, "market:build", allow=False)


@pytest.mark.unit
@pytest.mark.parametrize("text", ["os.path:join", "../market:build", "market",
                                  "market:build:x", "market:", ":build", 42,
                                  "market:build()", "/tmp/market:build"])
def test_specs_other_than_two_identifiers_are_refused(text):
    with pytest.raises(ScenarioError, match="s.toml: \\[market\\] model must be "
                       "'module:function'"):
        MarketSpec.parse(text, "s.toml")


@pytest.mark.unit
def test_an_installed_module_is_never_imported(folder):
    """'json:loads' names json.py beside the scenario: there is none, so nothing is
    imported (the installed json is not a fallback); with one there, that file is
    loaded and the installed json stays as it was."""
    with pytest.raises(ScenarioError, match="no file json.py beside the scenario"):
        load(folder, "json:loads")
    (folder / "json.py").write_text("def loads():\n    return 'mine'\n")
    with pytest.raises(ScenarioError, match="must return a constructed Pyomo model"):
        load(folder, "json:loads")
    assert sys.modules["json"] is json and json.loads("1") == 1


@pytest.mark.unit
def test_a_link_out_of_the_folder_is_refused(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("elsewhere") / "evil.py"
    outside.write_text(MARKET_CODE)
    os.symlink(outside, folder / "evil.py")
    with pytest.raises(ScenarioError, match="evil.py links outside the scenario's"):
        load(folder, "evil:build")


@pytest.mark.unit
@pytest.mark.parametrize("model, message", [
    ("market:missing", "market.py defines no function 'missing'"),
    ("market:NOT_CALLABLE", "defines no function 'NOT_CALLABLE'"),
    ("market:broken", ("calling market:broken\\(\\) raised RuntimeError: no data "
                       "for today")),
    ("market:not_a_model", "must return a constructed Pyomo model.*got int"),
])
def test_bad_functions_are_one_line(folder, model, message):
    with pytest.raises(ScenarioError, match=message) as err:
        load(folder, model)
    assert "\n" not in str(err.value) and str(err.value).startswith("s.toml: ")


@pytest.mark.solver
def test_wrong_component_names_and_unreadable_models_are_one_line(folder):
    with pytest.raises(ScenarioError, match="no component 'D' \\(its \\[market\\] "
                       "demand\\)"):
        load(folder, "market:build", demand="D")
    (folder / "bad.py").write_text(MARKET_CODE.replace(
        "m.cost = pyo.Objective(", "m.cost = pyo.Objective(sense=pyo.maximize, "))
    with pytest.raises(ScenarioError, match="s.toml: .*must be minimized") as err:
        load(folder, "bad:build")
    assert "\n" not in str(err.value)
    (folder / "syntax.py").write_text("def build(:\n")
    with pytest.raises(ScenarioError, match="importing syntax.py raised SyntaxError"):
        load(folder, "syntax:build")
