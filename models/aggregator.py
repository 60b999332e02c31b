"""Pyomo model of one aggregator's inner allocation problem (paper eq. 2, 9, 11).

For a purchase y_j and a price p, the aggregator solves

    J_j = max_x  Phi_alpha(s + e)   s.t.  sum_i x_i = y_j        (eq_balance)
                                         s_i = U_i(x_i) - p x_i   (surplus)
                                         s_i >= 0                 (ineq_surplus)
                                         x_i >= 0                 (bounds of x)

with e_i the floor of the priced-out rule (docs/model.md, section
"Priced-out members"). Max-min (alpha = inf) uses an
epigraph variable t with s_i + e_i >= t (ineq_maxmin) and maximizes t.

Sign convention. The objective is *maximized* and the balance is written
``sum(x) == purchase``; with that form the dual of ``eq_balance`` is
lambda_j = dJ_j/dy_j at fixed price with cyipopt (checked against finite differences
in the tests). Inside a user's model read it with ``aggregator_lambda`` (or the
block's ``lambda_``), which gives the gain of the model's objective per unit of
purchase whatever solver filled the dual Suffix (models/duals.py).

Two forms build the same components: ``add_aggregator`` fills a block the caller owns
(so the inner problem can live inside a user's market model, with y_j and p the
user's own Vars or Expressions), and ``AggregatorBlock`` (models/block.py) is a Pyomo
block class configured by a ConfigDict, scalar or indexed (one aggregator problem per
hour, per bus). Either way the block gets ``initialize()``, a strictly feasible start
for Ipopt, and ``lambda_(solver)``, the multiplier with one sign.
``build_aggregator_model`` wraps ``add_aggregator`` in a ConcreteModel, with a dual
Suffix unless ``duals=False`` (SCIP refuses a model that asks for duals). Anything a
best-response loop changes is a mutable Param, so the model is built once. Every rule
is a module-level function, so models pickle and clone.

Two forms of s_i >= 0 (``SurplusForm``). ``constraint``: the rows ``ineq_surplus``,
right for any price and utility, but quadratic (HiGHS refuses them). ``bound``: at a
price without variables s_i >= 0 is 0 <= x_i <= xbar_i(p) (the surplus is concave and
zero at 0), a variable bound that follows the price (an expression of its Param);
for quadratic members xbar_i = max(b_i - p, 0) / a_i, so the alpha = 0 block is a
concave QP that HiGHS solves.

Units. With ``units=(energy, money)`` (Pyomo units, e.g. MWh and USD), x, the
purchase and the floor carry energy and money, the price money/energy; utilities are
written in those units (their parameters are plain numbers in them), and
Phi_alpha is taken of the surplus measured in money units: the welfare carries money
for alpha = 0 and max-min and is dimensionless for every other alpha (a log or power
of an amount of money has no unit).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyomo.environ as pyo
from pyomo.core.expr.visitor import identify_variables

from aggregame.errors import EmbeddingError, UnsupportedProblemError
from aggregame.fairness import Fairness
from aggregame.leximin import needs_leximin
from aggregame.models.duals import aggregator_lambda, allocation_lambda
from aggregame.players import Player
from aggregame.utilities import QuadraticUtility, Utility

#: Where initialize() puts x_i inside (0, xbar_i) when the purchase does not fit:
#: a fraction of xbar strictly below 1 keeps every surplus positive.
INTERIOR_SHARE = 0.5
#: How far below the smallest s_i + e_i initialize() starts the max-min level,
#: relative to max(1, |that minimum|): strictly feasible, not on the constraint.
LEVEL_MARGIN = 1e-3


class SurplusForm(str, enum.Enum):
    """How a block states s_i >= 0 (module docstring)."""

    #: The rows ineq_surplus[i]: any price (also a variable), any utility.
    CONSTRAINT = "constraint"
    #: The bound x_i <= xbar_i(p): a price without variables, quadratic members.
    BOUND = "bound"


@dataclass(frozen=True)
class AggregatorUnits:
    """Energy and money units of an aggregator block (Pyomo units).

    The price then has units money/energy, utilities money, allocations energy.
    """

    energy: Any
    money: Any

    def __post_init__(self) -> None:
        for name in ("energy", "money"):
            unit = getattr(self, name)
            try:
                pyo.units.get_units(unit)
            except Exception:
                raise EmbeddingError(
                    f"aggregator units: field {name!r} must be a Pyomo unit (e.g. "
                    f"pyo.units.MWh), got {unit!r}"
                ) from None

    @property
    def price(self) -> Any:
        return self.money / self.energy


def as_units(value: Any) -> AggregatorUnits | None:
    """None, an AggregatorUnits, or a pair (energy, money): the ConfigDict domain."""
    if value is None or isinstance(value, AggregatorUnits):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return AggregatorUnits(*value)
    raise EmbeddingError(
        f"aggregator: option 'units' must be None or a pair (energy, money) of Pyomo "
        f"units, got {value!r}"
    )


@dataclass(frozen=True)
class _Spec:
    """What the rule functions of one aggregator block read (kept on the block)."""

    player: Player
    purchase: Any
    price: Any
    units: AggregatorUnits | None
    utilities: dict[str, Utility]
    surplus_var: bool
    surplus_form: SurplusForm = SurplusForm.CONSTRAINT


def spec_of(block: Any) -> _Spec:
    return block._aggregame


def contains_vars(expr: Any) -> bool:
    if expr is None or isinstance(expr, (int, float, np.floating, np.integer)):
        return False
    return next(identify_variables(expr, include_fixed=True), None) is not None


def check_embeddable(player: Player, price: Any) -> None:
    """Refuse rules that need the solve helper's bookkeeping next to a variable price.

    ``viable`` drops a member from Phi once U_i'(0) <= p (a jump in J), and ``strict``
    keeps phi(0), which is -inf (alpha >= 1) or has an infinite slope (0 < alpha < 1).
    Both need the priced-out status at a known price; with p a variable of the model
    Ipopt would evaluate log(0) or 0 ** (-alpha) and stop on a NaN. ``strict`` is exact
    for alpha = 0 (phi(s) = s) and max-min (t <= s_i with s_i = 0 when priced out), so
    those are embedded as they are.
    """
    if not contains_vars(price):
        return
    f = player.fairness
    if not f.rule.needs_price_status(f):
        return
    raise EmbeddingError(
        f"player '{player.name}': rule '{f.rule.value}' (alpha = {f.alpha:g}) cannot be "
        "embedded with a variable price; use rule='floor' with eps > 0"
    )


def as_surplus_form(value: Any) -> SurplusForm:
    """A SurplusForm from itself or its name, or an EmbeddingError naming the option."""
    try:
        return SurplusForm(value)
    except ValueError:
        raise EmbeddingError(
            f"aggregator: option 'surplus_form' must be one of "
            f"{[f.value for f in SurplusForm]}, got {value!r}") from None


def check_bound_form(player: Player, price: Any) -> None:
    """Refuse ``surplus_form='bound'`` where the bound would not be s_i >= 0: a price
    with variables (the bound must be a number in each solve), or a member without a
    closed-form zero-surplus consumption."""
    if contains_vars(price):
        raise EmbeddingError(
            f"player '{player.name}': option 'surplus_form' = 'bound' needs a price "
            "without variables (a number or a Param); with a variable price use "
            "surplus_form='constraint'")
    for member in player.members:
        if not isinstance(member.utility, QuadraticUtility):
            raise EmbeddingError(
                f"player '{player.name}': option 'surplus_form' = 'bound' needs "
                f"quadratic members, member {member.name!r} is "
                f"{member.utility.family!r}; use surplus_form='constraint'")


# -- rule functions (module level so that models pickle) ----------------------------
def _surplus_rule(b: Any, i: str) -> Any:
    spec = spec_of(b)
    util = spec.utilities[i]
    params = {k: b.utility_param[i, k] for k in util.param_names}
    if spec.units is None:
        return util.U(b.x[i], params, lib=pyo) - spec.price * b.x[i]
    # The utility formula works on plain numbers in the block's units.
    energy, money = spec.units.energy, spec.units.money
    return money * util.U(b.x[i] / energy, params, lib=pyo) - spec.price * b.x[i]


def _ineq_surplus_rule(b: Any, i: str) -> Any:
    return b.surplus[i] >= 0


def _x_bounds_rule(b: Any, i: str) -> tuple[Any, Any]:
    """(0, xbar_i(p)) in the bound form, an expression of the price's Param that Pyomo
    evaluates at each solve; (0, None) otherwise."""
    spec = spec_of(b)
    if spec.surplus_form is SurplusForm.CONSTRAINT:
        return (0.0, None)
    price = spec.price if spec.units is None else spec.price / spec.units.price
    # QuadraticUtility.zero_surplus_consumption, max(b - p, 0) / a, written with
    # |.| (a max is not a Pyomo expression a bound may hold).
    gap = b.utility_param[i, "b"] - price
    cap = (gap + abs(gap)) / (2 * b.utility_param[i, "a"])
    return (0.0, cap if spec.units is None else cap * spec.units.energy)


def _ineq_maxmin_rule(b: Any, i: str) -> Any:
    return b.surplus[i] + b.surplus_floor[i] >= b.min_surplus


def _eq_shifted_surplus_rule(b: Any, i: str) -> Any:
    return b.shifted_surplus[i] == b.surplus[i] + b.surplus_floor[i]


def _phi_term(b: Any, i: str, fairness: Fairness) -> Any:
    shifted = b.component("shifted_surplus")
    arg = shifted[i] if shifted is not None else b.surplus[i] + b.surplus_floor[i]
    units = spec_of(b).units
    if units is not None and fairness.alpha != 0:
        arg = arg / units.money  # log and powers of a number of money units
    return b.member_weight[i] * fairness.phi(arg, lib=pyo)


# -- builders -----------------------------------------------------------------------
def _declare_params(block: pyo.Block, player: Player, purchase: Any, price: Any,
                    units: AggregatorUnits | None, surplus_var: bool,
                    surplus_form: SurplusForm) -> None:
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
        doc="parameters of each member's utility, numbers in the block's units "
            "(e.g. a [$/unit^2], b [$/unit])",
    )
    energy = units.energy if units else None
    money = units.money if units else None
    if purchase is None:
        block.purchase = pyo.Param(mutable=True, initialize=0.0, within=pyo.Reals,
                                   units=energy,
                                   doc="y_j: energy bought by the aggregator [unit]")
        purchase = block.purchase
    if price is None:
        block.price = pyo.Param(mutable=True, initialize=0.0, within=pyo.Reals,
                                units=units.price if units else None,
                                doc="p: wholesale price [$/unit]")
        price = block.price
    # Which members enter Phi and with what floor: set by the solve helper from the
    # priced-out rule at the current price (a member counts with weight 1 and floor
    # eps under `floor`; with weight 0 once priced out under `viable`).
    floor = player.fairness.floor
    block.member_weight = pyo.Param(block.MEMBERS, mutable=True, initialize=1.0,
                                    doc="1 if the member's surplus enters Phi, else 0")
    block.surplus_floor = pyo.Param(block.MEMBERS, mutable=True, initialize=floor,
                                    units=money, doc="e_i added to s_i inside Phi [$]")
    # A plain object, not components: the caller's Var/Expression stays on its block.
    block._aggregame = _Spec(player, purchase, price, units,
                             {m.name: m.utility for m in player.members}, surplus_var,
                             surplus_form)


def _declare_vars_and_surplus(block: pyo.Block) -> None:
    units = spec_of(block).units
    # Bounds rather than a NonNegativeReals domain: Ipopt may return -1e-11, which is
    # a valid answer within its bound relaxation, not a domain error.
    block.x = pyo.Var(block.MEMBERS, within=pyo.Reals, bounds=_x_bounds_rule,
                      initialize=0.0, units=units.energy if units else None,
                      doc="x_i: energy allocated to member i [unit]; in the bound form "
                          "at most xbar_i(p), where s_i returns to 0")
    block.surplus = pyo.Expression(block.MEMBERS, rule=_surplus_rule,
                                   doc="s_i = U_i(x_i) - p x_i [$]")


def _declare_constraints(block: pyo.Block) -> None:
    block.eq_balance = pyo.Constraint(
        expr=sum(block.x[i] for i in block.MEMBERS) == spec_of(block).purchase,
        doc="sum_i x_i = y_j; its dual is lambda_j = dJ_j/dy_j at fixed price",
    )
    if spec_of(block).surplus_form is SurplusForm.CONSTRAINT:
        block.ineq_surplus = pyo.Constraint(
            block.MEMBERS, rule=_ineq_surplus_rule,
            doc="s_i >= 0 (members never pay more than their utility)",
        )


def _declare_welfare(block: pyo.Block, player: Player) -> None:
    fairness = player.fairness
    units = spec_of(block).units
    if fairness.is_maxmin:
        block.min_surplus = pyo.Var(within=pyo.Reals, initialize=0.0,
                                    units=units.money if units else None,
                                    doc="t: epigraph of min_i (s_i + e_i) [$]")
        block.ineq_maxmin = pyo.Constraint(
            block.MEMBERS, rule=_ineq_maxmin_rule,
            doc="s_i + e_i >= t for every member that counts",
        )
        block.welfare = pyo.Expression(expr=block.min_surplus,
                                       doc="J_j = min_i (s_i + e_i) [$]")
    else:
        if spec_of(block).surplus_var and fairness.alpha != 0:
            # Ipopt keeps a bounded variable strictly inside its bounds, even at
            # iteration 0 (its bound push moves x_i = 0 to 0.01, where the surplus
            # of a priced-out member is negative): phi of this variable is always
            # defined, and the equality may be violated on the way.
            block.shifted_surplus = pyo.Var(
                block.MEMBERS, bounds=(0.0, None), initialize=1.0,
                units=units.money if units else None,
                doc="v_i = s_i + e_i as a variable, the argument of phi [$]")
            block.eq_shifted_surplus = pyo.Constraint(
                block.MEMBERS, rule=_eq_shifted_surplus_rule,
                doc="v_i = s_i + e_i")
        block.welfare = pyo.Expression(
            expr=sum(_phi_term(block, i, fairness) for i in block.MEMBERS),
            doc=f"J_j = Phi_alpha(s + e), alpha = {fairness.alpha:g}",
        )
    block.total_surplus = pyo.Expression(
        expr=sum(block.surplus[i] for i in block.MEMBERS),
        doc="sum_i s_i [$]: the tie-break of max-min when its minimum is flat",
    )


def _declare_objectives(block: pyo.Block, player: Player) -> None:
    block.obj = pyo.Objective(expr=block.welfare, sense=pyo.maximize,
                              doc="maximize the alpha-fair welfare")
    if player.fairness.is_maxmin:
        block.obj_tiebreak = pyo.Objective(expr=block.total_surplus, sense=pyo.maximize,
                                           doc="second phase of max-min")
        block.obj_tiebreak.deactivate()


def add_aggregator(block: pyo.Block, player: Player, *, purchase: Any = None,
                   price: Any = None, objective: bool = True, units: Any = None,
                   priced_out_managed: bool = False, surplus_var: bool | None = None,
                   surplus_form: SurplusForm | str = SurplusForm.CONSTRAINT) -> None:
    """Declare player's inner allocation problem on ``block``; returns nothing.

    Parameters
    ----------
    block : pyomo Block (or ConcreteModel)
        Receives Sets, mutable Params, Vars, Constraints, Expressions and, if
        ``objective``, the Objective ``obj`` (and for max-min a deactivated
        ``obj_tiebreak``). A block whose class has no ``initialize`` and
        ``lambda_`` of its own gets both as attributes (``initialize_aggregator``,
        ``aggregator_lambda`` bound to it), so the entries of a plain
        ``pyo.Block(m.T, rule=...)`` have them too.
    player : Player
        The aggregator (or one-member player).
    purchase, price : Pyomo Var, Expression or number, optional
        y_j and p from the caller's own model. If omitted, mutable Params
        ``block.purchase`` and ``block.price`` are declared instead.
    objective : bool
        Set False when embedding in a model that has its own objective; then add
        ``block.welfare`` to it (for max-min also fix or maximize ``min_surplus``).
    units : pair (energy, money) of Pyomo units or AggregatorUnits, optional
        Units carried by the block's components (see the module docstring).
    priced_out_managed : bool
        True only for callers that set member weights and fix priced-out members
        themselves (the solve helpers, the stacked KKT model).
    surplus_var : bool, optional
        Make phi's argument s_i + e_i a bounded variable ``shifted_surplus`` (with
        ``eq_shifted_surplus``), so Ipopt never evaluates log or a power of a
        negative number, whatever the start. Default: True when the price contains
        variables and the bookkeeping is not managed (the embedded case), else False.
    surplus_form : SurplusForm or its name
        'constraint' (default): the rows ``ineq_surplus``; 'bound': the bounds
        x_i <= xbar_i(p), for a price without variables and quadratic members
        (the alpha = 0 block is then a QP: HiGHS solves it).

    Raises
    ------
    EmbeddingError
        If the player's rule is ``viable``, or ``strict`` with 0 < alpha < inf, and
        the price contains variables (see ``check_embeddable``); if the bound form
        is asked where it does not hold (``check_bound_form``); if the block already
        has an aggregator's components.

    Notes
    -----
    With the price a Var of the caller, the priced-out bookkeeping of the solve helper
    cannot run before the solve; use the floor rule there (its s_i >= 0 constraint
    alone keeps priced-out members at x_i = 0). Call ``initialize_aggregator`` (or
    the block's ``initialize()``) before solving so Ipopt starts where every
    logarithm is defined.
    """
    for name in ("x", "eq_balance", "welfare"):
        if block.component(name) is not None:
            raise EmbeddingError(f"block {block.name!r} already has a component "
                                 f"{name!r}; add each aggregator to its own block")
    if needs_leximin(player):
        raise UnsupportedProblemError(
            f"an aggregator block does not model leximin max-min (player "
            f"{player.name!r}): set maxmin = 'total-surplus' for it, or solve it with "
            f"the native backend")
    form = as_surplus_form(surplus_form)
    if form is SurplusForm.BOUND:
        check_bound_form(player, price)
    if not priced_out_managed:
        check_embeddable(player, price)
    if surplus_var is None:
        surplus_var = not priced_out_managed and contains_vars(price)
    _declare_params(block, player, purchase, price, as_units(units), bool(surplus_var),
                    form)
    _declare_vars_and_surplus(block)
    _declare_constraints(block)
    _declare_welfare(block, player)
    if objective:
        _declare_objectives(block, player)
    _attach_methods(block)


def _attach_methods(block: pyo.Block) -> None:
    """``initialize()`` and ``lambda_(solver)`` on any block that holds an aggregator
    (partials of module-level functions: they pickle and clone with the block)."""
    for name, function in (("initialize", initialize_aggregator),
                           ("lambda_", aggregator_lambda)):
        if not hasattr(type(block), name):
            setattr(block, name, partial(function, block))


def build_aggregator_model(player: Player, purchase: float = 0.0, price: float = 0.0,
                           *, duals: bool = True,
                           surplus_form: SurplusForm | str = SurplusForm.CONSTRAINT
                           ) -> pyo.ConcreteModel:
    """Standalone inner model of ``player`` with mutable ``purchase`` and ``price``.

    With ``duals`` (the default) the model carries a ``dual`` Suffix (IMPORT); after
    a solve, ``aggregator_lambda(model, solver)`` (or ``model.lambda_(solver)``) is
    lambda_j = dJ_j/dy_j at fixed price. Give ``duals=False`` for a solver that
    refuses a dual Suffix (SCIP: lambda then comes from the allocation).
    ``surplus_form='bound'`` states s_i >= 0 as bounds (see ``add_aggregator``).
    """
    if not (math.isfinite(purchase) and purchase >= 0):
        raise EmbeddingError(f"aggregator model: purchase must be finite and >= 0, "
                             f"got {purchase!r}")
    model = pyo.ConcreteModel(name=f"aggregator[{player.name}]")
    add_aggregator(model, player, surplus_form=surplus_form)
    model.purchase.set_value(purchase)
    model.price.set_value(price)
    if duals:
        model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT)
    return model


# -- a strictly feasible start --------------------------------------------------------
def _value(expr: Any, what: str, block: Any) -> float:
    try:
        val = pyo.value(expr, exception=False)
    except (ValueError, ZeroDivisionError):
        val = None
    if val is None or not math.isfinite(float(val)):
        raise EmbeddingError(
            f"aggregator block {block.name!r}: the {what} has no value ({val!r}); give "
            f"it one before initialize()"
        )
    return float(val)


def initialize_aggregator(block: pyo.Block) -> None:
    """Put every variable of the block strictly inside its feasible set at the
    current price value, so Ipopt never starts where log(s + e) is undefined.

    x_i = share * xbar_i(p), share = y / sum xbar (xbar_i: where member i's surplus
    returns to zero), so sum x = y and every s_i > 0 for 0 < y < sum xbar. If the
    purchase is a free variable of the caller whose value is missing or outside
    (0, sum xbar), it is set to INTERIOR_SHARE * sum xbar first; a fixed purchase
    that does not fit gets share = INTERIOR_SHARE (balance violated, surpluses
    positive: Ipopt restores the balance, it cannot recover from a NaN). The max-min
    level starts LEVEL_MARGIN below the smallest s_i + e_i.
    """
    spec = spec_of(block)
    player = spec.player
    price = _value(spec.price, "price", block)
    xbar = player.zero_surplus_consumption(price)
    cap = float(xbar.sum())
    purchase = spec.purchase
    free = bool(getattr(purchase, "is_variable_type", lambda: False)()) and \
        not purchase.fixed
    y = pyo.value(purchase, exception=False)
    if free and cap > 0 and (y is None or not 0 < y < cap):
        purchase.set_value(INTERIOR_SHARE * cap)
        y = INTERIOR_SHARE * cap
    y = _value(purchase, "purchase", block)
    share = y / cap if cap > 0 and 0 <= y < cap else INTERIOR_SHARE
    x = share * xbar
    for k, name in enumerate(block.MEMBERS):
        if not block.x[name].fixed:
            block.x[name].set_value(float(x[k]))
    floor = np.array([pyo.value(block.surplus_floor[n]) for n in block.MEMBERS])
    shifted = player.evaluate("U", x) - price * x + floor
    if player.fairness.is_maxmin and not block.min_surplus.fixed:
        level = float(shifted.min())
        block.min_surplus.set_value(level - LEVEL_MARGIN * max(1.0, abs(level)))
    if block.component("shifted_surplus") is not None:
        for k, name in enumerate(block.MEMBERS):
            block.shifted_surplus[name].set_value(float(max(shifted[k], 0.0)))


__all__ = ["AggregatorUnits", "SurplusForm", "add_aggregator", "aggregator_lambda",
           "allocation_lambda", "build_aggregator_model", "check_embeddable",
           "contains_vars", "initialize_aggregator", "spec_of"]
