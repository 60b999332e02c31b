"""MarketPrice on real market models: fixed loads, minimum outputs, demand bids and
the price jumps they make, each against an independent computation (the closed-form
merit order, or the solver's own dual at demands away from the kinks)."""

import numpy as np
import pyomo.environ as pyo
import pytest

from aggregame import Game, Player, quadratic_users
from aggregame.errors import EmbeddingError, PriceJumpError
from aggregame.price import LinearPrice, MeritOrderPrice

pytestmark = pytest.mark.skipif(not pyo.SolverFactory("highs").available(False),
                                reason="HiGHS (highspy) not installed")

C1 = (1.0, 2.0, 3.0, 4.0, 6.0)
C2 = (0.05, 0.02, 0.1, 0.03, 0.05)
CAP = (20.0, 40.0, 30.0, 50.0, 60.0)
#: MarketPrice against a closed form (both exact up to rounding).
EXACT_RTOL = 1e-9
#: HiGHS's own dual (unregularized QP) against the polished price.
DUAL_RTOL = 1e-6


def market(base=0.0, bids=(), minimum=None, name="market"):
    """Five generators, a fixed load ``base``, demand bids (value, quantity) that
    are served or shed, minimum outputs."""
    m = pyo.ConcreteModel(name=name)
    m.G = pyo.RangeSet(0, len(C1) - 1)
    low = minimum or (0.0,) * len(C1)
    m.q = pyo.Var(m.G, bounds={g: (low[g], CAP[g]) for g in range(len(C1))})
    m.B = pyo.RangeSet(0, len(bids) - 1) if bids else pyo.Set(initialize=[])
    m.d = pyo.Var(m.B, bounds={k: (0.0, bids[k][1]) for k in range(len(bids))})
    m.D = pyo.Param(mutable=True, initialize=0.0)
    m.base = pyo.Param(initialize=base)
    m.balance = pyo.Constraint(expr=sum(m.q[g] for g in m.G)
                               == m.base + m.D + sum(m.d[k] for k in m.B))
    m.cost = pyo.Objective(expr=sum(C1[g] * m.q[g] + C2[g] * m.q[g] ** 2
                                    for g in m.G)
                           - sum(bids[k][0] * m.d[k] for k in m.B))
    return m


def highs_price(m, total):
    """The solver's own price at one demand: HiGHS's dual of the balance."""
    m.D.set_value(total)
    m.dual = m.component("dual") or pyo.Suffix(direction=pyo.Suffix.IMPORT)
    res = pyo.SolverFactory("highs").solve(m, options={"qp_regularization_value": 0})
    assert res.solver.termination_condition == pyo.TerminationCondition.optimal
    return float(m.dual[m.balance])


def _away_from(points, top, n=97):
    ys = np.linspace(0.01 * top, 0.99 * top, n)
    return ys[np.min(np.abs(ys[:, None] - np.asarray(points)[None, :]), axis=1)
              > 1e-3 * top]


@pytest.mark.solver
@pytest.mark.parametrize("base", [30.0, 150.0, 199.0])
def test_a_fixed_load_shifts_the_merit_order(base):
    from aggregame.solvers.market import MarketPrice

    m = market(base)
    price, merit = MarketPrice(m, m.D, m.balance), MeritOrderPrice(C1, C2, CAP)
    top = sum(CAP) - base
    assert price.capacity == pytest.approx(top, rel=EXACT_RTOL)
    ys = np.concatenate([np.linspace(0.0, top, 203)[:-1], [top * (1 - 1e-9)]])
    np.testing.assert_allclose(price.value(ys), merit.value(ys + base),
                               rtol=EXACT_RTOL)
    kinks = merit.breakpoints(base, base + 2 * top) - base
    np.testing.assert_allclose(price.breakpoints(0.0, 2 * top), kinks,
                               rtol=EXACT_RTOL, atol=EXACT_RTOL * top)
    assert price.value(top * 1.01) == np.inf and price.price_jumps == ()


@pytest.mark.solver
def test_minimum_outputs_and_bids_against_the_solvers_own_duals():
    from aggregame.solvers.market import MarketPrice

    for m in (market(30.0, minimum=(0.0, 10.0, 5.0, 0.0, 0.0)),
              market(0.0, bids=((25.0, 10.0), (8.0, 15.0))),
              market(20.0, bids=((5.0, 30.0),), minimum=(5.0, 0.0, 0.0, 10.0, 0.0))):
        price = MarketPrice(m, m.D, m.balance)
        top = price.capacity
        ys = _away_from(price.breakpoints(0.0, 2 * top), top)
        got = price.value(ys)
        np.testing.assert_allclose(got, [highs_price(m, y) for y in ys],
                                   rtol=DUAL_RTOL)
        assert np.all(np.diff(got) >= -1e-12)  # a convex cost: p never falls


@pytest.mark.solver
def test_jumps_are_found_with_both_sides_and_kept_apart():
    """A bid valued at 25 above the supply's last marginal cost (12): once every
    generator is full (Y = 190) the price must reach 25 to shed it, with nothing
    in between; a must-run unit above the market makes a jump too."""
    from aggregame.solvers.market import MarketPrice

    m = market(0.0, bids=((25.0, 10.0), (8.0, 15.0)))
    price = MarketPrice(m, m.D, m.balance)
    (jump,) = price.price_jumps
    assert jump.total == pytest.approx(190.0, rel=EXACT_RTOL)
    # Independent: the solver's price on either side of the jump.
    assert jump.below == pytest.approx(highs_price(m, 190.0 - 1e-3), abs=1e-3)
    assert jump.above == pytest.approx(highs_price(m, 190.0 + 1e-3), rel=DUAL_RTOL)
    assert price.jumps(0.0, 1e9).tolist() == [jump.total]
    assert jump.total in price.breakpoints(0.0, 1e9)
    # A sample a hair left of the jump stays on the left (no rounding across it).
    tiny = 1e-13 * price.capacity
    assert price.value(jump.total - tiny) == pytest.approx(jump.below, rel=1e-9)
    assert price.value(jump.total) == pytest.approx(jump.above)
    assert price.limit_below(jump.total) == pytest.approx(jump.below)
    assert price.describe()["jumps"][0]["above"] == pytest.approx(25.0)
    held = market(30.0, minimum=(0.0, 10.0, 5.0, 0.0, 0.0))
    must_run = MarketPrice(held, held.D, held.balance)
    (jump,) = must_run.price_jumps
    # Generators 0 and 1 full (3.0, 3.6), unit 2 held at its minimum 5 (cost 4.0).
    assert (jump.total, jump.below, jump.above) == pytest.approx((35.0, 3.6, 4.0))


@pytest.mark.solver
def test_an_equilibrium_at_a_jump_is_refused_in_one_line():
    """Two users who value energy between the two sides of the jump bunch at it:
    the dynamics stop a hair below Y = 190, where the samples of the regret scan
    cannot see the jump. refuse_at_jump says so."""
    from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
    from aggregame.solvers.market import MarketPrice, refuse_at_jump

    m = market(0.0, bids=((25.0, 10.0), (8.0, 15.0)))
    price = MarketPrice(m, m.D, m.balance)
    users = quadratic_users([0.01, 0.01], [26.0, 26.0])
    game = Game(tuple(Player.individual(u) for u in users), price)
    eq = solve_equilibrium(game)
    assert eq.profile.sum() == pytest.approx(190.0, rel=1e-9)
    with pytest.raises(PriceJumpError, match="sits at a price jump") as err:
        refuse_at_jump(game, eq.profile)
    assert "\n" not in str(err.value)
    # Away from the jump, and for a continuous price, nothing is refused.
    refuse_at_jump(game, eq.profile * 0.9)
    refuse_at_jump(Game(game.players, LinearPrice(0.05)), eq.profile)


@pytest.mark.solver
@pytest.mark.parametrize("change, message", [
    (lambda m: m.q[0].setlb(25.0), "infeasible at D = 0"),
    (lambda m: m.q[4].setub(None), "has no upper limit"),
])
def test_models_without_a_price_from_zero_are_refused(change, message):
    from aggregame.solvers.market import MarketPrice

    m = market(0.0, minimum=None)
    m.q[0].setub(30.0)
    change(m)
    with pytest.raises(EmbeddingError, match=message) as err:
        MarketPrice(m, m.D, m.balance)
    assert "\n" not in str(err.value)


@pytest.mark.solver
def test_the_curve_is_walked_not_probed():
    """One solve starts the map; each further piece comes from the previous one's
    binding conditions (the same pieces the solver would name)."""
    from aggregame.solvers.market import MarketPrice

    m = market(30.0)
    price = MarketPrice(m, m.D, m.balance)
    assert len(price.segments) >= 6 and price.solves <= 2
    mids = [(s.lo + s.hi) / 2 for s in price.segments]
    np.testing.assert_allclose([s.price(y) for s, y in zip(price.segments, mids)],
                               [highs_price(m, y) for y in mids], rtol=DUAL_RTOL)
