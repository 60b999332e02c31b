"""Stacked KKT: closed form, agreement with best response, non-equilibrium KKT points,
and the uniqueness probe."""

import json
import subprocess
import sys

import numpy as np
import pyomo.environ as pyo
import pytest
from pyomo.mpec import Complementarity

from aggregame.models.kkt import build_kkt_model, player_status
from aggregame.scenario import load_scenario
from aggregame.solvers.compare import crosscheck, probe_uniqueness
from aggregame.solvers.dynamics import solve_equilibrium
from aggregame.solvers.kkt import KKT_TOL, solve_kkt
from conftest import needs_ipopt
from test_equilibrium import cournot_closed_form, cournot_game, small_mixed_game

# Every test here needs Ipopt; each is a solver test but the slow one (one kind each).
pytestmark = needs_ipopt

#: The issue's agreement target between the KKT and best-response profiles.
PROFILE_RTOL = 1e-6


@pytest.mark.solver
def test_kkt_of_cournot_is_the_closed_form():
    game, a, b = cournot_game()
    eq = solve_kkt(game)
    assert eq.is_equilibrium and eq.method == "kkt"
    assert eq.settings["kkt_residual"] <= KKT_TOL
    np.testing.assert_allclose(eq.profile, cournot_closed_form(a, b, 0.01), rtol=1e-8)


@pytest.mark.solver
def test_stationarity_is_the_derivative_of_the_inner_welfare():
    """The model's symbolic stationarity equals a finite difference of player j's
    welfare in its own x_ji, with the price moving with the total purchase."""
    game = small_mixed_game(1)
    profile = np.array([8.0, 6.0, 30.0])
    total = profile.sum()
    price = float(game.price.value(total))
    status = [player_status(game, j, price, float(game.price.value(total - profile[j])))
              for j in range(3)]
    m = build_kkt_model(game, status)
    from aggregame.solvers.native import NativeInner

    for j, player in enumerate(game.players):  # a feasible allocation of `profile`
        x = NativeInner(game, j).solve(profile[j:j + 1], total - profile[j]).x[0]
        for k, i in enumerate(m.player[player.name].MEMBERS):
            m.player[player.name].x[i].set_value(float(x[k]))
    blk = m.player["A0"]

    def sync():
        m.total.set_value(sum(v.value for v in m.component_data_objects(pyo.Var)
                              if v.parent_component().local_name == "x"))
        blk.kkt.price_gradient.set_value(pyo.value(blk.kkt.price_partial))

    sync()
    i = max(blk.kkt.FREE, key=lambda n: blk.x[n].value)  # an interior member
    x0 = blk.x[i].value
    analytic = pyo.value(blk.kkt.stationarity[i])  # sigma = 0 here
    h = 1e-6
    values = []
    for step in (h, -h):
        blk.x[i].set_value(x0 + step)
        sync()
        values.append(pyo.value(blk.welfare))
    assert analytic == pytest.approx((values[0] - values[1]) / (2 * h), rel=1e-6)
    assert any(True for _ in blk.kkt.component_data_objects(Complementarity))


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["fig4", "fig4_proportional", "fig4_maxmin"])
def test_kkt_agrees_with_best_response_on_paper_setting(scenario):
    game = load_scenario(scenario).game
    kkt = solve_kkt(game)
    br = solve_equilibrium(game)
    assert kkt.is_equilibrium and br.is_equilibrium
    np.testing.assert_allclose(kkt.profile, br.profile, rtol=PROFILE_RTOL)


@pytest.mark.solver
def test_kkt_point_that_is_not_an_equilibrium_is_reported():
    """On the constructed two-equilibria game the KKT system also has a symmetric point
    where each user sits between its payoff's two local maxima: stationary, not
    optimal. It converges as a KKT point and fails the certificate."""
    game = load_scenario("two_equilibria").game
    eq = solve_kkt(game, start=np.array([80.0, 80.0]))
    assert eq.converged and not eq.certified and not eq.is_equilibrium
    assert eq.max_regret > 0.05  # relative to the payoff's range: far from 0
    assert "no equilibrium" in eq.reason()


@pytest.mark.solver
def test_uniqueness_probe_finds_two_equilibria_on_constructed_game():
    report = probe_uniqueness(load_scenario("two_equilibria").game, starts=6, seed=1)
    found = sorted(float(c.profile[0]) for c in report.equilibria)
    assert len(found) == 2
    assert found[0] == pytest.approx(53.89, rel=1e-3)
    assert found[1] == pytest.approx(500.0, rel=1e-3)
    assert len(report.runs) == 12


@pytest.mark.solver
def test_uniqueness_probe_finds_one_equilibrium_on_paper_setting():
    report = probe_uniqueness(load_scenario("fig4_proportional").game, starts=2, seed=3)
    assert len(report.equilibria) == 1
    assert report.runs["certified"].all()


@pytest.mark.solver
def test_crosscheck_agrees_on_small_game():
    report = crosscheck(small_mixed_game(2.0))
    assert report.agree, report.table()
    assert set(report.table()["method"]) == {"best-response/native",
                                             "best-response/pyomo", "kkt/pyomo"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "aggregame.cli", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.solver
def test_cli_kkt_gives_the_same_json_as_best_response():
    kkt = json.loads(run_cli("solve", "fig4_proportional", "--method", "kkt",
                             "--json").stdout)
    br = json.loads(run_cli("solve", "fig4_proportional", "--json").stdout)
    assert kkt["method"] == "kkt" and br["method"] == "gauss-seidel"
    assert set(br) <= set(kkt)
    np.testing.assert_allclose([p["y"] for p in kkt["players"]],
                               [p["y"] for p in br["players"]], rtol=PROFILE_RTOL)


@pytest.mark.solver
def test_cli_uniqueness_and_crosscheck():
    out = run_cli("uniqueness", "two_equilibria", "--starts", "6", "--seed", "1",
                  "--json")
    assert out.returncode == 0, out.stderr
    clusters = json.loads(out.stdout)["clusters"]
    assert sum(c["equilibrium"] for c in clusters) == 2
    out = run_cli("crosscheck", "fig4_proportional")
    assert out.returncode == 0, out.stderr
    assert "all methods agree" in out.stdout
    bad = run_cli("uniqueness", "fig4", "--starts", "0")
    assert bad.returncode == 2 and "--starts: must be an integer >= 1" in bad.stderr


@pytest.mark.skipif(__import__("aggregame.solvers.kkt", fromlist=["x"]).path_available(),
                    reason="pathampl is installed here; this checks the refusal")
@pytest.mark.solver
def test_asking_for_path_without_it_is_a_clear_error():
    from aggregame import SolverUnavailableError

    game, _, _ = cournot_game(n=2)
    with pytest.raises(SolverUnavailableError, match="no `pathampl` executable"):
        solve_kkt(game, solver_name="path")
