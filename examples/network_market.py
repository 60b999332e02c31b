"""Aggregators at the buses of a DC power flow: each pays its bus's price.

The user's model is a 3-bus DC optimal power flow in plain Pyomo: four generators
with quadratic costs and capacities, three lines with susceptances and limits, a
fixed load and a demand Param per bus; each bus price is the dual of its balance.
``NodalMarketPrice`` reads the vector of bus demands -> bus prices from it (exact,
piecewise affine, loop flows and congestion included). An alpha = 1 aggregator at
the south bus, an alpha = 2 aggregator and a large user at the east bus play the
purchase game, each priced at its bus: ``solve_nodal_equilibrium`` (Gauss-Seidel
over buses, each bus's players at the equilibrium of their one-price game, every
player's regret certified at the end). Cross-checks, each printed with its error:

1. the bus prices against HiGHS's own duals of the user's model at the equilibrium
   demands;
2. the stacked KKT system of the whole game on the market's piece, solved by Ipopt
   from its own start: the same purchases, and its demands on that piece (so its
   prices are the model's).

Run: python examples/network_market.py (exit 1 if a cross-check fails).
"""

import sys

import numpy as np
import pyomo.environ as pyo

from aggregame import Player, quadratic_users
from aggregame.solvers.equilibrium.nodal import solve_nodal_equilibrium
from aggregame.solvers.market.nodal import NodalGame, NodalMarketPrice
from aggregame.solvers.kkt.nodal import solve_nodal_kkt

BUSES = ("north", "south", "east")
#: generator: (bus, c1 [$/MWh], c2 [$/MWh^2], capacity [MWh])
GENERATORS = {"g1": ("north", 1.0, 0.05, 80.0), "g2": ("north", 2.0, 0.02, 60.0),
              "g3": ("south", 4.0, 0.04, 70.0), "g4": ("east", 6.0, 0.03, 120.0)}
#: line: (from bus, to bus, susceptance, limit [MWh])
LINES = {"ns": ("north", "south", 10.0, 50.0), "se": ("south", "east", 10.0, 40.0),
         "ne": ("north", "east", 10.0, 40.0)}
LOAD = {"north": 20.0, "south": 40.0, "east": 30.0}  # MWh
#: Agreement asked of each cross-check (relative).
PRICE_RTOL, PROFILE_RTOL = 1e-6, 1e-6


def _flow_rule(m, line):
    start, end, susceptance, _ = LINES[line]
    return m.flow[line] == susceptance * (m.theta[start] - m.theta[end])


def _balance_rule(m, bus):
    leaving = sum(m.flow[k] for k in m.LINES if LINES[k][0] == bus)
    arriving = sum(m.flow[k] for k in m.LINES if LINES[k][1] == bus)
    made = sum(m.q[g] for g in m.GENS if GENERATORS[g][0] == bus)
    return made - leaving + arriving == LOAD[bus] + m.demand[bus]


def network_model() -> pyo.ConcreteModel:
    """The user's DC OPF: least cost for the loads plus the bus demands."""
    m = pyo.ConcreteModel(name="dc network")
    m.BUSES = pyo.Set(initialize=BUSES)
    m.GENS = pyo.Set(initialize=list(GENERATORS))
    m.LINES = pyo.Set(initialize=list(LINES))
    m.q = pyo.Var(m.GENS, bounds={g: (0.0, v[3]) for g, v in GENERATORS.items()})
    m.theta = pyo.Var(m.BUSES)
    m.theta["north"].fix(0.0)  # the reference angle
    m.flow = pyo.Var(m.LINES, bounds={k: (-v[3], v[3]) for k, v in LINES.items()})
    m.demand = pyo.Param(m.BUSES, mutable=True, initialize=0.0)
    m.eq_flow = pyo.Constraint(m.LINES, rule=_flow_rule)
    m.balance = pyo.Constraint(m.BUSES, rule=_balance_rule)
    m.cost = pyo.Objective(expr=sum(v[1] * m.q[g] + v[2] * m.q[g] ** 2
                                    for g, v in GENERATORS.items()))
    return m


def players() -> tuple[tuple[Player, ...], tuple[str, ...]]:
    """The players and the bus of each."""
    a = quadratic_users([0.05, 0.08, 0.03], [14.0, 11.0, 16.0], "a")
    b = quadratic_users([0.04, 0.06], [15.0, 12.0], "b")
    return ((Player.aggregator("A", a, alpha=1.0), Player.aggregator("B", b, alpha=2.0),
             Player.individual(quadratic_users([0.02], [18.0], "large")[0])),
            ("south", "east", "east"))


def highs_prices(m: pyo.ConcreteModel, demands: np.ndarray) -> np.ndarray:
    """The bus prices as HiGHS reports them: the duals of the balances."""
    for bus, value in zip(BUSES, demands):
        m.demand[bus].set_value(float(value))
    if m.component("dual") is None:
        m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    pyo.SolverFactory("highs").solve(m, options={"qp_regularization_value": 0.0})
    return np.array([m.dual[m.balance[b]] for b in BUSES])


def main() -> dict:
    m = network_model()
    nodal = NodalMarketPrice(m, m.demand, m.balance)
    people, buses = players()
    eq = solve_nodal_equilibrium(NodalGame(people, buses, nodal))
    print(f"nodal equilibrium: purchases {np.round(eq.profile, 6).tolist()} at "
          f"{list(buses)}; converged {eq.converged} in {eq.rounds} rounds, max "
          f"regret {eq.max_regret:.1e}, equilibrium {eq.is_equilibrium}")
    print(f"  bus demands {np.round(eq.demands, 6).tolist()}, prices "
          f"{np.round(eq.prices, 6).tolist()}")
    duals = highs_prices(network_model(), eq.demands)
    price_gap = float(np.max(np.abs(duals - eq.prices) / np.maximum(1.0, duals)))
    print(f"  HiGHS's duals of the user's model: {np.round(duals, 6).tolist()} "
          f"(differ by {price_gap:.1e})")
    kkt = solve_nodal_kkt([(p.name, {bus: p}) for p, bus in zip(people, buses)],
                          nodal)
    profile = np.array([kkt.purchases[p.name, bus] for p, bus in zip(people, buses)])
    kkt_gap = float(np.max(np.abs(profile - eq.profile)) / max(1.0, eq.profile.max()))
    print(f"stacked KKT of the whole game: purchases {np.round(profile, 6).tolist()}, "
          f"residual {kkt.residual:.1e}, on the market's piece {kkt.on_piece} "
          f"(differs from the dynamics by {kkt_gap:.1e})")
    ok = eq.is_equilibrium and price_gap <= PRICE_RTOL and kkt.converged \
        and kkt_gap <= PROFILE_RTOL
    print("all cross-checks passed" if ok else "A CROSS-CHECK FAILED")
    return {"ok": ok, "profile": eq.profile, "buses": buses, "demands": eq.demands,
            "prices": eq.prices, "kkt_profile": profile, "players": people}


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
