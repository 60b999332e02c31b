"""Node prices of a network model, and the nodal game, against the solver itself:
HiGHS's duals at the same demands, their finite differences, and deviations priced
by HiGHS and paid for by the native backend."""

import pickle
import runpy
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest

from aggregame import Game, GameDefinitionError, Player, quadratic_users
from aggregame.price import AffinePrice

pytestmark = pytest.mark.skipif(not pyo.SolverFactory("highs").available(False),
                                reason="HiGHS (highspy) not installed")

ROOT = Path(__file__).resolve().parents[1]
#: Node prices against HiGHS's duals (unregularized QP).
DUAL_RTOL = 1e-6
#: Step of the central difference of the duals (inside one piece: exact to rounding).
FD_STEP = 1e-3
#: A sampled deviation may not gain more than this, relative to the payoff's size.
REGRET_RTOL = 1e-6


def network():
    return runpy.run_path(str(ROOT / "examples" / "network_market.py"),
                          run_name="network_example")


def _pieces_demands(rng, n=8):
    return [rng.uniform([0, 0, 0], [60, 80, 120]) for _ in range(n)]


@pytest.mark.solver
def test_node_prices_are_the_models_duals_and_their_slope_its_differences():
    from aggregame.solvers.market.nodal import NodalMarketPrice

    ex = network()
    m = ex["network_model"]()
    nodal = NodalMarketPrice(m, m.demand, m.balance)
    for d in _pieces_demands(np.random.default_rng(5)):
        np.testing.assert_allclose(nodal.value(d), ex["highs_prices"](
            ex["network_model"](), d), rtol=DUAL_RTOL, atol=DUAL_RTOL)
        piece, slope = nodal.piece(d), nodal.jacobian(d)
        np.testing.assert_allclose(slope, slope.T, atol=1e-12)  # a Hessian
        assert np.linalg.eigvalsh(slope).min() >= -1e-12       # of a convex cost
        for k in range(3):
            step = np.eye(3)[k] * FD_STEP
            if not (nodal.holds(piece, d + step) and nodal.holds(piece, d - step)):
                continue  # a kink within the step: no derivative to compare
            fd = (ex["highs_prices"](ex["network_model"](), d + step)
                  - ex["highs_prices"](ex["network_model"](), d - step)) / (2 * FD_STEP)
            np.testing.assert_allclose(slope[:, k], fd, rtol=1e-5, atol=1e-6)


@pytest.mark.solver
def test_a_bus_price_is_the_node_price_along_that_bus():
    from aggregame.solvers.market.nodal import NodalMarketPrice

    ex = network()
    m = ex["network_model"]()
    nodal = NodalMarketPrice(m, m.demand, m.balance)
    held = np.array([10.0, 30.0, 50.0])
    for k, bus in enumerate(ex["BUSES"]):
        curve = nodal.bus_price(bus, held)
        for y in np.linspace(0.0, 0.95 * curve.capacity, 13):
            d = held.copy()
            d[k] = y
            assert curve.value(y) == pytest.approx(nodal.value(d)[k], rel=1e-9,
                                                   abs=1e-9)


@pytest.mark.unit
def test_a_nodal_game_needs_a_known_node_per_player():
    from aggregame.solvers.market.nodal import NodalGame

    class Nodes:  # the game reads only the node index from its price
        nodes = ("n1", "n2")

        def index(self, node):
            if node not in self.nodes:
                raise GameDefinitionError(f"no node {node!r}")
            return self.nodes.index(node)

    p = Player.aggregator("a", quadratic_users([0.1], [5.0]))
    with pytest.raises(GameDefinitionError, match="one node per player"):
        NodalGame((p,), ("n1", "n2"), Nodes())
    with pytest.raises(GameDefinitionError, match="no node 'n3'"):
        NodalGame((p,), ("n3",), Nodes())


def _payoff(player, y, price):
    """J of ``player`` buying ``y`` at ``price``: the native backend's inner solve
    under a constant price (an affine one of negligible slope)."""
    from aggregame.solvers.inner.native import NativeInner

    game = Game((player,), AffinePrice(max(price, 0.0), 1e-15))
    return float(NativeInner(game, 0).solve(np.array([float(y)]), 0.0).welfare[0])


@pytest.mark.solver
def test_the_network_example_is_an_equilibrium_of_the_models_own_prices():
    """Each player's deviations, priced by HiGHS's duals of the user's model at the
    deviated demands (not by the price tables), gain nothing."""
    ex = network()
    out = ex["main"]()
    assert out["ok"]
    np.testing.assert_allclose(out["kkt_profile"], out["profile"], rtol=1e-6)
    buses = list(ex["BUSES"])
    for j, (player, bus) in enumerate(zip(out["players"], out["buses"])):
        k = buses.index(bus)
        here = _payoff(player, out["profile"][j], out["prices"][k])
        for factor in (0.0, 0.5, 0.9, 0.99, 1.01, 1.1, 1.5):
            d = out["demands"].copy()
            y = factor * out["profile"][j]
            d[k] += y - out["profile"][j]
            price = ex["highs_prices"](ex["network_model"](), d)[k]
            gain = _payoff(player, y, price) - here
            assert gain <= REGRET_RTOL * max(1.0, abs(here)), (player.name, factor)


@pytest.mark.unit
def test_the_nodal_kkt_model_pickles_and_clones():
    from aggregame.models.nodal_kkt import build_nodal_kkt_model

    players = [("A", {"s": Player.aggregator("A", quadratic_users([0.05], [9.0]),
                                             alpha=1.0)}),
               ("B", {"s": Player.aggregator("B", quadratic_users([0.1], [7.0], "b"),
                                             alpha=2.0),
                      "e": Player.aggregator("B", quadratic_users([0.2], [8.0], "c"),
                                             alpha=2.0)})]
    m = build_nodal_kkt_model(players, ["s", "e"], np.array([1.0, 2.0]),
                              np.array([[0.1, 0.02], [0.02, 0.2]]),
                              {("A", "s"): (False,), ("B", "s"): (False,),
                               ("B", "e"): (False,)})
    for twin in (pickle.loads(pickle.dumps(m)), m.clone()):
        for a, b in ((m, twin),):
            for va, vb in zip(a.component_data_objects(pyo.Var),
                              b.component_data_objects(pyo.Var)):
                va.set_value(0.7)
                vb.set_value(0.7)
            bodies = [[pyo.value(c.body) for c in x.component_data_objects(
                pyo.Constraint, active=True)] for x in (a, b)]
            np.testing.assert_allclose(bodies[0], bodies[1], rtol=1e-14)
