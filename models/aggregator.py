"""Pyomo model of one aggregator's inner allocation problem (paper eq. 2, 9, 11).

For a purchase y_j and a price p, the aggregator solves

    J_j = max_x  Phi_alpha(s + e)   s.t.  sum_i x_i = y_j        (eq_balance)
                                         s_i = U_i(x_i) - p x_i   (surplus)
                                         s_i >= 0                 (ineq_surplus)
                                         x_i >= 0                 (bounds of x)

with e_i the floor of the priced-out rule (MODEL.md). Max-min (alpha = inf) uses an
epigraph variable t with s_i + e_i >= t (ineq_maxmin) and maximizes t.

Sign convention. The objective is *maximized* and the balance is written
``sum(x) == purchase``; with that form the dual of ``eq_balance`` is
lambda_j = dJ_j/dy_j at fixed price (checked against finite differences in the tests).

``add_aggregator`` fills a block the caller owns (so the inner problem can live inside
a user's market model, with y_j and p the user's own Vars or Expressions);
``build_aggregator_model`` wraps it in a ConcreteModel with a dual Suffix. Anything a
best-response loop changes is a mutable Param, so the model is built once.
"""

from __future__ import annotations

import math
from typing import Any

import pyomo.environ as pyo

from aggregame.players import Player


def _declare_params(block: pyo.Block, player: Player, purchase: Any, price: Any
                    ) -> None:
    members = [m.name for m in player.members]
    block.MEMBERS = pyo.Set(initialize=members, ordered=True,
                            doc="members i of the aggregator")
    block.UTILITY_PARAMS = pyo.Set(
        dimen=2, ordered=True,
        initialize=[(m.name, k) for m in player.members for k in m.utility.param_names],
        doc="(member, utility parameter name) pairs",
    )
    block.utility_param = pyo.Param(
        block.UTILITY_PARAMS, mutable=True,
        initialize={(m.name, k): v for m in player.members
                    for k, v in m.utility.params().items()},
        doc="parameters of each member's utility (e.g. a [$/unit^2], b [$/unit])",
    )
    if purchase is None:
        block.purchase = pyo.Param(mutable=True, initialize=0.0, within=pyo.Reals,
                                   doc="y_j: energy bought by the aggregator [unit]")
        purchase = block.purchase
    if price is None:
        block.price = pyo.Param(mutable=True, initialize=0.0, within=pyo.Reals,
                                doc="p: wholesale price [$/unit]")
        price = block.price
    # Which members enter Phi and with what floor: set by the solve helper from the
    # priced-out rule at the current price (a member counts with weight 1 and floor
    # eps under `floor`; with weight 0 once priced out under `viable`).
    floor = player.fairness.floor
    block.member_weight = pyo.Param(block.MEMBERS, mutable=True, initialize=1.0,
                                    doc="1 if the member's surplus enters Phi, else 0")
    block.surplus_floor = pyo.Param(block.MEMBERS, mutable=True, initialize=floor,
                                    doc="e_i added to s_i inside Phi [$]")
    # Plain dict, not components: the caller's Var/Expression stays on its own block.
    block._aggregame_refs = {"purchase": purchase, "price": price}


def _declare_vars_and_surplus(block: pyo.Block, player: Player) -> None:
    # Bounds rather than a NonNegativeReals domain: Ipopt may return -1e-11, which is
    # a valid answer within its bound relaxation, not a domain error.
    block.x = pyo.Var(block.MEMBERS, within=pyo.Reals, bounds=(0.0, None), initialize=0.0,
                      doc="x_i: energy allocated to member i [unit]")
    utilities = {m.name: m.utility for m in player.members}
    price = block._aggregame_refs["price"]

    def surplus_rule(b, i):
        util = utilities[i]
        params = {k: b.utility_param[i, k] for k in util.param_names}
        return util.U(b.x[i], params, lib=pyo) - price * b.x[i]

    block.surplus = pyo.Expression(block.MEMBERS, rule=surplus_rule,
                                   doc="s_i = U_i(x_i) - p x_i [$]")


def _declare_constraints(block: pyo.Block) -> None:
    block.eq_balance = pyo.Constraint(
        expr=sum(block.x[i] for i in block.MEMBERS) == block._aggregame_refs["purchase"],
        doc="sum_i x_i = y_j; its dual is lambda_j = dJ_j/dy_j at fixed price",
    )
    block.ineq_surplus = pyo.Constraint(
        block.MEMBERS, rule=lambda b, i: b.surplus[i] >= 0,
        doc="s_i >= 0 (members never pay more than their utility)",
    )


def _declare_welfare(block: pyo.Block, player: Player) -> None:
    fairness = player.fairness
    if fairness.is_maxmin:
        block.min_surplus = pyo.Var(within=pyo.Reals, initialize=0.0,
                                    doc="t: epigraph of min_i (s_i + e_i) [$]")
        block.ineq_maxmin = pyo.Constraint(
            block.MEMBERS,
            rule=lambda b, i: b.surplus[i] + b.surplus_floor[i] >= b.min_surplus,
            doc="s_i + e_i >= t for every member that counts",
        )
        block.welfare = pyo.Expression(expr=block.min_surplus,
                                       doc="J_j = min_i (s_i + e_i) [$]")
    else:
        block.welfare = pyo.Expression(
            expr=sum(block.member_weight[i]
                     * fairness.phi(block.surplus[i] + block.surplus_floor[i], lib=pyo)
                     for i in block.MEMBERS),
            doc=f"J_j = Phi_alpha(s + e), alpha = {fairness.alpha:g}",
        )
    block.total_surplus = pyo.Expression(
        expr=sum(block.surplus[i] for i in block.MEMBERS),
        doc="sum_i s_i [$]: the tie-break of max-min when its minimum is flat",
    )


def add_aggregator(block: pyo.Block, player: Player, *, purchase: Any = None,
                   price: Any = None, objective: bool = True) -> None:
    """Declare player's inner allocation problem on ``block``; returns nothing.

    Parameters
    ----------
    block : pyomo Block (or ConcreteModel)
        Receives Sets, mutable Params, Vars, Constraints, Expressions and, if
        ``objective``, the Objective ``obj`` (and for max-min a deactivated
        ``obj_tiebreak``).
    player : Player
        The aggregator (or one-member player).
    purchase, price : Pyomo Var, Expression or number, optional
        y_j and p from the caller's own model. If omitted, mutable Params
        ``block.purchase`` and ``block.price`` are declared instead.
    objective : bool
        Set False when embedding in a model that has its own objective; then add
        ``block.welfare`` to it (for max-min also fix or maximize ``min_surplus``).

    Notes
    -----
    With the price a Var of the caller, the priced-out bookkeeping of the solve helper
    cannot run before the solve; use the floor rule there (its s_i >= 0 constraint
    alone keeps priced-out members at x_i = 0).
    """
    for name in ("x", "eq_balance", "welfare"):
        if block.component(name) is not None:
            raise ValueError(f"block {block.name!r} already has a component {name!r}; "
                             "add each aggregator to its own block")
    _declare_params(block, player, purchase, price)
    _declare_vars_and_surplus(block, player)
    _declare_constraints(block)
    _declare_welfare(block, player)
    if objective:
        block.obj = pyo.Objective(expr=block.welfare, sense=pyo.maximize,
                                  doc="maximize the alpha-fair welfare")
        if player.fairness.is_maxmin:
            block.obj_tiebreak = pyo.Objective(expr=block.total_surplus,
                                               sense=pyo.maximize,
                                               doc="second phase of max-min")
            block.obj_tiebreak.deactivate()


def build_aggregator_model(player: Player, purchase: float = 0.0, price: float = 0.0
                           ) -> pyo.ConcreteModel:
    """Standalone inner model of ``player`` with mutable ``purchase`` and ``price``.

    The model carries a ``dual`` Suffix (IMPORT); after a solve,
    ``model.dual[model.eq_balance]`` is lambda_j = dJ_j/dy_j at fixed price.
    """
    if not (math.isfinite(purchase) and purchase >= 0):
        raise ValueError(f"purchase must be finite and >= 0, got {purchase!r}")
    model = pyo.ConcreteModel(name=f"aggregator[{player.name}]")
    add_aggregator(model, player)
    model.purchase.set_value(purchase)
    model.price.set_value(price)
    model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return model
