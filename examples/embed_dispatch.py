"""An aggregator inside a user's economic dispatch (Pyomo), solved by Ipopt.

Three generators with quadratic costs serve a fixed base load plus the aggregator's
purchase y; the price p is every running generator's marginal cost. The aggregator
chooses y and splits it among its members by proportional fairness (alpha = 1),
knowing that buying more raises p. Run: python examples/embed_dispatch.py
"""

import pyomo.environ as pyo

from aggregame import Player, quadratic_users
from aggregame.models import AggregatorBlock
from aggregame.solvers.inner.pyomo_backend import ipopt_solver

GENERATORS = {"g1": (1.0, 0.05), "g2": (2.0, 0.02), "g3": (3.0, 0.1)}  # c1, c2


def marginal_cost(m, g):
    c1, c2 = GENERATORS[g]
    return m.p == c1 + 2 * c2 * m.q[g]


def main() -> None:
    users = quadratic_users([0.5, 0.3, 0.8, 0.4], [6.0, 9.0, 4.0, 12.0])
    player = Player.aggregator("agg", users, alpha=1.0)
    m = pyo.ConcreteModel(name="dispatch")
    m.G = pyo.Set(initialize=list(GENERATORS))
    m.q = pyo.Var(m.G, bounds=(0, None), initialize=10.0)
    m.y = pyo.Var(bounds=(0, None))
    m.p = pyo.Var(initialize=8.0)  # above member u2's U'(0) = 4
    m.base_load = pyo.Param(initialize=50.0)
    m.eq_supply = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.base_load + m.y)
    m.eq_mc = pyo.Constraint(m.G, rule=marginal_cost)
    m.agg = AggregatorBlock(player=player, purchase=m.y, price=m.p, objective=False)
    m.agg.initialize()  # strictly feasible start at p = 8
    m.obj = pyo.Objective(expr=m.agg.welfare, sense=pyo.maximize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    solver = ipopt_solver()
    res = solver.solve(m)
    print(f"termination: {res.solver.termination_condition}")
    print(f"price p = {m.p.value:.6f}, purchase y = {m.y.value:.6f}")
    for i in m.agg.MEMBERS:
        print(f"  {i}: x = {m.agg.x[i].value:9.6f}  surplus = "
              f"{pyo.value(m.agg.surplus[i]):9.6f}")
    print(f"lambda (gain of the objective per unit delivered) = "
          f"{m.agg.lambda_(solver):.6f}")


if __name__ == "__main__":
    main()
