"""The rules a player's fairness follows, each one class: what happens to members
priced out of the market (:class:`PricedOutRule`), and how a max-min player ranks
allocations (:class:`MaxMinRule`).

A member with U'(0) <= p can only get x = 0 and s = 0 (docs/model.md, section
"Priced-out members"). What J makes of it is the priced-out rule's: the code asks
the rule object (its weights and floors by price status, its floor constant, which
members count in a minimum, whether J jumps at a price-out point, whether J is -inf
once a member is priced out, whether a Pyomo block needs the status), never which
rule it is. A new rule is one subclass here, or anywhere: defining the class
registers it under its ``value``, the name scenario files use, and
``PricedOutRule("name")`` finds it. docs/architecture.md, "Add a priced-out rule",
walks through one; tests/test_recipes.py defines toy rules and solves games with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Iterator

import numpy as np

if TYPE_CHECKING:
    from aggregame.fairness import Fairness


class RuleFamily(type):
    """Metaclass of a family of rules. Each class of the family with its own
    ``value`` is one rule, with one instance, registered under that value:
    ``Family("name")`` (or ``Family(rule)``) is that instance, as for an enum,
    ``iter(Family)`` lists the rules, and ``Family.NAME`` is set for the rules
    defined here. The family's base class holds the registry (``rules``)."""

    def __init__(cls, name: str, bases: tuple, namespace: dict[str, Any]) -> None:
        super().__init__(name, bases, namespace)
        if "rules" in namespace:  # the family's base
            return
        value = namespace.get("value")
        if value:
            if value in cls.rules:
                raise ValueError(f"a {cls.family()} named {value!r} exists already: "
                                 f"{type(cls.rules[value]).__name__}")
            cls.rules[value] = super().__call__()

    def __call__(cls, *args: Any) -> Any:
        if "rules" in cls.__dict__:  # the base: a rule by its name (or the rule)
            (value,) = args
            if isinstance(value, cls):
                return value
            rule = cls.rules.get(value) if isinstance(value, str) else None
            if rule is None:
                raise ValueError(f"{value!r} is not a {cls.family()}; known: "
                                 f"{cls.names()}")
            return rule
        if cls.value not in cls.rules:
            raise TypeError(f"{cls.__name__} is not a {cls.family()}: it sets no value")
        return cls.rules[cls.value]  # a rule's class: its one instance

    def __iter__(cls) -> Iterator[Any]:
        return iter(list(cls.rules.values()))

    def names(cls) -> list[str]:
        """The registered rules' values, in the order they were defined."""
        return list(cls.rules)

    def family(cls) -> str:
        """The family's name in messages ('priced-out rule', ...)."""
        return cls.kind


class PricedOutRule(metaclass=RuleFamily):
    """How Phi treats members with U'(0) <= p, who can only get x = 0 and s = 0.

    A subclass sets ``value`` (its name) and answers, where it differs from the
    defaults below, what the inner problem, the searches and the models ask.
    """

    rules: ClassVar[dict[str, PricedOutRule]] = {}
    kind: ClassVar[str] = "priced-out rule"
    #: The rule's name in scenario files and messages.
    value: ClassVar[str] = ""
    #: The floor eps must be > 0 (it is what keeps phi(s + eps) finite at s = 0).
    floor_required: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"PricedOutRule({self.value!r})"

    def __reduce__(self) -> tuple:
        return PricedOutRule, (self.value,)

    def member_terms(self, priced_out: bool, fairness: Fairness) -> tuple[float,
                                                                         float]:
        """(weight, floor) of a member's term w phi(s + e) in Phi by its status."""
        raise NotImplementedError

    def floor(self, eps: float) -> float:
        """The constant added to each counted surplus inside phi, given eps."""
        return 0.0

    def counted(self, priced_out: np.ndarray) -> np.ndarray:
        """Members whose level s + e enters a max-min player's minimum."""
        return np.ones(np.shape(priced_out), dtype=bool)

    def void_when_priced_out(self, fairness: Fairness) -> bool:
        """True when J = -inf as soon as any member is priced out (phi(0) = -inf
        kept in the sum): no allocation changes it."""
        return False

    def jumps_at_price_out(self, fairness: Fairness) -> bool:
        """True when J may jump where a member is priced out (its term changes with
        its status): a search samples both sides of every price-out point."""
        return True

    # -- the Pyomo pieces ------------------------------------------------------------
    def needs_price_status(self, fairness: Fairness) -> bool:
        """True when a Pyomo model cannot state the rule without knowing which
        members are priced out (the solve helper's bookkeeping at a known price):
        with the price a variable of the model, only a rule whose terms do not
        depend on the status (or give the same J either way) can be embedded."""
        return True

    def set_member_terms(self, block: Any, priced_out: np.ndarray,
                         fairness: Fairness) -> None:
        """Set an aggregator block's ``member_weight`` and ``surplus_floor`` Params
        (models/aggregator.py) to the rule's terms at this priced-out status."""
        for name, out in zip(block.MEMBERS, priced_out):
            weight, floor = self.member_terms(bool(out), fairness)
            block.member_weight[name].set_value(float(weight))
            block.surplus_floor[name].set_value(float(floor))


class StrictRule(PricedOutRule):
    """strict: every member counts with s = 0 (the paper, literally): phi(0) = 0 for
    alpha < 1, J = -inf for alpha >= 1, and a priced-out member pins the max-min
    level at 0."""

    value = "strict"

    def member_terms(self, priced_out, fairness):
        if priced_out and not fairness.is_maxmin:
            # phi(0) = 0 for alpha < 1, written as weight 0 to avoid 0 ** (1 - alpha)
            # derivatives; alpha >= 1 is -inf (void_when_priced_out) and never
            # reaches a solver.
            return 0.0, 1.0
        return 1.0, self.floor(fairness.eps)

    def void_when_priced_out(self, fairness):
        return fairness.alpha >= 1 and not fairness.is_maxmin

    def needs_price_status(self, fairness):
        # Exact without the status for alpha = 0 (phi(s) = s, and s = 0 priced out)
        # and max-min (t <= s_i = 0 priced out); elsewhere phi(0) is -inf or has an
        # infinite slope.
        return not (fairness.alpha == 0 or fairness.is_maxmin)


class ViableRule(PricedOutRule):
    """viable: Phi runs over members with U'(0) > p only; J jumps when one drops
    out. A priced-out member leaves Phi (weight 0; floor 1 keeps log(s + 1) = 0
    finite for a solver) and the max-min minimum."""

    value = "viable"

    def member_terms(self, priced_out, fairness):
        return (0.0, 1.0) if priced_out else (1.0, self.floor(fairness.eps))

    def counted(self, priced_out):
        return ~np.asarray(priced_out, dtype=bool)


class FloorRule(PricedOutRule):
    """floor: Phi uses s + eps for every member, priced out or not; J stays
    continuous (the default, docs/model.md)."""

    value = "floor"
    floor_required = True

    def member_terms(self, priced_out, fairness):
        return 1.0, self.floor(fairness.eps)

    def floor(self, eps):
        return eps

    def jumps_at_price_out(self, fairness):
        return False  # a priced-out member keeps its term: weight and floor stay

    def needs_price_status(self, fairness):
        return False  # s_i >= 0 alone keeps a priced-out member at x_i = 0


class MaxMinRule(metaclass=RuleFamily):
    """How a max-min (alpha = inf) player ranks allocations and purchases: one
    subclass per reading, registered under its ``value`` as priced-out rules are."""

    rules: ClassVar[dict[str, MaxMinRule]] = {}
    kind: ClassVar[str] = "max-min reading"
    value: ClassVar[str] = ""
    #: True: the sorted vector of levels s + e, compared lexicographically (solved
    #: by progressive filling, ranked by aggregame.leximin). False: the smallest
    #: level, ties broken by the total surplus (the level, then a total-surplus
    #: stage: the native level filling, the compiled kernels, Pyomo's epigraph).
    sorted_levels: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"MaxMinRule({self.value!r})"

    def __reduce__(self) -> tuple:
        return MaxMinRule, (self.value,)

    def modelled_by_epigraph(self, members: int) -> bool:
        """True when an epigraph t <= s_i + e_i (Pyomo's inner model, the stacked KKT
        system, SCIP's joint problem) states this reading for a player with
        ``members`` members: with one member every reading orders purchases alike
        (one level, rising with s)."""
        return not self.sorted_levels or members < 2


class LeximinReading(MaxMinRule):
    """leximin: the sorted vector of s + e, compared lexicographically (the limit of
    alpha-fairness as alpha -> inf; the default)."""

    value = "leximin"
    sorted_levels = True


class TotalSurplusReading(MaxMinRule):
    """total-surplus: the smallest s + e, ties broken by the total surplus."""

    value = "total-surplus"


PricedOutRule.STRICT = StrictRule()
PricedOutRule.VIABLE = ViableRule()
PricedOutRule.FLOOR = FloorRule()
MaxMinRule.LEXIMIN = LeximinReading()
MaxMinRule.TOTAL_SURPLUS = TotalSurplusReading()
