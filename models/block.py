"""``AggregatorBlock``: one aggregator's inner problem as a Pyomo block class.

Scalar (``m.agg = AggregatorBlock(player=..., purchase=m.y, price=m.p)``) or indexed
(``m.agg = AggregatorBlock(m.T, player=..., purchase=m.y, price=m.p)``: one aggregator
problem per hour, per bus). Options are a ConfigDict (``CONFIG``); the components and
their names are those of ``add_aggregator`` (models/aggregator.py).

Options of an indexed block are read per index (``option_for_index``): an indexed
component gives its entry (``m.y[t]``), a mapping its value, a callable rule its
value at the index (``lambda t: m.y[t] + m.z[t]``). A scalar ``player``, a number or
a Param without variables is shared by every index; a scalar component with
variables (``m.y``, ``m.y[1]``, an expression of them) is refused for ``purchase`` and
``price``: every index would buy, or be priced by, that one variable. To share one
variable on purpose, say so with a rule (``price=lambda t: m.p``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import pyomo.environ as pyo
from pyomo.common.config import Bool, ConfigDict, ConfigValue
from pyomo.core.base.block import BlockData, CustomBlock, declare_custom_block

from aggregame.errors import AggregameError, EmbeddingError
from aggregame.fairness import PricedOutRule
from aggregame.models.aggregator import (
    SurplusForm,
    add_aggregator,
    aggregator_lambda,
    as_surplus_form,
    as_units,
    contains_vars,
    initialize_aggregator,
    spec_of,
)
from aggregame.players import Player


def _is_pyomo(value: Any) -> bool:
    """A Pyomo component, component entry or expression (all of them callable)."""
    return any(hasattr(value, attr) for attr in
               ("is_component_type", "is_expression_type", "is_indexed"))


def _is_rule(value: Any) -> bool:
    return callable(value) and not _is_pyomo(value) and not isinstance(value, Player)


def _player_domain(value: Any) -> Any:
    """A Player, or a per-index rule or mapping of them (checked per index)."""
    if isinstance(value, (Player, Mapping)) or _is_rule(value):
        return value
    raise EmbeddingError(
        f"aggregator block: option 'player' must be a Player (or a rule or mapping "
        f"index -> Player), got {type(value).__name__}")


def _rule_domain(value: Any) -> PricedOutRule | None:
    if value is None:
        return None
    try:
        return PricedOutRule(value)
    except ValueError:
        raise EmbeddingError(
            f"aggregator block: option 'rule' must be one of "
            f"{[r.value for r in PricedOutRule]}, got {value!r}"
        ) from None


def _eps_domain(value: Any) -> float | None:
    if value is None:
        return None
    try:
        eps = float(value)
    except (TypeError, ValueError):
        eps = math.nan
    if not math.isfinite(eps) or eps < 0:
        raise EmbeddingError(
            f"aggregator block: option 'eps' must be a finite number >= 0, got {value!r}"
        )
    return eps


_CALLER_VALUE = ("a Var, Expression or number of the caller (indexed block: an "
                 "indexed component, a mapping or a rule index -> value); None "
                 "declares a mutable ")

#: The block's options: (name, default, domain that checks and converts, description).
_BLOCK_OPTIONS: tuple[tuple[str, Any, Any, str], ...] = (
    ("player", None, _player_domain, "the aggregator (a Player, or per index)"),
    ("purchase", None, None, f"y_j: {_CALLER_VALUE}Param 'purchase'"),
    ("price", None, None, f"p: {_CALLER_VALUE}Param 'price'"),
    ("rule", None, _rule_domain, "priced-out rule; None keeps the player's"),
    ("eps", None, _eps_domain, "floor eps of the floor rule; None keeps the player's"),
    ("objective", True, Bool,
     "declare 'obj' (maximize welfare); False inside a user's model"),
    ("units", None, as_units, "(energy, money) Pyomo units, or None for plain numbers"),
    ("surplus_form", SurplusForm.CONSTRAINT, as_surplus_form,
     "'constraint' (rows s_i >= 0) or 'bound' (x_i <= xbar_i(p), a fixed price)"),
)


def _block_config() -> ConfigDict:
    config = ConfigDict(description="options of an AggregatorBlock")
    for name, default, domain, description in _BLOCK_OPTIONS:
        config.declare(name, ConfigValue(default=default, domain=domain,
                                         description=description))
    return config


def option_for_index(block: BlockData, option: str, value: Any) -> Any:
    """The value of ``option`` for ``block`` (an entry of a scalar or indexed block).

    See the module docstring for what an indexed block reads per index, and what it
    refuses: a scalar component with variables given to an indexed block (one
    EmbeddingError naming the option, the component and the fix).
    """
    indexed = block.parent_component().is_indexed()
    index = block.index()
    name = getattr(value, "name", repr(value))
    if value is None:
        return None
    if getattr(value, "is_indexed", None) is not None and value.is_indexed():
        if not indexed:
            raise EmbeddingError(
                f"aggregator block {block.name!r}: option {option!r} is the indexed "
                f"component {name!r}; a scalar block takes one entry of it")
        if index not in value.index_set():
            raise EmbeddingError(
                f"aggregator block {block.name!r}: option {option!r}: {name!r} has no "
                f"index {index!r}")
        return value[index]
    if isinstance(value, Mapping):
        if index not in value:
            raise EmbeddingError(
                f"aggregator block {block.name!r}: option {option!r}: the mapping has "
                f"no key {index!r}")
        return value[index]
    if _is_rule(value):
        if index is None:
            return value()
        return value(*index) if isinstance(index, tuple) else value(index)
    if indexed and option in ("purchase", "price") and contains_vars(value):
        raise EmbeddingError(
            f"aggregator block {block.parent_component().name!r} is indexed but "
            f"option {option!r} is the one component {name!r}: every index would "
            f"share it; give an indexed component, a mapping, or a rule (index -> "
            f"component), which may return the same component on purpose")
    return value


def _fairness_of(player: Player, config: ConfigDict) -> Player:
    """``player`` with the block's rule and eps (its max-min reading kept)."""
    if config.rule is None and config.eps is None:
        return player
    changes = {k: v for k, v in (("rule", config.rule), ("eps", config.eps))
               if v is not None}
    try:
        fairness = dataclasses.replace(player.fairness, **changes)
    except AggregameError as err:
        raise EmbeddingError(f"aggregator block: options {sorted(changes)}: {err}"
                             ) from None
    return dataclasses.replace(player, fairness=fairness)


@declare_custom_block(name="AggregatorBlock", rule="build")
class AggregatorBlockData(BlockData):
    """One aggregator's inner problem as a Pyomo block, configured by ``CONFIG``.

    Examples
    --------
    >>> m.agg = AggregatorBlock(player=player, purchase=m.y, price=m.p,
    ...                         objective=False, units=(pyo.units.MWh, pyo.units.USD))
    >>> m.agg.initialize()          # strictly feasible start at the current price
    >>> m.agg.lambda_('cyipopt')    # after a solve: gain per unit of purchase
    >>> m.bids = AggregatorBlock(m.T, player=player, purchase=m.y, price=m.p)
    >>> m.bids[3].lambda_('cyipopt')

    The components and their names are those of ``add_aggregator``.
    """

    CONFIG = _block_config()

    def build(self, *args: Any) -> None:
        options = getattr(self.parent_component(), "_aggregator_options", {})
        if "player" not in options:
            raise EmbeddingError(
                f"aggregator block {self.name!r}: option 'player' is required"
            )
        try:
            self.config = self.CONFIG(options)
        except ValueError as err:
            # ConfigDict wraps a domain's error in a multi-line message: keep ours.
            cause = err.__cause__ or err.__context__
            while cause is not None and not isinstance(cause, EmbeddingError):
                cause = cause.__cause__ or cause.__context__
            raise (EmbeddingError(str(cause)) if cause else err) from None
        player = option_for_index(self, "player", self.config.player)
        if not isinstance(player, Player):
            raise EmbeddingError(
                f"aggregator block {self.name!r}: option 'player' must give a Player "
                f"at index {self.index()!r}, got {type(player).__name__}")
        add_aggregator(self, _fairness_of(player, self.config),
                       purchase=option_for_index(self, "purchase",
                                                 self.config.purchase),
                       price=option_for_index(self, "price", self.config.price),
                       objective=self.config.objective, units=self.config.units,
                       surplus_form=self.config.surplus_form)

    @property
    def player(self) -> Player:
        """The player as built (with the block's rule and eps)."""
        return spec_of(self).player

    def initialize(self) -> None:
        """Strictly feasible start at the current price (``initialize_aggregator``)."""
        initialize_aggregator(self)

    def lambda_(self, solver: Any, model: pyo.Block | None = None) -> float:
        """lambda_j with one sign whatever the solver (``aggregator_lambda``)."""
        return aggregator_lambda(self, solver, model)


def _aggregator_block_init(self: Any, *args: Any, **kwargs: Any) -> None:
    # Block() refuses unknown keywords: keep the CONFIG options on the component,
    # where build() (the construction rule of each BlockData) reads them.
    self._aggregator_options = {k: kwargs.pop(k) for k in list(kwargs)
                                if k in AggregatorBlockData.CONFIG}
    CustomBlock.__init__(self, *args, **kwargs)


AggregatorBlock = globals()["AggregatorBlock"]  # declared by declare_custom_block
AggregatorBlock.__init__ = _aggregator_block_init
