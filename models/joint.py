"""Joint best-response model of one player: purchase and allocation at once.

Player j's best response against the others' total Y_-j is one optimization over
(y_j, x_j): y_j = sum_i x_ji, so choosing the allocation chooses the purchase:

    max  Phi_j(s + e)  s.t.  p = p(Y_-j + y_j)                     (eq_price)
                             s_i = U_i(x_i) - p x_i                  (eq_surplus)
                             sum_i x_i = y_j                         (eq_balance)
                             0 <= x_i <= xbar_i,  s_i >= 0,  0 <= y_j <= y_max

with Phi the alpha-fair welfare (paper eq. 3) and e_i the floor eps of the ``floor``
priced-out rule. It is nonconvex through the product p x_i, so a local solver may
stop at a local maximum; a global solver (SCIP) proves an upper bound on it, which is
what solvers/certify/global_bound.py uses. Max-min (alpha = inf) maximizes an epigraph
level t <= s_i + e_i (``obj``); its total-surplus tie-break is a second objective
``obj_tiebreak`` (deactivated) under ``ineq_level_floor`` (t >= level_floor,
deactivated), which the solve helper switches on with level_floor = t* - tol.

Why auxiliary variables. The price p and the surpluses s_i are Vars tied to their
formulas by equalities, not Expressions: SCIP then sees one bilinear term p x_i per
member, and phi's argument s_i + e_i is a variable with the finite bounds
[e_i, e_i + smax_i], so log and negative powers (alpha >= 1) stay finite on the whole
box without SCIP having to infer it from s_i >= 0. SCIP's spatial branch and bound
needs finite bounds on every variable that enters a nonlinear term. The terms are
phi(s + e) = s + e (alpha = 0), log(s + e) (alpha = 1), (s + e)^(1-alpha)/(1-alpha)
(other alpha; negative for alpha > 1), all finite because s + e >= e > 0. Bounds
(p_lo = p(Y_-j): the price only rises with y_j)

    y_j   in [0, game.feasible_max(j, Y_-j)]      (no member can be paid for beyond)
    x_i   in [0, min(xbar_i(p_lo), y_max)]        (zero-surplus consumption at p_lo)
    p     in [p_lo, p(Y_-j + y_max)]
    s_i   in [0, (U_i'(0) - p_lo)^+ xbar_i]       (U concave, U(0) = 0: U(x) <= U'(0) x)
    t     in [min e_i, max (smax_i + e_i)]        (max-min only)

Only the ``floor`` rule is modelled. Under ``viable`` and ``strict`` which members
count in Phi depends on the price, so on y_j: a member leaves Phi (viable) or pins
it to -inf (strict, alpha >= 1) once p(Y_-j + y_j) >= U_i'(0). Modelling that needs
one binary per member (z_i = 1 iff U_i'(0) > p, linked to y_j by big-M constraints
on the price) and the term z_i phi(s_i + e_i) with a finite stand-in for z_i = 0;
this module refuses those rules with :class:`GlobalCertificateError` instead of
building a model whose bound would be wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.errors import GlobalCertificateError
from aggregame.players import Game, Player
from aggregame.utilities import Utility


def check_supported(game: Game, j: int) -> None:
    """Raise :class:`GlobalCertificateError` if player j's model would be wrong."""
    if not 0 <= j < len(game.players):
        raise GlobalCertificateError(
            f"joint best response: player index must be in [0, {len(game.players)}), "
            f"got {j!r}")
    fairness = game.players[j].fairness
    rule = fairness.rule
    if rule.jumps_at_price_out(fairness):
        raise GlobalCertificateError(
            f"player '{game.players[j].name}': the global certificate models the "
            f"'floor' priced-out rule only, got rule '{rule.value}' (its member set "
            "depends on the price and would need a binary per member)")


def variable_bounds(game: Game, j: int, others_total: float) -> dict[str, Any]:
    """Finite bounds of every variable of player j's joint model (see module doc).

    Returns a dict with ``y_max`` and ``price`` (float pairs), and per-member arrays
    ``x_max`` and ``s_max``.
    """
    player = game.players[j]
    y_max = float(game.feasible_max(j, others_total))
    p_lo = float(game.price.value(others_total))
    p_hi = float(game.price.value(others_total + y_max))
    x_max = np.minimum(player.zero_surplus_consumption(p_lo), y_max)
    s_max = np.maximum(player.marginal_at_zero - p_lo, 0.0) * x_max
    return {"y_max": y_max, "price": (p_lo, max(p_hi, p_lo)), "x_max": x_max,
            "s_max": s_max}


@dataclass(frozen=True)
class _JointSpec:
    """What the rule functions of a joint model read (kept on the block, so the
    rules are module-level functions and the model pickles)."""

    utilities: dict[str, Utility]
    floor: float


def _eq_surplus_rule(b: Any, i: str) -> Any:
    util = b._joint.utilities[i]
    return b.surplus[i] == util.U(b.x[i], util.params(), lib=pyo) - b.price * b.x[i]


def _ineq_maxmin_rule(b: Any, i: str) -> Any:
    return b.level <= b.surplus[i] + b._joint.floor


def _declare_vars(block: pyo.Block, player: Player, bounds: dict[str, Any]) -> None:
    names = [m.name for m in player.members]
    block.MEMBERS = pyo.Set(initialize=names, ordered=True,
                            doc="members i of the aggregator")
    block.y = pyo.Var(bounds=(0.0, bounds["y_max"]), initialize=0.0,
                      doc="y_j: energy bought by the aggregator [unit]")
    block.x = pyo.Var(block.MEMBERS, initialize=0.0,
                      bounds={n: (0.0, v) for n, v in zip(names, bounds["x_max"])},
                      doc="x_i: energy allocated to member i [unit]")
    block.price = pyo.Var(bounds=bounds["price"], initialize=bounds["price"][0],
                          doc="p = p(Y_-j + y_j): wholesale price [$/unit]")
    block.surplus = pyo.Var(block.MEMBERS, initialize=0.0,
                            bounds={n: (0.0, v) for n, v in zip(names,
                                                                 bounds["s_max"])},
                            doc="s_i = U_i(x_i) - p x_i >= 0: member surplus [$]")


def _declare_constraints(block: pyo.Block, game: Game, player: Player,
                         others_total: float) -> None:
    block._joint = _JointSpec({m.name: m.utility for m in player.members},
                              player.fairness.floor)
    block.eq_price = pyo.Constraint(
        expr=block.price == game.price.value(others_total + block.y, lib=pyo),
        doc="p = p(Y_-j + y_j): the price moves with the player's own purchase")
    block.eq_surplus = pyo.Constraint(block.MEMBERS, rule=_eq_surplus_rule,
                                      doc="s_i = U_i(x_i) - p x_i (bilinear in p, x)")
    block.eq_balance = pyo.Constraint(
        expr=sum(block.x[i] for i in block.MEMBERS) == block.y,
        doc="sum_i x_i = y_j")


def _declare_welfare(block: pyo.Block, player: Player, s_max: np.ndarray) -> None:
    fairness = player.fairness
    floor = fairness.floor
    block.total_surplus = pyo.Expression(
        expr=sum(block.surplus[i] for i in block.MEMBERS),
        doc="sum_i s_i [$]: the tie-break of max-min")
    if not fairness.is_maxmin:
        block.welfare = pyo.Expression(
            expr=sum(fairness.phi(block.surplus[i] + floor, lib=pyo)
                     for i in block.MEMBERS),
            doc=f"J_j = Phi_alpha(s + e), alpha = {fairness.alpha:g}")
        block.obj = pyo.Objective(expr=block.welfare, sense=pyo.maximize,
                                  doc="maximize the alpha-fair welfare")
        return
    top = float(s_max.max()) + floor if s_max.size else floor
    block.level = pyo.Var(bounds=(floor, top), initialize=floor,
                          doc="t: epigraph of min_i (s_i + e_i) [$]")
    block.ineq_maxmin = pyo.Constraint(
        block.MEMBERS, rule=_ineq_maxmin_rule, doc="t <= s_i + e_i for every member")
    block.welfare = pyo.Expression(expr=block.level, doc="J_j = min_i (s_i + e_i) [$]")
    block.obj = pyo.Objective(expr=block.level, sense=pyo.maximize,
                              doc="first stage of max-min: the level")
    block.level_floor = pyo.Param(mutable=True, initialize=floor, within=pyo.Reals,
                                  doc="lower bound on t in the tie-break stage [$]")
    block.ineq_level_floor = pyo.Constraint(
        expr=block.level >= block.level_floor,
        doc="second stage: keep the level within tol of the first stage's")
    block.ineq_level_floor.deactivate()
    block.obj_tiebreak = pyo.Objective(expr=block.total_surplus, sense=pyo.maximize,
                                       doc="second stage of max-min: total surplus")
    block.obj_tiebreak.deactivate()


def add_joint_best_response(block: pyo.Block, game: Game, j: int,
                            others_total: float) -> None:
    """Declare player j's joint best-response problem on ``block``; returns nothing.

    Parameters
    ----------
    block : pyomo Block (or ConcreteModel)
        Receives the Set ``MEMBERS``; Vars ``y``, ``x``, ``price``, ``surplus`` (and
        ``level`` for max-min); Constraints ``eq_price``, ``eq_surplus``,
        ``eq_balance`` (and ``ineq_maxmin``, ``ineq_level_floor``); Expressions
        ``welfare`` and ``total_surplus``; the maximize Objective ``obj`` (and the
        deactivated ``obj_tiebreak`` for max-min).
    game : Game
    j : int
        Index of the player in ``game.players``.
    others_total : float
        Y_-j >= 0, the other players' total purchase (a number: the variable bounds
        are computed from it).

    Raises
    ------
    GlobalCertificateError
        If player j does not use the ``floor`` rule (see the module docstring).
    """
    check_supported(game, j)
    if not (math.isfinite(others_total) and others_total >= 0):
        raise GlobalCertificateError(
            f"joint best response: others_total must be finite and >= 0, got "
            f"{others_total!r}")
    for name in ("y", "x", "eq_balance", "obj"):
        if block.component(name) is not None:
            raise ValueError(f"block {block.name!r} already has a component {name!r}; "
                             "add each player to its own block")
    player = game.players[j]
    bounds = variable_bounds(game, j, float(others_total))
    _declare_vars(block, player, bounds)
    _declare_constraints(block, game, player, float(others_total))
    _declare_welfare(block, player, bounds["s_max"])


def build_joint_best_response(game: Game, j: int, others_total: float
                              ) -> pyo.ConcreteModel:
    """Standalone joint best-response model of player j (add_joint_best_response)."""
    name = game.players[j].name if 0 <= j < len(game.players) else str(j)
    model = pyo.ConcreteModel(name=f"joint_best_response[{name}]")
    add_joint_best_response(model, game, j, others_total)
    return model
