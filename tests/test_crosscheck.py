"""The one cross-check (solvers/compare/crosscheck.py): how a method is run, how a
failed method is kept, how results are grouped by equilibrium."""

from __future__ import annotations

import pytest

from aggregame.scenario import load_scenario
from aggregame.solvers.compare.crosscheck import (
    Crosscheck,
    Method,
    crosscheck,
    solve_by,
)
from aggregame.solvers.equilibrium.dynamics import DynamicsSettings
from aggregame.solvers.solver_choice import SolverSpec

pytestmark = pytest.mark.unit


def test_a_failed_method_is_a_verdict_not_a_crash():
    """HiGHS cannot take the stacked KKT system (it is refused before any solve):
    the KKT method is kept with its reason, the others still run."""
    game = load_scenario("fig4_proportional").game
    check = crosscheck(game, backends=("native",), solver=SolverSpec("highs"))
    assert list(check.results) == ["best-response/native"]
    assert "stacked KKT" in check.failed["kkt/pyomo"]
    assert check.results["best-response/native"].is_equilibrium
    assert not check.ok and not check.agree


def test_two_equilibria_are_two_groups():
    """The constructed game of data/two_equilibria.toml: best response from zero
    ends near (53.9, 53.9), from (500, 500) near (500, 500); both are certified,
    so the check is ok, but the methods do not agree."""
    game = load_scenario("two_equilibria").game
    method = Method("best-response", "native")
    low = solve_by(game, method, DynamicsSettings(best_response="scan"))
    high = solve_by(game, method, DynamicsSettings(best_response="scan",
                                                   start=(500.0, 500.0)))
    check = Crosscheck({"low": low, "high": high})
    assert sorted(round(eq.profile[0]) for eq in check.results.values()) == [54, 500]
    assert check.groups() == [["low"], ["high"]]
    assert check.ok and not check.agree
    assert Crosscheck({"a": low, "b": low}).groups() == [["a", "b"]]


def test_methods_are_checked():
    with pytest.raises(ValueError, match="no such run"):
        Method("kkt", "native")
    with pytest.raises(ValueError, match="method must be one of"):
        Method("newton", "native")
