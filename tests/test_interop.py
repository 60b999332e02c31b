"""aggregame inside a user's Pyomo model: the block class, its start, refused rules,
units, pickling, the sign of lambda with two solvers, and kinked prices."""

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import FD_RTOL, needs_ipopt

from aggregame import (
    EmbeddingError,
    Game,
    Player,
    UnsupportedProblemError,
    quadratic_users,
)
from aggregame.models import AggregatorBlock, add_aggregator, build_aggregator_model
from aggregame.models.aggregator import aggregator_lambda
from aggregame.price import MeritOrderPrice

ROOT = Path(__file__).resolve().parents[1]
#: Two solves of the same model agree to Ipopt's tolerance (tol = 1e-9).
SOLVE_ATOL = 1e-7
#: Step of the finite difference of J in the dual-sign test (J is smooth there).
SIGN_STEP = 1e-4
GENERATORS = {"g1": (1.0, 0.05), "g2": (2.0, 0.02), "g3": (3.0, 0.1)}


@pytest.fixture
def player():
    users = quadratic_users([0.5, 0.3, 0.8, 0.4], [6.0, 9.0, 4.0, 12.0])
    return Player.aggregator("agg", users, alpha=1.0)


def ipopt():
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    return ipopt_solver()


def dispatch_model(player, price_start, *, block=True, surplus_var=None):
    """3 generators, quadratic costs, price = every generator's marginal cost; the
    aggregator chooses its purchase against that supply curve."""
    m = pyo.ConcreteModel()
    m.G = pyo.Set(initialize=list(GENERATORS))
    m.q = pyo.Var(m.G, bounds=(0, None), initialize=10.0)
    m.y = pyo.Var(bounds=(0, None), initialize=0.0)
    m.p = pyo.Var(initialize=price_start)
    m.base_load = pyo.Param(initialize=50.0)
    m.eq_supply = pyo.Constraint(expr=sum(m.q[g] for g in m.G) == m.base_load + m.y)
    m.eq_mc = pyo.Constraint(m.G, rule=_marginal_cost_rule)
    if block:
        m.agg = AggregatorBlock(player=player, purchase=m.y, price=m.p, objective=False)
        m.agg.initialize()
    else:
        m.agg = pyo.Block()
        add_aggregator(m.agg, player, purchase=m.y, price=m.p, objective=False,
                       surplus_var=surplus_var)
    m.obj = pyo.Objective(expr=m.agg.welfare, sense=pyo.maximize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


def _marginal_cost_rule(m, g):
    c1, c2 = GENERATORS[g]
    return m.p == c1 + 2 * c2 * m.q[g]


@needs_ipopt
@pytest.mark.solver
def test_block_class_and_function_give_the_same_solution(player):
    a = build_aggregator_model(player, purchase=6.0, price=1.5)
    m = pyo.ConcreteModel()
    m.agg = AggregatorBlock(player=player)
    m.agg.purchase.set_value(6.0)
    m.agg.price.set_value(1.5)
    m.agg.initialize()
    for model in (a, m):
        assert ipopt().solve(model).solver.termination_condition == \
            pyo.TerminationCondition.optimal
    np.testing.assert_allclose([a.x[i].value for i in a.MEMBERS],
                               [m.agg.x[i].value for i in m.agg.MEMBERS], atol=SOLVE_ATOL)
    assert sum(m.agg.x[i].value for i in m.agg.MEMBERS) == pytest.approx(6.0)


@needs_ipopt
@pytest.mark.solver
def test_bounded_start_solves_the_dispatch_where_the_plain_start_fails(player):
    """Price started above a member's U'(0) + 1: Ipopt's bound push puts x_i = 0.01,
    where that member's s + eps < 0, and log fails at iteration 0."""
    plain = dispatch_model(player, 8.0, block=False, surplus_var=False)
    res = ipopt().solve(plain)
    assert res.solver.termination_condition != pyo.TerminationCondition.optimal
    assert "invalid number" in str(res.solver.message).lower()
    low = dispatch_model(player, 3.0, block=False, surplus_var=False)
    assert ipopt().solve(low).solver.termination_condition == \
        pyo.TerminationCondition.optimal
    for start in (3.0, 8.0, 20.0):
        m = dispatch_model(player, start)
        assert ipopt().solve(m).solver.termination_condition == \
            pyo.TerminationCondition.optimal
        assert m.y.value == pytest.approx(low.y.value, rel=1e-7)
        assert m.p.value == pytest.approx(low.p.value, rel=1e-7)


@needs_ipopt
@pytest.mark.solver
def test_dispatch_purchase_is_the_best_response_to_the_merit_order(player):
    """Independent check: the aggregator's purchase in the dispatch model is its
    best response to the same supply curve written as a closed form."""
    from aggregame.solvers.equilibrium.best_response import best_response
    from aggregame.solvers.inner.native import NativeInner

    m = dispatch_model(player, 8.0)
    ipopt().solve(m)
    c1 = tuple(v[0] for v in GENERATORS.values())
    c2 = tuple(v[1] for v in GENERATORS.values())
    price = MeritOrderPrice(c1, c2, (1e4,) * 3)
    game = Game((player,), price)
    br = best_response(NativeInner(game, 0), 50.0, strategy="scan")
    # floor rule eps is identical in both; the native backend is independent code
    assert br.y == pytest.approx(m.y.value, rel=1e-6)


@pytest.mark.unit
def test_a_leximin_block_is_refused_and_total_surplus_is_built():
    """The block states the minimum level only: a leximin aggregator (the default
    max-min reading) would be a silently different model."""
    users = quadratic_users([0.5, 0.3], [6.0, 9.0])
    m = pyo.ConcreteModel()
    m.y, m.p = pyo.Var(), pyo.Var()
    with pytest.raises(UnsupportedProblemError, match="leximin.*'agg'"):
        m.a = AggregatorBlock(player=Player.aggregator("agg", users, alpha="inf"),
                              purchase=m.y, price=m.p)
    m.b = AggregatorBlock(player=Player.aggregator("agg", users, alpha="inf",
                                                   maxmin="total-surplus"),
                          purchase=m.y, price=m.p)
    assert m.b.component("x") is not None


@pytest.mark.unit
@pytest.mark.parametrize("rule,alpha", [("viable", 1.0), ("viable", 0.0),
                                        ("strict", 1.0), ("strict", 0.5)])
def test_rules_that_cannot_be_embedded_are_refused(rule, alpha):
    users = quadratic_users([0.5], [6.0])
    p = Player.aggregator("agg", users, alpha=alpha, rule=rule)
    m = pyo.ConcreteModel()
    m.y, m.p = pyo.Var(), pyo.Var()
    with pytest.raises(EmbeddingError, match=f"rule '{rule}'.*cannot be embedded"):
        m.a = AggregatorBlock(player=p, purchase=m.y, price=m.p)
    with pytest.raises(EmbeddingError, match="use rule='floor'"):
        add_aggregator(pyo.Block(concrete=True), p, purchase=m.y, price=m.p)
    # With a parameter price the solve helper does the bookkeeping: accepted.
    build_aggregator_model(p, 1.0, 1.0)


@pytest.mark.unit
def test_strict_is_embedded_where_it_is_smooth_and_rule_option_overrides():
    users = quadratic_users([0.5], [6.0])
    m = pyo.ConcreteModel()
    m.y, m.p = pyo.Var(), pyo.Var()
    m.a = AggregatorBlock(player=Player.aggregator("a", users, alpha=0, rule="strict"),
                          purchase=m.y, price=m.p)
    m.b = AggregatorBlock(player=Player.aggregator("b", users, alpha=1, rule="viable"),
                          purchase=m.y, price=m.p, rule="floor", eps=0.5)
    assert m.b.player.fairness.rule.value == "floor" and m.b.player.fairness.eps == 0.5
    with pytest.raises(EmbeddingError, match="option 'rule' must be one of"):
        m.c = AggregatorBlock(player=m.b.player, rule="fair")


def _usd():
    try:
        return pyo.units.USD
    except AttributeError:
        pyo.units.load_definitions_from_strings(["USD = [currency]"])
        return pyo.units.USD


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, "inf"])
def test_units_are_consistent_in_a_model_with_units(alpha):
    from pyomo.util.check_units import assert_units_consistent

    usd, mwh = _usd(), pyo.units.MWh
    users = quadratic_users([0.5, 0.3], [6.0, 9.0])
    player = Player.aggregator("agg", users, alpha=alpha, maxmin="total-surplus")
    m = pyo.ConcreteModel()
    m.y = pyo.Var(units=mwh, bounds=(0, None))
    m.p = pyo.Var(units=usd / mwh)
    m.agg = AggregatorBlock(player=player, purchase=m.y, price=m.p, objective=False,
                            units=(mwh, usd))
    m.obj = pyo.Objective(expr=m.agg.welfare, sense=pyo.maximize)
    assert_units_consistent(m)
    assert pyo.units.get_units(m.agg.x["u0"]) == mwh
    # The same block without units builds the very same expressions' values.
    plain = pyo.ConcreteModel()
    plain.agg = AggregatorBlock(player=player)
    for blk in (m.agg, plain.agg):
        for i in blk.MEMBERS:
            blk.x[i].set_value(1.0)
    m.p.set_value(2.0)
    plain.agg.price.set_value(2.0)
    assert pyo.value(m.agg.total_surplus) == pytest.approx(
        pyo.value(plain.agg.total_surplus))


@needs_ipopt
@pytest.mark.solver
def test_pickled_models_solve_to_the_same_answer(player):
    model = build_aggregator_model(player, purchase=6.0, price=1.5)
    m = pyo.ConcreteModel()
    m.y, m.p = pyo.Var(initialize=6.0), pyo.Var(initialize=1.5)
    m.y.fix()
    m.p.fix()
    m.agg = AggregatorBlock(player=player, purchase=m.y, price=m.p)
    m.agg.initialize()
    for original in (model, m):
        copy = pickle.loads(pickle.dumps(original))
        ipopt().solve(original)
        ipopt().solve(copy)
        xs = [v.value for v in original.component_data_objects(pyo.Var)]
        ys = [v.value for v in copy.component_data_objects(pyo.Var)]
        np.testing.assert_allclose(xs, ys, atol=SOLVE_ATOL)


def _linear_inner(player, y, price, sense):
    """alpha = 0 inner problem as a QP HiGHS accepts: s_i >= 0 is x_i <= xbar_i."""
    m = build_aggregator_model(player, purchase=y, price=price)
    m.ineq_surplus.deactivate()
    xbar = player.zero_surplus_consumption(price)
    for k, i in enumerate(m.MEMBERS):
        m.x[i].setub(float(xbar[k]))
    if sense == pyo.minimize:
        m.obj.deactivate()
        m.neg = pyo.Objective(expr=-m.welfare, sense=pyo.minimize)
    return m


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("sense", [pyo.maximize, pyo.minimize])
@pytest.mark.parametrize("solver", ["cyipopt", "highs"])
def test_lambda_has_one_sign_for_every_solver(sense, solver):
    users = quadratic_users([0.5, 0.3, 0.8], [6.0, 9.0, 7.0])
    player = Player.aggregator("agg", users, alpha=0.0)
    y, price = 5.0, 1.5
    opt = ipopt() if solver == "cyipopt" else pyo.SolverFactory(solver)
    m = _linear_inner(player, y, price, sense)
    opt.solve(m)
    lam = aggregator_lambda(m, solver)

    def welfare(at):
        mm = _linear_inner(player, at, price, sense)
        opt.solve(mm)
        return pyo.value(mm.welfare)

    fd = (welfare(y + SIGN_STEP) - welfare(y - SIGN_STEP)) / (2 * SIGN_STEP)
    assert lam > 0 and fd > 0
    assert lam == pytest.approx(fd, rel=FD_RTOL * 10)


@pytest.mark.unit
def test_unknown_solver_sign_is_refused():
    m = build_aggregator_model(Player.aggregator("a", quadratic_users([1.0], [2.0])))
    m.dual[m.eq_balance] = 1.0
    with pytest.raises(EmbeddingError, match="no known sign convention"):
        aggregator_lambda(m, "mysolver")


MERIT = ((1.0, 2.0, 3.0, 4.0, 6.0), (0.05, 0.02, 0.1, 0.03, 0.05),
         (20.0, 40.0, 30.0, 50.0, 60.0))


@pytest.mark.unit
def test_merit_order_price_against_its_supply_curve():
    price = MeritOrderPrice(*MERIT)
    ys = np.linspace(0.5, 199.5, 57)
    p = price.value(ys)
    np.testing.assert_allclose(price.supply(p), ys, rtol=1e-12)  # independent inverse
    h = 1e-7
    right = (price.value(ys + h) - p) / h
    np.testing.assert_allclose(price.derivative(ys), right, rtol=1e-5)
    kinks = price.breakpoints(0.0, 1e9)
    # At each kink a generator starts or is full: its supply hits 0 or its capacity.
    c1, c2, cap = (np.array(v) for v in MERIT)
    q = (price.value(kinks)[:, None] - c1) / (2 * c2)
    assert np.all(np.min(np.abs(np.stack([q, q - cap])), axis=0).min(axis=1) < 1e-9)
    with pytest.raises(EmbeddingError, match="kinked"):
        price.value(pyo.Var(), lib=pyo)


@pytest.mark.unit
def test_scan_samples_price_kinks():
    from aggregame.solvers.equilibrium import scan as br

    game = Game((Player.aggregator("a", quadratic_users([0.01], [11.0])),),
                MeritOrderPrice(*MERIT))
    y_max = game.feasible_max(0, 30.0)
    pts = br.price_out_points(game, 0, 30.0, y_max)
    kinks = game.price.breakpoints(30.0, 30.0 + y_max) - 30.0
    assert kinks.size >= 3 and set(kinks) <= set(pts)


# -- MarketPrice: the price read from the user's supply model -----------------------
#: MarketPrice against the closed-form merit order (both exact up to rounding).
MARKET_RTOL = 1e-9
#: HiGHS's own dual of the balance (unregularized QP) against the polished price.
HIGHS_DUAL_RTOL = 1e-6
needs_highs = pytest.mark.skipif(not pyo.SolverFactory("highs").available(False),
                                 reason="HiGHS (highspy) not installed")


def supply_model(c1, c2, cap, form="supply == D"):
    """The user's dispatch: quadratic costs, capacities, demand D, one balance."""
    m = pyo.ConcreteModel(name="supply")
    m.G = pyo.RangeSet(0, len(c1) - 1)
    m.q = pyo.Var(m.G, bounds=lambda m, g: (0.0, cap[g]))
    m.D = pyo.Param(mutable=True, initialize=0.0)
    supply = sum(m.q[g] for g in m.G)
    m.balance = pyo.Constraint(expr={"supply == D": supply == m.D,
                                     "D == supply": m.D == supply,
                                     "supply - D == 0": supply - m.D == 0}[form])
    m.cost = pyo.Objective(expr=sum(c1[g] * m.q[g] + c2[g] * m.q[g] ** 2 for g in m.G))
    return m


def random_merit_orders(n_sets, seed=7):
    """Generator sets without a gap in their supply curve (the closed form refuses
    gaps), 2 to 8 generators, costs rounded so that some kinks coincide."""
    from aggregame.errors import GameDefinitionError

    rng, out = np.random.default_rng(seed), []
    while len(out) < n_sets:
        k = int(rng.integers(2, 9))
        gens = (tuple(rng.uniform(0, 5, k).round(2)), tuple(rng.uniform(0.005, 0.2, k)),
                tuple(rng.uniform(5, 60, k)))
        try:
            MeritOrderPrice(*gens)
        except GameDefinitionError:
            continue
        out.append(gens)
    return out


#: Hand-made corners: a generator starting exactly when another is full, two equal
#: generators, a first segment of 1e-4 (HiGHS reports demands that small infeasible),
#: large numbers.
MERIT_CORNERS = [((1.0, 2.0, 2.0), (0.05, 0.1, 0.1), (10.0, 20.0, 20.0)),
                 ((1.0, 1.0, 2.0), (0.05, 0.05, 0.1), (10.0, 10.0, 20.0)),
                 ((1.0, 1.000001, 1.5), (0.05, 0.05, 0.1), (1e-4, 10.0, 20.0)),
                 ((10.0, 20.0, 30.0), (5.0, 1.0, 2.0), (1e3, 2e3, 1e3))]


@needs_highs
@pytest.mark.solver
@pytest.mark.parametrize("gens", random_merit_orders(6) + MERIT_CORNERS)
def test_market_price_matches_the_merit_order(gens):
    from aggregame.solvers.market import MarketPrice

    m = supply_model(*gens)
    price, ref = MarketPrice(m, m.D, m.balance), MeritOrderPrice(*gens)
    top = sum(gens[2])
    kinks = ref.breakpoints(0.0, 2 * top)
    np.testing.assert_allclose(price.breakpoints(0.0, 2 * top), kinks,
                               rtol=MARKET_RTOL, atol=MARKET_RTOL * top)
    ys = np.concatenate([[0.0, 1e-12, 1e-7 * top], np.linspace(0.0, top, 301)[:-1],
                         kinks[:-1]])
    np.testing.assert_allclose(price.value(ys), ref.value(ys), rtol=MARKET_RTOL)
    # At a kink both give the right derivative: the slope after it.
    np.testing.assert_allclose(price.derivative(ys), ref.derivative(ys),
                               rtol=MARKET_RTOL)
    assert price.value(top * 1.01) == np.inf and price.derivative(top) == np.inf
    prices = np.linspace(min(gens[0]) - 1, float(ref.value(top)) + 1, 41)
    np.testing.assert_allclose([price.inverse(p) for p in prices],
                               [ref.inverse(p) for p in prices], rtol=MARKET_RTOL,
                               atol=MARKET_RTOL * top)
    assert price.dual_gap <= HIGHS_DUAL_RTOL  # the solver's own dual agrees


@needs_ipopt
@pytest.mark.solver
def test_market_price_with_an_interior_point_solver_is_exact_too():
    """Ipopt stops near, not at, the bounds: the active-set repair still finds each
    segment's exact piece."""
    from aggregame.solvers.market import MarketPrice

    m, ys = supply_model(*MERIT), np.linspace(0.0, 199.0, 51)
    price = MarketPrice(m, m.D, m.balance, solver=ipopt())
    ref = MeritOrderPrice(*MERIT)
    np.testing.assert_allclose(price.value(ys), ref.value(ys), rtol=MARKET_RTOL)
    np.testing.assert_allclose(price.derivative(ys), ref.derivative(ys),
                               rtol=MARKET_RTOL)
    assert price.dual_gap <= HIGHS_DUAL_RTOL  # Ipopt's dual, its sign handled


@needs_highs
@pytest.mark.solver
@pytest.mark.parametrize("form", ["D == supply", "supply - D == 0"])
def test_market_price_does_not_depend_on_how_the_balance_is_written(form):
    from aggregame.solvers.market import MarketPrice

    m, ys = supply_model(*MERIT, form=form), np.linspace(0.0, 199.0, 51)
    np.testing.assert_allclose(MarketPrice(m, m.D, m.balance).value(ys),
                               MeritOrderPrice(*MERIT).value(ys), rtol=MARKET_RTOL)


def _bad_models():
    def model(change):
        m = supply_model(*MERIT)
        m.P = pyo.Param(initialize=1.0)
        m.E = pyo.Param(mutable=True, initialize=1.0)
        return change(m) or m

    def nonlinear(m):
        m.cost.deactivate()
        m.exp_cost = pyo.Objective(expr=sum(pyo.exp(m.q[g]) for g in m.G))

    return [
        (model(lambda m: None), "P", "balance",
         "field 'demand' must be a mutable Param"),
        (model(lambda m: None), "D", "q", "field 'balance' must be one constraint"),
        (model(lambda m: None), "E", "balance", "does not depend on the demand"),
        (model(lambda m: setattr(m.cost, "sense", pyo.maximize)), "D", "balance",
         "must be minimized"),
        (model(nonlinear), "D", "balance", "must be linear or quadratic"),
        (model(lambda m: m.q[1].setub(None)), "D", "balance",
         "demand 'D' of model 'supply' has no upper limit"),
        (model(lambda m: setattr(m, "cap0", pyo.Constraint(expr=m.q[0] ** 2 <= 400))),
         "D", "balance", "constraint 'cap0' must be linear"),
    ]


@needs_highs
@pytest.mark.solver
@pytest.mark.parametrize("m, demand, balance, message", _bad_models())
def test_market_price_refuses_models_it_cannot_read(m, demand, balance, message):
    from aggregame.solvers.market import MarketPrice

    bal = m.q[0] if balance == "q" else m.component(balance)
    with pytest.raises(EmbeddingError, match=message) as err:
        MarketPrice(m, m.component(demand), bal)
    assert "\n" not in str(err.value)


@needs_highs
@pytest.mark.solver
def test_equilibrium_is_the_same_with_the_market_model_and_the_merit_order():
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
    from aggregame.solvers.market import MarketPrice

    players = (Player.aggregator("a", quadratic_users([0.02, 0.05, 0.08],
                                                      [9.0, 7.0, 6.0]), alpha=1.0),
               Player.individual(quadratic_users([0.01], [12.0], "big")[0]))
    m = supply_model(*MERIT)
    eqs = [solve_equilibrium(Game(players, price))
           for price in (MarketPrice(m, m.D, m.balance), MeritOrderPrice(*MERIT))]
    assert all(eq.is_equilibrium for eq in eqs)
    np.testing.assert_allclose(eqs[0].profile, eqs[1].profile, rtol=1e-6)
    assert eqs[0].price == pytest.approx(eqs[1].price, rel=1e-6)


@pytest.mark.solver
@pytest.mark.parametrize("name, marker", [("embed_dispatch.py", "lambda"),
                                          ("market_price.py",
                                           "all cross-checks passed")])
def test_examples_run(name, marker):
    out = subprocess.run([sys.executable, str(ROOT / "examples" / name)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert marker in out.stdout
