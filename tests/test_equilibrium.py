"""Equilibria: closed form, backend agreement, certificates, non-convergence, CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_ipopt

from aggregame import Game, LinearPrice, Player, individuals, quadratic_users
from aggregame.scenario import load_scenario
from aggregame.solvers.certify.scan import certify
from aggregame.solvers.equilibrium.dynamics import (
    DynamicsSettings,
    make_inners,
    solve_equilibrium,
)

#: The issue's agreement target between backends on equilibrium profiles.
PROFILE_RTOL = 1e-6


def cournot_game(n=5, c=0.01, seed=1):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(0.1, 0.9, n), rng.uniform(5, 10, n)
    return Game(tuple(individuals(quadratic_users(a, b))), LinearPrice(c)), a, b


def cournot_closed_form(a, b, c):
    # Player i: b_i - 2 a_i y_i - c Y - c y_i = 0  =>  (2 a_i + c) y_i + c Y = b_i.
    return np.linalg.solve(np.diag(2 * a + c) + c * np.ones((a.size, a.size)), b)


@pytest.mark.unit
@pytest.mark.parametrize("method", ["gauss-seidel", "jacobi"])
def test_cournot_matches_closed_form_native(method):
    game, a, b = cournot_game()
    eq = solve_equilibrium(game, settings=DynamicsSettings(method=method))
    assert eq.is_equilibrium
    expected = cournot_closed_form(a, b, 0.01)
    assert np.all(expected > 0)  # interior: the closed form applies
    np.testing.assert_allclose(eq.profile, expected, rtol=1e-9)


@needs_ipopt
@pytest.mark.solver
def test_cournot_matches_closed_form_pyomo():
    game, a, b = cournot_game(n=3)
    eq = solve_equilibrium(game, backend="pyomo")
    assert eq.is_equilibrium
    np.testing.assert_allclose(eq.profile, cournot_closed_form(a, b, 0.01), rtol=1e-7)


@needs_ipopt
@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["fig4", "fig4_proportional", "fig4_maxmin"])
def test_backends_agree_on_paper_setting(scenario):
    game = load_scenario(scenario).game
    native = solve_equilibrium(game, backend="native")
    pyomo = solve_equilibrium(game, backend="pyomo")
    assert native.is_equilibrium and pyomo.is_equilibrium
    np.testing.assert_allclose(pyomo.profile, native.profile, rtol=PROFILE_RTOL)
    assert pyomo.price == pytest.approx(native.price, rel=PROFILE_RTOL)


def small_mixed_game(alpha, rule="floor"):
    rng = np.random.default_rng(3)
    agg = [Player.aggregator(f"A{k}", quadratic_users(rng.uniform(0.1, 0.9, 6),
                                                      rng.uniform(0, 10, 6), f"a{k}_"),
                             alpha=alpha, rule=rule, maxmin="total-surplus")
           for k in range(2)]
    large = Player.individual(quadratic_users([0.5], [40.0], "L")[0])
    return Game((*agg, large), LinearPrice(0.05))


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("alpha", [0, 1, "inf"])
def test_backends_agree_on_small_game(alpha):
    game = small_mixed_game(alpha)
    native = solve_equilibrium(game, backend="native")
    pyomo = solve_equilibrium(game, backend="pyomo")
    assert native.is_equilibrium and pyomo.is_equilibrium
    np.testing.assert_allclose(pyomo.profile, native.profile, rtol=PROFILE_RTOL)


@pytest.mark.unit
def test_certificate_finds_planted_deviation():
    game = small_mixed_game(1)
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium and eq.max_regret <= 1e-6
    planted = eq.profile.copy()
    planted[0] *= 0.5  # aggregator A0 now buys half its equilibrium purchase
    cert = certify(game, planted)
    assert not cert.certified
    assert cert.regrets[0] > 1e-3
    # Its best deviation is near its equilibrium purchase, and the regret is exactly
    # the welfare gained by moving there.
    inner = make_inners(game)[0]
    others = planted.sum() - planted[0]
    gain = (inner.solve(np.array([cert.deviations[0]]), others).welfare[0]
            - inner.solve(np.array([planted[0]]), others).welfare[0])
    assert cert.regrets[0] == pytest.approx(gain, rel=1e-9)


@pytest.mark.unit
def test_bisection_alone_can_stop_at_a_non_equilibrium_and_auto_recovers():
    """Fig. 4 setting, proportional fairness, viable rule: J_j jumps where members are
    priced out (docs/model.md, section "Priced-out members"),
    bisection stops at a profile the certificate rejects, and
    the auto strategy continues with the scan to a certified equilibrium."""
    game = load_scenario("fig4_proportional").game
    players = [Player.aggregator(p.name, p.members, alpha=1, rule="viable")
               if p.size > 1 else p for p in game.players]
    viable = Game(tuple(players), game.price)
    fast = solve_equilibrium(viable, settings=DynamicsSettings(best_response="bisection"))
    assert fast.converged and not fast.certified and not fast.is_equilibrium
    assert "refuted (a deviation gains" in fast.reason()
    sound = solve_equilibrium(viable)
    assert sound.is_equilibrium
    assert "scan" in sound.strategies


@pytest.mark.unit
def test_jacobi_cycling_is_reported_not_called_equilibrium():
    """Simultaneous best responses of 5 identical Cournot players with a steep price
    overshoot: all buy, then all buy nothing (best-response slope (n-1)c/(2(a+c)) =
    1.98 > 1). Gauss-Seidel converges on the same game."""
    users = quadratic_users([0.01] * 5, [10.0] * 5)
    game = Game(tuple(individuals(users)), LinearPrice(1.0))
    jacobi = solve_equilibrium(game, settings=DynamicsSettings(method="jacobi",
                                                               max_rounds=50))
    assert not jacobi.converged and jacobi.status == "cycling"
    assert not jacobi.is_equilibrium and jacobi.max_regret > 1e-2
    assert len(jacobi.path) == jacobi.iterations + 1
    gs = solve_equilibrium(game)
    assert gs.is_equilibrium


@pytest.mark.unit
def test_round_limit_is_reported():
    game, _, _ = cournot_game()
    eq = solve_equilibrium(game, settings=DynamicsSettings(max_rounds=1))
    assert not eq.converged and eq.status == "round-limit"
    assert "no equilibrium" in eq.reason()


@pytest.mark.unit
def test_random_starts_reach_the_same_equilibrium():
    game = small_mixed_game(1)
    ends = [solve_equilibrium(game, settings=DynamicsSettings(start="random", seed=s))
            for s in range(3)]
    for eq in ends:
        assert eq.is_equilibrium
        np.testing.assert_allclose(eq.profile, ends[0].profile, rtol=1e-8)


@pytest.mark.unit
def test_settings_refuse_bad_values():
    from aggregame import GameDefinitionError

    with pytest.raises(GameDefinitionError, match=r"field 'method' must be one of"):
        DynamicsSettings(method="newton")
    with pytest.raises(GameDefinitionError,
                       match=r"field 'tol' must be in \[1e-10, 1\)"):
        DynamicsSettings(tol=0)
    with pytest.raises(GameDefinitionError, match=r"field 'start' must hold finite"):
        DynamicsSettings(start=(1.0, -2.0))


@pytest.mark.unit
def test_tables_and_json():
    eq = solve_equilibrium(small_mixed_game(0.5))
    players = eq.players_table()
    assert list(players["player"]) == ["A0", "A1", "L0"]
    np.testing.assert_allclose(players["y"], eq.profile)
    members = eq.members_table()
    # Allocations add up to each player's purchase.
    np.testing.assert_allclose(members.groupby("player", sort=False)["x"].sum(),
                               eq.profile, rtol=1e-10)
    doc = json.loads(eq.to_json())
    assert doc["players"][0]["members"][0].keys() >= {"a", "b", "x", "surplus"}
    assert doc["total"] == pytest.approx(sum(p["y"] for p in doc["players"]))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "aggregame.cli", *args],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.unit
def test_cli_solve_json_schema():
    out = run_cli("solve", "fig4", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for key, kind in [("price", float), ("total", float), ("converged", bool),
                      ("iterations", int), ("max_regret", float), ("backend", str),
                      ("method", str), ("players", list)]:
        assert isinstance(doc[key], kind), key
    assert doc["backend"] == "native" and doc["converged"] is True
    player = doc["players"][0]
    assert player.keys() >= {"name", "alpha", "y", "members"}
    assert player["members"][0].keys() >= {"a", "b", "x", "surplus"}
    assert doc["price"] == pytest.approx(0.001 * doc["total"])
    maxmin = json.loads(run_cli("solve", "fig4_maxmin", "--json").stdout)
    assert maxmin["players"][0]["alpha"] == "inf"


@pytest.mark.unit
def test_cli_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[market]\nprice = "linear"\nc = 0.001\n[[players]]\nname = "A"\n'
                   'alpha = -2\nusers = [{name = "u", a = 1, b = 2}]\n')
    out = run_cli("solve", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "players[0].alpha" in out.stderr and "-2" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.unit
def test_cli_no_equilibrium_exits_nonzero():
    out = run_cli("solve", "fig4", "--max-rounds", "1")
    assert out.returncode == 1
    assert "no equilibrium" in out.stderr


@pytest.mark.unit
def test_cli_help_lists_exactly_the_commands_that_run():
    """The help's command list against the table of handlers: a command that is
    listed but has no handler (or the reverse) fails here."""
    import argparse

    from aggregame.cli.commands import COMMANDS
    from aggregame.cli.parser import build_parser

    out = run_cli("--help")
    assert out.returncode == 0
    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMANDS)
    listed = {line.split()[0] for line in out.stdout.splitlines()
              if line.startswith("    ") and line.split()[0] in COMMANDS}
    assert listed == set(COMMANDS)
