"""The stacked KKT system of a nodal game, solved by Ipopt on the market's pieces.

models/nodal_kkt.py writes every player's KKT conditions under one affine piece of
the node prices, p = p0 + S D. ``solve_nodal_kkt`` takes the piece at a start,
solves the smoothed system (Fischer-Burmeister, mu = 1e-2 ... 1e-12, each solve
warm-started; docs/pyomo.md, section "pyomo.mpec with cyipopt"), and moves to the
piece at the answer until the answer's piece is the one it was solved on: then the
affine prices are the market's own there, and the point is a KKT point of the whole
game. Every purchase is a node holding: player j at node n.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyomo.environ as pyo

from aggregame.models.complementarity import add_reformulation
from aggregame.models.context import muted_logger
from aggregame.models.nodal_kkt import Holding, build_nodal_kkt_model
from aggregame.solvers.market.nodal import NodalMarketPrice, NodalPiece

#: The smoothing parameter's path (each solve starts where the last ended).
SMOOTHING = (1e-2, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12)
#: Accepted complementarity residual max |min(a, b)| (docs/pyomo.md: 1e-5).
KKT_TOL = 1e-5
#: Pieces tried before giving up (each a solve of the whole system).
MAX_PIECES = 8
#: Share of the zero-surplus consumption a holding starts at.
START_SHARE = 0.02


@dataclass(frozen=True)
class NodalKKTSolution:
    """A KKT point of the nodal game: purchases per (player, node), node demands
    and prices, its complementarity residual, and whether it lies on the piece it
    was solved on (``on_piece``: then it is a KKT point of the whole model)."""

    purchases: dict[tuple[str, Any], float]
    demands: np.ndarray
    prices: np.ndarray
    residual: float
    on_piece: bool
    pieces: int

    @property
    def converged(self) -> bool:
        return self.on_piece and self.residual <= KKT_TOL


def solve_nodal_kkt(holdings: Sequence[Holding], nodal: NodalMarketPrice,
                    start: Mapping[tuple[str, Any], float] | None = None
                    ) -> NodalKKTSolution:
    """Solve the stacked KKT system of ``holdings`` (player name, node -> Player)
    against ``nodal``'s prices from ``start`` (purchases per (player, node); by
    default START_SHARE of each holding's consumption at the prices of zero
    demand)."""
    from aggregame.solvers.inner.pyomo_backend import ipopt_solver

    if start is None:
        zero = nodal.value(np.zeros(len(nodal.nodes)))
        start = {(name, n): START_SHARE * float(p.zero_surplus_consumption(
            zero[nodal.index(n)]).sum()) for name, held in holdings
            for n, p in held.items()}
    purchases = dict(start)
    solver = ipopt_solver({"max_iter": 3000})
    for count in range(1, MAX_PIECES + 1):
        demands = _demands(purchases, nodal)
        piece = nodal.piece(demands)
        m = _model(holdings, nodal, piece, purchases)
        parameter = add_reformulation(m, "fischer-burmeister")
        for mu in SMOOTHING:
            parameter.set_value(mu)
            with muted_logger():
                solver.solve(m)
        purchases = {(name, n): sum(max(v.value, 0.0) for v in
                                    m.player[name].node[n].x.values())
                     for name, held in holdings for n in held}
        demands = _demands(purchases, nodal)
        if nodal.holds(piece, demands):
            return NodalKKTSolution(purchases, demands, piece.price(demands),
                                    _residual(m), True, count)
    return NodalKKTSolution(purchases, demands, nodal.value(demands), _residual(m),
                            False, MAX_PIECES)


def _demands(purchases: Mapping[tuple[str, Any], float],
             nodal: NodalMarketPrice) -> np.ndarray:
    d = np.zeros(len(nodal.nodes))
    for (_, node), y in purchases.items():
        d[nodal.index(node)] += y
    return d


def _model(holdings: Sequence[Holding], nodal: NodalMarketPrice, piece: NodalPiece,
           purchases: Mapping[tuple[str, Any], float]) -> pyo.ConcreteModel:
    """The KKT model on ``piece``, its priced-out status and start from the
    purchases (each allocation strictly inside: ``initialize``)."""
    prices = piece.price(_demands(purchases, nodal))
    status = {(name, n): tuple(bool(v) for v in p.marginal_at_zero
                               <= prices[nodal.index(n)])
              for name, held in holdings for n, p in held.items()}
    m = build_nodal_kkt_model(holdings, nodal.nodes, piece.p0, piece.slope, status)
    for k, n in enumerate(nodal.nodes):
        m.total[n].set_value(float(_demands(purchases, nodal)[k]))
    for name, held in holdings:
        for n in held:
            blk = m.player[name].node[n]
            blk.purchase.set_value(purchases[name, n])
            blk.initialize()
        kkt = m.player[name].kkt
        for n in m.player[name].NODES:
            kkt.price_gradient[n].set_value(pyo.value(kkt.price_partial[n]))
    return m


def _residual(m: pyo.ConcreteModel) -> float:
    """max over complementarity pairs of |min(a, b)| (0 exactly at a KKT point)."""
    worst = 0.0
    for pblk in m.player.values():
        kkt = pblk.kkt
        for n, i in kkt.FREE:
            blk = pblk.node[n]
            worst = max(worst,
                        abs(min(blk.x[i].value, -pyo.value(kkt.stationarity[n, i]))),
                        abs(min(kkt.sigma[n, i].value, pyo.value(blk.surplus[i]))))
    return worst
