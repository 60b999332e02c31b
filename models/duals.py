"""Reading multipliers from a ``dual`` Suffix with one documented sign.

Solvers fill Pyomo's ``dual`` Suffix with different signs (measured with Pyomo 6.10):

* ``DualConvention.PYOMO``: the dual of ``lower <= body <= upper`` is
  d(objective)/d(bound), in the objective's own sense: what HiGHS reports through
  each of Pyomo's interfaces (``highs``, legacy and pyomo.contrib.solver, and
  ``appsi_highs``), and Pyomo's documented standard for Gurobi, CPLEX, GLPK, CBC and
  the ``ipopt`` executable (not measured here: no executable on the project's
  machines; the test runs where one is on PATH).
* ``DualConvention.IPOPT_RAW``: Ipopt's raw multiplier of its internal minimization,
  which is what Pyomo's ``cyipopt`` interface loads. It equals d(objective)/d(bound)
  for a *maximize* objective and -d(objective)/d(bound) for a *minimize* one, so it
  always measures the *improvement* of the objective.

SCIP (``scip_direct``) loads no duals: a model with a ``dual`` Suffix makes it raise
NotImplementedError. ``gives_duals`` says so, and the aggregator's multiplier is then
read from the allocation (models/aggregator.py, ``allocation_lambda``).

``bound_sensitivity`` turns either convention into d(objective)/d(bound);
``improvement_per_unit`` into the gain of the objective (positive when the objective
gets better, whatever its sense); ``aggregator_lambda`` into an aggregator block's
lambda_j, from the dual or, for a solver without duals, from the allocation
(``allocation_lambda``). The tests check both against finite differences
with cyipopt, HiGHS (every interface) and SCIP, on maximize and minimize models.
"""

from __future__ import annotations

import enum
from statistics import median
from typing import Any

import pyomo.environ as pyo
from pyomo.core.expr.calculus.derivatives import Modes, differentiate

from aggregame.errors import EmbeddingError


class DualConvention(str, enum.Enum):
    """How a solver signs the duals it loads into ``model.dual``."""

    PYOMO = "pyomo"
    IPOPT_RAW = "ipopt-raw"


#: Solvers whose sign was measured or is Pyomo's documented standard.
KNOWN_CONVENTIONS: dict[str, DualConvention] = {
    "cyipopt": DualConvention.IPOPT_RAW,
    "highs": DualConvention.PYOMO,
    "appsi_highs": DualConvention.PYOMO,
    "ipopt": DualConvention.PYOMO,
    "gurobi": DualConvention.PYOMO,
    "gurobi_direct": DualConvention.PYOMO,
    "gurobi_persistent": DualConvention.PYOMO,
    "cplex": DualConvention.PYOMO,
    "glpk": DualConvention.PYOMO,
    "cbc": DualConvention.PYOMO,
}


#: A member counts as strictly inside its bounds for ``allocation_lambda`` when its
#: x_i and its surplus are this far (relative to max(1, its bound)) from them.
INSIDE_RTOL = 1e-6

#: Solvers that load no duals into the Suffix for these models: the multiplier
#: comes from the allocation.
NO_DUALS = frozenset({"scip", "scip_direct"})

#: Pyomo's APPSI solver classes carry no name; their module does (appsi.solvers.X).
_APPSI_MODULE = "pyomo.contrib.appsi.solvers."


def solver_name(solver: Any) -> str:
    """Name of a solver given as a string or as a Pyomo solver object (legacy,
    pyomo.contrib.solver, APPSI or cyipopt)."""
    if isinstance(solver, str):
        return solver.strip().lower()
    if type(solver).__name__ == "PyomoCyIpoptSolver":
        return "cyipopt"
    for cls in type(solver).__mro__:
        if cls.__module__.startswith(_APPSI_MODULE):
            return "appsi_" + cls.__module__[len(_APPSI_MODULE):].split(".")[0]
    for attr in ("name", "_solver_name"):
        name = getattr(solver, attr, None)
        if isinstance(name, str) and name:
            return name.strip().lower()
    return type(solver).__name__.lower()


def gives_duals(solver: Any) -> bool:
    """False for solvers that load no duals here (``NO_DUALS``)."""
    return isinstance(solver, DualConvention) or solver_name(solver) not in NO_DUALS


def dual_convention(solver: Any) -> DualConvention:
    """The sign convention of ``solver`` (a name, a solver object or a convention).

    Raises
    ------
    EmbeddingError
        For a solver whose convention is not known: the message says to pass the
        convention itself where the solver goes.
    """
    if isinstance(solver, DualConvention):
        return solver
    name = solver_name(solver)
    if name not in KNOWN_CONVENTIONS:
        raise EmbeddingError(
            f"dual sign: solver {name!r} has no known sign convention; in place of "
            f"the solver pass DualConvention.PYOMO (duals are d objective / d bound) "
            f"or DualConvention.IPOPT_RAW (from aggregame.models.duals); known "
            f"solvers: {sorted(KNOWN_CONVENTIONS)}"
        )
    return KNOWN_CONVENTIONS[name]


def active_objective(model: pyo.Block) -> Any:
    """The one active Objective of ``model`` (an error if there are none or several)."""
    objs = list(model.component_data_objects(pyo.Objective, active=True))
    if len(objs) != 1:
        raise EmbeddingError(
            f"dual sign: model {model.name!r} must have exactly one active objective, "
            f"got {len(objs)}"
        )
    return objs[0]


def bound_sensitivity(model: pyo.Block, con: Any, solver: Any) -> float:
    """d(objective)/d(bound of ``con``) from ``model.dual``, in the objective's sense.

    ``con`` is read as ``body == bound`` (or ``body >= lower``, ``body <= upper``) in
    the form Pyomo stores, not as written: a parameter on the right of ``==`` is the
    bound, a variable is moved into the body.
    """
    suffix = model.component("dual")
    if suffix is None or not isinstance(suffix, pyo.Suffix):
        raise EmbeddingError(
            f"dual sign: model {model.name!r} has no 'dual' Suffix; add "
            "model.dual = pyo.Suffix(direction=pyo.Suffix.IMPORT) before solving"
        )
    dual = suffix.get(con)
    if dual is None:
        raise EmbeddingError(
            f"dual sign: no dual for constraint {con.name!r}; was the model solved "
            "with a solver that returns duals?"
        )
    dual = float(dual)
    if dual_convention(solver) is DualConvention.IPOPT_RAW and \
            active_objective(model).sense == pyo.minimize:
        return -dual
    return dual


def improvement_per_unit(model: pyo.Block, con: Any, solver: Any) -> float:
    """Gain of the objective per unit of ``con``'s bound: > 0 when more helps."""
    sens = bound_sensitivity(model, con, solver)
    return sens if active_objective(model).sense == pyo.maximize else -sens


# -- the aggregator's multiplier -----------------------------------------------------
def aggregator_lambda(block: pyo.Block, solver: Any, model: pyo.Block | None = None
                      ) -> float:
    """lambda_j: gain of the model's objective per unit delivered to the members
    (> 0 when more purchase helps), with one sign whatever the solver.

    For the standalone model, or any model that maximizes ``block.welfare``, it is
    dJ_j/dy_j at fixed price; for a model that minimizes ``cost - welfare`` it is the
    same number. Solvers that return duals (models/duals.py, ``KNOWN_CONVENTIONS``)
    are read from ``model.dual[block.eq_balance]``; a solver that gives none for
    these models (SCIP) is read from the allocation (``allocation_lambda``).

    Parameters
    ----------
    block : the aggregator block (or the standalone model).
    solver : the solver (object or name, e.g. 'cyipopt', 'highs', 'appsi_highs',
        'scip_direct') that solved the model, or a ``DualConvention`` saying how the
        ``dual`` Suffix is signed.
    model : the model holding the ``dual`` Suffix and the objective (default: the
        block's root model).

    Raises
    ------
    EmbeddingError
        A solver of unknown sign convention (pass a DualConvention as ``solver``),
        a model without a ``dual`` Suffix or without a dual of ``eq_balance``, or
        (from the allocation) no member strictly inside its bounds.
    """
    model = block.model() if model is None else model
    if not gives_duals(solver):
        return allocation_lambda(block, model)
    con = block.eq_balance
    gain = improvement_per_unit(model, con, solver)
    # Pyomo stores eq_balance as body == bound: body sum(x), bound y for a Param
    # purchase; body sum(x) - y (or y - sum(x)), bound 0 for a Var. lambda is the
    # value of one more unit delivered to the members, i.e. of raising the bound
    # when d(body)/dx_i = +1 and of lowering it otherwise.
    first = block.x[next(iter(block.MEMBERS))]
    slope = pyo.value(differentiate(con.body, wrt=first))
    return gain if slope > 0 else -gain


def allocation_lambda(block: pyo.Block, model: pyo.Block | None = None) -> float:
    """lambda_j read from the solution itself, no dual needed: the gain of the
    model's objective per unit given to a member strictly inside its bounds (x_i
    off 0 and off its bound, s_i > 0), where stationarity makes every such member's
    marginal gain equal to the balance's multiplier. The median over those members
    damps the solver's last digits.

    The objective may depend on x_i directly and through the block's
    ``shifted_surplus`` v_i = s_i + e_i (the embedded form): the gain is
    d obj/d x_i + d obj/d v_i * d s_i/d x_i. Other auxiliary variables of the
    caller tied to the allocation are not followed.

    Raises
    ------
    EmbeddingError
        For a max-min block (its objective, the level t, moves with the allocation
        only through constraints), or if no member is strictly inside (every one at
        0, at xbar_i or at s_i = 0): the allocation then leaves lambda anywhere in
        an interval; use a solver that returns duals.
    """
    model = block.model() if model is None else model
    if block.component("min_surplus") is not None:
        raise EmbeddingError(
            f"aggregator block {block.name!r}: a max-min block's lambda needs the "
            "solver's duals (cyipopt, highs); its allocation does not give it")
    objective = active_objective(model)
    sense = 1.0 if objective.sense == pyo.maximize else -1.0
    gains = [sense * _marginal_gain(block, objective.expr, i)
             for i in block.MEMBERS if _strictly_inside(block, i)]
    if not gains:
        raise EmbeddingError(
            f"aggregator block {block.name!r}: no member is strictly inside its "
            "bounds, so the allocation does not determine lambda; solve with a "
            "solver that returns duals (cyipopt, highs)")
    return float(median(gains))


def _marginal_gain(block: pyo.Block, expr: Any, i: str) -> float:
    """d expr / d x_i, following x_i into the block's ``shifted_surplus``."""
    gain = differentiate(expr, wrt=block.x[i], mode=Modes.reverse_numeric)
    shifted = block.component("shifted_surplus")
    if shifted is not None:
        gain += differentiate(expr, wrt=shifted[i], mode=Modes.reverse_numeric) * \
            differentiate(block.surplus[i].expr, wrt=block.x[i],
                          mode=Modes.reverse_numeric)
    return float(gain)


def _strictly_inside(block: pyo.Block, i: str) -> bool:
    var = block.x[i]
    if var.fixed or var.value is None:
        return False
    x, ub = float(var.value), var.ub
    scale = max(1.0, abs(float(ub)) if ub is not None else abs(x))
    surplus = block.component("ineq_surplus")
    s_ok = surplus is None or pyo.value(block.surplus[i]) > INSIDE_RTOL * scale
    return x > INSIDE_RTOL * scale and s_ok and (
        ub is None or float(ub) - x > INSIDE_RTOL * scale)
