"""What every inner backend returns, and the tolerances of the inner roots.

A backend solves player j's inner problem (models/aggregator.py) for a batch of
purchases y_j at once, the others' total Y_-j fixed. ``InnerBatch`` holds one row per
purchase. The welfare J, the tie-break and the total derivative

    dJ_j/dy_j = lambda_j + p'(Y) dPhi/dp,
    dPhi/dp = -sum_i (w_i phi'(s_i + e_i) + sigma_i) x_i

(docs/model.md, "The total derivative") are computed in aggregame.allocation from the
allocation, the multiplier and the bound multipliers, so the backends cannot disagree
on what J means; every row carries its optimality residual.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from aggregame.players import Game

#: Relative accuracy of the inner roots (lambda, the max-min level, nu): sum x_i =
#: y_j to this. Shared by the numpy path and the compiled kernels.
ROOT_RTOL = 1e-13
#: Steps of the joint (x, lambda) Newton before a row falls back to the nested root.
JOINT_NEWTON_STEPS = 30
#: Relative agreement of every interior member's g_i(x_i) with lambda required to
#: accept a joint Newton row.
JOINT_MATCH_RTOL = 1e-8


@dataclass
class InnerBatch:
    """Inner solutions of one player for purchases ``y`` (shape (G,)).

    Attributes
    ----------
    y, price : (G,) purchase and market price p(Y_-j + y).
    x, surplus : (G, N) allocation and surplus of each member.
    welfare : (G,) J_j (-inf where the strict rule makes it so, or y is infeasible).
    tiebreak : (G,) total surplus sum_i s_i (decides between equal max-min values).
    multiplier : (G,) lambda_j = dJ/dy at fixed price (NaN where undefined, e.g.
        max-min in the native backend).
    derivative : (G,) total derivative dJ_j/dy_j (NaN where J is not differentiable).
    tiebreak_derivative : (G,) d(total surplus)/dy_j where the max-min level is flat
        (a counted member priced out under floor or strict: the tie-break then decides
        alone); NaN elsewhere, and None from backends that do not give it.
    residual : (G,) optimality residual of each row in allocation units relative to
        the capacity (aggregame.allocation): the evidence that the row is a solution.
    curvature : (G,) an estimate of d2J_j/dy_j^2 (of the tie-break where that
        decides), NaN where there is none, None from backends that do not give it.
        Only places a best response's next evaluation, never decides an answer.
    tiebreak_multiplier : (G,) max-min: nu, the multiplier of sum x = y in the
        total-surplus stage (what its residual checks the tie-break against);
        None elsewhere and from backends that do not give it.
    """

    y: np.ndarray
    price: np.ndarray
    x: np.ndarray
    surplus: np.ndarray
    welfare: np.ndarray
    tiebreak: np.ndarray
    multiplier: np.ndarray
    derivative: np.ndarray
    tiebreak_derivative: np.ndarray | None = None
    residual: np.ndarray | None = None
    curvature: np.ndarray | None = None
    tiebreak_multiplier: np.ndarray | None = None

    def take(self, rows: np.ndarray) -> "InnerBatch":
        """The selected rows only (index array or mask)."""
        return InnerBatch(*(None if getattr(self, f.name) is None else
                            getattr(self, f.name)[rows] for f in fields(self)))

    def put(self, rows: np.ndarray, other: "InnerBatch") -> None:
        """Overwrite the given rows with ``other``'s (one row of it per index),
        field by field, where this batch has the field."""
        for f in fields(self):
            column = getattr(self, f.name)
            if column is not None:
                column[rows] = getattr(other, f.name)


class InnerSolver(Protocol):
    """Interface of an inner backend for one player of one game."""

    game: Game
    index: int

    def solve(self, y: np.ndarray, others_total: float,
              fixed_price: float | None = None) -> InnerBatch:
        """Solve the inner problem for every purchase in ``y``.

        The price is p(others_total + y) unless ``fixed_price`` is given; then it is
        held there (p' = 0), so ``derivative`` equals ``multiplier``: the
        price-taking view in which lambda_j = dJ_j/dy_j.
        """
        ...
