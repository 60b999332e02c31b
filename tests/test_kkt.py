"""Stacked KKT: closed form, agreement with best response, the start and the
multistart, one-member players written either way, non-equilibrium KKT points, the
uniqueness probe and the cross-check."""

import json
import subprocess
import sys

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import needs_ipopt
from test_equilibrium import cournot_closed_form, cournot_game, small_mixed_game

from aggregame import Game, LinearPrice, Player, quadratic_users
from aggregame.models.kkt import build_kkt_model, player_status
from aggregame.scenario import load_scenario, scenario_from_dict
from aggregame.solvers.compare.crosscheck import crosscheck
from aggregame.solvers.compare.uniqueness import probe_uniqueness
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings, solve_equilibrium
from aggregame.solvers.kkt.solve import (
    KKT_TOL,
    KKTSettings,
    KKTStatus,
    StartKind,
    solve_kkt,
)

pytestmark = [needs_ipopt]

#: The issue's agreement target between the KKT and best-response profiles.
PROFILE_RTOL = 1e-6
#: One start only: the multistart would report another start's end.
ONE_START = KKTSettings(multistart=False)
#: Two KKT solves of one game written two ways: the same Ipopt runs, so the same
#: point to Ipopt's tolerance.
SAME_GAME_RTOL = 1e-8


@pytest.mark.solver
def test_kkt_of_cournot_is_the_closed_form():
    game, a, b = cournot_game()
    eq = solve_kkt(game)
    assert eq.is_equilibrium and eq.method == "kkt"
    assert eq.settings["kkt_residual"] <= KKT_TOL
    assert eq.settings["start_kind"] == "default" and len(eq.settings["attempts"]) == 1
    np.testing.assert_allclose(eq.profile, cournot_closed_form(a, b, 0.01), rtol=1e-8)


def stacked_model(game, profile):
    """(model, statuses): the stacked KKT model with every player's priced-out status
    at ``profile``."""
    total = profile.sum()
    price = float(game.price.value(total))
    status = [player_status(game, j, price, float(game.price.value(total - profile[j])))
              for j in range(len(game.players))]
    return build_kkt_model(game, status), status


@pytest.mark.solver
def test_stationarity_is_the_derivative_of_the_inner_welfare():
    """The model's symbolic stationarity equals a finite difference of player j's
    welfare in its own x_ji, with the price moving with the total purchase."""
    game = small_mixed_game(1)
    profile = np.array([8.0, 6.0, 30.0])
    total = profile.sum()
    m, status = stacked_model(game, profile)
    from aggregame.solvers.inner.native import NativeInner

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
    # One stationarity and one surplus pair per member that is not priced out.
    priced_in = sum(not out for out in status[0].priced_out)
    assert len(blk.kkt.FREE) == priced_in
    assert len(blk.kkt.compl_stationarity) == len(blk.kkt.compl_surplus) == priced_in


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["fig4", "fig4_proportional", "fig4_maxmin"])
def test_kkt_agrees_with_best_response_on_paper_setting(scenario):
    game = load_scenario(scenario).game
    kkt = solve_kkt(game)
    br = solve_equilibrium(game)
    assert kkt.is_equilibrium and br.is_equilibrium
    np.testing.assert_allclose(kkt.profile, br.profile, rtol=PROFILE_RTOL)


# -- the start ------------------------------------------------------------------------
@pytest.mark.solver
@pytest.mark.parametrize("start", [(60.0, 40.0), (450.0, 520.0)])
def test_the_given_start_decides_which_equilibrium(start):
    """two_equilibria has equilibria near (53.9, 53.9) and (500, 500): from each
    start the KKT solve ends where best response from the same start ends."""
    game = load_scenario("two_equilibria").game
    kkt = solve_kkt(game, ONE_START, start=np.array(start))
    br = solve_equilibrium(game, settings=DynamicsSettings(start=start,
                                                           best_response="scan"))
    assert kkt.is_equilibrium and br.is_equilibrium
    assert kkt.settings["start"] == list(start)
    assert kkt.settings["start_kind"] == StartKind.GIVEN
    np.testing.assert_allclose(kkt.profile, br.profile, rtol=PROFILE_RTOL)


@pytest.mark.solver
def test_kkt_point_that_is_not_an_equilibrium_is_reported():
    """On the constructed two-equilibria game the KKT system also has a symmetric point
    where each user sits between its payoff's two local maxima: stationary, not
    optimal. Without the multistart it converges as a KKT point and fails the
    certificate; with it, the best-response warm start gives a certified
    equilibrium, and the first start stays on record."""
    game = load_scenario("two_equilibria").game
    eq = solve_kkt(game, ONE_START, start=np.array([80.0, 80.0]))
    assert eq.converged and not eq.certified and not eq.is_equilibrium
    assert eq.max_regret > 0.05  # relative to the payoff's range: far from 0
    assert "no equilibrium: KKT point" in eq.reason()
    assert "Ipopt solve" in eq.reason() and "round" not in eq.reason()
    again = solve_kkt(game, start=np.array([80.0, 80.0]))
    first, *_ = again.settings["attempts"]
    assert first["start"] == [80.0, 80.0] and not first["certified"]
    np.testing.assert_allclose(first["max_regret"], eq.max_regret, rtol=1e-6)
    assert again.is_equilibrium and again.settings["start_kind"] != "given"
    assert certify_independently(game, again.profile)


def certify_independently(game, profile):
    """Best response from ``profile`` (native scan) stays there."""
    br = solve_equilibrium(game, settings=DynamicsSettings(
        start=tuple(profile), best_response="scan"))
    scale = max(1.0, float(np.max(profile)))
    return br.is_equilibrium and float(np.max(np.abs(br.profile - profile))) <= \
        PROFILE_RTOL * scale


def steep_alpha2_game():
    """Two alpha = 2 aggregators (5 and 3 quadratic users) under p = 2 Y. From the
    neutral start Ipopt ends 'infeasible' at a point whose complementarity residual
    is small but which a member priced out at the edge makes a non-equilibrium
    (relative regret ~1); from a start near the equilibrium it converges to it."""
    rng = np.random.default_rng(2)
    players = []
    for j in range(2):
        n = int(rng.integers(2, 6))
        users = quadratic_users(rng.uniform(0.1, 0.9, n), rng.uniform(4, 10, n),
                                f"p{j}u")
        players.append(Player.aggregator(f"A{j}", users, alpha=2.0))
    return Game(tuple(players), LinearPrice(2.0))


@pytest.mark.solver
def test_multistart_recovers_when_the_default_start_fails():
    game = steep_alpha2_game()
    br = solve_equilibrium(game)
    assert br.is_equilibrium
    alone = solve_kkt(game, ONE_START)
    assert not alone.is_equilibrium
    assert alone.settings["ipopt_termination"] == "infeasible"
    eq = solve_kkt(game)
    attempts = eq.settings["attempts"]
    assert attempts[0]["start_kind"] == "default" and not attempts[0]["certified"]
    assert attempts[0]["max_regret"] == pytest.approx(alone.max_regret, rel=1e-6)
    assert eq.is_equilibrium and eq.settings["start_kind"] == "best-response"
    np.testing.assert_allclose(eq.profile, br.profile, rtol=PROFILE_RTOL)
    # iterations count the solves of every start, and the messages say so.
    assert eq.iterations == sum(a["solves"] for a in attempts) == \
        eq.settings["nlp_solves"]
    assert f"{eq.iterations} Ipopt solves from the best-response start" in eq.reason()
    assert "starts tried:" in eq.summary() and "round" not in eq.summary()


@pytest.mark.solver
def test_a_start_near_the_equilibrium_converges_where_the_default_fails():
    game = steep_alpha2_game()
    br = solve_equilibrium(game)
    near = solve_kkt(game, ONE_START, start=br.profile * 1.02)
    assert near.is_equilibrium and near.settings["start_kind"] == "given"
    np.testing.assert_allclose(near.profile, br.profile, rtol=PROFILE_RTOL)


# -- one-member players ------------------------------------------------------------
def _one_member_doc(alpha, b_solo, as_player, rule):
    solo = {"name": "solo", "utility": "quadratic", "a": 0.5, "b": b_solo}
    doc = {"market": {"price": "linear", "c": 0.05},
           "defaults": {"rule": rule, "eps": 0.01},
           "players": [{"name": "agg", "alpha": 1.0, "users": [
               {"name": f"u{k}", "utility": "quadratic", "a": a, "b": b}
               for k, (a, b) in enumerate([(0.3, 6.0), (0.6, 8.0), (0.2, 5.0)])]}]}
    if as_player:
        doc["players"].append({"name": "solo", "alpha": alpha, "users": [solo]})
    else:
        doc["individuals"] = [solo]
    return doc


@pytest.mark.solver
@pytest.mark.parametrize("alpha,rule", [(0.0, "floor"), (1.0, "floor"), (2.0, "floor"),
                                        ("inf", "floor"), ("inf", "viable")])
@pytest.mark.parametrize("b_solo", [7.0, 0.3], ids=["priced-in", "priced-out"])
def test_one_member_player_is_the_same_written_either_way(alpha, rule, b_solo):
    """A one-member [[players]] entry (any alpha) and an [[individuals]] entry are one
    game: the same KKT outcome, equal to the certified best-response equilibrium of
    the [[individuals]] writing. (At b = 0.3 the member is priced out: U'(0) is below
    the equilibrium price.)"""
    written = {way: scenario_from_dict(_one_member_doc(alpha, b_solo, way == "player",
                                                       rule)).game
               for way in ("player", "individual")}
    kkt = {way: solve_kkt(game) for way, game in written.items()}
    br = solve_equilibrium(written["individual"])
    assert br.is_equilibrium
    assert (b_solo < br.price) == (br.profile[1] == 0.0)
    for eq in kkt.values():
        assert eq.converged and eq.settings["kkt_residual"] <= KKT_TOL
        np.testing.assert_allclose(eq.profile, br.profile, rtol=PROFILE_RTOL)
    np.testing.assert_allclose(kkt["player"].profile, kkt["individual"].profile,
                               rtol=SAME_GAME_RTOL, atol=SAME_GAME_RTOL)
    assert kkt["individual"].is_equilibrium


# -- uniqueness and the cross-check --------------------------------------------------
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


@pytest.mark.slow
def test_cli_kkt_gives_the_same_json_as_best_response():
    kkt = json.loads(run_cli("solve", "fig4_proportional", "--method", "kkt",
                             "--json").stdout)
    br = json.loads(run_cli("solve", "fig4_proportional", "--json").stdout)
    assert kkt["method"] == "kkt" and br["method"] == "gauss-seidel"
    assert set(br) <= set(kkt)
    np.testing.assert_allclose([p["y"] for p in kkt["players"]],
                               [p["y"] for p in br["players"]], rtol=PROFILE_RTOL)


@pytest.mark.solver
def test_cli_kkt_honours_start_and_speaks_of_ipopt_solves():
    out = run_cli("solve", "two_equilibria", "--method", "kkt", "--start", "450,520",
                  "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["settings"]["start"] == [450.0, 520.0]
    assert doc["settings"]["start_kind"] == "given"
    assert doc["iterations"] == doc["settings"]["nlp_solves"] > 0
    assert [p["y"] for p in doc["players"]] == pytest.approx([500.0, 500.0], rel=1e-5)
    text = run_cli("solve", "two_equilibria", "--method", "kkt", "--start", "80,80")
    assert text.returncode == 0, text.stderr
    assert "Ipopt solves from the best-response start (2 starts tried)" in text.stdout
    assert "1. given start: converged, not certified" in text.stdout
    assert "round" not in text.stdout


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


@pytest.mark.solver
def test_crosscheck_exits_1_when_a_method_is_not_certified():
    """Best response cut at one round has not converged: that is an uncertified
    result, so exit 1, and the JSON says which method."""
    out = run_cli("crosscheck", "two_equilibria", "--backends", "native",
                  "--max-rounds", "1", "--json")
    doc = json.loads(out.stdout)
    assert out.returncode == 1 and not doc["ok"]
    assert doc["not_certified"] == ["best-response/native"]
    kkt = next(m for m in doc["methods"] if m["method"] == "kkt/pyomo")
    assert kkt["equilibrium"]


@pytest.mark.solver
def test_relaxation_reformulation_gives_the_same_point():
    """mpec.simple_nonlinear's relaxation and the Fischer-Burmeister smoothing are two
    routes to one KKT point."""
    game, a, b = cournot_game(n=3)
    eq = solve_kkt(game, KKTSettings(reformulation="relaxation"))
    assert eq.is_equilibrium and eq.status == KKTStatus.CONVERGED
    np.testing.assert_allclose(eq.profile, cournot_closed_form(a, b, 0.01), rtol=1e-6)
