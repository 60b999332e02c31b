"""The supply model of dispatch.toml: least-cost dispatch of a demand D.

Named by the scenario as ``[market] model = "dispatch:dispatch_model"``; aggregame
imports this file from the scenario's folder only, and only with ``--allow-code``
(``allow_code=True`` in ``load_scenario``).
"""

import pyomo.environ as pyo

C1 = (1.0, 2.0, 3.0, 4.0, 6.0)  # $/MWh
C2 = (0.05, 0.02, 0.1, 0.03, 0.05)  # $/MWh^2
CAP = (20.0, 40.0, 30.0, 50.0, 60.0)  # MWh


def dispatch_model() -> pyo.ConcreteModel:
    """Generators with costs C1 q + C2 q^2 and capacities, a mutable Param
    ``demand`` and the Constraint ``balance``: sum(q) = demand."""
    m = pyo.ConcreteModel(name="dispatch")
    m.G = pyo.RangeSet(0, len(C1) - 1)
    m.q = pyo.Var(m.G, bounds=lambda m, g: (0.0, CAP[g]))
    m.demand = pyo.Param(mutable=True, initialize=0.0)
    m.balance = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.demand)
    m.cost = pyo.Objective(expr=sum(C1[g] * m.q[g] + C2[g] * m.q[g] ** 2
                                    for g in m.G))
    return m
