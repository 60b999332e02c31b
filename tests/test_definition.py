"""Bad input is refused at construction with a message naming field and value."""

import math
from pathlib import Path

import numpy as np
import pytest

from aggregame import (
    AffinePrice,
    Fairness,
    FunctionPrice,
    Game,
    GameDefinitionError,
    LinearPrice,
    LogUtility,
    Player,
    QuadraticUtility,
    ScenarioError,
    quadratic_users,
)
from aggregame.scenario import load_scenario

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("a, b, pattern", [
    (0.0, 1.0, r"field 'a' must be > 0, got 0\.0"),
    (-1.0, 1.0, r"field 'a' must be > 0, got -1\.0"),
    (0.5, -2.0, r"field 'b' must be >= 0, got -2\.0"),
    (math.nan, 1.0, r"field 'a' must be finite, got nan"),
    (0.5, "x", r"field 'b' must be a number, got 'x'"),
])
def test_quadratic_utility_refuses_bad_parameters(a, b, pattern):
    with pytest.raises(GameDefinitionError, match=pattern):
        QuadraticUtility(a, b)


def test_log_utility_refuses_nonpositive_weight():
    with pytest.raises(GameDefinitionError, match=r"log utility: field 'w' must be > 0"):
        LogUtility(0.0)


@pytest.mark.parametrize("alpha", [-0.5, math.nan, "fair", None])
def test_alpha_must_be_nonnegative_number_or_inf(alpha):
    with pytest.raises(GameDefinitionError, match=r"field 'alpha' must be a number >= 0"):
        Fairness(alpha=alpha)


@pytest.mark.parametrize("alpha", [0, 0.5, 1, 2, "inf", math.inf])
def test_valid_alphas(alpha):
    assert Fairness(alpha=alpha).alpha == float(alpha)


def test_rule_and_eps_are_checked():
    with pytest.raises(GameDefinitionError, match=r"field 'rule' must be one of"):
        Fairness(rule="lenient")
    with pytest.raises(GameDefinitionError, match=r"field 'eps' must be finite and > 0"):
        Fairness(rule="floor", eps=0.0)


def test_empty_aggregator_is_refused():
    with pytest.raises(GameDefinitionError,
                       match=r"player 'A': field 'members' must not be empty"):
        Player.aggregator("A", [])


def test_duplicate_names_are_refused():
    users = quadratic_users([0.5, 0.5], [1, 2])
    with pytest.raises(GameDefinitionError, match=r"duplicate user name\(s\) \['u0'\]"):
        Player.aggregator("A", [users[0], users[0]])
    p = Player.aggregator("A", users)
    with pytest.raises(GameDefinitionError, match=r"duplicate player name\(s\) \['A'\]"):
        Game((p, Player.aggregator("A", quadratic_users([1], [1], "v"))), LinearPrice(1))
    with pytest.raises(GameDefinitionError, match=r"appear in more than one place"):
        Game((p, Player.aggregator("B", users)), LinearPrice(1))


def test_decreasing_price_is_refused():
    with pytest.raises(GameDefinitionError, match=r"field 'c' must be > 0, got -0\.001"):
        LinearPrice(-0.001)
    with pytest.raises(GameDefinitionError, match=r"price must be increasing"):
        FunctionPrice(lambda y, lib: 5 - y, lambda y, lib: -1 + 0 * y, name="down")
    with pytest.raises(GameDefinitionError, match=r"field 'p0' must be >= 0"):
        AffinePrice(-1, 1)


def test_function_price_falling_beyond_its_own_check_is_refused_by_the_game():
    """A price that rises on [0, 1e4] (its construction's check) but falls beyond:
    (from 2.5e4 on): a game whose members can buy 4e4 refuses it, one that can buy
    400 takes it."""
    def value(y, lib):
        return 0.01 * y - 1e-6 * np.maximum(y - 2e4, 0) ** 2

    def slope(y, lib):
        return 0.01 - 2e-6 * np.maximum(y - 2e4, 0)

    price = FunctionPrice(value, slope, name="hump")
    small = quadratic_users([0.5] * 2, [101.0] * 2)  # reach 2 b / a = 404
    Game((Player.aggregator("A", small),), price)
    large = quadratic_users([0.005] * 2, [101.0] * 2)  # reach 40,400
    with pytest.raises(GameDefinitionError, match=r"price must be increasing"):
        Game((Player.aggregator("A", large),), price)


def test_function_price_works_with_numpy_and_pyomo():
    import pyomo.environ as pyo

    price = FunctionPrice(lambda y, lib: 0.01 * y + 1e-6 * y**2,
                          lambda y, lib: 0.01 + 2e-6 * y)
    assert price.value(100.0) == pytest.approx(1.01)
    m = pyo.ConcreteModel()
    m.y = pyo.Var(initialize=100.0)
    assert pyo.value(price.expression(m.y)) == pytest.approx(1.01)
    assert price.inverse(1.01) == pytest.approx(100.0, rel=1e-10)


def test_utility_formulas_agree_between_numpy_and_pyomo():
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.x = pyo.Var(initialize=1.7)
    for util in (QuadraticUtility(0.4, 3.0), LogUtility(2.5)):
        p = util.params()
        for fn in (util.U, util.dU, util.d2U):
            assert pyo.value(fn(m.x, p, lib=pyo)) == pytest.approx(float(fn(1.7, p)))
        # Derivatives against central differences (h = 1e-6, error ~1e-10).
        h = 1e-6
        assert util.dU(1.7, p) == pytest.approx(
            (util.U(1.7 + h, p) - util.U(1.7 - h, p)) / (2 * h), rel=1e-7)
        assert util.d2U(1.7, p) == pytest.approx(
            (util.dU(1.7 + h, p) - util.dU(1.7 - h, p)) / (2 * h), rel=1e-6)


def test_zero_surplus_consumption_generic_matches_definition():
    util = LogUtility(3.0)
    price = np.array([0.5, 1.0, 2.9, 3.5])
    xbar = LogUtility.zero_surplus_consumption(price, {"w": np.full(4, 3.0)})
    for p, x in zip(price, xbar):
        if p < 3.0:
            assert util.U(x, util.params()) == pytest.approx(p * x, rel=1e-9)
        else:
            assert x == 0.0


# -- scenario files ----------------------------------------------------------------

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


GOOD = """
[market]
price = "linear"
c = 0.01
[[players]]
name = "A"
alpha = 1
[[players.users]]
name = "u1"
a = 0.5
b = 4
[[players.users]]
name = "u2"
utility = "log"
w = 3
[[individuals]]
name = "big"
a = 0.2
b = 30
"""


def test_scenario_loads_inline_and_individual_players(tmp_path):
    sc = load_scenario(write(tmp_path, GOOD))
    assert [p.name for p in sc.game.players] == ["A", "big"]
    assert sc.game.players[0].alpha == 1
    assert isinstance(sc.game.players[0].members[1].utility, LogUtility)


@pytest.mark.parametrize("old, new, pattern", [
    ("alpha = 1", "alpha = -1", r"s\.toml: players\[0\]\.alpha: must be a number >= 0 "
                                r"or 'inf', got -1"),
    ("a = 0.5", "a = -0.5", r"s\.toml: players\[0\]\.users\[0\]\.a: must be > 0 for a "
                            r"quadratic utility, got -0\.5"),
    ("c = 0.01", "c = -0.01", r"s\.toml: market\.c: .*field 'c' must be > 0"),
    ('price = "linear"', 'price = "magic"', r"market\.price: must be one of"),
    ("w = 3", "w = nan", r"players\[0\]\.users\[1\]\.w: must be a number, got nan"),
    ('name = "big"', 'name = "A"', r"duplicate player name"),
])
def test_scenario_errors_name_file_field_and_value(tmp_path, old, new, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        load_scenario(write(tmp_path, GOOD.replace(old, new, 1)))


def test_scenario_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ScenarioError, match=r"scenario 'nope' not found"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match=r"not valid TOML"):
        load_scenario(write(tmp_path, "[market\n"))
    with pytest.raises(ScenarioError, match=r"file 'missing.csv' not found"):
        load_scenario(write(tmp_path, GOOD + '[[individuals]]\nusers = "missing.csv"\n'))


def test_shipped_scenarios_all_load():
    from aggregame import data

    names = data.scenarios()
    assert {"fig3.toml", "fig4.toml", "fig5.toml"} <= set(names)
    sizes = {n: [p.size for p in load_scenario(n).game.players] for n in names}
    assert sizes["fig4.toml"] == [100, 100, 1]
    assert len(sizes["fig3.toml"]) == 400


def test_quadratic_peak_surplus_closed_form_equals_the_bisection():
    """The float64 check reads each member's peak surplus; the quadratic family's
    closed form (b - p)^2 / (4 a) must agree with the generic bisection on U' = p."""
    import numpy as np

    from aggregame.allocation import quadratic_peak_surplus, surplus_peak

    rng = np.random.default_rng(7)
    p = {"a": 10 ** rng.uniform(-4, 4, 500), "b": 10 ** rng.uniform(-4, 4, 500)}
    for price in (0.0, 0.3, 50.0):
        xbar = QuadraticUtility.zero_surplus_consumption(price, p)
        closed = quadratic_peak_surplus(p["b"] - price, p["a"])
        peak = surplus_peak(lambda x, m: QuadraticUtility.dU(x, m), p, price,
                            np.zeros_like(xbar), xbar, 200)
        bisected = QuadraticUtility.U(peak, p) - price * peak
        np.testing.assert_allclose(closed, bisected, rtol=1e-12, atol=0)
        assert np.all((closed == 0) == (p["b"] <= price))
