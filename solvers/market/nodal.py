"""A price per node (bus of a network, hour of a day) read from the user's market
model, and the game in which each player pays its node's price.

``NodalMarketPrice(model, demands, balances)`` maps the vector of node demands D
(one mutable Param per node) to the node prices p(D) (each the dual of its node's
balance: the envelope derivative d cost / d D_n). The market is a parametric convex
QP in D, so p is piecewise affine: on the optimal active set at D,
p = p0 + S D with S = dp/dD symmetric positive semidefinite (the Hessian of the
convex cost). ``piece(D)`` gives that piece exactly (the linear algebra of
solvers/market/qp.py, one solve to name the active set), ``bus_price(n, D)`` the
whole curve of node n's price as its own demand moves, the other nodes fixed: a
``MarketPrice``.

The nodal game, with the smallest change to the game definition: a player is still
a ``Player`` with one purchase and one price, and ``Game`` keeps one price; a
``NodalGame`` adds the node of each player and the ``NodalMarketPrice``. Because a
unilateral deviation of a player at node n moves D_n only, its payoff as a function
of its purchase is exactly that of the one-price game

    G_n(D_-n) = (players at n, price Y -> p_n(D_-n, Y))  (``bus_game``)

with the other nodes' demands held. So a profile is a Nash equilibrium of the nodal
game iff each node's players are at a Nash equilibrium of G_n at the profile, and
every one-price tool applies per node: the best response, the dynamics, the regret
certificate (``solve_nodal_equilibrium`` runs Gauss-Seidel over nodes and certifies
each node's game at the end), and the refusal at a price jump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aggregame.errors import EmbeddingError, GameDefinitionError, SolverError
from aggregame.models.context import temporary_changes
from aggregame.players import Game, Player
from aggregame.price import LinearPrice
from aggregame.solvers.market.curve import BOUND_RTOL, REPAIR_STEPS
from aggregame.solvers.market.price import MarketPrice
from aggregame.solvers.market.qp import (
    ActiveSet,
    active_set,
    extent,
    flip,
    independent,
    released,
    solve_kkt,
    violated,
)
from aggregame.solvers.market.supply import SupplySolves, check_balance, check_demand


@dataclass(frozen=True)
class NodalPiece:
    """p(D) = prices + slope (D - demands) on the active set ``basis``."""

    demands: np.ndarray
    prices: np.ndarray
    slope: np.ndarray
    basis: ActiveSet = field(repr=False)

    @property
    def p0(self) -> np.ndarray:
        return self.prices - self.slope @ self.demands

    def price(self, demands: np.ndarray) -> np.ndarray:
        return self.p0 + self.slope @ np.asarray(demands, dtype=float)


def _entries(value: Any, field_name: str) -> dict[Any, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if getattr(value, "is_indexed", lambda: False)():
        return {k: value[k] for k in value}
    raise EmbeddingError(f"nodal market price: field {field_name!r} must be an "
                         "indexed Param/Constraint or a mapping node -> component")


class NodalMarketPrice:
    """Node prices of a Pyomo market model (module docstring).

    Parameters
    ----------
    model : ConcreteModel minimizing the supply cost (as for MarketPrice).
    demands : indexed mutable Param, or a mapping node -> mutable Param: each node's
        demand, set before each solve (restored afterwards).
    balances : indexed Constraint, or a mapping node -> Constraint: each node's
        balance; its dual is the node's price. Same nodes as ``demands``.
    solver : as for MarketPrice (default 'highs').
    """

    def __init__(self, model: Any, demands: Any, balances: Any, *,
                 solver: Any = "highs") -> None:
        demand_of, balance_of = _entries(demands, "demands"), _entries(balances,
                                                                        "balances")
        if list(demand_of) != list(balance_of):
            raise EmbeddingError(
                f"nodal market price: fields 'demands' and 'balances' must have the "
                f"same nodes in the same order, got {list(demand_of)} and "
                f"{list(balance_of)}")
        for node in demand_of:
            check_demand(model, demand_of[node], f"demands[{node!r}]")
            check_balance(model, balance_of[node], f"balances[{node!r}]")
        self.model, self.nodes = model, list(demand_of)
        self.balances = [balance_of[n] for n in self.nodes]
        self.supply = SupplySolves(model, [demand_of[n] for n in self.nodes], solver)
        self._rows = [self.supply.multi.qp.row(b) for b in self.balances]
        self._pieces: list[NodalPiece] = []

    def index(self, node: Any) -> int:
        try:
            return self.nodes.index(node)
        except ValueError:
            raise GameDefinitionError(f"nodal market price: no node {node!r}; nodes "
                                      f"are {self.nodes}") from None

    # -- pieces of the price map --------------------------------------------------
    def piece(self, demands: Sequence[float]) -> NodalPiece:
        """The affine piece of p at ``demands`` (a cached one where it still holds)."""
        d = np.asarray(demands, dtype=float)
        for known in self._pieces:
            if self.holds(known, d):
                return self._evaluate(known.basis, d)
        basis = self._optimal_basis(d)
        found = self._evaluate(basis, d)
        self._pieces.append(found)
        return found

    def value(self, demands: Sequence[float]) -> np.ndarray:
        """Node prices at ``demands``."""
        return self.piece(demands).prices

    def jacobian(self, demands: Sequence[float]) -> np.ndarray:
        """S = dp/dD at ``demands`` (of the piece holding them)."""
        return self.piece(demands).slope

    def holds(self, piece: NodalPiece, demands: np.ndarray) -> bool:
        """True when the piece's active set is optimal at ``demands``."""
        return self._optimal(self.supply.multi.along(0, demands), piece.basis,
                             demands)

    def exit(self, piece: NodalPiece, start: np.ndarray, end: np.ndarray) -> float:
        """How far along D = start + tau (end - start), tau >= 0, the piece holds
        (inf if it holds all the way: the ratio test of qp.extent on that line)."""
        qp = self.supply.multi.line(start, np.asarray(end, float) - start)
        kkt = solve_kkt(qp, piece.basis)
        if kkt is None:
            return 0.0
        return max(extent(qp, piece.basis, kkt, self._scale(start)).hi, 0.0)

    def bus_price(self, node: Any, demands: Sequence[float]) -> MarketPrice:
        """Node ``node``'s price as its own demand moves from 0, the other nodes held
        at ``demands``: the one price of that node's game."""
        k = self.index(node)
        return MarketPrice.along(self.supply, k, np.asarray(demands, dtype=float),
                                 self.balances[k])

    def _scale(self, demands: np.ndarray) -> float:
        return max(1.0, float(np.abs(demands).sum()))

    def _optimal_basis(self, d: np.ndarray) -> ActiveSet:
        """The optimal active set at d: from a solve, repaired by flipping what is
        violated (a degenerate solver point)."""
        with temporary_changes(restore=self.supply.demands):
            x = self.supply.solve(d)
            strength = self.supply.strength()
        if x is None:
            raise SolverError(f"nodal market price: the market model has no optimal "
                              f"solution at node demands {d.tolist()}")
        qp = self.supply.multi.along(0, d)
        scale = self._scale(d)
        basis = active_set(qp, x, d[0], BOUND_RTOL * scale)
        for _ in range(REPAIR_STEPS):
            kkt = solve_kkt(qp, basis)
            if kkt is None:  # dependent active constraints: release them
                reduced = independent(qp, basis, strength)
                if solve_kkt(qp, reduced) is not None:
                    basis = reduced
                    continue
                basis = next((b for b in released(basis) if self._optimal(qp, b, d)),
                             None)
                if basis is None:
                    break
                continue
            wrong = violated(qp, basis, kkt, d[0], scale)
            if not wrong:
                return basis
            basis = flip(basis, wrong)
        raise SolverError(f"nodal market price: no unique price at node demands "
                          f"{d.tolist()} (a degenerate point of the market model)")

    def _optimal(self, qp: Any, basis: ActiveSet, d: np.ndarray) -> bool:
        kkt = solve_kkt(qp, basis)
        return kkt is not None and not violated(qp, basis, kkt, d[0], self._scale(d))

    def _evaluate(self, basis: ActiveSet, d: np.ndarray) -> NodalPiece:
        """Prices and S = dp/dD of active set ``basis`` at d, by the envelope theorem:
        p_n = sum_r lambda_r d(rhs_r)/dD_n over the active rows."""
        multi = self.supply.multi
        rhs1 = np.where(basis.at_upper_row[:, None], multi.rup1, multi.rlo1)
        slope = np.empty((len(self.nodes), len(self.nodes)))
        prices = None
        for k in range(len(self.nodes)):
            kkt = solve_kkt(multi.along(k, d), basis)
            if kkt is None:
                raise SolverError("nodal market price: a singular active set")
            _, _, la, lb = kkt
            slope[:, k] = rhs1.T @ lb
            if prices is None:
                prices = rhs1.T @ (la + d[k] * lb)
        return NodalPiece(d.copy(), prices, slope, basis)


# -- the nodal game -----------------------------------------------------------------
@dataclass(frozen=True)
class NodalGame:
    """Players at nodes of a market: each pays its node's price."""

    players: tuple[Player, ...]
    nodes: tuple[Any, ...]
    price: NodalMarketPrice

    def __post_init__(self) -> None:
        if len(self.players) != len(self.nodes) or not self.players:
            raise GameDefinitionError(
                f"nodal game: one node per player, got {len(self.players)} players "
                f"and {len(self.nodes)} nodes")
        for node in self.nodes:
            self.price.index(node)
        # Names unique, players valid: the one-price checks (the price is a stand-in).
        Game(tuple(self.players), LinearPrice(1.0))

    def demands(self, profile: np.ndarray) -> np.ndarray:
        """Node demands D of a purchase profile."""
        d = np.zeros(len(self.price.nodes))
        for y, node in zip(profile, self.nodes):
            d[self.price.index(node)] += y
        return d

    def members_at(self, node: Any) -> list[int]:
        return [j for j, n in enumerate(self.nodes) if n == node]

    def bus_game(self, node: Any, profile: np.ndarray) -> tuple[Game, list[int]]:
        """G_n: the players at ``node`` under its price with the other nodes held
        at the profile's demands; and their indices in the profile."""
        idx = self.members_at(node)
        price = self.price.bus_price(node, self.demands(profile))
        return Game(tuple(self.players[j] for j in idx), price), idx
