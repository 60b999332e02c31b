"""The stacked KKT system of a game with a price per node (bus or hour) on one affine
piece of the market's price map.

A node is where demand meets a balance of the market model: a bus of a network, an
hour of a day. Player j holds one aggregator problem per node it buys at (one bus;
or every hour), and its payoff is the sum of those problems' welfares. On one piece
of the market (solvers/market/nodal.py) the node prices are affine in the node
demands, p = p0 + S D with S = dp/dD (symmetric: the Hessian of the market's convex
cost), and D_n is the players' total purchase at node n. Player j's best response and
its allocations together maximize sum_n Phi_jn(U(x_jn) - p_n(D) x_jn) over its
x >= 0 with s >= 0, so its KKT conditions are those of docs/model.md, section
"Stacked KKT", with the price of each node block moving with every node's demand:

    dL_j/dx_jni = partial in x_jni + dL_j/dD_n        (D_n moves with x_jni)
    L_j = sum_n welfare_jn + sum_{n,i} sigma_jni s_jni

Everything a player adds sits on ``model.player[j].kkt``; alpha = inf is refused
(its epigraph multipliers are not written here). The model is built for a given
priced-out status (``priced_out[(player, node)]``), like models/kkt.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import Modes, differentiate
from pyomo.mpec import Complementarity, complements

from aggregame.errors import UnsupportedProblemError
from aggregame.models.aggregator import add_aggregator
from aggregame.models.kkt import KKTMode, PlayerStatus, apply_status
from aggregame.players import Player

#: One player's holdings: its name and its aggregator problem at each node.
Holding = tuple[str, Mapping[Any, Player]]


def _price_rule(m: Any, n: Any) -> Any:
    row = m._nodal
    k = row.nodes.index(n)
    return row.p0[k] + sum(row.slope[k, c] * m.total[row.nodes[c]]
                           for c in range(len(row.nodes)) if row.slope[k, c] != 0.0)


def _eq_total_rule(m: Any, n: Any) -> Any:
    return m.total[n] == sum(blk.x[i] for blk in m._nodal.blocks[n]
                             for i in blk.MEMBERS)


class _NodalData:
    """What the rules read (a plain object on the model: it pickles)."""

    def __init__(self, nodes: list[Any], p0: np.ndarray, slope: np.ndarray) -> None:
        self.nodes, self.p0, self.slope = nodes, p0, slope
        self.blocks: dict[Any, list[Any]] = {n: [] for n in nodes}


def build_nodal_kkt_model(holdings: Sequence[Holding], nodes: Sequence[Any],
                          p0: np.ndarray, slope: np.ndarray,
                          priced_out: Mapping[tuple[str, Any], Sequence[bool]]
                          ) -> pyo.ConcreteModel:
    """Stacked KKT model of the players ``holdings`` under p = p0 + slope D.

    Returns a ConcreteModel with ``total[n]`` (D_n), ``price[n]``, and per player
    ``player[j].node[n]`` (an aggregator block) and ``player[j].kkt`` (multipliers,
    stationarity, Complementarity components). Solve it with
    ``aggregame.solvers.market.nodal_kkt.solve_nodal_kkt``.
    """
    for name, held in holdings:
        for node, player in held.items():
            if player.fairness.is_maxmin:
                raise UnsupportedProblemError(
                    f"nodal stacked KKT: player {name!r} at node {node!r} is max-min; "
                    "only alpha < inf is written here")
    nodes = list(nodes)
    m = pyo.ConcreteModel(name="nodal stacked KKT")
    m._nodal = _NodalData(nodes, np.asarray(p0, float), np.asarray(slope, float))
    m.NODES = pyo.Set(initialize=nodes, ordered=True)
    m.total = pyo.Var(m.NODES, within=pyo.NonNegativeReals, initialize=0.0,
                      doc="D_n: players' total purchase at node n [unit]")
    m.price = pyo.Expression(m.NODES, rule=_price_rule, doc="p_n = p0_n + S_n. D")
    m.PLAYERS = pyo.Set(initialize=[name for name, _ in holdings], ordered=True)
    m.player = pyo.Block(m.PLAYERS)
    for name, held in holdings:
        pblk = m.player[name]
        pblk.NODES = pyo.Set(initialize=list(held), ordered=True)
        pblk.node = pyo.Block(pblk.NODES)
        for node, player in held.items():
            blk = pblk.node[node]
            add_aggregator(blk, player, price=m.price[node], objective=False,
                           priced_out_managed=True)
            blk.eq_balance.deactivate()  # the purchase is the allocation's sum
            blk.ineq_surplus.deactivate()
            apply_status(blk, player, PlayerStatus(
                tuple(bool(v) for v in priced_out[name, node]), KKTMode.WELFARE))
            m._nodal.blocks[node].append(blk)
    m.eq_total = pyo.Constraint(m.NODES, rule=_eq_total_rule,
                                doc="D_n = sum of the allocations at node n")
    for name, held in holdings:
        _declare_player_kkt(m.player[name], m.total)
    return m


def _compl_stationarity_rule(kkt: Any, node: Any, i: str) -> Any:
    blk = kkt.parent_block().node[node]
    return complements(blk.x[i] >= 0, -kkt.stationarity[node, i] >= 0)


def _compl_surplus_rule(kkt: Any, node: Any, i: str) -> Any:
    blk = kkt.parent_block().node[node]
    return complements(kkt.sigma[node, i] >= 0, blk.surplus[i] >= 0)


def _declare_player_kkt(pblk: pyo.Block, total: Any) -> None:
    """Multipliers, stationarity and complementarity of one player (module doc)."""
    kkt = pblk.kkt = pyo.Block()
    free = [(n, i) for n in pblk.NODES for i in pblk.node[n].MEMBERS
            if not pblk.node[n].x[i].fixed]
    kkt.FREE = pyo.Set(initialize=free, dimen=2, ordered=True,
                       doc="(node, member) pairs not priced out")
    kkt.sigma = pyo.Var(kkt.FREE, within=pyo.NonNegativeReals, initialize=0.0,
                        doc="multiplier of s_i >= 0")
    lagrangian = sum(pblk.node[n].welfare for n in pblk.NODES) + sum(
        kkt.sigma[n, i] * pblk.node[n].surplus[i] for n, i in free)
    nodes = list(pblk.NODES)
    xs = [pblk.node[n].x[i] for n, i in free]
    grads = differentiate(lagrangian, wrt_list=xs + [total[n] for n in nodes],
                          mode=Modes.reverse_symbolic) if xs else []
    kkt.price_partial = pyo.Expression(
        pblk.NODES, initialize={n: grads[len(xs) + k] if xs else 0.0
                                for k, n in enumerate(nodes)},
        doc="dL_j/dD_n at fixed allocations")
    kkt.price_gradient = pyo.Var(pblk.NODES, initialize=0.0,
                                 doc="dL_j/dD_n, as a variable (short rows)")
    kkt.eq_price_gradient = pyo.Constraint(
        pblk.NODES, rule={n: kkt.price_gradient[n] == kkt.price_partial[n]
                          for n in nodes})
    kkt.stationarity = pyo.Expression(
        kkt.FREE, initialize={(n, i): grads[k] + kkt.price_gradient[n]
                              for k, (n, i) in enumerate(free)},
        doc="dL_j/dx_jni (symbolic)")
    kkt.compl_stationarity = Complementarity(kkt.FREE, rule=_compl_stationarity_rule)
    kkt.compl_surplus = Complementarity(kkt.FREE, rule=_compl_surplus_rule)
