"""The recipes of docs/architecture.md, kept true: a new priced-out rule, a new
max-min reading and a new price family are each one class, defined here, and a game
runs through the native backend end to end with them.

Each is checked against a computation that does not go through it: the toy rule
against the built-in rule it must equal, against the safe bisection and the
certificate; the toy price against the first-order conditions of a Cournot game,
solved here, and against the stacked KKT system.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest
from conftest import needs_ipopt
from scipy.optimize import fsolve

from aggregame import Game, LinearPrice, Player, User, quadratic_users
from aggregame.allocation import inner_setup
from aggregame.price import Price
from aggregame.rules import MaxMinRule, PricedOutRule
from aggregame.solvers.equilibrium.dynamics import solve_equilibrium
from aggregame.solvers.inner.native import NativeInner
from aggregame.solvers.inner.safe import lambda_allocation
from aggregame.utilities import LogUtility

#: Two solves of one equilibrium agree to this (relative to the largest purchase).
SAME_RTOL = 1e-10
#: An equilibrium agrees with an independent root of its first-order conditions.
ROOT_RTOL = 1e-9


# -- a priced-out rule: one class ----------------------------------------------------
class DoubledFloorRule(PricedOutRule):
    """The floor rule with twice the floor: Phi uses s + 2 eps for every member."""

    value = "toy-doubled-floor"
    floor_required = True

    def member_terms(self, priced_out, fairness):
        return 1.0, self.floor(fairness.eps)

    def floor(self, eps):
        return 2 * eps

    def jumps_at_price_out(self, fairness):
        return False

    def needs_price_status(self, fairness):
        return False


class FlooredViableRule(PricedOutRule):
    """Members priced in count with s + eps; a priced-out member leaves Phi (weight
    0) and the max-min minimum: J jumps where a member is priced out."""

    value = "toy-floored-viable"

    def member_terms(self, priced_out, fairness):
        return (0.0, 1.0) if priced_out else (1.0, self.floor(fairness.eps))

    def floor(self, eps):
        return eps

    def counted(self, priced_out):
        return ~np.asarray(priced_out, dtype=bool)


def _aggregators(alpha, rule, eps, maxmin="total-surplus", c=0.4):
    rng = np.random.default_rng(3)
    users = quadratic_users(rng.uniform(0.2, 0.8, 6), rng.uniform(1.0, 9.0, 6), "q")
    users += [User(f"l{i}", LogUtility(w)) for i, w in enumerate((2.0, 5.0))]
    return Game(tuple(Player.aggregator(name, users[k::2], alpha=alpha, rule=rule,
                                        eps=eps, maxmin=maxmin)
                      for k, name in enumerate("AB")), LinearPrice(c))


@pytest.mark.unit
def test_a_rule_class_is_registered_by_its_name():
    assert PricedOutRule("toy-doubled-floor") is DoubledFloorRule()
    assert "toy-floored-viable" in PricedOutRule.names()
    with pytest.raises(ValueError, match="exists already"):
        type("Again", (PricedOutRule,), {"value": "floor"})


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.0, float("inf")])
def test_a_new_rule_runs_end_to_end_as_the_rule_it_equals(alpha):
    """The doubled floor at eps is the built-in floor rule at 2 eps: a solve that
    asked which rule it has, instead of the rule, would tell them apart."""
    toy = solve_equilibrium(_aggregators(alpha, "toy-doubled-floor", 0.05))
    floor = solve_equilibrium(_aggregators(alpha, "floor", 0.1))
    assert toy.is_equilibrium and floor.is_equilibrium
    scale = max(1.0, float(np.abs(floor.profile).max()))
    assert np.abs(toy.profile - floor.profile).max() <= SAME_RTOL * scale
    assert toy.to_dict()["players"][0]["rule"] == "toy-doubled-floor"


@pytest.mark.unit
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_a_jumping_rule_runs_end_to_end(alpha):
    """A rule of its own (no built-in equals it): the equilibrium is certified by the
    certificate's own search, members are priced out at it, and its inner rows equal
    the safe bisection, which shares none of the fast path's numerics, given the
    rule's terms."""
    game = _aggregators(alpha, "toy-floored-viable", 0.05, c=0.8)
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium
    total = float(eq.profile.sum())
    priced_out = 0
    for j, player in enumerate(game.players):
        others = total - eq.profile[j]
        ys = np.linspace(0.1, 0.9, 5) * game.feasible_max(j, others)
        rows = NativeInner(game, j).solve(ys, others)
        setup = inner_setup(game, j, ys, others)
        np.testing.assert_array_equal(
            setup.weight, np.where(setup.priced_out, 0.0, 1.0))
        for k, y in enumerate(ys):
            x, _ = lambda_allocation(player, float(y), float(setup.price[k]),
                                     setup.xbar[k], setup.weight[k], setup.floor[k])
            np.testing.assert_allclose(rows.x[k], x, rtol=0,
                                       atol=1e-8 * setup.cap[k])
        priced_out += int(inner_setup(game, j, eq.profile[j:j + 1],
                                      others).priced_out.sum())
    assert priced_out > 0  # the rule's priced-out branch was taken


# -- a max-min reading: one class ----------------------------------------------------
class LowestLevelReading(MaxMinRule):
    """The smallest level, ties broken by the total surplus, under another name."""

    value = "toy-lowest-level"


@pytest.mark.unit
def test_a_new_maxmin_reading_runs_end_to_end_as_the_reading_it_equals():
    toy = solve_equilibrium(_aggregators(float("inf"), "floor", 0.05,
                                         maxmin="toy-lowest-level"))
    known = solve_equilibrium(_aggregators(float("inf"), "floor", 0.05))
    assert toy.is_equilibrium and known.is_equilibrium
    scale = max(1.0, float(np.abs(known.profile).max()))
    assert np.abs(toy.profile - known.profile).max() <= SAME_RTOL * scale


# -- a price family: one class ---------------------------------------------------------
@dataclass(frozen=True)
class RootPrice(Price):
    """p = c Y sqrt(1 + Y / w): increasing and convex, written once over ``lib``."""

    c: float
    w: float
    kind = "toy-root"
    # What the price knows of itself: convex, so its slope's range on an interval
    # is its slopes at the ends (Price.slope_range), which the certificate needs
    # to close its bounds between samples at second order.
    convex = True

    def value(self, total, lib=np):
        return self.c * total * lib.sqrt(1 + total / self.w)

    def derivative(self, total, lib=np):
        root = lib.sqrt(1 + total / self.w)
        return self.c * root + self.c * total / (2 * self.w * root)

    def describe(self):
        return {"price": self.kind, "c": self.c, "w": self.w}


def _cournot(price):
    a, b = np.array([0.3, 0.5, 0.2]), np.array([6.0, 8.0, 7.0])
    users = quadratic_users(a, b, "u")
    return Game(tuple(Player.individual(u) for u in users), price), a, b


@pytest.mark.unit
def test_a_new_price_family_runs_end_to_end():
    """One-member players (a Cournot game): at an interior equilibrium each y_j
    solves b_j - 2 a_j y_j - p(Y) - p'(Y) y_j = 0, solved here by fsolve."""
    price = RootPrice(0.2, 5.0)
    game, a, b = _cournot(price)
    eq = solve_equilibrium(game)
    assert eq.is_equilibrium

    def first_order(y):
        total = y.sum()
        return b - 2 * a * y - price.value(total) - price.derivative(total) * y

    root = fsolve(first_order, np.ones(3), xtol=1e-13)
    assert np.abs(first_order(root)).max() < 1e-12 and np.all(root > 0)
    np.testing.assert_allclose(eq.profile, root, rtol=ROOT_RTOL)


@pytest.mark.solver
@needs_ipopt
def test_a_new_price_family_reaches_the_pyomo_models():
    """The price's one formula over ``lib`` is the stacked KKT model's price too:
    best response and the KKT solve agree on a game of aggregators."""
    from aggregame.solvers.kkt.solve import solve_kkt

    game = replace(_aggregators(1.0, "floor", 0.05), price=RootPrice(0.2, 5.0))
    br = solve_equilibrium(game)
    kkt = solve_kkt(game)
    assert br.is_equilibrium and kkt.is_equilibrium
    np.testing.assert_allclose(kkt.profile, br.profile, rtol=1e-6)
