"""The whole game as one complementarity model: every player's KKT conditions stacked.

Since y_j = sum_i x_ji, player j's best response and its inner allocation together
maximize Phi_j(U(x_j) - p(X) x_j) over x_j >= 0 with s_j >= 0 (docs/model.md,
section "Stacked KKT").
Each player is an aggregator block from ``add_aggregator`` (the same welfare
expression the inner model maximizes), with the price the model's own expression of
the total purchase. Stationarity is the symbolic derivative of the block's Lagrangian

    L_j = welfare_j + sum_i sigma_ji s_ji             (alpha < inf)
    L_j = t_j + sum_i mu_ji (s_ji + e_i - t_j) + sum_i sigma_ji s_ji   (max-min)

with respect to the player's own x_j (the price moves with them), so the KKT model
cannot drift from the inner model. Everything it adds to a block sits on its
sub-block ``kkt``:

    compl_stationarity[i]: x_ji >= 0  _|_  -dL_j/dx_ji >= 0
    compl_surplus[i]:      sigma_ji >= 0  _|_  s_ji >= 0
    compl_level[i]:        mu_ji >= 0  _|_  s_ji + e_i - t_j >= 0   (max-min)
    eq_level:              sum_i mu_ji = 1                          (max-min)

Priced-out members depend on the price, which is endogenous here; the model is built
for a given *status* (which members are priced out, and which max-min players have a
flat level and play by their tie-break), and the solver (solvers/kkt/solve.py) rebuilds it
until the status agrees with the solution.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import Modes, differentiate
from pyomo.mpec import Complementarity, complements

from aggregame.allocation import counted_members
from aggregame.models.aggregator import add_aggregator
from aggregame.players import Game, Player


class KKTMode(str, enum.Enum):
    """Which Lagrangian a player's block of the stacked KKT model differentiates."""

    #: alpha < inf: the alpha-fair welfare.
    WELFARE = "welfare"
    #: max-min: the epigraph level t with multipliers mu on s_i + e_i >= t.
    MAXMIN = "maxmin"
    #: max-min whose level is flat (a counted member is priced out at y_j = 0, or no
    #: member is counted): the total surplus decides (docs/model.md, "Max-min").
    TIEBREAK = "tiebreak"


@dataclass(frozen=True)
class PlayerStatus:
    """How one player enters the stacked KKT model.

    priced_out : members with U'(0) <= p (weights and floors of their Phi terms follow
        the player's rule, as in the inner model).
    mode : the Lagrangian its block differentiates (a KKTMode; its string value, e.g.
        'welfare', compares equal to it).
    """

    priced_out: tuple[bool, ...]
    mode: KKTMode

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", KKTMode(self.mode))


def player_status(game: Game, j: int, price: float, price_without_j: float
                  ) -> PlayerStatus:
    """The status of player j at a price (and at the price were it to buy nothing)."""
    player = game.players[j]
    u0 = player.marginal_at_zero
    priced_out = tuple(bool(v) for v in u0 <= price)
    if not player.fairness.is_maxmin:
        return PlayerStatus(priced_out, KKTMode.WELFARE)
    out = u0 <= price_without_j
    counted_out = bool((out & player.fairness.rule.counted(out)).any())
    # Under the viable rule every member can be priced out: no level to hold up.
    nobody = not counted_members(player, np.array(priced_out)).any()
    flat = counted_out or nobody
    return PlayerStatus(priced_out, KKTMode.TIEBREAK if flat else KKTMode.MAXMIN)


def build_kkt_model(game: Game, status: list[PlayerStatus]) -> pyo.ConcreteModel:
    """Stacked KKT model of ``game`` for the given priced-out status of each player.

    Returns a ConcreteModel with one block per player (``model.player[name]``), the
    named expressions ``total`` and ``price``, and Complementarity components on each
    block's ``kkt`` sub-block. Solve it with ``solvers.kkt.solve_kkt``.
    """
    m = pyo.ConcreteModel(name="stacked KKT")
    m.PLAYERS = pyo.Set(initialize=game.names, ordered=True)
    # Y is a variable tied to sum x by eq_total, so every stationarity row touches Y
    # once instead of every x: the Jacobian stays O(members), not O(members^2).
    m.total = pyo.Var(within=pyo.NonNegativeReals, initialize=0.0,
                      doc="Y: total purchase [unit]")
    m.price = pyo.Expression(expr=game.price.expression(m.total),
                             doc="p(Y) [$/unit]")
    m.player = pyo.Block(m.PLAYERS)
    for j, player in enumerate(game.players):
        blk = m.player[player.name]
        add_aggregator(blk, player, price=m.price, objective=False,
                       priced_out_managed=True)
        # The purchase is the sum of the allocation here, not a parameter.
        blk.eq_balance.deactivate()
        blk.ineq_surplus.deactivate()
        if player.fairness.is_maxmin:
            blk.ineq_maxmin.deactivate()
        apply_status(blk, player, status[j])
    m.eq_total = pyo.Constraint(expr=m.total == sum(
        m.player[n].x[i] for n in m.PLAYERS for i in m.player[n].MEMBERS),
        doc="Y = sum of every allocation")
    for j, player in enumerate(game.players):
        _declare_kkt(m.player[player.name], player, status[j], m.total)
    return m


def apply_status(blk: pyo.Block, player: Player, status: PlayerStatus) -> None:
    player.fairness.rule.set_member_terms(blk, np.array(status.priced_out),
                                         player.fairness)
    for k, name in enumerate(blk.MEMBERS):
        if status.priced_out[k]:
            blk.x[name].fix(0.0)  # only x = 0 gives s >= 0


def _compl_level_rule(kkt: pyo.Block, i: str) -> Any:
    blk = kkt.parent_block()
    return complements(kkt.mu[i] >= 0,
                       blk.surplus[i] + blk.surplus_floor[i] - blk.min_surplus >= 0)


def _compl_stationarity_rule(kkt: pyo.Block, i: str) -> Any:
    return complements(kkt.parent_block().x[i] >= 0, -kkt.stationarity[i] >= 0)


def _compl_surplus_rule(kkt: pyo.Block, i: str) -> Any:
    return complements(kkt.sigma[i] >= 0, kkt.parent_block().surplus[i] >= 0)


def _declare_kkt(blk: pyo.Block, player: Player, status: PlayerStatus, total: pyo.Var
                 ) -> None:
    # Rules are module-level functions reading the block (the model pickles).
    kkt = blk.kkt = pyo.Block()
    free = [i for k, i in enumerate(blk.MEMBERS) if not status.priced_out[k]]
    kkt.FREE = pyo.Set(initialize=free, ordered=True,
                       doc="members not priced out (their x is a variable)")
    kkt.sigma = pyo.Var(kkt.FREE, within=pyo.NonNegativeReals, initialize=0.0,
                        doc="multiplier of s_i >= 0")
    lagrangian = sum(kkt.sigma[i] * blk.surplus[i] for i in kkt.FREE)
    if status.mode is KKTMode.MAXMIN:
        counted = [i for i, keep in zip(blk.MEMBERS, counted_members(
            player, np.array(status.priced_out))) if keep]
        kkt.COUNTED = pyo.Set(initialize=counted, ordered=True)
        kkt.mu = pyo.Var(kkt.COUNTED, within=pyo.NonNegativeReals,
                         initialize=1.0 / max(len(counted), 1),
                         doc="multiplier of s_i + e_i >= t")
        kkt.compl_level = Complementarity(kkt.COUNTED, rule=_compl_level_rule)
        kkt.eq_level = pyo.Constraint(expr=sum(kkt.mu[i] for i in kkt.COUNTED) == 1,
                                      doc="dL/dt = 1 - sum mu = 0")
        lagrangian = lagrangian + sum(kkt.mu[i] * blk.surplus[i] for i in kkt.COUNTED)
    elif status.mode is KKTMode.TIEBREAK:
        lagrangian = lagrangian + blk.total_surplus
    else:
        lagrangian = lagrangian + blk.welfare
    # dL_j/dx_ji = partial in x_ji + partial in Y (dY/dx_ji = 1): both symbolic.
    xs = [blk.x[i] for i in kkt.FREE]
    grads = differentiate(lagrangian, wrt_list=xs + [total],
                          mode=Modes.reverse_symbolic) if xs else [0.0]
    kkt.price_partial = pyo.Expression(expr=grads[-1], doc="dL_j/dY at fixed x")
    kkt.price_gradient = pyo.Var(initialize=0.0, doc="dL_j/dY, as a variable")
    kkt.eq_price_gradient = pyo.Constraint(
        expr=kkt.price_gradient == kkt.price_partial)
    kkt.stationarity = pyo.Expression(
        kkt.FREE, initialize={i: grads[n] + kkt.price_gradient
                              for n, i in enumerate(free)},
        doc="dL_j/dx_ji (symbolic)")
    kkt.compl_stationarity = Complementarity(kkt.FREE, rule=_compl_stationarity_rule)
    kkt.compl_surplus = Complementarity(kkt.FREE, rule=_compl_surplus_rule)
