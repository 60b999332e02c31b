"""Two aggregators bidding in each hour of a day-ahead market with ramps and storage.

The user's model is a 24-hour economic dispatch in plain Pyomo: three generators
with quadratic costs, capacities and ramp limits, a storage unit (power, energy,
efficiency, back to its starting charge at the end of the day), an hourly base load
and an hourly demand Param for the aggregators' purchases; each hour's price is the
dual of its balance. Ramps and storage tie the hours together, so a purchase in one
hour moves the prices of the others: ``NodalMarketPrice`` reads the map from the 24
hourly demands to the 24 prices (exact, piecewise affine) with the hours as nodes.

Each aggregator bids hour by hour: its bid for hour t is chosen for that hour's
members and that hour's alpha-fair welfare, given every other bid (an hourly desk;
it does not trade one hour's welfare for another's). So the players are the 48
(aggregator, hour) desks, each at its hour's node, and ``solve_nodal_equilibrium``
finds and certifies their equilibrium (every desk's regret in its hour's game).
Cross-checks, each printed with its error:

1. the hourly prices against HiGHS's own duals of the user's model;
2. the aggregators' blocks inside the user's model: an indexed
   ``AggregatorBlock(m.T, player=..., purchase=..., price=...)`` per aggregator,
   each hour's allocation solved by Ipopt at the equilibrium purchase and price,
   and its multiplier ``lambda_`` with the hour's price slope dp_t/dD_t (from the
   market's piece) in the desk's first-order condition
   lambda + (dp/dD) dW/dp = 0 (its total derivative, docs/model.md), which the
   dynamics never evaluate this way.

tests/test_examples_market.py checks the returned purchases against sampled
deviations priced by HiGHS itself. Run: python examples/hourly_market.py (exit 1 if
a cross-check fails).
"""

import math
import sys

import numpy as np
import pyomo.environ as pyo

from aggregame import Player, quadratic_users
from aggregame.models import AggregatorBlock
from aggregame.solvers.equilibrium.nodal import solve_nodal_equilibrium
from aggregame.solvers.market.nodal import NodalGame, NodalMarketPrice
from aggregame.solvers.inner.pyomo_backend import ipopt_solver

HOURS = tuple(range(1, 25))
#: generator: (c1 [$/MWh], c2 [$/MWh^2], capacity [MWh], ramp [MWh per hour])
GENERATORS = {"base": (1.0, 0.02, 200.0, 12.0), "mid": (1.5, 0.03, 200.0, 150.0),
              "peak": (2.0, 0.05, 150.0, 150.0)}
STORAGE = {"power": 30.0, "energy": 200.0, "start": 100.0, "efficiency": 0.95,
           "wear": 0.5, "stress": 0.05}
# wear: $/MWh discharged; stress: $/MWh^2 of charge or discharge in an hour (a
# battery ages faster at high power). Without it the storage's cost is linear and
# its schedule not unique where hours share a price.
#: Agreement asked of each cross-check (relative): prices with HiGHS's duals, and
#: the first-order condition from Ipopt's multipliers (tol = 1e-9).
PRICE_RTOL, FOC_RTOL = 1e-6, 1e-5


def base_load(t: int) -> float:
    """MWh in hour t: a night trough and an evening peak."""
    return 150.0 + 50.0 * math.sin(math.pi * (t - 7) / 12.0)


def _ramp_up(m, g, t):
    return (pyo.Constraint.Skip if t == HOURS[0]
            else m.q[g, t] - m.q[g, t - 1] <= GENERATORS[g][3])


def _ramp_down(m, g, t):
    return (pyo.Constraint.Skip if t == HOURS[0]
            else m.q[g, t - 1] - m.q[g, t] <= GENERATORS[g][3])


def _charge_rule(m, t):
    before = STORAGE["start"] if t == HOURS[0] else m.soc[t - 1]
    eta = STORAGE["efficiency"]
    return m.soc[t] == before + eta * m.charge[t] - m.discharge[t] / eta


def _balance_rule(m, t):
    made = sum(m.q[g, t] for g in m.GENS) + m.discharge[t] - m.charge[t]
    return made == base_load(t) + m.demand[t]


def dispatch_model() -> pyo.ConcreteModel:
    """The user's 24-hour dispatch: least cost for the base load plus the demand."""
    m = pyo.ConcreteModel(name="day-ahead dispatch")
    m.T = pyo.Set(initialize=HOURS, ordered=True)
    m.GENS = pyo.Set(initialize=list(GENERATORS))
    m.q = pyo.Var(m.GENS, m.T, bounds={(g, t): (0.0, GENERATORS[g][2])
                                       for g in GENERATORS for t in HOURS})
    m.charge = pyo.Var(m.T, bounds=(0.0, STORAGE["power"]))
    m.discharge = pyo.Var(m.T, bounds=(0.0, STORAGE["power"]))
    m.soc = pyo.Var(m.T, bounds=(0.0, STORAGE["energy"]))
    m.demand = pyo.Param(m.T, mutable=True, initialize=0.0)
    m.ramp_up = pyo.Constraint(m.GENS, m.T, rule=_ramp_up)
    m.ramp_down = pyo.Constraint(m.GENS, m.T, rule=_ramp_down)
    m.storage = pyo.Constraint(m.T, rule=_charge_rule)
    m.end_of_day = pyo.Constraint(expr=m.soc[HOURS[-1]] >= STORAGE["start"])
    m.balance = pyo.Constraint(m.T, rule=_balance_rule)
    m.cost = pyo.Objective(expr=sum(
        GENERATORS[g][0] * m.q[g, t] + GENERATORS[g][1] * m.q[g, t] ** 2
        for g in m.GENS for t in m.T) + sum(
            STORAGE["wear"] * m.discharge[t]
            + STORAGE["stress"] * (m.charge[t] ** 2 + m.discharge[t] ** 2)
            for t in m.T))
    return m


def aggregators() -> dict[str, dict[int, Player]]:
    """Each aggregator's problem in each hour: its members' willingness to pay
    (b) follows the day, up to 40% higher at the evening peak."""
    members = {"A": ([0.2, 0.3, 0.25, 0.4], [9.0, 8.0, 10.0, 7.5], 1.0),
               "B": ([0.3, 0.25, 0.35], [9.5, 8.5, 9.0], 2.0)}
    out = {}
    for name, (a, b, alpha) in members.items():
        out[name] = {}
        for t in HOURS:
            scale = 1.0 + 0.2 * (1.0 + math.sin(math.pi * (t - 10) / 12.0))
            users = quadratic_users(a, [v * scale for v in b], f"{name.lower()}{t}_")
            out[name][t] = Player.aggregator(name, users, alpha=alpha)
    return out


def desks() -> tuple[tuple[Player, ...], tuple[int, ...], dict[str, dict]]:
    """The 48 desks (aggregator A or B in hour t, named 'A@t'), the hour of each,
    and each aggregator's problem per hour (for the blocks)."""
    per_hour = aggregators()
    players, hours = [], []
    for name, by_hour in per_hour.items():
        for t, player in by_hour.items():
            players.append(Player(f"{name}@{t}", player.members, player.fairness))
            hours.append(t)
    return tuple(players), tuple(hours), per_hour


def highs_prices(demands: np.ndarray) -> np.ndarray:
    """Hourly prices as HiGHS reports them: the duals of the user's balances."""
    m = dispatch_model()
    for t, value in zip(HOURS, demands):
        m.demand[t].set_value(float(value))
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    pyo.SolverFactory("highs").solve(m, options={"qp_regularization_value": 0.0})
    return np.array([m.dual[m.balance[t]] for t in HOURS])


def first_order_gaps(per_hour: dict[str, dict], purchases: dict[str, np.ndarray],
                     demands: np.ndarray, prices: np.ndarray,
                     own_slope: np.ndarray) -> np.ndarray:
    """Each desk's total derivative lambda + (dp_t/dD_t) dW/dp, relative to its
    lambda, from the aggregators' blocks inside the user's model: one indexed
    ``AggregatorBlock`` per aggregator, at the equilibrium purchases and prices,
    all allocations solved by Ipopt in one solve of the user's model (its dispatch
    at the equilibrium demands stays feasible; its cost is switched off)."""
    m = dispatch_model()
    for t, value in zip(HOURS, demands):
        m.demand[t].set_value(float(value))
    m.hour_price = pyo.Param(m.T, mutable=True, initialize=dict(zip(HOURS, prices)))
    m.cost.deactivate()
    blocks = []
    for name, by_hour in per_hour.items():
        bought = pyo.Param(m.T, mutable=True,
                           initialize=dict(zip(HOURS, purchases[name])))
        m.add_component(f"bought_{name}", bought)
        bids = AggregatorBlock(m.T, player=by_hour, purchase=bought,
                               price=m.hour_price, objective=False)
        m.add_component(f"bids_{name}", bids)
        for t in HOURS:
            bids[t].initialize()
            blocks.append((bids[t], by_hour[t].fairness, HOURS.index(t)))
    m.welfare = pyo.Objective(expr=sum(b.welfare for b, _, _ in blocks),
                              sense=pyo.maximize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    solver = ipopt_solver()
    result = solver.solve(m)
    if result.solver.termination_condition != pyo.TerminationCondition.optimal:
        raise RuntimeError(f"blocks: {result.solver.termination_condition}")
    gaps = []
    for block, fairness, k in blocks:
        lam = block.lambda_(solver)
        # dW/dp at a fixed purchase: -sum_i phi'(s_i + e_i) x_i (the envelope).
        dw_dp = -sum(pyo.value(fairness.dphi(block.surplus[i] + block.surplus_floor[i])
                               * block.x[i]) for i in block.MEMBERS)
        gaps.append((lam + own_slope[k] * dw_dp) / max(abs(lam), 1e-12))
    return np.array(gaps)


def main() -> dict:
    m = dispatch_model()
    nodal = NodalMarketPrice(m, m.demand, m.balance)
    players, hours, per_hour = desks()
    eq = solve_nodal_equilibrium(NodalGame(players, hours, nodal))
    purchases = {name: np.array([eq.profile[j] for j, p in enumerate(players)
                                 if p.name.startswith(f"{name}@")])
                 for name in per_hour}
    print(f"hourly desks' equilibrium: converged {eq.converged} in {eq.rounds} rounds, "
          f"max regret {eq.max_regret:.1e}, equilibrium {eq.is_equilibrium}")
    for name, bought in purchases.items():
        print(f"  {name} buys {np.round(bought, 3).tolist()}")
    print(f"  prices {np.round(eq.prices, 3).tolist()}")
    duals = highs_prices(eq.demands)
    price_gap = float(np.max(np.abs(duals - eq.prices) / np.maximum(1.0, np.abs(duals))))
    print(f"  HiGHS's duals of the user's model differ by {price_gap:.1e}")
    slope = np.diag(nodal.jacobian(eq.demands))
    inside = np.concatenate([purchases[n] for n in per_hour]) > 1e-6
    gaps = first_order_gaps(per_hour, purchases, eq.demands, eq.prices, slope)
    worst = float(np.max(np.abs(gaps[inside]), initial=0.0))
    print(f"blocks inside the user's model: lambda + (dp/dD) dW/dp over lambda, worst "
          f"{worst:.1e} over {int(inside.sum())} desks")
    ok = eq.is_equilibrium and price_gap <= PRICE_RTOL and worst <= FOC_RTOL
    print("all cross-checks passed" if ok else "A CROSS-CHECK FAILED")
    return {"ok": ok, "purchases": purchases, "prices": eq.prices,
            "demands": eq.demands, "players": per_hour, "certified": eq.certified}


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
