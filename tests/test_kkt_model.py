"""The stacked KKT model's builders, without a solver: the complementarity smoothing
(its map, its refusals, its equation against the formula), the KKT modes, and the
layering of models/."""

import ast
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.mpec import Complementarity, complements
from test_equilibrium import cournot_game, small_mixed_game
from test_kkt import stacked_model

from aggregame.errors import AggregameError
from aggregame.models.complementarity import (
    ModelBuildError,
    Reformulation,
    add_fischer_burmeister,
    add_reformulation,
)
from aggregame.models.kkt import KKTMode, PlayerStatus, build_kkt_model, player_status

pytestmark = pytest.mark.unit

MODELS = Path(__file__).parents[1] / "models"


def two_pairs():
    m = pyo.ConcreteModel(name="pairs")
    m.x = pyo.Var(initialize=0.3)
    m.sigma = pyo.Var(initialize=2.0)
    m.c1 = Complementarity(expr=complements(m.x >= 0, 1.5 - 2 * m.x >= 0))
    m.c2 = Complementarity(expr=complements(m.sigma >= 0, m.x + 0.7 >= 0))
    return m


def test_smoothing_maps_each_complementarity_to_its_equation_and_variable():
    m = two_pairs()
    smoothed = add_fischer_burmeister(m, mu=1e-3)
    assert len(smoothed) == 2 and smoothed.block is m.fischer
    assert smoothed.variable_of(m.c1) is m.x and smoothed.variable_of(m.c2) is m.sigma
    assert smoothed.complementarity_of(m.sigma) is m.c2
    assert not m.c1.active and not m.c2.active  # replaced, still readable
    # The equation's body at the current point is the Fischer-Burmeister formula.
    for comp, (a, b) in ((m.c1, (0.3, 1.5 - 0.6)), (m.c2, (2.0, 0.3 + 0.7))):
        eq = smoothed.equation_of(comp)
        fb = a + b - math.sqrt(a * a + b * b + 2e-3)
        assert pyo.value(eq.body) - pyo.value(eq.upper) == pytest.approx(fb, abs=1e-14)
    smoothed.parameter.set_value(0.0)  # at mu = 0 it is min-like: 0 at a KKT point
    m.x.set_value(0.75)
    m.sigma.set_value(0.0)
    assert pyo.value(smoothed.equation_of(m.c1).body) == pytest.approx(0.0, abs=1e-15)


def test_smoothing_refuses_a_taken_name_and_unknown_components():
    m = two_pairs()
    m.fischer = pyo.Var()
    with pytest.raises(ModelBuildError, match="model 'pairs' already has a component "
                                              "named 'fischer'; pass another name"):
        add_fischer_burmeister(m)
    smoothed = add_fischer_burmeister(m, name="fb")
    assert isinstance(ModelBuildError("x"), ValueError)
    assert isinstance(ModelBuildError("x"), AggregameError)
    other = pyo.ConcreteModel()
    other.y = pyo.Var()
    with pytest.raises(ModelBuildError, match="variable 'y' was not reformulated by "
                                              "the block 'fb'"):
        smoothed.complementarity_of(other.y)


def test_reformulation_by_name_and_refusal():
    m = two_pairs()
    param = add_reformulation(m, "relaxation")
    assert param is m.mpec_bound and m.kkt_objective.active
    assert Reformulation("fischer-burmeister") == "fischer-burmeister"
    with pytest.raises(ModelBuildError,
                       match=r"reformulation must be one of \['fischer-burmeister', "
                             r"'relaxation'\]"):
        add_reformulation(two_pairs(), "smooth")


def test_kkt_model_smoothing_covers_every_pair():
    """On the stacked model the map covers every complementarity: x (stationarity),
    sigma (surplus) and mu (max-min level) are the variables of their pairs."""
    game = small_mixed_game(float("inf"))
    m, status = stacked_model(game, np.array([8.0, 6.0, 30.0]))
    comps = list(m.component_data_objects(Complementarity, active=True))
    smoothed = add_fischer_burmeister(m)
    assert len(smoothed) == len(comps) > 0
    blk = m.player["A0"].kkt
    for i in blk.FREE:
        assert smoothed.variable_of(blk.compl_stationarity[i]) is \
            m.player["A0"].x[i]
        assert smoothed.variable_of(blk.compl_surplus[i]) is blk.sigma[i]
    if status[0].mode is KKTMode.MAXMIN:
        for i in blk.COUNTED:
            assert smoothed.complementarity_of(blk.mu[i]) is blk.compl_level[i]


def test_kkt_mode_is_a_string_enum():
    status = PlayerStatus((False,), "maxmin")
    assert status.mode is KKTMode.MAXMIN and status.mode == "maxmin"
    with pytest.raises(ValueError):
        PlayerStatus((False,), "epigraph")


def test_models_import_nothing_from_solvers():
    """Layers point one way: no import of aggregame.solvers in models/, even inside a
    function, and importing models/ does not load solvers/."""
    for path in sorted(MODELS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("aggregame.solvers") for n in names), path
    code = ("import sys, aggregame.models.kkt, aggregame.models.complementarity, "
            "aggregame.models.aggregator; print(sorted(m for m in sys.modules "
            "if m.startswith('aggregame.solvers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


@pytest.mark.skipif(shutil.which("pathampl") is not None,
                    reason="pathampl is installed here; this checks the refusal")
def test_asking_for_path_without_it_is_a_clear_error():
    from aggregame import SolverUnavailableError
    from aggregame.solvers.kkt.solve import KKTSettings, solve_kkt

    game, _, _ = cournot_game(n=2)
    with pytest.raises(SolverUnavailableError, match="no `pathampl` executable"):
        solve_kkt(game, KKTSettings(method="path"))


@pytest.mark.parametrize("field, value, message", [
    ("reformulation", "smooth",
     r"field 'reformulation' must be one of \['fischer-burmeister', 'relaxation'\], "
     r"got 'smooth'"),
    ("method", "ipopt", r"field 'method' must be one of \['auto', 'reformulation', "
                        r"'path'\], got 'ipopt'"),
    ("seed", -1, r"field 'seed' must be an integer >= 0, got -1"),
    ("multistart", "yes", r"field 'multistart' must be true or false, got 'yes'"),
    ("certificate_rtol", 0.5, r"field 'certificate_rtol' must be a number in"),
    ("solver", "gurobi", r"field 'solver' is refused: .*unknown solver 'gurobi'"),
])
def test_kkt_settings_refuse_a_bad_field_before_any_solve(field, value, message):
    """Every field is checked once, when the settings are made: one SettingsError
    naming the field and the value, before any model is built."""
    from aggregame import SettingsError
    from aggregame.solvers.kkt.solve import KKTSettings

    with pytest.raises(SettingsError, match=message):
        KKTSettings(**{field: value})


def test_kkt_settings_take_no_solver_for_path():
    from aggregame import SettingsError
    from aggregame.solvers.kkt.solve import KKTSettings

    with pytest.raises(SettingsError, match="field 'solver' must be unset for method "
                                            "'path'"):
        KKTSettings(method="path", solver="cyipopt")


def test_maxmin_player_priced_out_entirely_under_viable_builds():
    """Under the viable rule a max-min player whose members are all priced out counts
    nobody: its block has no level to hold up (building used to fail on an empty
    sum of multipliers equal to 1)."""
    from aggregame import Game, LinearPrice, Player, quadratic_users

    users = quadratic_users([0.5, 0.4], [0.3, 0.2], "v")
    game = Game((Player.aggregator("V", users, alpha="inf", rule="viable",
                                  maxmin="total-surplus"),
                 Player.individual(quadratic_users([0.5], [9.0], "L")[0])),
                LinearPrice(0.05))
    status = [player_status(game, j, 5.0, 5.0) for j in range(2)]
    assert status[0].priced_out == (True, True) and status[0].mode is KKTMode.TIEBREAK
    m = build_kkt_model(game, status)
    assert len(m.player["V"].kkt.FREE) == 0 and not hasattr(m.player["V"].kkt, "mu")
