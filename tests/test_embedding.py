"""Aggregator blocks inside a user's model: indexed blocks, the bound form of the
alpha = 0 block, lambda with every solver, and every model the package builds
pickling and cloning. Each claim of README.md's section "Using aggregame inside your
Pyomo model" has a test here or in tests/test_interop.py."""

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pyomo.environ as pyo
import pytest
from conftest import needs_ipopt
from hypothesis import given
from hypothesis import strategies as st
from pyomo.core.expr.visitor import identify_variables

from aggregame import (
    EmbeddingError,
    Game,
    LinearPrice,
    Player,
    SolverOptionError,
    quadratic_users,
)
from aggregame.models import (
    AggregatorBlock,
    AggregatorBlockData,
    add_aggregator,
    build_aggregator_model,
)
from aggregame.models.duals import DualConvention, allocation_lambda, gives_duals

ROOT = Path(__file__).resolve().parents[1]
#: Central difference step of J(y) and its agreement with lambda. J is piecewise
#: quadratic in y (alpha = 0, quadratic members): the difference is exact within a
#: piece, so what is left is the solvers' own tolerance.
FD_STEP = 1e-4
LAMBDA_RTOL = 1e-6
#: SCIP's answer moves with its feasibility tolerance (1e-9 here).
SCIP_RTOL = 1e-7
#: Two solves of the same (copied) model agree to Ipopt's tolerance.
SOLVE_ATOL = 1e-7
HIGHS_EXACT = {"qp_regularization_value": 0.0}
SCIP_TIGHT = {"display/verblevel": 0, "numerics/feastol": 1e-9, "limits/gap": 0.0}


def _users():
    return quadratic_users([0.5, 0.3, 0.8], [6.0, 9.0, 7.0])


def _has(name, contrib=False):
    if contrib:
        from pyomo.contrib.solver.common.factory import SolverFactory
        return bool(SolverFactory(name).available())
    return bool(pyo.SolverFactory(name).available(exception_flag=False))


needs_highs = pytest.mark.skipif(not _has("highs"), reason="highspy not installed")
needs_scip = pytest.mark.skipif(not _has("scip_direct", contrib=True),
                                reason="pyscipopt not installed")


# -- indexed blocks ----------------------------------------------------------------
def _vars_of(con):
    return {v.name for v in identify_variables(con.body, include_fixed=True)}


def _hourly_model():
    m = pyo.ConcreteModel()
    m.T = pyo.RangeSet(3)
    m.y = pyo.Var(m.T, bounds=(0, None), initialize=2.0)
    m.p = pyo.Var(m.T, initialize=1.5)
    m.tariff = pyo.Param(m.T, mutable=True, initialize={1: 1.0, 2: 2.0, 3: 3.0})
    m.shared_price = pyo.Param(mutable=True, initialize=2.5)
    return m


def _double_purchase(m, t):
    return 2 * m.y[t]


@pytest.mark.unit
def test_an_indexed_block_reads_each_option_at_its_index():
    m = _hourly_model()
    player = Player.aggregator("a", _users(), alpha=1.0)
    m.a = AggregatorBlock(m.T, player=player, purchase=m.y, price=m.p, objective=False)
    m.b = AggregatorBlock(m.T, player=player, purchase=lambda t: _double_purchase(m, t),
                          price=m.tariff, objective=False)
    m.c = AggregatorBlock(m.T, player={t: player for t in m.T}, purchase=m.y,
                          price=m.shared_price, objective=False)
    for t in m.T:
        assert _vars_of(m.a[t].eq_balance) - {v.name for v in m.a[t].x.values()} == \
            {f"y[{t}]"}
        assert f"p[{t}]" in {v.name for v in identify_variables(
            m.a[t].surplus["u0"].expr)}
        assert f"y[{t}]" in _vars_of(m.b[t].eq_balance)
        m.b[t].x["u0"].set_value(1.0)
        # s = U(1) - p * 1 with p the hour's tariff: the right Param per index.
        util = player.members[0].utility
        assert pyo.value(m.b[t].surplus["u0"]) == pytest.approx(
            util.U(1.0, util.params()) - m.tariff[t].value)
    assert isinstance(m.a[2], AggregatorBlockData)


@pytest.mark.unit
@pytest.mark.parametrize("option", ["purchase", "price"])
@pytest.mark.parametrize("shared", ["scalar var", "entry", "expression"])
def test_a_shared_scalar_variable_is_refused_naming_the_option(option, shared):
    m = _hourly_model()
    m.v = pyo.Var()
    value = {"scalar var": m.v, "entry": m.y[1], "expression": 2 * m.p[1]}[shared]
    options = {"purchase": m.y, "price": m.p, option: value}
    with pytest.raises(EmbeddingError, match=f"indexed but option '{option}'") as err:
        m.a = AggregatorBlock(m.T, player=Player.aggregator("a", _users()), **options)
    assert "\n" not in str(err.value) and "rule" in str(err.value)


@pytest.mark.unit
def test_shared_constants_and_deliberate_rules_are_accepted():
    m = _hourly_model()
    m.v = pyo.Var()
    m.a = AggregatorBlock(m.T, player=Player.aggregator("a", _users()), purchase=m.y,
                          price=m.shared_price)
    m.b = AggregatorBlock(m.T, player=Player.aggregator("a", _users()), purchase=4.0,
                          price=lambda t: m.v)
    assert all(m.b[t]._aggregame.price is m.v for t in m.T)


@pytest.mark.unit
def test_indexed_options_on_a_scalar_block_or_a_missing_index_are_refused():
    m = _hourly_model()
    player = Player.aggregator("a", _users())
    with pytest.raises(EmbeddingError, match="option 'purchase' is the indexed"):
        m.a = AggregatorBlock(player=player, purchase=m.y, price=1.0)
    with pytest.raises(EmbeddingError, match="option 'price': the mapping has no key 3"):
        m.b = AggregatorBlock(m.T, player=player, purchase=m.y, price={1: 1.0, 2: 1.0})
    with pytest.raises(EmbeddingError, match="option 'player' must give a Player"):
        m.c = AggregatorBlock(m.T, player=lambda t: "not a player", purchase=m.y)


def _plain_rule(b, t):
    m = b.model()
    add_aggregator(b, Player.aggregator("a", _users(), alpha=1.0), purchase=m.y[t],
                   price=m.p[t], objective=False)


def _hourly_dispatch(plain: bool):
    """Three hours, each with a linear supply curve p_t = c_t (base_t + y_t), the
    aggregator's block per hour; the model maximizes the sum of hourly welfares."""
    m = _hourly_model()
    m.c = pyo.Param(m.T, initialize={1: 0.05, 2: 0.1, 3: 0.2})
    m.eq_price = pyo.Constraint(m.T, rule=lambda m, t: m.p[t] == m.c[t] * (10 + m.y[t]))
    if plain:
        m.agg = pyo.Block(m.T, rule=_plain_rule)
    else:
        m.agg = AggregatorBlock(m.T, player=Player.aggregator("a", _users(), alpha=1.0),
                                purchase=m.y, price=m.p, objective=False)
    for t in m.T:
        m.agg[t].initialize()
    m.obj = pyo.Objective(expr=sum(m.agg[t].welfare for t in m.T), sense=pyo.maximize)
    m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


@needs_ipopt
@pytest.mark.solver
@pytest.mark.parametrize("plain", [False, True])
def test_every_block_data_has_initialize_and_lambda(plain):
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    m = _hourly_dispatch(plain)
    solver = ipopt_solver()
    assert solver.solve(m).solver.termination_condition == \
        pyo.TerminationCondition.optimal
    for t in m.T:
        lam = m.agg[t].lambda_(solver)
        # Independent: the allocation's own marginal welfare (no dual involved).
        assert lam == pytest.approx(allocation_lambda(m.agg[t]), rel=1e-6)
        assert lam > 0
    if plain:  # the same answer as the block class
        ref = _hourly_dispatch(False)
        solver.solve(ref)
        np.testing.assert_allclose([m.y[t].value for t in m.T],
                                   [ref.y[t].value for t in m.T], rtol=1e-7)


# -- max-min with the block's eps / rule --------------------------------------------
@pytest.mark.unit
def test_eps_and_rule_keep_the_total_surplus_maxmin_reading():
    player = Player.aggregator("mm", _users(), alpha="inf", maxmin="total-surplus")
    m = pyo.ConcreteModel()
    m.a = AggregatorBlock(player=player, eps=0.05)
    m.b = AggregatorBlock(player=player, rule="floor", eps=0.2)
    for blk, eps in ((m.a, 0.05), (m.b, 0.2)):
        assert blk.player.fairness.maxmin.value == "total-surplus"
        assert blk.player.fairness.eps == eps
        assert blk.component("min_surplus") is not None
    with pytest.raises(EmbeddingError, match=r"options \['eps'\].*eps"):
        m.c = AggregatorBlock(player=player, eps=0.0)


# -- the bound form of s_i >= 0 -------------------------------------------------------
@pytest.mark.unit
@given(a=st.lists(st.floats(0.01, 5.0), min_size=1, max_size=5),
       price=st.floats(0.0, 12.0))
def test_bound_form_caps_follow_the_price(a, price):
    b = np.linspace(0.5, 11.0, len(a))
    player = Player.aggregator("q", quadratic_users(a, b), alpha=0.0)
    m = build_aggregator_model(player, 0.0, 0.0, surplus_form="bound")
    m.price.set_value(price)  # after the build: the bounds are expressions of it
    caps = [m.x[i].ub for i in m.MEMBERS]
    np.testing.assert_allclose(caps, player.zero_surplus_consumption(price),
                               rtol=1e-12, atol=1e-12)
    assert m.component("ineq_surplus") is None


@pytest.mark.unit
def test_bound_form_is_refused_where_it_is_not_s_nonnegative():
    from aggregame import LogUtility, User

    m = pyo.ConcreteModel()
    m.p = pyo.Var()
    q = Player.aggregator("q", _users())
    with pytest.raises(EmbeddingError, match="'surplus_form' = 'bound' needs a price"):
        m.a = AggregatorBlock(player=q, price=m.p, surplus_form="bound")
    logs = Player.aggregator("l", [User("w", LogUtility(2.0))])
    with pytest.raises(EmbeddingError, match="member 'w' is 'log'"):
        build_aggregator_model(logs, 1.0, 1.0, surplus_form="bound")
    with pytest.raises(EmbeddingError, match="option 'surplus_form' must be one of"):
        build_aggregator_model(q, 1.0, 1.0, surplus_form="box")


def _qp(sense, y, price=1.5, duals=True):
    """The alpha = 0 block, bound form, maximized or as min -welfare."""
    m = build_aggregator_model(Player.aggregator("agg", _users(), alpha=0.0), y, price,
                               surplus_form="bound", duals=duals)
    if sense == pyo.minimize:
        m.obj.deactivate()
        m.neg = pyo.Objective(expr=-m.welfare, sense=pyo.minimize)
    return m


def _lp(sense, y, duals=True):
    """The block (bound form) under a linear objective of the user's: value w_i per
    unit given to member i. APPSI's HiGHS takes LPs only (no QP in Pyomo 6.10)."""
    m = pyo.ConcreteModel()
    m.y = pyo.Param(mutable=True, initialize=y)
    m.agg = AggregatorBlock(player=Player.aggregator("agg", _users(), alpha=0.0),
                            purchase=m.y, price=1.5, objective=False,
                            surplus_form="bound")
    w = dict(zip(m.agg.MEMBERS, (3.0, 1.0, 2.0)))
    value = sum(w[i] * m.agg.x[i] for i in m.agg.MEMBERS)
    m.obj = pyo.Objective(expr=value if sense == pyo.maximize else -value, sense=sense)
    if duals:
        m.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return m


def _solvers():
    from pyomo.contrib.solver.common.factory import SolverFactory as Contrib

    def cyipopt():
        from aggregame.solvers.inner.pyomo_backend import ipopt_solver
        return ipopt_solver(), {}

    marks = {"cyipopt": needs_ipopt, "highs": needs_highs, "contrib-highs": needs_highs,
             "scip": needs_scip, "legacy-scip": needs_scip,
             "ipopt": pytest.mark.skipif(shutil.which("ipopt") is None,
                                         reason="no ipopt executable on PATH")}
    makers = {
        "cyipopt": cyipopt,
        "highs": lambda: (pyo.SolverFactory("highs"), {"options": HIGHS_EXACT}),
        "contrib-highs": lambda: (Contrib("highs"), {"solver_options": HIGHS_EXACT}),
        "scip": lambda: (Contrib("scip_direct"), {"solver_options": SCIP_TIGHT}),
        "legacy-scip": lambda: (pyo.SolverFactory("scip_direct"),
                                {"options": SCIP_TIGHT}),
        "ipopt": lambda: (pyo.SolverFactory("ipopt"), {}),
    }
    return [pytest.param(makers[k], id=k, marks=marks[k]) for k in makers]


def _objective(m):
    return pyo.value(next(m.component_data_objects(pyo.Objective, active=True)))


def _fd_gain(build, sense, y, make):
    """Gain of the optimal objective per unit of purchase, by central difference."""
    def best(at):
        solver, kw = make()
        mm = build(sense, at)
        solver.solve(mm, **kw)
        return _objective(mm)
    sign = 1.0 if sense == pyo.maximize else -1.0
    return sign * (best(y + FD_STEP) - best(y - FD_STEP)) / (2 * FD_STEP)


@pytest.mark.solver
@pytest.mark.parametrize("sense", [pyo.maximize, pyo.minimize])
@pytest.mark.parametrize("make", _solvers())
def test_lambda_of_the_qp_block_is_the_gain_per_unit_for_every_solver(make, sense):
    solver, kw = make()
    scip = not gives_duals(solver)
    m = _qp(sense, 5.0, duals=not scip)
    solver.solve(m, **kw)
    lam = m.lambda_(solver)
    fd = _fd_gain(lambda s, y: _qp(s, y, duals=not scip), sense, 5.0, make)
    assert lam > 0
    assert lam == pytest.approx(fd, rel=SCIP_RTOL * 10 if scip else LAMBDA_RTOL)
    # The closed form: at the price 1.5 the interior members share U' - p = lambda.
    x = np.array([m.x[i].value for i in m.MEMBERS])
    a, b = (np.array([u.utility.a for u in _users()]),
            np.array([u.utility.b for u in _users()]))
    inside = x > 1e-6
    np.testing.assert_allclose(b[inside] - 2 * a[inside] * x[inside] - 1.5, lam,
                               rtol=SCIP_RTOL * 10)


@needs_highs
@pytest.mark.solver
@pytest.mark.parametrize("sense", [pyo.maximize, pyo.minimize])
def test_lambda_with_appsi_highs_on_a_linear_objective(sense):
    solver = pyo.SolverFactory("appsi_highs")
    m = _lp(sense, 10.0)
    solver.solve(m)
    lam = m.agg.lambda_(solver)
    fd = _fd_gain(lambda s, y: _lp(s, y), sense, 10.0,
                  lambda: (pyo.SolverFactory("appsi_highs"), {}))
    # Members by value 3, 2, 1: xbar = 9, 6.875, ...; y = 10 reaches the second.
    assert lam == pytest.approx(fd, rel=LAMBDA_RTOL) and lam == pytest.approx(2.0)


@needs_scip
@pytest.mark.solver
def test_scip_solves_a_model_built_without_duals():
    from pyomo.contrib.solver.common.factory import SolverFactory as Contrib

    with_suffix = _qp(pyo.maximize, 5.0)
    with pytest.raises(NotImplementedError):
        Contrib("scip_direct").solve(with_suffix, solver_options={
            "display/verblevel": 0})
    m = _qp(pyo.maximize, 5.0, duals=False)
    Contrib("scip_direct").solve(m, solver_options=SCIP_TIGHT)
    assert sum(m.x[i].value for i in m.MEMBERS) == pytest.approx(5.0, rel=1e-8)


@pytest.mark.unit
def test_unknown_sign_message_names_a_real_argument():
    m = _qp(pyo.maximize, 5.0)
    m.dual[m.eq_balance] = 1.0
    with pytest.raises(EmbeddingError, match="in place of the solver pass "
                       "DualConvention.PYOMO") as err:
        m.lambda_("mysolver")
    assert "convention=" not in str(err.value)
    assert m.lambda_(DualConvention.PYOMO) == 1.0  # what the message says works


@pytest.mark.unit
def test_scip_verbosity_other_than_silent_is_refused():
    from aggregame.solvers.solver_choice import SolverSpec

    with pytest.raises(SolverOptionError, match="display/verblevel.*only 0"):
        SolverSpec("scip", {"display/verblevel": 4})


# -- every model pickles and clones ---------------------------------------------------
def _game():
    return Game((Player.aggregator("A", _users(), alpha=1.0),
                 Player.aggregator("B", quadratic_users([0.2, 0.4], [8.0, 5.0], "b"),
                                   alpha="inf", maxmin="total-surplus"),
                 Player.individual(quadratic_users([0.1], [9.0], "L")[0])),
                LinearPrice(0.05))


def _models():
    from aggregame.models.complementarity import add_reformulation
    from aggregame.models.joint import build_joint_best_response
    from aggregame.models.kkt import build_kkt_model, player_status

    game = _game()
    status = [player_status(game, j, 2.0, 1.0) for j in range(3)]
    fb, relaxed = build_kkt_model(game, status), build_kkt_model(game, status)
    add_reformulation(fb, "fischer-burmeister")
    add_reformulation(relaxed, "relaxation")
    block = _hourly_model()
    block.agg = AggregatorBlock(block.T, player=game.players[0], purchase=block.y,
                                price=block.p, objective=False)
    plain = _hourly_model()
    plain.agg = pyo.Block(plain.T, rule=_plain_rule)
    return {"aggregator": build_aggregator_model(game.players[0], 5.0, 1.5),
            "aggregator-bound": _qp(pyo.maximize, 5.0),
            "indexed-block": block, "plain-block": plain,
            "joint-alpha": build_joint_best_response(game, 0, 3.0),
            "joint-maxmin": build_joint_best_response(game, 1, 3.0),
            "kkt": build_kkt_model(game, status), "kkt-fischer-burmeister": fb,
            "kkt-relaxation": relaxed}


def _evaluate(model, values):
    """Every active constraint body and objective at the given variable values."""
    for v in model.component_data_objects(pyo.Var):
        v.set_value(values[v.name], skip_validation=True)
    return [pyo.value(c.body) for c in model.component_data_objects(
        pyo.Constraint, active=True)] + [pyo.value(o.expr) for o in
                                         model.component_data_objects(pyo.Objective)]


@pytest.mark.unit
@pytest.mark.parametrize("copy", ["pickle", "clone"])
def test_every_model_pickles_and_clones_into_the_same_model(copy):
    rng = np.random.default_rng(3)
    for name, model in _models().items():
        twin = pickle.loads(pickle.dumps(model)) if copy == "pickle" else model.clone()
        names = sorted(v.name for v in model.component_data_objects(pyo.Var))
        assert names == sorted(v.name for v in twin.component_data_objects(pyo.Var))
        values = dict(zip(names, rng.uniform(0.1, 2.0, len(names))))
        np.testing.assert_allclose(_evaluate(twin, values), _evaluate(model, values),
                                   rtol=1e-14, err_msg=name)
        # The copy owns its components: changing it leaves the original alone.
        first = next(twin.component_data_objects(pyo.Var))
        first.set_value(123.0, skip_validation=True)
        assert model.find_component(first.name).value != 123.0


@pytest.mark.unit
def test_copies_keep_their_block_methods():
    for name in ("indexed-block", "plain-block"):
        model = _models()[name]
        for twin in (pickle.loads(pickle.dumps(model)), model.clone()):
            twin.p[2].set_value(2.0)
            twin.y[2].set_value(3.0)
            twin.agg[2].initialize()  # acts on the copy, not on the original
            assert sum(twin.agg[2].x[i].value for i in twin.agg[2].MEMBERS) == \
                pytest.approx(3.0)
            assert model.agg[2].x["u0"].value == 0.0


@needs_ipopt
@pytest.mark.solver
def test_a_copied_joint_model_solves_to_the_same_answer():
    from aggregame.models.joint import build_joint_best_response
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    model = build_joint_best_response(_game(), 0, 3.0)
    purchases = []
    for m in (model, pickle.loads(pickle.dumps(model)), model.clone()):
        for i in m.MEMBERS:
            m.x[i].set_value(0.5 * m.x[i].ub)
        assert ipopt_solver().solve(m).solver.termination_condition == \
            pyo.TerminationCondition.optimal
        purchases.append(m.y.value)
    assert purchases[0] > 0
    np.testing.assert_allclose(purchases[1:], purchases[0], atol=SOLVE_ATOL)


# -- the README's claims ------------------------------------------------------------
def _readme_section():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("### Using aggregame inside your Pyomo model", 1)[1].split(
        "\n## ", 1)[0]


@pytest.mark.unit
def test_readme_lists_exactly_the_block_options():
    options = re.search(r"Options \(a ConfigDict\): (.*?)\.", _readme_section(),
                        re.DOTALL).group(1)
    assert set(re.findall(r"`(\w+)`", options)) == set(AggregatorBlockData.CONFIG)
