"""A price from your own Pyomo supply model: 5 generators, 2 aggregators, a large user.

The supply side is an economic dispatch written in plain Pyomo: generators with
quadratic costs c1 q + c2 q^2 and capacities, a mutable demand D and the balance
sum(q) = D. ``MarketPrice`` turns it into the game's price p(Y): the marginal cost of
serving Y, kinked where a generator starts or is full. Two aggregators (alpha = 1 and
alpha = 2) and a large user then play the purchase game against that price, solved by
best response. Cross-checks, each printed with its error:

1. the price against the closed-form merit order (``MeritOrderPrice``) of the same
   generators: values, right derivatives and kinks;
2. the equilibrium with each price (same profile);
3. the stacked KKT system, solved by Ipopt from its own start, with the affine piece of
   the supply curve where the equilibrium lies (a smooth closed form, which the KKT
   model needs): same profile, and its total inside that piece.

Run: python examples/market_price.py (exit 1 if a cross-check fails).
"""

import sys

import numpy as np
import pyomo.environ as pyo

from aggregame import Game, Player, quadratic_users
from aggregame.price import AffinePrice, MeritOrderPrice
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.kkt.solve import solve_kkt
from aggregame.solvers.market import MarketPrice

C1 = (1.0, 2.0, 3.0, 4.0, 6.0)  # $/MWh
C2 = (0.05, 0.02, 0.1, 0.03, 0.05)  # $/MWh^2
CAP = (20.0, 40.0, 30.0, 50.0, 60.0)  # MWh
#: Agreement asked of each cross-check (relative).
PRICE_RTOL, PROFILE_RTOL = 1e-9, 1e-6


def capacity_rule(m, g):
    return (0.0, CAP[g])


def dispatch_model() -> pyo.ConcreteModel:
    """The user's supply model: least-cost dispatch of demand D."""
    m = pyo.ConcreteModel(name="dispatch")
    m.G = pyo.RangeSet(0, len(C1) - 1)
    m.q = pyo.Var(m.G, bounds=capacity_rule)
    m.demand = pyo.Param(mutable=True, initialize=0.0)
    m.balance = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.demand)
    m.cost = pyo.Objective(expr=sum(C1[g] * m.q[g] + C2[g] * m.q[g] ** 2 for g in m.G))
    return m


def players() -> tuple[Player, ...]:
    a = quadratic_users([0.02, 0.05, 0.03, 0.08], [9.0, 7.0, 11.0, 6.0], "a")
    b = quadratic_users([0.04, 0.03, 0.06], [8.0, 10.0, 5.0], "b")
    return (Player.aggregator("A", a, alpha=1.0), Player.aggregator("B", b, alpha=2.0),
            Player.individual(quadratic_users([0.01], [12.0], "large")[0]))


def check_price(market: MarketPrice, merit: MeritOrderPrice) -> bool:
    top = market.capacity
    ys = np.concatenate([[0.0, 1e-9], np.linspace(0.0, top, 2001)[:-1],
                         merit.breakpoints(0.0, top)])
    scale = np.maximum(1.0, np.abs(merit.value(ys)))
    val = float(np.max(np.abs(market.value(ys) - merit.value(ys)) / scale))
    der = float(np.max(np.abs(market.derivative(ys) - merit.derivative(ys))
                       / np.maximum(1.0, merit.derivative(ys))))
    kinks = market.breakpoints(0.0, 2 * top)
    same = kinks.size == merit.breakpoints(0.0, 2 * top).size
    kink = float(np.max(np.abs(kinks - merit.breakpoints(0.0, 2 * top)))) if same \
        else np.inf
    print(f"supply curve: {len(market.segments)} segments from {market.solves} HiGHS "
          f"solves, kinks at Y = {np.round(kinks, 4).tolist()}")
    print(f"  HiGHS's dual of the balance vs the polished price: {market.dual_gap:.1e}")
    print(f"  vs the closed-form merit order: value {val:.1e}, right derivative "
          f"{der:.1e}, kinks {kink:.1e}")
    return max(val, der, kink / top) <= PRICE_RTOL


def show(label: str, eq) -> None:
    print(f"{label}: profile {np.round(eq.profile, 6).tolist()}, total "
          f"{eq.profile.sum():.6f}, price {eq.price:.6f}, max regret "
          f"{eq.max_regret:.1e}, equilibrium {eq.is_equilibrium}")


def main() -> int:
    m = dispatch_model()
    market = MarketPrice(m, m.demand, m.balance)
    merit = MeritOrderPrice(C1, C2, CAP)
    ok = check_price(market, merit)
    eq = solve_equilibrium(Game(players(), market))
    ref = solve_equilibrium(Game(players(), merit))
    show("best response, market-model price", eq)
    show("best response, merit-order price ", ref)
    gap = float(np.max(np.abs(eq.profile - ref.profile)) / max(1.0, eq.profile.max()))
    print(f"  profiles differ by {gap:.1e} (relative)")
    ok &= eq.is_equilibrium and ref.is_equilibrium and gap <= PROFILE_RTOL
    total = float(eq.profile.sum())
    seg = market.segments[int(np.searchsorted([s.lo for s in market.segments], total,
                                              side="right")) - 1]
    piece = AffinePrice(seg.p0, seg.slope)  # p = p0 + slope Y on [lo, hi)
    kkt = solve_kkt(Game(players(), piece))
    show("stacked KKT, the affine piece     ", kkt)
    inside = seg.lo < float(kkt.profile.sum()) < seg.hi
    gap = float(np.max(np.abs(kkt.profile - eq.profile)) / max(1.0, eq.profile.max()))
    print(f"  piece Y in [{seg.lo:.4f}, {seg.hi:.4f}): p = {seg.p0:.6f} + "
          f"{seg.slope:.6f} Y; KKT total inside: {inside}; differs from best response "
          f"by {gap:.1e}")
    ok &= kkt.converged and inside and gap <= PROFILE_RTOL
    print("all cross-checks passed" if ok else "A CROSS-CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
