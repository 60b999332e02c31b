"""What every inner backend returns, and the welfare arithmetic both backends share.

A backend solves player j's inner problem (models/aggregator.py) for a batch of
purchases y_j at once, the others' total Y_-j fixed. ``InnerBatch`` holds one row per
purchase. The welfare J, the tie-break and the total derivative

    dJ_j/dy_j = lambda_j + p'(Y) dPhi/dp,   dPhi/dp = -sum_i (w_i phi'(s_i + e_i) + sigma_i) x_i

(MODEL.md, "The derivative the paper gets wrong") are computed here from the
allocation, the multiplier and the bound multipliers, so the two backends cannot
disagree on what J means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aggregame.fairness import PricedOutRule
from aggregame.players import Game, Player


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
        alone, MODEL.md); NaN elsewhere, and None from backends that do not give it.
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


def member_terms(player: Player, priced_out: np.ndarray) -> tuple[np.ndarray,
                                                                    np.ndarray]:
    """Arrays (weight, floor) of each member's term in Phi (see Fairness.member_terms)."""
    f = player.fairness
    w_in, e_in = f.member_terms(False)
    w_out, e_out = f.member_terms(True)
    if w_in == w_out and e_in == e_out:  # floor rule: status does not matter
        full = np.ones(priced_out.shape)
        return full * w_in, full * e_in
    return (np.where(priced_out, w_out, w_in), np.where(priced_out, e_out, e_in))


def welfare_of(player: Player, surplus: np.ndarray, weight: np.ndarray,
               floor: np.ndarray, priced_out: np.ndarray) -> np.ndarray:
    """J_j = Phi_alpha(s + e) row by row (min over counted members for max-min)."""
    f = player.fairness
    if f.is_maxmin:
        counted = ~(priced_out & (f.rule is PricedOutRule.VIABLE))
        vals = np.where(counted, surplus + floor, np.inf)
        out = vals.min(axis=-1)
        return np.where(np.isinf(out), 0.0, out)  # nobody counts: flat 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(weight > 0, weight * f.phi(np.maximum(surplus + floor, 0.0)),
                         0.0)
    out = terms.sum(axis=-1)
    if f.rule is PricedOutRule.STRICT and f.alpha >= 1:
        out = np.where(priced_out.any(axis=-1), -np.inf, out)
    return out


def price_sensitivity(player: Player, x: np.ndarray, coefficient: np.ndarray
                      ) -> np.ndarray:
    """dPhi/dp = -sum_i coefficient_i x_i with coefficient = w phi'(s + e) + sigma."""
    return -(coefficient * x).sum(axis=-1)

