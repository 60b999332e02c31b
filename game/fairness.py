"""Alpha-fair welfare (paper eq. 3), with its priced-out rule and max-min reading.

phi_alpha(s) = s^(1-alpha)/(1-alpha) (alpha != 1), log s (alpha = 1); alpha = inf is
max-min, handled by an epigraph variable, not by phi. The rule for members priced out
of the market and the reading of max-min are rule objects (aggregame.rules): see
docs/model.md, section "Priced-out members", for why the rule exists and why
``floor`` is the default, and section "Leximin" for the two readings of max-min.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from aggregame.elementwise import power
from aggregame.errors import GameDefinitionError
from aggregame.rules import MaxMinRule, PricedOutRule

#: Default surplus floor of the ``floor`` rule, in the units of surplus (utility).
#: Measured on the paper's Fig. 6 setting (docs/model.md, section "Priced-out
#: members"): with eps = 0.01 Gauss-Seidel
#: converged in 10 rounds, while eps = 1e-4 left local maxima that a single bisection
#: mistook for best responses. 0.01 is below 1% of a typical small user's surplus
#: (O(1..10) in the paper's draws), so it barely moves interior allocations.
DEFAULT_FLOOR_EPS = 0.01


def parse_alpha(value: Any, *, where: str = "player") -> float:
    """Alpha from a number or the strings 'inf'/'infinity'/'maxmin'; refuses < 0 and
    NaN."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"inf", "infinity", "maxmin", "max-min"}:
            return math.inf
        try:
            value = float(text)
        except ValueError:
            raise GameDefinitionError(
                f"{where}: field 'alpha' must be a number >= 0 or 'inf', got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating,
                                                          np.integer)):
        raise GameDefinitionError(
            f"{where}: field 'alpha' must be a number >= 0 or 'inf', got {value!r}"
        )
    alpha = float(value)
    if math.isnan(alpha) or alpha < 0:
        raise GameDefinitionError(
            f"{where}: field 'alpha' must be a number >= 0 or 'inf', got {value!r}"
        )
    return alpha


@dataclass(frozen=True)
class Fairness:
    """alpha-fairness with the priced-out rule and its floor eps."""

    alpha: float = 0.0
    rule: PricedOutRule = PricedOutRule.FLOOR
    eps: float = DEFAULT_FLOOR_EPS
    #: Reading of max-min (ignored for alpha < inf).
    maxmin: MaxMinRule = MaxMinRule.LEXIMIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", parse_alpha(self.alpha, where="fairness"))
        try:
            object.__setattr__(self, "maxmin", MaxMinRule(self.maxmin))
        except ValueError:
            raise GameDefinitionError(
                f"fairness: field 'maxmin' must be one of {MaxMinRule.names()}, "
                f"got {self.maxmin!r}"
            ) from None
        try:
            rule = PricedOutRule(self.rule)
        except ValueError:
            raise GameDefinitionError(
                f"fairness: field 'rule' must be one of {PricedOutRule.names()}, "
                f"got {self.rule!r}"
            ) from None
        object.__setattr__(self, "rule", rule)
        try:
            eps = float(self.eps)
        except (TypeError, ValueError):
            eps = math.nan
        if not math.isfinite(eps) or eps < 0 or (rule.floor_required and eps == 0):
            raise GameDefinitionError(
                f"fairness: field 'eps' must be finite and > 0 for the {rule.value} "
                f"rule (>= 0 for a rule without a floor), got {self.eps!r}"
            ).at(field="eps")
        object.__setattr__(self, "eps", eps)

    @property
    def is_maxmin(self) -> bool:
        return math.isinf(self.alpha)

    @property
    def is_leximin(self) -> bool:
        """Max-min read as leximin (sorted vectors compared lexicographically)."""
        return self.is_maxmin and self.maxmin.sorted_levels

    @property
    def floor(self) -> float:
        """The constant added to each counted surplus inside phi (the rule's)."""
        return self.rule.floor(self.eps)

    # phi and its derivatives, shared by numpy and Pyomo (``lib``) -------------
    def phi(self, s: Any, lib: Any = np) -> Any:
        return alpha_phi(s, self.alpha, lib)

    def dphi(self, s: Any, lib: Any = np) -> Any:
        return alpha_dphi(s, self.alpha, lib)

    def d2phi(self, s: Any, lib: Any = np) -> Any:
        return alpha_d2phi(s, self.alpha, lib)

    def member_terms(self, priced_out: bool) -> tuple[float, float]:
        """(weight, floor) of a member's term in Phi by its price status: the
        rule's (a priced-out member has x = 0 and s = 0)."""
        return self.rule.member_terms(priced_out, self)

    def label(self) -> str:
        if self.alpha == 0:
            name = "social welfare"
        elif self.alpha == 1:
            name = "proportional"
        elif self.is_maxmin:
            name = "max-min"
        else:
            name = f"alpha={self.alpha:g}"
        return name


# The formulas themselves, as plain functions of (s, alpha): numpy arrays, Pyomo
# expressions (``lib``) and numba's compiled scalars (solvers/inner/compiled/) all read
# these lines.
def alpha_phi(s: Any, alpha: float, lib: Any = np) -> Any:
    """phi_alpha(s): s (alpha = 0), log s (alpha = 1), s^(1-alpha)/(1-alpha)."""
    if alpha == 0:
        return s
    if alpha == 1:
        return lib.log(s)
    if math.isinf(alpha):
        raise ValueError("max-min has no per-member phi; use the epigraph form")
    return power(s, 1 - alpha) / (1 - alpha)


def alpha_dphi(s: Any, alpha: float, lib: Any = np) -> Any:
    """phi_alpha'(s) = s^-alpha."""
    if alpha == 0:
        return 1 + 0 * s
    if alpha == 1:
        return 1 / s
    return power(s, -alpha)


def alpha_d2phi(s: Any, alpha: float, lib: Any = np) -> Any:
    """phi_alpha''(s) = -alpha s^(-alpha - 1)."""
    if alpha == 0:
        return 0 * s
    return -alpha * power(s, -alpha - 1)
